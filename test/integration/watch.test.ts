/**
 * The watch behind `run`, wired exactly as the CLI wires it (buildApp from a parsed configuration), against
 * the real private dockerd with runsc, the stand-in agent, and fake ECS, Auto Scaling, IMDS and
 * introspection endpoints on 127.0.0.1 reached through the real SDK clients. Intervals are shortened
 * through configuration keys; assertions are on Docker, the files, the fakes' recorded calls and status.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { type App, type AppOverrides, buildApp, type ServiceEnv } from '../../src/cli/composition.js';
import { parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { renderStatusText } from '../../src/status/status-text.js';
import { dockerClient, liveRuntime, RUNSC, RUNSC_ARGS, resetDocker } from '../harness/docker-state.js';
import { ARN, type FakeAutoScaling, type FakeEcs, type FakeImds, type FakeInstance } from '../harness/fake-aws.js';
import { NotifySocket } from '../harness/notify-socket.js';
import { restartPrivateDockerd } from '../harness/private-dockerd.js';
import { ACCEPT_STAND_IN_LISTENER, registerAgent, until, watchEnv } from '../harness/watch-fixture.js';
import { useWatchHost } from '../harness/watch-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const busybox = inject('busyboxImage');
const docker = dockerClient(d);

const host = useWatchHost(d, '/tmp/egv-watch-', { '/latest/meta-data/instance-id': 'i-0123456789abcdef0' });
let ecs: FakeEcs;
let asg: FakeAutoScaling;
let imds: FakeImds;
let app: App;
let stateDir: string;

beforeAll(() => {
  ({ ecs, asg, imds } = host.aws);
});

/** Wire the app from configuration as main does, bootstrap runtime + agent, and start the watch. */
async function start(
  extra: Record<string, string> = {},
  service: ServiceEnv = {},
  overrides: AppOverrides = {},
  /** Collects the log's lines (as the service writes them) instead of discarding them. */
  logLines?: string[],
): Promise<void> {
  const env = watchEnv(
    d,
    { dir: host.dir, agentImage, intro: host.intro, imdsUrl: imds.url },
    { ECS_GVISOR_DRIFT_CHECK_SECONDS: '1', ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '1', ...extra },
  );
  const cfg = parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env });
  stateDir = cfg.STATE_DIR;
  const log = logLines
    ? createLogger('info', { write: (line: string) => void logLines.push(line) } as unknown as NodeJS.WritableStream)
    : pino({ level: process.env.EGV_TEST_LOG ?? 'silent' });
  app = buildApp(cfg, log, service, { ...ACCEPT_STAND_IN_LISTENER, ...overrides });
  const runtime = await app.runtime.apply();
  await app.agent.apply();
  host.running = app.watch(runtime).run(host.ac.signal);
}

const register = (o: Partial<FakeInstance> = {}) => registerAgent(ecs, host.intro, o);

const agent = () => docker.getContainer('ecs-agent').inspect();
const attrs = () => ecs.instances.get(ARN)?.attributes ?? {};

describe('watch', () => {
  it('publishes the proof once registered, reports it in status, and heals a disconnected agent up to Auto Scaling', async () => {
    await start({ ECS_GVISOR_UNHEALTHY_SECONDS: '2', ECS_GVISOR_HEAL_MAX_RESTARTS: '1', ECS_GVISOR_SET_INSTANCE_HEALTH: 'true' });
    const s0 = await app.status();
    expect(s0.registration.containerInstanceArn).toBeUndefined(); // introspection refuses: not registered yet, no ECS call
    expect(ecs.calls).toHaveLength(0);

    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    expect(attrs()['ecs-gvisor.runsc-version']).toMatch(/^0\.0_20221219/);
    const s = await until('status with the registration', async () => {
      const st = await app.status();
      // (The agent may be in a restart the healer began before it registered: UNHEALTHY_SECONDS is 2 here.)
      return st.registration.agentConnected === true && st.audit && st.agent.running ? st : undefined;
    });
    expect(s).toMatchObject({
      healthy: true,
      watch: { running: true },
      agent: { container: 'ecs-agent', runtime: 'runc', running: true },
      registration: { cluster: 'prod', containerInstanceArn: ARN, status: 'ACTIVE', agentConnected: true, healthStatus: 'OK' },
      audit: { violations: [] },
      attributes: { published: { 'ecs-gvisor.sandbox': 'verified' } },
    });
    const describes = ecs.count('DescribeContainerInstances');
    const puts = ecs.count('PutAttributes');
    await new Promise((r) => setTimeout(r, 2_500));
    expect(ecs.count('PutAttributes')).toBe(puts); // already in place: no further writes

    // Disconnected: after 2 s the agent is restarted; still disconnected after that, the instance is
    // marked Unhealthy in Auto Scaling (the restart budget of 1 is spent).
    const before = await agent();
    ecs.instances.get(ARN)!.agentConnected = false;
    await until(
      'an agent restart',
      async () => (await agent()).State.StartedAt !== before.State.StartedAt && (await agent()).State.Running,
    );
    expect((await agent()).Id).toBe(before.Id);
    const call = await until('SetInstanceHealth', () => asg.calls.find((c) => c.Action === 'SetInstanceHealth'));
    expect(call.params).toMatchObject({ InstanceId: 'i-0123456789abcdef0', HealthStatus: 'Unhealthy' });
    expect(asg.calls.filter((c) => c.Action === 'SetInstanceHealth')).toHaveLength(1);
    expect(ecs.count('DescribeContainerInstances')).toBeGreaterThan(describes);
    // watch.json is written after the loop's step that made the call: wait for it, then check it all.
    const after = await until('status after the escalation', async () =>
      (await app.status()).healing?.markedUnhealthy ? app.status() : undefined,
    );
    expect(after.agent.restarts).toBe(1);
    expect(after.healing).toMatchObject({ markedUnhealthy: true });
    expect(after.healthy).toBe(false);
    expect(imds.requests.some((r) => r.method === 'PUT')).toBe(true);
    const metrics = (await app.metrics.render()).text;
    host.ac.abort();
    await host.running;
    // rollback withdraws the proof before undoing the runtime (the attributes outlive the process).
    expect(await app.withdrawProof()).toBe(true);
    expect(attrs()).toMatchObject({ 'ecs-gvisor.sandbox': 'unverified' });
    expect(attrs()).not.toHaveProperty('ecs-gvisor.runsc-version');
    expect(await app.withdrawProof()).toBe(false); // nothing left to withdraw
    expect(metrics).toMatch(/^ecs_gvisor_agent_restarts_total 1$/m);
    expect(metrics).toMatch(/^ecs_gvisor_aws_api_calls_total\{service="ecs",operation="DescribeContainerInstances",outcome="ok"\} [1-9]/m);
    expect(metrics).toMatch(/^ecs_gvisor_aws_api_calls_total\{service="ecs",operation="PutAttributes",outcome="ok"\} 1$/m);
    expect(metrics).toMatch(/^ecs_gvisor_sandbox_verified 1$/m);
    expect(metrics).toMatch(/^ecs_gvisor_agent_connected 0$/m);
  });
});

