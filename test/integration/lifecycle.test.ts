/**
 * Auto Scaling lifecycle hooks from the instance, through `run`'s own path (serve: bootstrap, then the
 * watch) wired by buildApp from configuration, against the real private dockerd with runsc and the
 * stand-in agent, and fake IMDSv2, Auto Scaling, EC2, ECS and introspection endpoints on 127.0.0.1
 * reached through the real SDK clients. Assertions are on the fakes' recorded calls and state, Docker,
 * and status.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import type { Step } from '../../src/cli/args.js';
import { type App, buildApp } from '../../src/cli/composition.js';
import { serve } from '../../src/cli/run.js';
import { parseConfig } from '../../src/config.js';
import { runCli } from '../harness/cli.js';
import { dockerClient } from '../harness/docker-state.js';
import { ARN, type FakeAutoScaling, type FakeEc2, type FakeEcs, type FakeImds, type FakeInstance } from '../harness/fake-aws.js';
import { FakeClock } from '../harness/fake-clock.js';
import { ACCEPT_STAND_IN_LISTENER, registerAgent, until, watchEnv } from '../harness/watch-fixture.js';
import { useWatchHost } from '../harness/watch-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const docker = dockerClient(d);
const IID = 'i-0123456789abcdef0';
const TARGET = '/latest/meta-data/autoscaling/target-lifecycle-state';
const SPOT = '/latest/meta-data/spot/instance-action';
const log = pino({ level: process.env.EGV_TEST_LOG ?? 'silent' });

const host = useWatchHost(
  d,
  '/tmp/egv-lifecycle-',
  { '/latest/meta-data/instance-id': IID, '/latest/meta-data/placement/region': 'us-east-1' },
  { runMayFail: true },
);
let ecs: FakeEcs;
let asg: FakeAutoScaling;
let ec2: FakeEc2;
let imds: FakeImds;
let app: App;
/** The configuration environment of the last app, for the CLI. */
let env: Record<string, string>;

beforeAll(() => {
  ({ ecs, asg, ec2, imds } = host.aws);
  ec2.tags.push({ resourceId: IID, key: 'aws:autoscaling:groupName', value: 'asg-1' });
});

function configure(extra: Record<string, string>, clock?: FakeClock): App {
  env = watchEnv(
    d,
    { dir: host.dir, agentImage, intro: host.intro, imdsUrl: imds.url },
    { ECS_GVISOR_LIFECYCLE_POLL_SECONDS: '1', ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: '30', ...extra },
  );
  const cfg = parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env });
  writeFileSync(consolePath(), '');
  return buildApp(
    cfg,
    log,
    {},
    {
      clock,
      ecsRetry: { retries: 3, minMs: 20, maxMs: 100 },
      targetStateWaitMs: 10_000,
      consolePath: consolePath(),
      ...ACCEPT_STAND_IN_LISTENER,
    },
  );
}

/** The instance console stand-in: a file (the console is opened, never created). */
const consolePath = () => `${host.dir}/console`;
const consoleText = () => readFileSync(consolePath(), 'utf8');

/** `run` as main runs it, for the runtime and agent steps (the others touch the host). */
function start(extra: Record<string, string>, steps: Step[] = ['runtime', 'agent']): void {
  app = configure(extra);
  host.running = serve(app, steps, log, host.ac.signal);
}

const register = (o: Partial<FakeInstance> = {}) => registerAgent(ecs, host.intro, o);

const agent = () => docker.getContainer('ecs-agent').inspect();
const completions = () => asg.calls.filter((c) => c.Action === 'CompleteLifecycleAction');
const targetGets = () => imds.requests.filter((r) => r.path === TARGET).length;

