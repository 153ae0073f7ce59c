/**
 * Faults: `bootstrap` killed with SIGKILL at every point it reports (each log line: every step boundary
 * and each change inside a step), and at instants spread over the daemon.json write and reload. All the
 * while daemon.json is read in a tight loop and must parse every time. After each kill: the backup of the
 * original is intact, a second bootstrap converges (runsc the default, the agent under runc), and
 * rollback gives back the original bytes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BUNDLE, runCli } from '../harness/cli.js';
import { dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';
import { type StandInHost, standInHost } from '../harness/stand-in-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const ORIGINAL = '{\n  "log-driver": "json-file",\n  "log-opts": { "max-size": "10m" }\n}\n';
let host: StandInHost;

beforeAll(() => {
  host = standInHost(d, agentImage, 'kill');
});
afterAll(async () => {
  host.remove();
  await resetDocker(d, '{}\n');
});

interface Outcome {
  /** The log lines it wrote before it ended. */
  lines: string[];
  unparsable: string[];
  /** What the killed PID was running. */
  exe: string | undefined;
  /** Processes of the bootstrap's still alive after it was killed. */
  survivors: string[];
}

/** One bootstrap, SIGKILLed `kill(n)` ms after its n-th log line (undefined: not then); daemon.json read all the while. */
async function bootstrapKilled(env: Record<string, string>, kill: (n: number) => number | undefined): Promise<Outcome> {
  const child = spawn('nsenter', [`--net=/run/netns/${host.ns}`, process.execPath, BUNDLE, 'bootstrap'], {
    env,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines: string[] = [];
  let buffered = '';
  let exited = false;
  // SIGKILL must reach the bootstrap itself: nsenter execs node without forking, so this is its PID
  // (read once it has logged, so after the exec).
  let exe: string | undefined;
  const done = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.stdout.on('data', (chunk: Buffer) => {
    if (exe === undefined) {
      try {
        exe = readlinkSync(`/proc/${child.pid}/exe`);
      } catch {
        exe = 'unreadable';
      }
    }
    buffered += chunk.toString('utf8');
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      const ms = kill(lines.length);
      if (ms === 0) child.kill('SIGKILL');
      else if (ms !== undefined) setTimeout(() => child.kill('SIGKILL'), ms);
    }
  });
  // "Valid JSON at every instant": as many reads as the event loop allows while the child runs.
  const unparsable: string[] = [];
  while (!exited) {
    const text = readFileSync(d.daemonJson, 'utf8');
    try {
      JSON.parse(text);
    } catch {
      unparsable.push(text);
    }
    await new Promise((r) => setImmediate(r));
  }
  await done;
  return { lines, unparsable, exe, survivors: await survivorsOf(env.ECS_GVISOR_STATE_DIR!) };
}

/** Processes still naming the killed bootstrap's state dir (its lock holder, say) once they had a moment to go. */
async function survivorsOf(stateDir: string): Promise<string[]> {
  const find = () =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ');
        } catch {
          return '';
        }
      })
      .filter((c) => c.includes(stateDir));
  for (let i = 0; i < 100 && find().length; i++) await new Promise((r) => setTimeout(r, 100));
  return find();
}

/** After a kill: nothing lost, and the next bootstrap and rollback work. Resets for the next round. */
async function recovers(env: Record<string, string>, o: Outcome): Promise<void> {
  expect(o.unparsable).toEqual([]);
  if (o.lines.length) expect(o.exe).toBe(realpathSync(process.execPath));
  expect(o.survivors).toEqual([]);
  const orig = `${env.ECS_GVISOR_STATE_DIR}/backup/daemon.json.orig`;
  if (existsSync(`${env.ECS_GVISOR_STATE_DIR}/backup/daemon.json.manifest`)) expect(readFileSync(orig, 'utf8')).toBe(ORIGINAL);
  const again = await runCli(['bootstrap'], env, 120_000, host.ns);
  expect(again.code, again.stderr).toBe(0);
  expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
  const agent = await dockerClient(d).getContainer('ecs-agent').inspect();
  expect(agent).toMatchObject({ HostConfig: { Runtime: 'runc' }, State: { Running: true } });
  const back = await runCli(['rollback'], env, 120_000, host.ns);
  expect(back.code, back.stderr).toBe(0);
  expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
  expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
  await resetDocker(d, ORIGINAL);
  writeFileSync(`${host.dir}/unit`, 'active enabled\n');
}

/**
 * Each round is three CLI runs (the killed bootstrap, a whole one, a rollback), about 2 s on an idle
 * machine and several times that on a loaded one; each run has its own 120 s limit.
 */
const ROUNDS_TIMEOUT_MS = 20 * 60_000;

describe('bootstrap killed with SIGKILL', () => {
  /** What a whole bootstrap reports, line by line. */
  let whole: string[] = [];
  const tally = { tried: 0, survived: 0 };

  it('counts the points a whole bootstrap reports', async () => {
    await resetDocker(d, ORIGINAL);
    const env = host.env();
    const o = await bootstrapKilled(env, () => undefined);
    whole = o.lines;
    expect(whole.length).toBeGreaterThanOrEqual(8);
    await recovers(env, o);
  });

  it(
    'at every reported point: daemon.json always parses, the backup holds, the next run converges',
    async () => {
      for (let k = 1; k < whole.length; k++) {
        const env = host.env();
        const o = await bootstrapKilled(env, (lines) => (lines === k ? 0 : undefined));
        tally.tried++;
        await recovers(env, o);
        tally.survived++;
      }
      expect(tally.survived).toBe(whole.length - 1);
    },
    ROUNDS_TIMEOUT_MS,
  );

  it(
    'at instants spread over the daemon.json write and the reload',
    async () => {
      // From the line that reports runsc found (just before the write), kill after 0 to 40 ms.
      const anchor = whole.findIndex((l) => l.includes('"runsc found"')) + 1;
      expect(anchor).toBeGreaterThan(0);
      for (const ms of [0, 1, 2, 3, 5, 8, 12, 16, 20, 25, 30, 40]) {
        const env = host.env();
        const o = await bootstrapKilled(env, (lines) => (lines === anchor ? ms : undefined));
        tally.tried++;
        await recovers(env, o);
        tally.survived++;
      }
      process.stderr.write(
        `faults: bootstrap SIGKILL: tried ${tally.tried}, survived ${tally.survived}, lost ${tally.tried - tally.survived}\n`,
      );
    },
    ROUNDS_TIMEOUT_MS,
  );
});
