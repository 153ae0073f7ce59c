/**
 * A full `bootstrap` (ecs-init, runtime, network, agent) and a full `rollback`: the CLI runs in a network
 * namespace of its own (host rules untouched), with a stand-in systemctl for ecs.service, against the real
 * private dockerd.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import type { StatusReport } from '../../src/status/status-report.js';
import { BUNDLE, runCli } from '../harness/cli.js';
import { dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';
import { NotifySocket } from '../harness/notify-socket.js';
import { type StandInHost, standInHost } from '../harness/stand-in-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const ORIGINAL = '{\n  "log-driver": "json-file"\n}\n';
let host: StandInHost;
let ns: string;
let dir: string;

beforeEach(async () => {
  await resetDocker(d, ORIGINAL);
  host = standInHost(d, agentImage, 'full');
  ({ ns, dir } = host);
});
afterEach(async () => {
  host.remove();
  await resetDocker(d, '{}\n');
});

const hostEnv = () => host.env();

/** `run` in the host's namespace, its output collected. */
function startRun(env: Record<string, string>) {
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, BUNDLE, 'run'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

describe('bootstrap (all steps) and rollback (all steps)', () => {
  it('converges the whole host, then gives it back', async () => {
    const env = hostEnv();
    const r = await runCli(['bootstrap'], env, 120_000, ns);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(`${dir}/unit`, 'utf8')).toBe('inactive masked\n');
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    const agent = await dockerClient(d).getContainer('ecs-agent').inspect();
    expect(agent.HostConfig.Runtime).toBe('runc');
    expect(agent.State.Running).toBe(true);
    expect(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' })).toContain(
      'ecs-gvisor: task IAM role credentials',
    );

    const rb = await runCli(['rollback'], env, 120_000, ns);
    expect(rb.code).toBe(0);
    expect(readFileSync(`${dir}/unit`, 'utf8')).toBe('active enabled\n');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
    await expect(dockerClient(d).getContainer('ecs-agent').inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' })).not.toContain('ecs-gvisor');
  });

  it('a full bootstrap whose proof fails: exit 5, the message says the network rules stay (and why), one full stop each', async () => {
    // Debian's runsc without its network flag cannot start a sandbox on this kernel.
    const env = hostEnv();
    const r = await runCli(['bootstrap'], { ...env, ECS_GVISOR_RUNSC_ARGS: '' }, 180_000, ns);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(
      /^ecs-gvisor: The sandbox is not proven: .* The network rules of ecs-gvisor stay in place \(they keep running tasks from instance metadata\)\.\n$/,
    );
    expect(r.stderr).not.toMatch(/\.\./);
    // What the message says: the rules are there.
    expect(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' })).toContain(
      'ecs-gvisor: task IAM role credentials',
    );
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
    expect((await runCli(['rollback'], env, 120_000, ns)).code).toBe(0);
  });

  it('run: READY only once verified, watchdog pings, status while running, metrics on the address given and in a textfile; a killed agent comes back; SIGTERM exits 0 leaving the agent up', async () => {
    const sock = await new NotifySocket(`${dir}/notify.sock`).start();
    mkdirSync(`${dir}/textfile`, { mode: 0o755 });
    const textfile = `${dir}/textfile/ecs_gvisor.prom`;
    const env = {
      ...hostEnv(),
      NOTIFY_SOCKET: sock.path,
      WATCHDOG_USEC: '2000000',
      ECS_GVISOR_METRICS_PORT: '19464',
      // Another loopback address than the default, so a listener on 127.0.0.1 would not answer.
      ECS_GVISOR_METRICS_ADDRESS: '127.0.0.2',
      ECS_GVISOR_METRICS_TEXTFILE: textfile,
      ECS_GVISOR_INTROSPECTION_SECONDS: '1',
    };
    const { child, output, exited } = startRun(env);
    try {
      const docker = dockerClient(d);
      const wait = async (what: string, fn: () => Promise<boolean>) => {
        for (let i = 0; i < 300; i++) {
          if (await fn().catch(() => false)) return;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`timed out waiting for ${what}: ${output()}`);
      };
      await wait('READY=1', async () => sock.with('READY').length > 0);
      // READY names our PID, after the sandbox was proven.
      expect(sock.with('READY')[0]!.pid).toBe(child.pid);
      // systemctl ran (ecs-init's stop) without the notify socket: only systemd-notify speaks to systemd.
      const calls = readFileSync(`${dir}/systemctl-env`, 'utf8').trim().split('\n');
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.filter((l) => l !== 'NOTIFY_SOCKET=')).toEqual([]);
      const status = JSON.parse((await runCli(['status', '--json'], env, 10_000, ns)).stdout) as StatusReport;
      expect(status.runtime.verified).toBe(true);
      expect(status.agent).toMatchObject({ running: true, runtime: 'runc' });
      await wait(
        'status from the watch',
        async () => JSON.parse((await runCli(['status', '--json'], env, 10_000, ns)).stdout).watch.running === true,
      );
      const human = await runCli(['status'], env, 10_000, ns);
      // No ECS here, so never registered: not healthy, which status says with exit 8 as well as in words.
      expect(human.code).toBe(8);
      expect(human.stdout).toMatch(/^healthy +NO: sandbox verified .*not registered/m);
      expect(human.stdout).toMatch(/^watch +running \(pid /m);
      await wait('two watchdog pings', async () => sock.with('WATCHDOG').length >= 2);
      expect(sock.with('STATUS').at(-1)!.fields.STATUS).toMatch(/sandbox verified/);
      const scrape = (host: string) =>
        spawnSync(
          'nsenter',
          [
            `--net=/run/netns/${ns}`,
            process.execPath,
            '-e',
            `fetch("http://${host}:19464/metrics").then(r => r.text()).then(t => process.stdout.write(t))`,
          ],
          { encoding: 'utf8' },
        );
      const metrics = scrape('127.0.0.2').stdout;
      expect(metrics).toMatch(/^ecs_gvisor_sandbox_verified 1$/m);
      expect(metrics).toMatch(/^ecs_gvisor_agent_up 1$/m);
      expect(metrics).toMatch(/^ecs_gvisor_last_verification_timestamp_seconds \d{10}(\.\d+)?$/m);
      expect(scrape('127.0.0.1').status).not.toBe(0);
      expect(human.stdout).toMatch(/^metrics +http:\/\/127\.0\.0\.2:19464\/metrics; textfile /m);
      // The textfile: the same exposition, world-readable for node_exporter, read as Prometheus reads it.
      // Written at the start and every 15 s after: wait (by condition, generously) for a write since the proof.
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline && !/^ecs_gvisor_sandbox_verified 1$/m.test(existsSync(textfile) ? readFileSync(textfile, 'utf8') : ''))
        await new Promise((r) => setTimeout(r, 250));
      expect(statSync(textfile).mode & 0o777).toBe(0o644);
      const fromFile = readFileSync(textfile, 'utf8');
      expect(fromFile).toMatch(/^ecs_gvisor_sandbox_verified 1$/m);
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: fromFile, encoding: 'utf8' });
      expect(lint.stdout + lint.stderr).toBe('');
      expect(readdirSync(`${dir}/textfile`)).toEqual(['ecs_gvisor.prom']);
      const first = await docker.getContainer('ecs-agent').inspect();
      await docker.getContainer('ecs-agent').kill(); // SIGKILL: exit 137, an ordinary failure
      await wait('the agent back', async () => {
        const c = await docker.getContainer('ecs-agent').inspect();
        return c.State.Running && c.State.StartedAt !== first.State.StartedAt;
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect((await docker.getContainer('ecs-agent').inspect()).State.Running).toBe(true);
      expect(sock.with('STOPPING')).toHaveLength(1);
      // A stopped service leaves no figures behind to be mistaken for live ones.
      expect(existsSync(textfile)).toBe(false);
    } finally {
      child.kill('SIGKILL');
      sock.stop();
    }
  });

  it('run: a metrics port someone else holds is reported in status and the log, and the watch goes on without it', async () => {
    // A local user binds the port first (in the test's namespace, so nothing else sees it).
    const squatter = spawn(
      'nsenter',
      [
        `--net=/run/netns/${ns}`,
        process.execPath,
        '-e',
        'require("net").createServer().listen(19465, "127.0.0.1", () => console.log("bound"))',
      ],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    await new Promise<void>((r) => squatter.stdout.once('data', () => r()));
    const sock = await new NotifySocket(`${dir}/notify.sock`).start();
    const env = { ...hostEnv(), NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '2000000', ECS_GVISOR_METRICS_PORT: '19465' };
    const { child, output, exited } = startRun(env);
    try {
      const deadline = Date.now() + 60_000;
      let status: StatusReport | undefined;
      while (Date.now() < deadline) {
        status = JSON.parse((await runCli(['status', '--json'], env, 10_000, ns)).stdout) as StatusReport;
        if (status.watch.running && status.metrics?.problem) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(status?.metrics).toEqual({
        port: 19465,
        address: '127.0.0.1',
        serving: false,
        problem: expect.stringMatching(/^cannot listen on 127\.0\.0\.1:19465 \(.*EADDRINUSE/),
      });
      expect(status?.watch.running).toBe(true);
      expect((await runCli(['status'], env, 10_000, ns)).stdout).toMatch(/^metrics +off: cannot listen on 127\.0\.0\.1:19465/m);
      expect(output()).toMatch(/"level":"warn"[^\n]*metrics are off: cannot listen on 127\.0\.0\.1:19465/);
      // Still watching, still pinging the watchdog: no exit, so no restart loop.
      const pings = sock.with('WATCHDOG').length;
      for (let i = 0; i < 100 && sock.with('WATCHDOG').length <= pings; i++) await new Promise((r) => setTimeout(r, 100));
      expect(sock.with('WATCHDOG').length).toBeGreaterThan(pings);
      expect(child.exitCode).toBeNull();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      squatter.kill('SIGKILL');
      sock.stop();
    }
  });

  it('run: rules flushed under it (iptables -F FORWARD, ip6tables -F FORWARD, nat) are put back by the drift check and counted in status', async () => {
    const env = { ...hostEnv(), ECS_GVISOR_DRIFT_CHECK_SECONDS: '1' };
    const { child, output, exited } = startRun(env);
    const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' });
    const imds4 = () =>
      inNs('iptables', '-w', '-S', 'FORWARD').includes(
        '169.254.169.254/32 -m comment --comment "ecs-gvisor: no instance metadata for bridge tasks [',
      );
    const imds6 = () => inNs('ip6tables', '-w', '-S', 'FORWARD').includes('fd00:ec2::254/128');
    const status = async () => JSON.parse((await runCli(['status', '--json'], env, 10_000, ns)).stdout) as StatusReport;
    const until = async <T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> => {
      for (let i = 0; i < 600; i++) {
        const v = await Promise.resolve(fn()).catch(() => undefined);
        if (v) return v;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${what}: ${output()}`);
    };
    try {
      await until('the watch with its network rules in place', async () => (await status()).network?.rules === 6);
      expect(imds4() && imds6()).toBe(true);
      inNs('iptables', '-w', '-F', 'FORWARD');
      inNs('ip6tables', '-w', '-F', 'FORWARD');
      inNs('iptables', '-w', '-t', 'nat', '-F', 'PREROUTING');
      expect(imds4() || imds6()).toBe(false);
      await until(
        'the rules back',
        () =>
          imds4() && imds6() && inNs('iptables', '-w', '-t', 'nat', '-S', 'PREROUTING').includes('ecs-gvisor: task IAM role credentials'),
      );
      const s = await until('the repair in status', async () => {
        const x = await status();
        return x.network?.repairs === 1 ? x : undefined;
      });
      expect(s.network).toMatchObject({ rules: 6, missing: 0, repairs: 1 });
      expect(output()).toMatch(/"msg":"network drift: our rules are gone; adding them again"/);
      expect((await runCli(['status'], env, 10_000, ns)).stdout).toMatch(/^network rules +6\/6 in place .*put back 1 time\(s\)/m);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