describe('launch', () => {
  it('heartbeats from bootstrap on, completes CONTINUE only once verified, registered, ACTIVE and connected; rides out IMDS 404/401/timeouts and Auto Scaling throttling', async () => {
    asg.pend('asg-1', 'launch', IID);
    // A new instance: IMDS has no target lifecycle state yet (404) — keep asking.
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch' });
    await until('a heartbeat during bootstrap', () => asg.count('RecordLifecycleActionHeartbeat', 'ok') >= 1);
    await until('two 404s for the target state', () => targetGets() >= 2);
    expect(await agent().catch(() => undefined)).toBeUndefined(); // the agent waits for the target state
    imds.paths.set(TARGET, 'InService');
    const a = await until('the agent running', async () => ((await agent()).State.Running ? agent() : undefined));
    expect(a.HostConfig.Runtime).toBe('runc');
    // The group came from the instance's tag through EC2 (IMDS tags are off here: 404).
    expect(ec2.calls).toHaveLength(1);

    // Not registered: no completion, whatever the wait; IMDS misbehaves meanwhile.
    imds.revokeTokens(); // 401: a fresh token, once
    imds.faults.set(TARGET, { delayMs: 3_000 }); // slower than the client's 2 s timeout
    const s1 = await until('the IMDS timeout in status', async () => {
      const s = await app.status();
      return s.lastErrors.some((e) => e.component === 'lifecycle' && e.code === 'IMDS_FAILED') ? s : undefined;
    });
    expect(s1.lifecycle).toMatchObject({
      enabled: true,
      instanceId: IID,
      group: 'asg-1',
      targetState: 'InService',
      launch: { phase: 'waiting', target: 'InService' },
    });
    imds.faults.clear();
    expect(imds.requests.filter((r) => r.method === 'PUT').length).toBeGreaterThanOrEqual(2);
    expect(completions()).toHaveLength(0);

    // Registered, ACTIVE, connected: CONTINUE, through two throttled attempts.
    asg.behaviour = (action) => (action === 'CompleteLifecycleAction' && asg.count('CompleteLifecycleAction') < 2 ? 'throttle' : 'ok');
    const registeredAt = Date.now();
    await register();
    await until('CONTINUE', () => asg.action('asg-1', 'launch', IID)?.result === 'CONTINUE');
    expect(completions().map((c) => c.outcome)).toEqual(['throttled', 'throttled', 'ok']);
    expect(completions()[0]!.at).toBeGreaterThanOrEqual(registeredAt);
    expect(completions()[2]!.params).toMatchObject({
      AutoScalingGroupName: 'asg-1',
      LifecycleHookName: 'launch',
      InstanceId: IID,
      LifecycleActionResult: 'CONTINUE',
    });
    // It waited on ECS's own word, not only on the introspection.
    expect(ecs.calls.find((c) => c.operation === 'DescribeContainerInstances')!.at).toBeLessThanOrEqual(completions()[0]!.at);
    const s = await until('status with the launch completed', async () => {
      const st = await app.status();
      return st.lifecycle.launch?.phase === 'completed' ? st : undefined;
    });
    expect(s.lifecycle.launch).toMatchObject({ result: 'CONTINUE', hook: 'launch', target: 'InService' });
    expect(s.lifecycle.launch!.heartbeats).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(asg.count('CompleteLifecycleAction', 'ok')).toBe(1); // once
  });

  it('abandons the launch when bootstrap fails closed (sandbox not proven); a passing failure leaves it pending', async () => {
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'InService');
    // runsc without its network flag cannot start a sandbox on this kernel: unproven, rolled back.
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch', ECS_GVISOR_RUNSC_ARGS: '' });
    await expect(host.running).rejects.toMatchObject({ code: 'SANDBOX_UNPROVEN' });
    expect(asg.action('asg-1', 'launch', IID)?.result).toBe('ABANDON');
    expect(completions().at(-1)!.params.LifecycleActionResult).toBe('ABANDON');
    expect((await app.status()).lifecycle.launch).toMatchObject({
      phase: 'completed',
      result: 'ABANDON',
      reason: expect.stringMatching(/^bootstrap failed: /),
    });
    // Why, on the console EC2 keeps after the group terminates the instance: one line.
    expect(consoleText()).toMatch(new RegExp(`^ecs-gvisor: launch of ${IID} abandoned: bootstrap failed: .*sandbox.*\r\n$`, 'i'));
    expect(await agent().catch(() => undefined)).toBeUndefined();

    // runsc missing: Docker or runsc may come right (systemd restarts run), so the action keeps waiting.
    asg.pend('asg-1', 'launch', IID);
    asg.calls.length = 0;
    host.dir = mkdtempSync('/tmp/egv-lifecycle-');
    writeFileSync(`${host.dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch' });
    await expect(host.running).rejects.toMatchObject({ code: 'RUNSC_UNAVAILABLE' });
    expect(completions()).toHaveLength(0);
    expect(asg.action('asg-1', 'launch', IID)?.result).toBeUndefined();
    expect((await app.status()).lifecycle.launch).toMatchObject({ phase: 'waiting' });
  });
});

const awsEnv = () => ({
  AWS_ACCESS_KEY_ID: 'AKIDTEST',
  AWS_SECRET_ACCESS_KEY: 'secret',
  AWS_ENDPOINT_URL_ECS: ecs.url,
  AWS_ENDPOINT_URL_AUTO_SCALING: asg.url,
  AWS_ENDPOINT_URL_EC2: ec2.url,
});

describe('one run per host', () => {
  it('a second run is refused with one sentence while the first watches; the first goes on', async () => {
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch' });
    imds.paths.set(TARGET, 'InService');
    await register();
    const first = await until('the first run watching', async () => {
      const s = await app.status();
      return s.watch.running ? s.watch.pid : undefined;
    });
    const r = await runCli(['run'], { ...env, ...awsEnv() }, 60_000);
    expect(r.stderr).toMatch(
      /^ecs-gvisor: Another ecs-gvisor run \(pid \d+ \(run, since \S+\)\) already watches this host; one run per host, so this one changed nothing\.\n$/,
    );
    expect(r.code).toBe(4);
    // It refused before any step or lifecycle round of its own.
    expect(r.stdout).not.toMatch(/"component":"(runtime|agent|lifecycle)"/);
    expect((await app.status()).watch).toMatchObject({ running: true, pid: first });
  });
});

describe('failing closed after a verified run', () => {
  const sandboxAttr = () => ecs.instances.get(ARN)?.attributes['ecs-gvisor.sandbox'];
  /** A `run` that proves, registers and publishes verified, then is stopped as systemd does on a restart. */
  async function verifiedThenStopped(): Promise<{ agentId: string; same: Record<string, string> }> {
    start({});
    // The next run on this host keeps its state dir (what it published, the backup of daemon.json).
    const same = { ECS_GVISOR_STATE_DIR: env.ECS_GVISOR_STATE_DIR! };
    await register();
    await until('the verified attribute', () => sandboxAttr() === 'verified');
    await until('watch.json says verified', async () => (await app.status()).attributes?.published['ecs-gvisor.sandbox'] === 'verified');
    host.ac.abort();
    await host.running;
    host.ac = new AbortController();
    const a = await agent();
    expect(a.State.Running).toBe(true); // kept running through our stop, as designed
    return { agentId: a.Id, same };
  }

  it('a failed proof stops the agent, withdraws verified, abandons the launch and marks the instance Unhealthy before it exits', async () => {
    const { agentId, same } = await verifiedThenStopped();
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'InService');
    // runsc without its network flag cannot start a sandbox on this kernel: the proof fails (exit 5).
    start({ ...same, ECS_GVISOR_LAUNCH_HOOK: 'launch', ECS_GVISOR_RUNSC_ARGS: '', ECS_GVISOR_SET_INSTANCE_HEALTH: 'true' });
    const err = await host.running!.catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SANDBOX_UNPROVEN', exitCode: 5 });
    const a = await agent();
    expect(a.Id).toBe(agentId);
    expect(a.State.Running).toBe(false); // stopped, not left placing tasks on runc
    expect((await docker.info()).DefaultRuntime).toBe('runc');
    expect(sandboxAttr()).toBe('unverified');
    expect(asg.action('asg-1', 'launch', IID)?.result).toBe('ABANDON');
    const health = asg.calls.filter((c) => c.Action === 'SetInstanceHealth');
    expect(health).toHaveLength(1);
    expect(health[0]).toMatchObject({ params: { InstanceId: IID, HealthStatus: 'Unhealthy' } });
  });

  it('an input refused before any step changes nothing: the agent runs on, verified stands (exit 3)', async () => {
    const { same } = await verifiedThenStopped();
    // ecs.config is a directory: unreadable, refused before anything is touched.
    const cli = { ...env, ...same, ...awsEnv(), ECS_GVISOR_ECS_CONFIG: host.dir };
    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], cli, 120_000);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cannot be read/);
    expect((await agent()).State.Running).toBe(true);
    expect(sandboxAttr()).toBe('verified');
  });

  it('bootstrap alone fails closed too; what it could not do is in the exit code (17: ECS never took the withdrawal)', async () => {
    const { same } = await verifiedThenStopped();
    ecs.behaviour = (op) => (op === 'PutAttributes' ? 'server-error' : 'ok');
    // The CLI as an operator runs it, pointed at the fakes the way startFakeAws points this process.
    const cli = { ...env, ...same, ...awsEnv(), ECS_GVISOR_RUNSC_ARGS: '' };
    const r = await runCli(['bootstrap', '--only', 'runtime'], cli, 180_000);
    expect(r.code).toBe(17);
    expect(r.stderr).toMatch(
      /^ecs-gvisor: .*sandbox.* Taking the instance out of service was incomplete: ecs-gvisor\.sandbox=verified could not be withdrawn from ECS \(.*\)\.\n$/,
    );
    expect((await agent()).State.Running).toBe(false);
    expect(sandboxAttr()).toBe('verified'); // ECS refused: the exit code said so
    expect(ecs.count('PutAttributes', 'server-error')).toBeGreaterThanOrEqual(2);
    // ECS answers again: the next failed start withdraws it.
    ecs.behaviour = () => 'ok';
    const again = await runCli(['bootstrap', '--only', 'runtime'], cli, 180_000);
    expect(again.code).toBe(5);
    expect(sandboxAttr()).toBe('unverified');
  });
});

describe('warm pools', () => {
  it('keeps the agent down while Warmed:Running and continues without ECS; InService starts the agent and gates on registration again', async () => {
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'Warmed:Running');
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch', ECS_GVISOR_ASG_NAME: 'asg-1' });
    await until('CONTINUE into the warm pool', () => asg.action('asg-1', 'launch', IID)?.result === 'CONTINUE');
    expect(ec2.calls).toHaveLength(0); // the group was configured
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await agent().catch(() => undefined)).toBeUndefined(); // never created: it must not register from the pool
    const warm = await app.status();
    expect(warm.agent.held).toMatch(/warm pool \(Warmed:Running\)/);
    expect(warm.lifecycle.launch).toMatchObject({ target: 'Warmed:Running', result: 'CONTINUE' });
    expect(ecs.calls).toHaveLength(0);

    // Out of the pool: a new launch action, the agent starts, and CONTINUE waits for the registration.
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'InService');
    await until('the agent running', async () => (await agent()).State.Running);
    expect((await agent()).HostConfig.Runtime).toBe('runc');
    await new Promise((r) => setTimeout(r, 1_500));
    expect(asg.action('asg-1', 'launch', IID)?.result).toBeUndefined();
    await register();
    await until('CONTINUE into service', () => asg.action('asg-1', 'launch', IID)?.result === 'CONTINUE');
    expect(asg.count('CompleteLifecycleAction', 'ok')).toBe(2);
    // lifecycle.json is written once the round that made the call ends.
    const s = await until('status with the InService launch completed', async () =>
      (await app.status()).lifecycle.launch?.target === 'InService' && (await app.status()).lifecycle.launch?.phase === 'completed'
        ? app.status()
        : undefined,
    );
    expect(s.agent.held).toBeUndefined();
    expect(s.lifecycle.launch).toMatchObject({ target: 'InService', result: 'CONTINUE' });
  });
});

describe('another instance’s registration (ECS says its ARN is another EC2 instance)', () => {
  it('never completes the launch with CONTINUE for it, and never drains it on termination', async () => {
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'InService');
    start({ ECS_GVISOR_LAUNCH_HOOK: 'launch', ECS_GVISOR_TERMINATE_HOOK: 'terminate' });
    await until('the agent running', async () => (await agent()).State.Running);
    await register({ ec2InstanceId: 'i-0fffffffffffffff0', runningTasksCount: 2 });
    await until('the mismatch in status', async () => (await app.status()).registration.identity === 'mismatch');
    const polls = ecs.count('DescribeContainerInstances');
    await until('three more polls', () => ecs.count('DescribeContainerInstances') >= polls + 3);
    expect(completions()).toHaveLength(0);
    expect((await app.status()).lifecycle.launch).toMatchObject({ phase: 'waiting' });

    // The group terminates this instance: the other instance's record is never set DRAINING.
    asg.pend('asg-1', 'terminate', IID);
    imds.paths.set(TARGET, 'Terminated');
    const more = ecs.count('DescribeContainerInstances');
    await until('three more polls', () => ecs.count('DescribeContainerInstances') >= more + 3);
    expect(ecs.count('UpdateContainerInstancesState')).toBe(0);
    expect(ecs.instances.get(ARN)!.status).toBe('ACTIVE');
    expect(ecs.count('PutAttributes')).toBe(0);
  });
});

describe('terminate and spot', () => {
  it('status says DRAINING as soon as ecs-gvisor set it, not ACTIVE until the next poll', async () => {
    // Polls rare enough that none comes between the drain and the check.
    start({ ECS_GVISOR_TERMINATE_HOOK: 'terminate', ECS_GVISOR_ECS_ALERT_POLL_SECONDS: '600', ECS_GVISOR_ECS_CALLS_PER_HOUR: '12' });
    imds.paths.set(TARGET, 'InService');
    await register({ runningTasksCount: 2 });
    await until('registered and polled', async () => (await app.status()).registration.status === 'ACTIVE', 60_000);
    asg.pend('asg-1', 'terminate', IID);
    imds.paths.set(TARGET, 'Terminated');
    await until('the drain', () => ecs.count('UpdateContainerInstancesState') === 1);
    const drainAt = ecs.calls.find((c) => c.operation === 'UpdateContainerInstancesState')!.at;
    await until('status DRAINING', async () => (await app.status()).registration.status === 'DRAINING', 10_000);
    expect(ecs.calls.filter((c) => c.operation === 'DescribeContainerInstances' && c.at > drainAt)).toHaveLength(0);
  });

  it('drains on Terminated, waits for the tasks to go 3 → 0 with heartbeats, then completes CONTINUE', async () => {
    start({ ECS_GVISOR_TERMINATE_HOOK: 'terminate' });
    imds.paths.set(TARGET, 'InService');
    await register({ runningTasksCount: 3 });
    await until('registered and polled', () => ecs.count('DescribeContainerInstances') >= 1);
    // Tasks leave the draining instance one per ECS poll.
    ecs.onDescribe = (i) => {
      if (i.status === 'DRAINING' && i.runningTasksCount > 0) i.runningTasksCount--;
    };
    asg.pend('asg-1', 'terminate', IID);
    imds.paths.set(TARGET, 'Terminated');
    await until('CONTINUE', () => asg.action('asg-1', 'terminate', IID)?.result === 'CONTINUE');
    expect(ecs.count('UpdateContainerInstancesState')).toBe(1);
    expect(ecs.instances.get(ARN)).toMatchObject({ status: 'DRAINING', runningTasksCount: 0 });
    expect(asg.action('asg-1', 'terminate', IID)!.heartbeats).toBeGreaterThanOrEqual(1);
    // The completion came after ECS reported no tasks.
    const drainAt = ecs.calls.find((c) => c.operation === 'UpdateContainerInstancesState')!.at;
    const describesAfter = ecs.calls.filter((c) => c.operation === 'DescribeContainerInstances' && c.at > drainAt).length;
    expect(describesAfter).toBeGreaterThanOrEqual(2);
    const s = await until('status drained', async () =>
      (await app.status()).lifecycle.drain?.hook?.phase === 'completed' ? app.status() : undefined,
    );
    expect(s.lifecycle.drain).toMatchObject({
      reason: 'terminate',
      phase: 'drained',
      by: 'ecs-gvisor',
      runningTasks: 0,
      hook: { result: 'CONTINUE' },
    });
    expect(s.summary).toMatch(/terminate drain drained/);
    const human = await runCli(['status'], env, 20_000);
    expect(human.stdout).toMatch(
      /^lifecycle +i-0123456789abcdef0 in asg-1; target Terminated; terminate drain drained \(ecs-gvisor\), 0 task\(s\); terminate hook terminate: CONTINUE at /m,
    );
    expect((await agent()).State.Running).toBe(true); // the agent stays to the end
    expect(imds.requests.some((r) => r.path === SPOT)).toBe(true); // spot notices are watched whenever a hook is
  });

  it('does not drain again what ECS managed draining already drains, and completes when the drain exceeds its maximum', async () => {
    start({ ECS_GVISOR_TERMINATE_HOOK: 'terminate', ECS_GVISOR_DRAIN_TIMEOUT_SECONDS: '3' });
    imds.paths.set(TARGET, 'InService');
    await register({ status: 'DRAINING', runningTasksCount: 2 });
    await until('registered and polled', () => ecs.count('DescribeContainerInstances') >= 1);
    asg.pend('asg-1', 'terminate', IID);
    const t = Date.now();
    imds.paths.set(TARGET, 'Terminated');
    await until('CONTINUE after the drain timeout', () => asg.action('asg-1', 'terminate', IID)?.result === 'CONTINUE');
    expect(Date.now() - t).toBeGreaterThanOrEqual(3_000);
    expect(ecs.count('UpdateContainerInstancesState')).toBe(0);
    const s = await until('status timed out', async () =>
      (await app.status()).lifecycle.drain?.hook?.phase === 'completed' ? app.status() : undefined,
    );
    expect(s.lifecycle.drain).toMatchObject({
      phase: 'timed-out',
      by: 'already-draining',
      runningTasks: 2,
      hook: { reason: 'drain timed out with 2 task(s) still running' },
    });
  });

  it('drains at once on a spot interruption notice', async () => {
    start({ ECS_GVISOR_SPOT_DRAIN: 'true' });
    imds.paths.set(TARGET, 'InService');
    await register({ runningTasksCount: 1 });
    await until('registered and polled', () => ecs.count('DescribeContainerInstances') >= 1);
    const t = Date.now();
    imds.paths.set(SPOT, JSON.stringify({ action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() }));
    await until('DRAINING', () => ecs.instances.get(ARN)!.status === 'DRAINING');
    expect(Date.now() - t).toBeLessThan(5_000);
    expect(ecs.count('UpdateContainerInstancesState')).toBe(1);
    expect(asg.calls).toHaveLength(0); // no hooks configured: nothing to complete
    const s = await until('status with the spot drain', async () => ((await app.status()).lifecycle.drain ? app.status() : undefined));
    expect(s.lifecycle).toMatchObject({ spot: { action: 'terminate' }, drain: { reason: 'spot', by: 'ecs-gvisor' } });
  });

  it('with no lifecycle keys set, never asks IMDS about lifecycle', async () => {
    start({});
    await register();
    await until('polled and confirmed as this instance', async () => (await app.status()).registration.identity === 'confirmed');
    expect(app.lifecycle).toBeUndefined();
    // Only this instance's ID (to check ECS's record is this instance's), with its session token.
    expect(new Set(imds.requests.map((r) => r.path))).toEqual(new Set(['/latest/api/token', '/latest/meta-data/instance-id']));
    expect((await app.status()).lifecycle).toEqual({ enabled: false, spotDrain: false });
  });
});

describe('a long launch wait on an injected clock', () => {
  it('heartbeats every third of the heartbeat timeout and abandons at the launch timeout', async () => {
    const clock = new FakeClock();
    asg.pend('asg-1', 'launch', IID);
    imds.paths.set(TARGET, 'InService');
    const a = configure(
      {
        ECS_GVISOR_LAUNCH_HOOK: 'launch',
        ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: '300',
        ECS_GVISOR_LAUNCH_TIMEOUT_SECONDS: '1800',
        ECS_GVISOR_LIFECYCLE_POLL_SECONDS: '5',
        ECS_GVISOR_INTROSPECTION_SECONDS: '300',
        ECS_GVISOR_DRIFT_CHECK_SECONDS: '86400',
        ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '86400',
        ECS_GVISOR_UNHEALTHY_SECONDS: '86400',
      },
      clock,
    );
    const runtime = await clock.drive(a.runtime.apply());
    await clock.drive(a.agent.apply());
    const start = clock.now();
    // The agent never registers (introspection refuses).
    const watching = a.watch(runtime).run(host.ac.signal);
    await clock.runUntil(start + 2_000_000);
    host.ac.abort();
    await watching;
    const l = (await a.status()).lifecycle.launch!;
    expect(l).toMatchObject({
      phase: 'completed',
      result: 'ABANDON',
      reason: expect.stringMatching(/the agent has not registered after 18\d\d s/),
    });
    expect(consoleText()).toMatch(/^ecs-gvisor: launch of i-\w+ abandoned: .*has not registered after 18\d\d s/);
    const waited = Date.parse(l.completedAt!) - Date.parse(l.since);
    expect(waited).toBeGreaterThanOrEqual(1_800_000);
    expect(waited).toBeLessThan(1_810_000);
    // Every 100 s from the start: 0, 100, …, 1700 s.
    expect(asg.action('asg-1', 'launch', IID)).toEqual({ result: 'ABANDON', heartbeats: 18 });
    expect(l.heartbeats).toBe(18);
  }, 120_000);
});
