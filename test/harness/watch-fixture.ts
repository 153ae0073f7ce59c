/** What the watch and lifecycle tests share: a host directory for the agent, the configuration, waiting. */
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { cliEnv, RUNSC } from './docker-state.js';
import { ARN, FakeAutoScaling, FakeEc2, FakeEcs, FakeImds, type FakeInstance, type FakeIntrospection } from './fake-aws.js';
import type { DockerdInfo } from './private-dockerd.js';

export interface FakeAws {
  ecs: FakeEcs;
  asg: FakeAutoScaling;
  ec2: FakeEc2;
  imds: FakeImds;
  /** Forget state and calls between tests. */
  reset(): void;
  stop(): Promise<void>;
}

/** The EC2 instance the watch and lifecycle tests run "on": IMDS's instance-id and ECS's ec2InstanceId. */
export const TEST_INSTANCE_ID = 'i-0123456789abcdef0';

/**
 * Their introspection endpoint is a stand-in in the test process, not the agent container: its listener
 * is accepted. The check itself runs against the agent's own listener (watch-identity.test.ts, e2e).
 */
export const ACCEPT_STAND_IN_LISTENER = { introspectionOwner: async () => undefined };

/** The fake endpoints, with the SDK pointed at them as an operator would (AWS_ENDPOINT_URL_<SERVICE>). */
export async function startFakeAws(): Promise<FakeAws> {
  const [ecs, asg, ec2, imds] = await Promise.all([
    new FakeEcs().start(),
    new FakeAutoScaling().start(),
    new FakeEc2().start(),
    new FakeImds().start(),
  ]);
  // ECS knows registrations in these tests as the instance IMDS names (tests set that path to it).
  ecs.assumedEc2InstanceId = TEST_INSTANCE_ID;
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'AKIDTEST',
    AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_ENDPOINT_URL_ECS: ecs.url,
    AWS_ENDPOINT_URL_AUTO_SCALING: asg.url,
    AWS_ENDPOINT_URL_EC2: ec2.url,
  });
  return {
    ecs,
    asg,
    ec2,
    imds,
    reset: () => {
      ecs.reset();
      asg.reset();
      ec2.reset();
      imds.reset();
    },
    stop: async () => void (await Promise.all([ecs.stop(), asg.stop(), ec2.stop(), imds.stop()])),
  };
}

/** A fresh directory with the agent's ecs.config (cluster prod) and a runsc link the test may break. */
export function agentHostDir(prefix: string): string {
  const dir = mkdtempSync(prefix);
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
  symlinkSync(RUNSC, `${dir}/runsc`);
  return dir;
}

/** The configuration `run` gets in these tests: the stand-in agent, local fakes, one-second intervals. */
export function watchEnv(
  d: DockerdInfo,
  o: { dir: string; agentImage: string; intro: FakeIntrospection; imdsUrl?: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return cliEnv(d, {
    ECS_GVISOR_RUNSC_PATH: `${o.dir}/runsc`,
    ECS_GVISOR_AGENT_IMAGE: o.agentImage,
    ECS_GVISOR_ECS_CONFIG: `${o.dir}/ecs.config`,
    ECS_GVISOR_ECS_INSTANCE_CONFIG: `${o.dir}/none`,
    ECS_GVISOR_AGENT_CACHE_DIR: `${o.dir}/cache`,
    ECS_GVISOR_INTROSPECTION_URL: o.intro.url,
    // Stand-in agents write no log: ECS is polled at the steady rate, as without local evidence.
    ECS_GVISOR_AGENT_LOG_FILE: `${o.dir}/log/ecs-agent.log`,
    ...(o.imdsUrl ? { ECS_GVISOR_IMDS_URL: o.imdsUrl } : {}),
    ECS_GVISOR_INTROSPECTION_SECONDS: '1',
    ECS_GVISOR_ECS_ALERT_POLL_SECONDS: '1',
    ECS_GVISOR_ECS_FIRST_POLL_SPREAD_SECONDS: '1',
    ECS_GVISOR_ECS_CALLS_PER_HOUR: '1800',
    ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR: '3600',
    ...extra,
  });
}

/** The agent registers: ECS knows the instance (ACTIVE, connected unless told otherwise), introspection answers. */
export function registerAgent(ecs: FakeEcs, intro: FakeIntrospection, o: Partial<FakeInstance> = {}): Promise<void> {
  ecs.instances.set(ARN, { status: 'ACTIVE', agentConnected: true, healthStatus: 'OK', runningTasksCount: 0, attributes: {}, ...o });
  return intro.register({ Cluster: 'prod', ContainerInstanceArn: ARN });
}

/** Poll `fn` every `everyMs` until it gives something truthy (errors count as not yet). */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 30_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve()
      .then(fn)
      .catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
