/**
 * Whose answer the introspection port gives. The watch runs in this process against the stand-in agent's
 * own listener on 127.0.0.1:51678 (its container uses the host's network, as ecs-init runs the agent),
 * so the real listener check runs: a local process answering on the introspection port is not believed,
 * even when the ARN it names is one ECS would confirm; the agent's own answer is.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type App, buildApp } from '../../src/cli/composition.js';
import { parseConfig } from '../../src/config.js';
import type { FakeEcs } from '../harness/fake-aws.js';
import { TEST_INSTANCE_ID, until, watchEnv } from '../harness/watch-fixture.js';
import { useWatchHost } from '../harness/watch-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const host = useWatchHost(d, '/tmp/egv-identity-', { '/latest/meta-data/instance-id': TEST_INSTANCE_ID });
/** What the stand-in agent answers for cluster prod. */
const STAND_IN_ARN = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/0123456789abcdef';
let ecs: FakeEcs;
let app: App;
let squatter: Server | undefined;

beforeAll(() => {
  ({ ecs } = host.aws);
});
afterEach(async () => {
  await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
  squatter = undefined;
});

async function start(introspectionUrl: string): Promise<void> {
  const env = watchEnv(
    d,
    { dir: host.dir, agentImage, intro: host.intro, imdsUrl: host.aws.imds.url },
    { ECS_GVISOR_INTROSPECTION_URL: introspectionUrl, ECS_GVISOR_DRIFT_CHECK_SECONDS: '3600' },
  );
  app = buildApp(
    parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env }),
    pino({ level: process.env.EGV_TEST_LOG ?? 'silent' }),
  );
  const runtime = await app.runtime.apply();
  await app.agent.apply();
  host.running = app.watch(runtime).run(host.ac.signal);
}

/** ECS knows the stand-in's ARN as this instance's: only the listener check can refuse it. */
function known(arn: string): void {
  ecs.instances.set(arn, {
    ec2InstanceId: TEST_INSTANCE_ID,
    status: 'ACTIVE',
    agentConnected: true,
    healthStatus: 'OK',
    runningTasksCount: 0,
    attributes: {},
  });
}

describe('the introspection listener', () => {
  it('a local process answering on the introspection port is not believed, even naming an ARN ECS would confirm', async () => {
    known(STAND_IN_ARN);
    // The agent runs and serves its own port; a local user's server answers on the one ecs-gvisor asks
    // (as when it binds the agent's port first, or while the agent restarts), naming the same ARN.
    squatter = createServer((_req, res) =>
      res.end(JSON.stringify({ Cluster: 'prod', ContainerInstanceArn: STAND_IN_ARN, Version: 'squatter' })),
    );
    await new Promise<void>((r) => squatter!.listen(0, '127.0.0.1', r));
    const port = (squatter.address() as AddressInfo).port;
    await start(`http://127.0.0.1:${port}`);
    const s = await until(
      'the refusal in status',
      async () => {
        const st = await app.status();
        return st.lastErrors.some(
          (e) => e.component === 'introspection' && /is held by pid \d+ .*not a process of the agent container/.test(e.message),
        )
          ? st
          : undefined;
      },
      60_000,
    );
    expect(s.registration.containerInstanceArn).toBeUndefined();
    expect(s.lastErrors.find((e) => e.component === 'introspection')!.message).toContain(`port ${port} is held by pid ${process.pid} `);
    // Time for several introspections: nothing was asked of ECS, nothing published.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(ecs.count('DescribeContainerInstances')).toBe(0);
    expect(ecs.count('PutAttributes')).toBe(0);
    expect(ecs.instances.get(STAND_IN_ARN)!.attributes).toEqual({});
  });

  it('the agent container’s own answer is believed: ECS confirms the instance, the attribute is published', async () => {
    known(STAND_IN_ARN);
    await start('http://127.0.0.1:51678');
    await until(
      'the verified attribute on the agent’s ARN',
      () => ecs.instances.get(STAND_IN_ARN)?.attributes['ecs-gvisor.sandbox'] === 'verified',
      60_000,
    );
    const st = await until('status registered', async () => {
      const x = await app.status();
      return x.registration.identity === 'confirmed' ? x : undefined;
    });
    expect(st.registration).toMatchObject({ containerInstanceArn: STAND_IN_ARN, ec2InstanceId: TEST_INSTANCE_ID, identity: 'confirmed' });
    expect(st.lastErrors.filter((e) => e.component === 'introspection')).toEqual([]);
  });
});