describe('watch: whose registration it is', () => {
  it('an ARN that ECS says is another EC2 instance gets no attribute and no rollback withdrawal; logged once with both IDs; status says mismatch', async () => {
    // Introspection (a local process, say) names a real container instance of another EC2 instance.
    await start();
    await register({ ec2InstanceId: 'i-0fffffffffffffff0' });
    const s = await until('the mismatch in status', async () => {
      const st = await app.status();
      return st.registration.identity === 'mismatch' ? st : undefined;
    });
    expect(s.registration).toMatchObject({ containerInstanceArn: ARN, ec2InstanceId: 'i-0fffffffffffffff0', identity: 'mismatch' });
    expect(s.healthy).toBe(false);
    expect(
      s.lastErrors.filter((e) => e.message.includes('is EC2 instance i-0fffffffffffffff0, not this instance i-0123456789abcdef0')),
    ).toHaveLength(1);
    // Several polls later: never an attribute on the other instance's record, the error still logged once.
    const polls = ecs.count('DescribeContainerInstances');
    await until('three more polls', () => ecs.count('DescribeContainerInstances') >= polls + 3);
    expect(ecs.count('PutAttributes')).toBe(0);
    expect(attrs()).toEqual({});
    expect((await app.status()).lastErrors.filter((e) => e.message.includes('i-0fffffffffffffff0'))).toHaveLength(1);
    host.ac.abort();
    await host.running;
    expect(await app.withdrawProof()).toBe(false);
    expect(ecs.count('PutAttributes')).toBe(0);
  });
});

