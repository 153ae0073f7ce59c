/**
 * A simulated day of the watch on an injected clock: the real loop, wired by buildApp, against the real
 * private dockerd and stand-in agent, polling a fake ECS through the real SDK. The day has a
 * disconnected hour, an hour of 50 % throttling, an hour of 50 % server errors (5xx) and an hour in
 * which every answer takes 10 s (simulated; the SDK's real 10 s timeout is tested in aws-adapters). Figures are counted from the fake's call log by
 * simulated hour: the steady budget (≤ 12 calls per instance-hour), the bounded faster polling while
 * something is wrong, detection latency, and throttling backed off.
 */
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../../src/cli/composition.js';
import { parseConfig } from '../../src/config.js';
import { cliEnv, resetDocker } from '../harness/docker-state.js';
import { ARN, FakeEcs, FakeImds, FakeIntrospection } from '../harness/fake-aws.js';
import { FakeClock } from '../harness/fake-clock.js';
import { ACCEPT_STAND_IN_LISTENER, TEST_INSTANCE_ID } from '../harness/watch-fixture.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const HOUR = 3_600_000;

let ecs: FakeEcs;
let intro: FakeIntrospection;
let imds: FakeImds;
const clock = new FakeClock();
const t0 = clock.now();
const hourOf = (t: number) => Math.floor((t - t0) / HOUR);

beforeAll(async () => {
  ecs = await new FakeEcs(
    () => clock.now(),
    (ms) => clock.sleep(ms),
  ).start();
  ecs.assumedEc2InstanceId = TEST_INSTANCE_ID;
  // Asked once, for this instance's ID (ECS must say the registration is this instance's).
  imds = await new FakeImds().start();
  imds.paths.set('/latest/meta-data/instance-id', TEST_INSTANCE_ID);
  intro = await new FakeIntrospection().reserve();
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret', AWS_ENDPOINT_URL_ECS: ecs.url });
});
afterAll(async () => {
  await Promise.all([ecs.stop(), intro.stop(), imds.stop()]);
});

