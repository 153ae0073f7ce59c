/**
 * Faults: hostile or careless local actors against whole CLI runs on the real private dockerd. Each
 * case is counted (tried / held) and the tally printed for the fault table of docs/testing.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { logMessages, runCli } from '../harness/cli.js';
import { dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';
import { type StandInHost, standInHost } from '../harness/stand-in-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const ORIGINAL = '{\n  "log-driver": "json-file"\n}\n';
let host: StandInHost;
const tally = new Map<string, { tried: number; held: number }>();

function count(what: string, held: boolean): void {
  const t = tally.get(what) ?? { tried: 0, held: 0 };
  tally.set(what, { tried: t.tried + 1, held: t.held + (held ? 1 : 0) });
}

beforeAll(async () => {
  await resetDocker(d, ORIGINAL);
  host = standInHost(d, agentImage, 'hostile');
});
afterAll(async () => {
  host.remove();
  await resetDocker(d, '{}\n');
  for (const [what, t] of tally) process.stderr.write(`faults: hostile local: ${what}: tried ${t.tried}, held ${t.held}\n`);
});

/** A process that holds `path` with flock(1) until killed, as another ecs-gvisor command would. */
async function holdLock(path: string): Promise<ChildProcess> {
  const p = spawn('flock', ['--exclusive', path, 'sh', '-c', 'echo held; exec sleep 600'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((r) => p.stdout!.once('data', () => r()));
  return p;
}

describe('one command that changes the host at a time', () => {
  it('two bootstraps started together both converge the host: the second waits for the first', async () => {
    for (let round = 0; round < 3; round++) {
      const env = host.env();
      const [a, b] = await Promise.all([runCli(['bootstrap'], env, 240_000, host.ns), runCli(['bootstrap'], env, 240_000, host.ns)]);
      const held = a.code === 0 && b.code === 0;
      count('two bootstraps at once', held);
      expect([a.code, b.code], `${a.stderr}\n${b.stderr}`).toEqual([0, 0]);
      // Exactly one of them found the lock taken and said by whom.
      // (Its holder's name may not be written yet when the second looks: "another process" then.)
      const waited = [a, b].filter((r) =>
        logMessages(r.stdout).some((m) =>
          /^the host lock is held by (pid \d+ \(bootstrap, since .*\)|another process); waiting up to /.test(m),
        ),
      );
      expect(waited).toHaveLength(1);
      expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
      const agent = await dockerClient(d).getContainer('ecs-agent').inspect();
      expect(agent).toMatchObject({ HostConfig: { Runtime: 'runc' }, State: { Running: true } });
      expect((await runCli(['rollback'], env, 120_000, host.ns)).code).toBe(0);
      expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
      await resetDocker(d, ORIGINAL);
    }
  });

  it('a bootstrap gives up after ECS_GVISOR_LOCK_TIMEOUT_SECONDS with one sentence naming the holder, having changed nothing; status and plan never wait', async () => {
    await resetDocker(d, ORIGINAL);
    const env = host.env({ ECS_GVISOR_LOCK_TIMEOUT_SECONDS: '2' });
    const holder = await holdLock(`${env.ECS_GVISOR_STATE_DIR}/lock`);
    try {
      const started = Date.now();
      const r = await runCli(['bootstrap'], env, 60_000, host.ns);
      count('bootstrap while the lock is held', r.code === 4);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(
        /^ecs-gvisor: Another ecs-gvisor command \(.*\) still held the host lock \/tmp\/egv-state-\w+\/lock after 2 s \(ECS_GVISOR_LOCK_TIMEOUT_SECONDS\); nothing was changed\.\n$/,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
      expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
      expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
      const rb = await runCli(['rollback'], env, 60_000, host.ns);
      expect(rb.code).toBe(4);

      // Read-only commands answer at once.
      const t0 = Date.now();
      const s = await runCli(['status', '--json'], env, 30_000, host.ns);
      const p = await runCli(['plan'], env, 30_000, host.ns);
      // status reports (not healthy here: exit 8), plan answers; neither waited for the lock.
      expect([s.code, p.code]).toEqual([8, 0]);
      expect(JSON.parse(s.stdout)).toMatchObject({ healthy: false });
      expect(Date.now() - t0).toBeLessThan(20_000);
      count('status and plan while the lock is held', true);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a FIFO at the lock path: one sentence at once, not a hang past the lock timeout; nothing changed', async () => {
    await resetDocker(d, ORIGINAL);
    const env = host.env({ ECS_GVISOR_LOCK_TIMEOUT_SECONDS: '2' });
    mkdirSync(env.ECS_GVISOR_STATE_DIR!, { recursive: true, mode: 0o700 });
    execFileSync('mkfifo', [`${env.ECS_GVISOR_STATE_DIR}/lock`]);
    const started = Date.now();
    const r = await runCli(['bootstrap'], env, 60_000, host.ns);
    const held = r.code === 3 && Date.now() - started < 30_000;
    count('a FIFO at the lock path', held);
    expect(r.stderr).toMatch(
      /^ecs-gvisor: The host lock \/tmp\/egv-state-\w+\/lock is not a regular file \(a FIFO\); remove it\. Nothing was changed\.\n$/,
    );
    expect(r.code).toBe(3);
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
  });

  it('terminal escapes in lock.json reach no output: the holder is shown as plain text', async () => {
    await resetDocker(d, ORIGINAL);
    const env = host.env({ ECS_GVISOR_LOCK_TIMEOUT_SECONDS: '1' });
    const holder = await holdLock(`${env.ECS_GVISOR_STATE_DIR}/lock`);
    try {
      writeFileSync(
        `${env.ECS_GVISOR_STATE_DIR}/lock.json`,
        JSON.stringify({ pid: 1, purpose: '\u001b]0;owned\u0007\u001b[2Jbootstrap', since: '\u001b[31mnow' }),
        { mode: 0o600 },
      );
      const r = await runCli(['bootstrap'], env, 60_000, host.ns);
      // eslint-disable-next-line no-control-regex
      const clean = !/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stderr + r.stdout);
      count('terminal escapes in lock.json', clean && r.code === 4);
      expect(r.code).toBe(4);
      expect(r.stderr).toContain('(pid 1 (?]0;owned??[2Jbootstrap, since ?[31mnow))');
      expect(clean).toBe(true);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