describe('watch: drift and audit', () => {
  it('repairs daemon.json edited under it (unverified, then verified again) and recreates an agent whose spec changed', async () => {
    await start();
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const putsBefore = ecs.count('PutAttributes');

    // An operator (or a package upgrade) rewrites daemon.json without our runtime, and reloads Docker.
    writeFileSync(d.daemonJson, '{"default-runtime": "runc", "runtimes": {}}\n');
    process.kill(Number(readFileSync(d.pidfile, 'utf8')), 'SIGHUP');
    // runc may or may not be live for a moment: the 1 s drift check can rewrite the file before dockerd
    // handles that SIGHUP (seen once). The lapse shows in the attributes published below either way.
    await until(
      'runsc back in daemon.json and live',
      async () => (await liveRuntime(d)).defaultRuntime === 'runsc' && readFileSync(d.daemonJson, 'utf8').includes('"runsc"'),
    );
    // The lapse was published, then the renewed proof: two writes, in that order.
    await until('verified again', () => ecs.count('PutAttributes') >= putsBefore + 2 && attrs()['ecs-gvisor.sandbox'] === 'verified');
    const sandboxPuts = ecs.calls
      .filter((c) => c.operation === 'PutAttributes')
      .slice(putsBefore)
      .map((c) => (c.body.attributes as Array<{ name: string; value: string }>).find((a) => a.name === 'ecs-gvisor.sandbox')?.value);
    expect(sandboxPuts).toEqual(['unverified', 'verified']);
    expect(JSON.parse(readFileSync(d.daemonJson, 'utf8'))).toMatchObject({ 'default-runtime': 'runsc' });
    const st = await app.status();
    expect(st.runtime.verified).toBe(true);
    expect((await app.metrics.render()).text).toMatch(/^ecs_gvisor_drift_repairs_total\{kind="runtime"\} 1$/m);

    // ecs.config changes: the agent's spec hash changes, so it is recreated (under runc).
    const old = await agent();
    writeFileSync(`${host.dir}/ecs.config`, 'ECS_CLUSTER=prod\nECS_LOGLEVEL=debug\n');
    const fresh = await until('a new agent container', async () => {
      const c = await agent();
      return c.Id !== old.Id && c.State.Running ? c : undefined;
    });
    expect(fresh.HostConfig.Runtime).toBe('runc');
    expect(fresh.Config.Env).toContain('ECS_LOGLEVEL=debug');
  });

  it('audits every running container: one started with runc is reported and, with AUDIT_ACTION=stop, stopped', async () => {
    await start({ ECS_GVISOR_AUDIT_ACTION: 'stop' });
    const sandboxed = await docker.createContainer({ Image: busybox, Cmd: ['sleep', '600'], name: 'task-sandboxed' });
    await sandboxed.start();
    const rogue = await docker.createContainer({
      Image: busybox,
      Cmd: ['sleep', '600'],
      name: 'task-rogue',
      HostConfig: { Runtime: 'runc', Init: true },
    });
    await rogue.start();
    await until('the rogue container stopped', async () => !(await rogue.inspect()).State.Running);
    const st = await until('the audit in status', async () => {
      const s = await app.status();
      return s.audit?.violations.some((v) => v.name === 'task-rogue') ? s : undefined;
    });
    expect(st.audit!.violations).toEqual([
      expect.objectContaining({ name: 'task-rogue', runtime: 'runc', reason: expect.stringMatching(/runtime "runc"/) }),
    ]);
    expect(st.audit!.stopped).toContain(st.audit!.violations[0]!.id);
    expect((await sandboxed.inspect()).State.Running).toBe(true); // under runsc, with a sandbox process: fine
    expect((await agent()).State.Running).toBe(true); // our agent runs under runc by design
    expect((await app.metrics.render()).text).toMatch(/^ecs_gvisor_audit_violations 1$/m);
  });

  it('puts back a runtime entry point that was removed or edited, and proves the sandbox again', async () => {
    await start();
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const entry = `${stateDir}/bin/runsc`;
    const original = readFileSync(entry, 'utf8');
    rmSync(entry);
    await until('the entry point back', () => existsSync(entry) && readFileSync(entry, 'utf8') === original, 60_000);
    writeFileSync(entry, original.replace('policy=auto\n', 'policy=passthrough\n'), { mode: 0o755 }); // someone's edit
    await until('the entry point repaired', () => readFileSync(entry, 'utf8') === original, 60_000);
    await until('verified again', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    // Containers start through it as before.
    const c = await docker.createContainer({ Image: busybox, Cmd: ['true'], name: 'after-repair' });
    await c.start();
    expect((await c.wait()).StatusCode).toBe(0);
  });

  it('while a container runs outside gVisor (AUDIT_ACTION=report) the attribute says violated, and verified again once it is gone', async () => {
    await start();
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    // Outside gVisor, and wearing our probe's label (a task definition can set any label): still a violation.
    const rogue = await docker.createContainer({
      Image: busybox,
      Cmd: ['sleep', '600'],
      name: 'task-rogue-report',
      Labels: { 'ecs-gvisor.probe': '1' },
      HostConfig: { Runtime: 'runc', Init: true },
    });
    await rogue.start();
    await until('violated published', () => attrs()['ecs-gvisor.sandbox'] === 'violated');
    expect((await rogue.inspect()).State.Running).toBe(true); // report only: it keeps running
    expect((await app.status()).healthy).toBe(false);
    await rogue.remove({ force: true });
    await until('verified again', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
  });

  const rogue = async (name: string) => {
    const c = await docker.createContainer({ Image: busybox, Cmd: ['sleep', '600'], name, HostConfig: { Runtime: 'runc', Init: true } });
    await c.start();
    return c;
  };
  const puts = () => ecs.calls.filter((c) => c.operation === 'PutAttributes');

  it('a flapping verdict costs a few calls: withdrawals go at once, verified waits out a growing hold, status says stale meanwhile', async () => {
    await start({ ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '600' });
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const before = puts().length;
    const stale: Array<Awaited<ReturnType<App['status']>>> = [];
    // A runc container, then none, twelve times over: each is audited on its start event and again on its
    // die event (the audit interval is 10 minutes). Two calls a flap without the hold.
    for (let i = 0; i < 12; i++) {
      const r = await rogue(`task-flap-${i}`);
      await until(`violated seen (${i})`, async () => (await app.status()).audit?.violations.length === 1, 30_000, 50);
      if (i === 0) {
        await until('the first withdrawal published', () => attrs()['ecs-gvisor.sandbox'] === 'violated', 30_000, 50);
        // Verified means a task placed now runs in gVisor: not while a container runs outside it.
        expect((await app.metrics.render()).text).toMatch(/^ecs_gvisor_sandbox_verified 0$/m);
      }
      await r.remove({ force: true });
      await until(`the violation gone (${i})`, async () => (await app.status()).audit?.violations.length === 0, 30_000, 50);
      if (i === 0) await until('the first flap restored at once', () => attrs()['ecs-gvisor.sandbox'] === 'verified', 30_000, 50);
      const s = await app.status();
      if (s.attributes?.stale) stale.push(s);
    }
    expect(puts().length - before).toBeLessThanOrEqual(8);
    // While verified was held back, ECS said violated and status said so, with why and since when.
    expect(stale.length).toBeGreaterThan(0);
    const held = stale[0]!;
    expect(held.attributes!.published['ecs-gvisor.sandbox']).toBe('violated');
    expect(held.attributes!.stale).toMatchObject({ want: { 'ecs-gvisor.sandbox': 'verified' }, reason: expect.stringMatching(/^held /) });
    expect(renderStatusText(held)).toMatch(
      /^attributes +.*ecs-gvisor\.sandbox=violated.*; STALE since \S+: should be .*ecs-gvisor\.sandbox=verified/m,
    );
  });

  it('routine calls cannot spend the calls a withdrawal needs; a withdrawal ECS refuses is retried until it has it', async () => {
    // 24 ECS calls an hour; polls every second while the agent is disconnected spend the routine part.
    await start({ ECS_GVISOR_ECS_CALLS_PER_HOUR: '12', ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR: '24', ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '600' });
    await register({ agentConnected: false });
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    await until(
      'the routine budget spent',
      async () => (await app.status()).lastErrors.some((e) => /ceiling is reached/.test(e.message)),
      60_000,
    );
    const spentAt = ecs.calls.length;
    // ECS refuses the withdrawal five times: more than one call's retries, so the watch tries again on its
    // own; the sixth try gets through. All six are the calls withdrawals have beyond the spent ceiling.
    ecs.behaviour = (op) => (op === 'PutAttributes' && ecs.count('PutAttributes', 'server-error') < 5 ? 'server-error' : 'ok');
    const r = await rogue('task-rogue-reserve');
    await until('violated published despite the spent budget', () => attrs()['ecs-gvisor.sandbox'] === 'violated', 60_000, 50);
    expect(ecs.calls.slice(spentAt).filter((c) => c.operation === 'DescribeContainerInstances')).toHaveLength(0);
    expect(ecs.count('PutAttributes', 'server-error')).toBe(5);
    await r.remove({ force: true });
  });

  it('an ecs.config value Docker would refuse, edited in under run: the running agent untouched, said once, the secret nowhere', async () => {
    const lines: string[] = [];
    await start({}, {}, {}, lines);
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const before = await agent();
    const secret = 'c2VjcmV0LW5vdC1mb3ItbG9ncy1wbGVhc2U';
    writeFileSync(`${host.dir}/ecs.config`, `ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA=${secret}\0tail\n`);
    // Drift checks every second: wait for several to have met the same refusal.
    const s = await until('three drift checks refused it', async () => {
      const st = await app.status();
      const e = st.lastErrors.find((x) => x.component === 'drift');
      return e && (e.count ?? 1) >= 3 ? st : undefined;
    });
    const after = await agent();
    expect(after.Id).toBe(before.Id);
    expect(after.State.StartedAt).toBe(before.State.StartedAt); // never stopped for a replacement
    expect(after.State.Running).toBe(true);
    const drift = s.lastErrors.filter((x) => x.component === 'drift');
    expect(drift).toHaveLength(1);
    expect(drift[0]).toMatchObject({ code: 'ECS_CONFIG_INVALID', message: expect.stringMatching(/has a NUL byte/) });
    // Said once in the log, however often the drift check met it.
    expect(lines.filter((l) => l.includes('has a NUL byte'))).toHaveLength(1);
    const watchJson = readFileSync(`${stateDir}/watch.json`, 'utf8');
    for (const text of [watchJson, JSON.stringify(s), renderStatusText(s), ...lines]) expect(text).not.toContain(secret);
    // Put right: no error comes back, the same agent runs on.
    writeFileSync(`${host.dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
  });

  it('an agent image whose replacement exits at once: put back once, not tried again every drift check (no churn)', async () => {
    const lines: string[] = [];
    await start({ ECS_GVISOR_AGENT_SETTLE_SECONDS: '1' }, {}, {}, lines);
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const before = await agent();
    const events: string[] = [];
    const stream = await docker.getEvents({ filters: { type: ['container'], event: ['create'] } });
    stream.on('data', (b: Buffer) => {
      for (const l of b.toString().split('\n').filter(Boolean))
        events.push((JSON.parse(l) as { Actor: { Attributes: { name: string } } }).Actor.Attributes.name);
    });
    try {
      // The image the agent's name points at now starts and exits at once (its entry point is missing).
      const tmp = await docker.createContainer({ Image: agentImage, name: `egv-broken-run-${process.pid}` });
      const [repo, tag] = agentImage.split(':') as [string, string];
      await tmp.commit({ repo, tag, changes: ['ENTRYPOINT ["/no/such/agent"]'] });
      await tmp.remove();
      await until('the replacement refused', async () => (await app.status()).lastErrors.some((e) => e.code === 'AGENT_EXITED'), 60_000);
      const after = await until('the previous agent running again', async () => {
        const a = await agent();
        return a.State.Running ? a : undefined;
      });
      expect(after.Id).toBe(before.Id);
      // Five more rounds of the loop (drift and audit are both due every second): none tries the image again.
      const rounds = new Set<string>();
      await until('five more rounds', async () => {
        const at = (await app.status()).audit?.checkedAt;
        if (at) rounds.add(at);
        return rounds.size >= 6;
      });
      expect(events.filter((n) => n === 'ecs-agent-next')).toHaveLength(1);
      expect((await agent()).Id).toBe(before.Id);
      expect((await agent()).State.Running).toBe(true);
      expect(lines.filter((l) => l.includes('putting the previous one back'))).toHaveLength(1);
    } finally {
      (stream as unknown as { destroy(): void }).destroy();
      const [repo, tag] = agentImage.split(':') as [string, string];
      await docker.getImage(before.Image).tag({ repo, tag });
    }
  });

  it('holds the agent stopped while runsc is broken (fail closed, attribute unverified), and releases it once proven again', async () => {
    await start();
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    // runsc is replaced by something that does not work.
    rmSync(`${host.dir}/runsc`);
    writeFileSync(`${host.dir}/runsc`, '#!/bin/sh\nexit 1\n');
    chmodSync(`${host.dir}/runsc`, 0o755);
    await until('the agent held stopped', async () => !(await agent()).State.Running, 60_000);
    await until('unverified published', () => attrs()['ecs-gvisor.sandbox'] === 'unverified');
    const held = await until('status showing the hold', async () => ((await app.status()).agent.held ? app.status() : undefined));
    expect(held.agent.held).toMatch(/not proven/);
    expect(held.runtime.verified).toBe(false);
    // runsc stays the default: nothing can start outside the sandbox (it just cannot start at all).
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await agent()).State.Running).toBe(false); // and it stays down (no restart loop)

    rmSync(`${host.dir}/runsc`);
    symlinkSync(RUNSC, `${host.dir}/runsc`);
    await until('the agent running again', async () => (await agent()).State.Running, 60_000);
    await until('verified again', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    expect((await app.status()).agent.held).toBeUndefined();
  });
});

describe('watch: dockerd restarts', () => {
  it('survives dockerd stopping and starting again: the agent comes back, polling and status go on', async () => {
    await start();
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    const first = await agent();
    await restartPrivateDockerd(d);
    await until(
      'the agent running after dockerd came back',
      async () => (await agent()).State.Running && (await agent()).State.StartedAt !== first.State.StartedAt,
      60_000,
    );
    const polls = ecs.count('DescribeContainerInstances');
    await until('ECS polled again', () => ecs.count('DescribeContainerInstances') > polls);
    const st = await until('status after the outage', async () => {
      const s = await app.status();
      return s.watch.running && s.agent.running && s.runtime.verified ? s : undefined;
    });
    expect(st.agent.id).toBe(first.Id);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc'); // daemon.json still says so after the restart
  });
});

/** A copy of the current runsc from the shared test material (never the shared file itself). */
let current: string | undefined;
function currentRunsc(): string {
  if (current) return current;
  const shared = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/gvisor/runsc');
  if (!existsSync(shared)) throw new Error(`the current runsc is missing: ${shared}`);
  current = `${mkdtempSync('/tmp/egv-runsc-')}/runsc`;
  copyFileSync(shared, current);
  chmodSync(current, 0o755);
  return current;
}

/** Whether the cgroup dir is gone, removing it if it can be (busy until its children are gone). */
function tryRmdir(dir: string): boolean {
  try {
    rmdirSync(dir);
  } catch {
    // asked again
  }
  return !existsSync(dir);
}

describe('watch: per-task enforcement and hygiene', () => {
  const TASK = '0123456789abcdef0123456789abcdef';
  /** A task container as the ECS agent creates one: limits, and the task's cgroup parent. */
  const task = (name: string, o: { Runtime?: string; User?: string; HostConfig?: Record<string, unknown>; Cmd?: string[] } = {}) =>
    docker.createContainer({
      Image: busybox,
      Cmd: o.Cmd ?? ['sleep', '600'],
      name,
      User: o.User ?? '1000',
      HostConfig: {
        Memory: 64 << 20,
        NanoCpus: 500_000_000,
        PidsLimit: 50,
        CgroupParent: `/ecs/${TASK}`,
        Runtime: o.Runtime,
        ...o.HostConfig,
      },
    });
  const taskIn = (st: Awaited<ReturnType<App['status']>>, name: string) => st.audit?.tasks?.find((t) => t.name === name);

  // Debian's runsc (network flag needed on this kernel) and a current one (netstack), each as itself and
  // told --ignore-cgroups under a second runtime name.
  const runscs = [
    { what: 'Debian’s runsc 20221219', path: () => RUNSC, args: RUNSC_ARGS },
    { what: 'runsc release-20260817', path: () => currentRunsc(), args: '' },
  ];
  it.each(runscs)(
    '$what: each task’s sandbox in its own cgroup under the task with the limits asked; --ignore-cgroups is a violation',
    async (r) => {
      // A second runtime: the same runsc told to leave cgroups alone (the sandbox stays where the shim is).
      const args = r.args ? [r.args] : [];
      await resetDocker(
        d,
        `${JSON.stringify({ runtimes: { 'runsc-nocg': { path: r.path(), runtimeArgs: [...args, '--ignore-cgroups'] } } })}\n`,
      );
      await start({ ECS_GVISOR_RUNSC_PATH: r.path(), ECS_GVISOR_RUNSC_ARGS: r.args });
      const limited = await task('task-limited');
      await limited.start();
      const loose = await task('task-loose', { Runtime: 'runsc-nocg' });
      await loose.start();
      const st = await until('both tasks audited', async () => {
        const s = await app.status();
        return taskIn(s, 'task-limited') && taskIn(s, 'task-loose') ? s : undefined;
      });
      const ok = taskIn(st, 'task-limited')!;
      expect(ok).toMatchObject({
        cgroup: `/ecs/${TASK}/${limited.id}`,
        cgroupParent: `/ecs/${TASK}`,
        asked: { memoryBytes: 64 << 20, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, pids: 50 },
        enforced: { memoryBytes: 64 << 20, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, pids: 50 },
        parent: { path: `/ecs/${TASK}` },
        problems: [],
        hygiene: { root: false, privileged: false, writableHostMounts: [], capAdd: [] },
      });
      expect(st.audit!.violations.filter((v) => v.name === 'task-limited')).toEqual([]);
      // Its gofer was found beside the sandbox (and is in the same cgroup, or it would be a problem).
      expect(ok.gofers.length).toBeGreaterThan(0);
      const bad = taskIn(st, 'task-loose')!;
      expect(bad.problems.join('\n')).toMatch(/its process \(pid \d+\) is in cgroup \S+, not the container's own/);
      // Its sandbox stays where the shim is, and no limit governs it there.
      expect(st.audit!.violations.filter((v) => v.name === 'task-loose').map((v) => v.reason)).toEqual([
        'created with runtime "runsc-nocg", not runsc',
        expect.stringMatching(/^not enforced: its process \(pid \d+\) is in cgroup \S+, not the container's own$/),
        'not enforced: memory limit 67108864 asked, none enforced',
        'not enforced: CPU quota 0.500 CPUs asked, none enforced',
        'not enforced: pids limit 50 asked, none enforced',
      ]);
      // Restarted, it is a new sandbox: the audit inspects it again (on Docker's events), and finds it right.
      const before = ok.gofers;
      await limited.restart({ t: 1 });
      const again = await until('the restarted task audited', async () => {
        const t = taskIn(await app.status(), 'task-limited');
        return t && t.gofers.join() !== before.join() ? t : undefined;
      });
      expect(again).toMatchObject({ cgroup: `/ecs/${TASK}/${limited.id}`, problems: [], enforced: { memoryBytes: 64 << 20, pids: 50 } });
      // Status says it per task, asked against enforced.
      const text = renderStatusText(st);
      expect(text).toContain(
        `task-limited: cgroup /ecs/${TASK}/${limited.id}; limits as asked: memory 64 MiB, 0.50 CPUs, pids 50; not root`,
      );
      expect(text).toMatch(/task-loose: cgroup \S+; asked memory 64 MiB, 0\.50 CPUs, pids 50; enforced /);
      // Its pids limit counts the sandbox's own threads: 50 is within reach of what an idle sandbox uses.
      expect(ok.pids).toMatchObject({ limit: 50, asked: true, tight: true });
      expect(ok.pids!.current).toBeGreaterThanOrEqual(13);
      expect(ok.pids!.current).toBeLessThan(50);
      expect(text).toContain(
        `PIDS TIGHT: ${ok.pids!.current} pids in use of 50 (the pids limit asked); at the limit gVisor ends the whole sandbox`,
      );

      // A task at its memory limit: the kernel ends the whole sandbox, and the audit says which limit did
      // (from the kernel's log: Docker 20.10 leaves OOMKilled false for a runsc sandbox on v1).
      // Killed from outside (what ECS's stop comes to after its grace period): 137 too, and no limit's doing.
      const killed = await task('task-killed');
      await killed.start();
      await killed.kill();
      const hog = await task('task-hog', { Cmd: ['busybox', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=200M', 'count=1'] });
      await hog.start();
      const end = await until('the hog’s end reported', async () => (await app.status()).audit?.ended?.find((e) => e.name === 'task-hog'));
      expect(end).toMatchObject({ id: hog.id, limit: 'memory', exitCode: 137 });
      expect((await killed.inspect()).State.ExitCode).toBe(137);
      expect((await app.status()).audit?.ended?.map((e) => e.name)).toEqual(['task-hog']);
      const metrics = (await app.metrics.render()).text;
      expect(metrics).toMatch(/^ecs_gvisor_sandbox_limit_kills_total\{limit="memory"\} 1$/m);
      expect(metrics).toMatch(/^ecs_gvisor_tight_pids_limits 1$/m);
      expect(renderStatusText(await app.status())).toContain(
        `ended ${end.at}: task-hog ${hog.id.slice(0, 12)} killed at its memory limit (64 MiB; exit 137)`,
      );
      await Promise.all([hog.remove(), killed.remove()]);
    },
  );

  it('task-level limits: a task ECS confirms is held to its task definition on its task cgroup; a label alone is not believed', async () => {
    const [A, B] = ['a'.repeat(32), 'b'.repeat(32)];
    const arn = (t: string) => `arn:aws:ecs:us-east-1:111122223333:task/prod/${t}`;
    // What the ECS agent does before a task's containers start: the task's cgroup, with its limits.
    const dirs: string[] = [];
    const taskCgroup = (t: string, memoryBytes: number, cpuQuotaUs: number) => {
      for (const [ctl, file, value] of [
        ['memory', 'memory.limit_in_bytes', memoryBytes],
        ['cpu', 'cpu.cfs_quota_us', cpuQuotaUs],
      ] as const) {
        const dir = `/sys/fs/cgroup/${ctl}/ecs/${t}`;
        mkdirSync(dir, { recursive: true });
        writeFileSync(`${dir}/${file}`, String(value));
        dirs.push(dir);
      }
    };
    taskCgroup(A, 256 << 20, 25_000); // as its definition says: 256 MiB, 256 CPU units
    taskCgroup(B, 512 << 20, -1); // its definition says 1024 MiB and 1 vCPU: not what holds
    const inTask = (name: string, t: string, label = arn(t)) =>
      docker.createContainer({
        Image: busybox,
        Cmd: ['sleep', '600'],
        name,
        User: '1000',
        Labels: { 'com.amazonaws.ecs.task-arn': label, 'com.amazonaws.ecs.cluster': 'prod' },
        HostConfig: { Memory: 64 << 20, CgroupParent: `/ecs/${t}` },
      });
    try {
      await start();
      const a = await inTask('task-a', A);
      const b = await inTask('task-b', B);
      // Anyone who can run a container can claim to be task A.
      const forged = await inTask('task-forged', A);
      for (const c of [a, b, forged]) await c.start();
      ecs.tasks.set(arn(A), { containerInstanceArn: ARN, cpu: '256', memory: '256', runtimeIds: [a.id] });
      ecs.tasks.set(arn(B), { containerInstanceArn: ARN, cpu: '1024', memory: '1024', runtimeIds: [b.id] });
      await register();
      const st = await until('the tasks confirmed by ECS', async () => {
        const s = await app.status();
        return taskIn(s, 'task-a')?.task?.state === 'confirmed' && taskIn(s, 'task-b')?.task?.state === 'confirmed' ? s : undefined;
      });
      expect(taskIn(st, 'task-a')).toMatchObject({
        task: { state: 'confirmed', arn: arn(A), asked: { memoryBytes: 256 << 20, cpuQuotaUs: 25_000 } },
        parent: { path: `/ecs/${A}`, limits: { memoryBytes: 256 << 20, cpuQuotaUs: 25_000 } },
        problems: [],
      });
      expect(taskIn(st, 'task-forged')!.task).toEqual({
        state: 'unconfirmed',
        arn: arn(A),
        reason: 'ECS does not list this container among the task’s',
      });
      expect(taskIn(st, 'task-forged')!.problems).toEqual([]);
      expect(st.audit!.violations.filter((v) => v.name === 'task-b').map((v) => v.reason)).toEqual([
        'not enforced: task-level memory limit 1073741824 asked, 536870912 enforced',
        'not enforced: task-level CPU quota 1.000 CPUs asked, none enforced',
      ]);
      expect(st.audit!.violations.filter((v) => v.name !== 'task-b')).toEqual([]);
      // One DescribeTasks for the three containers, with the two ARNs they name.
      const asked = ecs.calls.filter((c) => c.operation === 'DescribeTasks');
      expect(asked).toHaveLength(1);
      expect(new Set(asked[0]!.body.tasks as string[])).toEqual(new Set([arn(A), arn(B)]));
      const text = renderStatusText(st);
      expect(text).toContain(`task ${A}: task limits as asked: memory 256 MiB, 0.25 CPUs`);
      expect(text).toContain(`task ${B}: asked memory 1024 MiB, 1.00 CPUs; enforced memory 512 MiB, no CPU quota`);
      expect(text).toContain(`task-forged: cgroup /ecs/${A}/${forged.id}; limits as asked: memory 64 MiB`);
      expect(text).toContain(`task ${A}: ECS does not list this container among the task’s`);
      await until('the attribute no longer verified', () => attrs()['ecs-gvisor.sandbox'] === 'violated');
    } finally {
      for (const n of ['task-a', 'task-b', 'task-forged'])
        await docker
          .getContainer(n)
          .remove({ force: true })
          .catch(() => undefined);
      // The task cgroups go once their containers' have (rmdir: a cgroup is removed empty, never recursively).
      for (const dir of dirs) await until(`${dir} removed`, () => tryRmdir(dir), 30_000);
    }
  });

  it('reports root, writable host mounts, privileged and added capabilities; makes them violations only where the policy says', async () => {
    mkdirSync(`${host.dir}/data`, { recursive: true });
    const risky = {
      User: '',
      HostConfig: { Binds: [`${host.dir}/data:/data`, '/etc/hostname:/etc/h:ro'], CapAdd: ['NET_ADMIN'], Privileged: true },
    };
    await start();
    await (await task('task-risky', risky)).start();
    const st = await until('the task audited', async () => {
      const s = await app.status();
      return taskIn(s, 'task-risky') ? s : undefined;
    });
    expect(taskIn(st, 'task-risky')).toMatchObject({
      hygiene: { root: true, remapped: false, writableHostMounts: [`${host.dir}/data`], privileged: true, capAdd: ['NET_ADMIN'] },
      hygieneViolations: [],
    });
    expect(st.audit!.violations).toEqual([]); // reported, not a violation, by default
    expect(renderStatusText(st)).toMatch(
      new RegExp(`task-risky: .*; root, writable host mounts ${host.dir}/data, privileged, capabilities \\+NET_ADMIN`),
    );
  });

  it('with ECS_GVISOR_HYGIENE_VIOLATIONS, what it names is a violation (the attribute says so, AUDIT_ACTION applies)', async () => {
    mkdirSync(`${host.dir}/data`, { recursive: true });
    await start({ ECS_GVISOR_HYGIENE_VIOLATIONS: 'root,writable-host-mounts' });
    await register();
    await until('the verified attribute', () => attrs()['ecs-gvisor.sandbox'] === 'verified');
    await (await task('task-rooted', { User: '0', HostConfig: { Binds: [`${host.dir}/data:/data`] } })).start();
    const st = await until('the hygiene violations', async () => {
      const s = await app.status();
      return s.audit?.violations.some((v) => v.name === 'task-rooted') ? s : undefined;
    });
    expect(st.audit!.violations.map((v) => v.reason)).toEqual([
      'hygiene: runs as root (ECS_GVISOR_HYGIENE_VIOLATIONS)',
      `hygiene: host paths mounted writable: ${host.dir}/data (ECS_GVISOR_HYGIENE_VIOLATIONS)`,
    ]);
    await until('the attribute no longer verified', () => attrs()['ecs-gvisor.sandbox'] !== 'verified');
  });
});

describe('watch: systemd watchdog', () => {
  /**
   * `run` pinging every second, its agent monitor's round held on the listener check of a new
   * registration until the test lets it go; `deadlineMs` is that monitor's deadline.
   */
  async function heldRound(deadlineMs: number) {
    const sock = await new NotifySocket(`${host.dir}/notify.sock`).start();
    let release!: () => void;
    const gate = new Promise<undefined>((r) => (release = () => r(undefined)));
    let calls = 0;
    const introspectionOwner = () => {
      calls++;
      return gate;
    };
    await start(
      { ECS_GVISOR_INTROSPECTION_SECONDS: '1' },
      { notifySocket: sock.path, watchdogUsec: 2_000_000 },
      { introspectionOwner, deadlinesMs: { agent: deadlineMs } },
    );
    await until('a watchdog ping', () => sock.with('WATCHDOG').length >= 1);
    await register();
    await until('the round waiting on the listener check', () => calls >= 1);
    const pings = () => sock.with('WATCHDOG').length;
    const stop = () => {
      release();
      sock.stop();
    };
    return { pings, release, stop };
  }

  it('keeps pinging through a slow monitor round that is within its deadline (a long repair does not get ecs-gvisor killed)', async () => {
    const round = await heldRound(60_000);
    try {
      const before = round.pings();
      await new Promise((r) => setTimeout(r, 4_000)); // the round is still running
      expect(round.pings()).toBeGreaterThanOrEqual(before + 3);
      round.release();
      await until(
        'the registration believed once the check passes',
        async () => (await app.status()).registration.containerInstanceArn === ARN,
      );
    } finally {
      round.stop();
    }
  });

  it('withholds the watchdog ping while a monitor hangs past its deadline, so systemd restarts ecs-gvisor; pings again once it ends', async () => {
    const round = await heldRound(1_500);
    try {
      await new Promise((r) => setTimeout(r, 2_600)); // past the deadline and the ping that may have been under way
      const pings = round.pings();
      await new Promise((r) => setTimeout(r, 3_000));
      expect(round.pings()).toBe(pings); // systemd (WatchdogSec=2) would restart ecs-gvisor now
      round.release();
      await until('pings again', () => round.pings() > pings);
    } finally {
      round.stop();
    }
  });

  it('withholds the watchdog ping while the supervisor is stuck in one change to the agent, and pings again once it moves', async () => {
    const sock = await new NotifySocket(`${host.dir}/notify.sock`).start();
    try {
      // Pings every second; the supervisor counts as stuck after 1.5 s in one change.
      await start({}, { notifySocket: sock.path, watchdogUsec: 2_000_000 }, { supervisorStallMs: 1500 });
      await until('a watchdog ping', () => sock.with('WATCHDOG').length >= 2);
      let release!: () => void;
      const stuck = app.supervisor.exclusive(() => new Promise<void>((r) => (release = r)));
      await new Promise((r) => setTimeout(r, 2600)); // past the limit and the ping that may have been under way
      const pings = sock.with('WATCHDOG').length;
      await new Promise((r) => setTimeout(r, 3000));
      expect(sock.with('WATCHDOG').length).toBe(pings); // systemd would restart ecs-gvisor now
      const s = await app.status();
      expect(s.watch.running).toBe(true); // the watch loop itself carries on
      release();
      await stuck;
      await until('pings again', () => sock.with('WATCHDOG').length > pings);
    } finally {
      sock.stop();
    }
  });
});