/** The app wired as `run` wires it, on the simulated clock: the runtime applied and the agent started. */
async function dayApp(dir: string, extra: Record<string, string>) {
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
  const env = cliEnv(d, {
    ECS_GVISOR_AGENT_IMAGE: agentImage,
    ECS_GVISOR_ECS_CONFIG: `${dir}/ecs.config`,
    ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/none`,
    ECS_GVISOR_AGENT_CACHE_DIR: `${dir}/cache`,
    ECS_GVISOR_INTROSPECTION_URL: intro.url,
    ECS_GVISOR_IMDS_URL: imds.url,
    ECS_GVISOR_DRIFT_CHECK_SECONDS: '86400',
    ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '86400',
    ECS_GVISOR_UNHEALTHY_SECONDS: '86400',
    ...extra,
  });
  const cfg = parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env });
  const app = buildApp(
    cfg,
    pino({ level: 'silent' }),
    {},
    { clock, ecsRetry: { retries: 2, minMs: 1, maxMs: 5 }, ...ACCEPT_STAND_IN_LISTENER },
  );
  const runtime = await clock.drive(app.runtime.apply());
  await clock.drive(app.agent.apply());
  return { cfg, app, runtime };
}

describe('a simulated day of ECS monitoring', () => {
  it('stays within 12 calls per instance-hour when healthy, polls faster (bounded) only while wrong, backs off when throttled', async () => {
    await resetDocker(d, '{}\n');
    const { cfg, app, runtime } = await dayApp(mkdtempSync('/tmp/egv-day-'), { ECS_GVISOR_INTROSPECTION_SECONDS: '300' });

    ecs.instances.set(ARN, { status: 'ACTIVE', agentConnected: true, healthStatus: 'OK', runningTasksCount: 0, attributes: {} });
    ecs.behaviour = (_op, n) => {
      const h = hourOf(clock.now());
      ecs.instances.get(ARN)!.agentConnected = h !== 10; // disconnected 10:00–11:00
      if (h === 15 && n % 2 === 0) return 'throttle'; // every other call throttled 15:00–16:00
      if (h === 18 && n % 2 === 0) return 'server-error'; // every other call a 500 18:00–19:00
      if (h === 20) return { slowMs: 10_000 }; // every answer 10 s late 20:00–21:00
      return 'ok';
    };
    await intro.register({ Cluster: 'prod', ContainerInstanceArn: ARN });

    const ac = new AbortController();
    const start = clock.now();
    const running = app.watch(runtime).run(ac.signal);
    await clock.runUntil(start + 24 * HOUR);
    ac.abort();
    await running;

    const describes = ecs.calls.filter((c) => c.operation === 'DescribeContainerInstances');
    const perHour = Array.from({ length: 24 }, (_, h) => describes.filter((c) => hourOf(c.at) === h).length);
    const allPerHour = Array.from({ length: 24 }, (_, h) => ecs.calls.filter((c) => hourOf(c.at) === h).length);
    const steadyHours = perHour.filter((_, h) => ![10, 11, 15, 16, 18, 19, 20, 21].includes(h));
    expect(Math.max(...steadyHours)).toBeLessThanOrEqual(12);
    expect(Math.min(...steadyHours)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...allPerHour)).toBeLessThanOrEqual(cfg.ECS_MAX_CALLS_PER_HOUR);
    // Disconnected hour: alert polling (60 s), bounded by the ceiling.
    expect(perHour[10]).toBeGreaterThanOrEqual(30);
    // Detection: the first poll after 10:00 comes within one steady interval (+10 % jitter) and sees it.
    const firstIn10 = describes.find((c) => c.at >= t0 + 10 * HOUR)!;
    expect(firstIn10.at - (t0 + 10 * HOUR)).toBeLessThanOrEqual(330_000);
    // Recovery is seen at the alert interval.
    const firstIn11 = describes.find((c) => c.at >= t0 + 11 * HOUR)!;
    expect(firstIn11.at - (t0 + 11 * HOUR)).toBeLessThanOrEqual(66_000);
    // Throttling: counted, retried a bounded number of times, never past the ceiling.
    expect(ecs.count('DescribeContainerInstances', 'throttled')).toBeGreaterThan(0);
    expect(allPerHour[15]).toBeLessThanOrEqual(24);
    // Server errors: retried the same bounded way; slow answers: waited for, one at a time, never piled up.
    expect(ecs.count('DescribeContainerInstances', 'server-error')).toBeGreaterThan(0);
    expect(allPerHour[18]).toBeLessThanOrEqual(24);
    expect(ecs.count('DescribeContainerInstances', 'slow')).toBeGreaterThanOrEqual(10);
    expect(allPerHour[20]).toBeLessThanOrEqual(12);
    // Attributes: written once at registration, not per poll.
    expect(ecs.count('PutAttributes')).toBe(1);
    const metrics = (await app.metrics.render()).text;
    expect(metrics).toMatch(/outcome="throttled"\} [1-9]/);
    expect(metrics).toMatch(/outcome="server-error"\} [1-9]/);
    // None of it was taken for the agent's fault, and the loop ran to the end of the day.
    expect((await app.status()).agent.restarts).toBe(0);
    expect(describes.at(-1)!.at).toBeGreaterThan(t0 + 23 * HOUR);
  }, 240_000);
  it('with the agent’s ACS connection seen on the instance: idle hours cost no call but the heartbeat; a loss is confirmed by one call after the grace period, and its end seen with none', async () => {
    await resetDocker(d, '{}\n');
    ecs.reset();
    ecs.assumedEc2InstanceId = TEST_INSTANCE_ID;
    const dir = mkdtempSync('/tmp/egv-day-acs-');
    const agentLog = `${dir}/ecs-agent.log`;
    // The agent's own words (no time field: the simulated day is not the container's clock).
    const say = (msg: string) => appendFileSync(agentLog, `level=info msg="${msg}" containerInstanceARN="${ARN}"\n`);
    writeFileSync(agentLog, '', { mode: 0o644 });
    say('Connected to ACS endpoint');
    const { app, runtime } = await dayApp(dir, { ECS_GVISOR_AGENT_LOG_FILE: agentLog, ECS_GVISOR_INTROSPECTION_SECONDS: '30' });
    ecs.instances.set(ARN, { status: 'ACTIVE', agentConnected: true, healthStatus: 'OK', runningTasksCount: 0, attributes: {} });
    await intro.register({ Cluster: 'prod', ContainerInstanceArn: ARN });

    const ac = new AbortController();
    const start = clock.now();
    const at = (h: number) => start + h * HOUR;
    const running = app.watch(runtime).run(ac.signal);
    await clock.runUntil(at(10));
    // 10:00: ACS drops the connection; ECS knows at once (as for a closed connection).
    ecs.instances.get(ARN)!.agentConnected = false;
    say('ACS WebSocket connection closed');
    await clock.runUntil(at(10.5));
    ecs.instances.get(ARN)!.agentConnected = true;
    say('Connected to ACS endpoint');
    await clock.runUntil(at(24));
    ac.abort();
    await running;

    const describes = ecs.calls.filter((c) => c.operation === 'DescribeContainerInstances').map((c) => c.at - start);
    const within = (from: number, to: number) => describes.filter((ms) => ms >= from * HOUR && ms < to * HOUR);
    // Registration: one call (which EC2 instance the ARN is) in the first minute.
    expect(within(0, 1 / 60)).toHaveLength(1);
    // Idle and connected: nothing until the heartbeat (12 h ± 25 %: not before 9 h).
    expect(within(1 / 60, 9)).toEqual([]);
    // The loss: one call, after the grace period (30 s) and within two checks (30 s each) more.
    const loss = within(10, 10.5);
    expect(loss).toHaveLength(1);
    expect(loss[0]! - 10 * HOUR).toBeGreaterThanOrEqual(30_000);
    expect(loss[0]! - 10 * HOUR).toBeLessThanOrEqual(30_000 + 2 * 30_000);
    // Its end is seen here: nothing asked for it; and the whole day stayed within a handful of calls.
    expect(within(10.5, 11.5)).toEqual([]);
    expect(describes.length).toBeLessThanOrEqual(4);
    const st = await app.status();
    expect(st.registration).toMatchObject({ agentConnected: true, acs: { state: 'connected' } });
    expect(st.agent.restarts).toBe(0);
  }, 300_000);
});
