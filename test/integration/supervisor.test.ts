/**
 * The supervisor with real adapters against the real private dockerd and the stand-in agent, which exits
 * with the code written to /var/lib/ecs/data/stand-in-exit(-once) on this host. Assertions are on the
 * containers Docker reports and on the supervisor's state file.
 */
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { DockerodeDocker } from '../../src/adapters/dockerode-docker.js';
import { NodeFiles } from '../../src/adapters/node-files.js';
import { SystemClock } from '../../src/adapters/system-clock.js';
import { AgentStep } from '../../src/agent/agent-step.js';
import { AgentSupervisor, type SupervisorState } from '../../src/agent/supervisor.js';
import { SUPERVISOR_STATE } from '../../src/state-files.js';
import { StateStore } from '../../src/state-store.js';
import { dockerClient, resetDocker } from '../harness/docker-state.js';
import { restartPrivateDockerd } from '../harness/private-dockerd.js';
import { until } from '../harness/watch-fixture.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const docker = dockerClient(d);
const DATA = '/var/lib/ecs/data';

let dir: string;
let ac: AbortController;
let running: Promise<void> | undefined;

function supervisor(dockerDeadlineMs?: number) {
  const files = new NodeFiles();
  const port = new DockerodeDocker(d.host, { deadlineMs: dockerDeadlineMs });
  const state = new StateStore(files, `${dir}/state`);
  const log = pino({ level: 'silent' });
  const clock = new SystemClock();
  const agent = new AgentStep(
    { docker: port, files, state, log, sleep: (ms) => clock.sleep(ms) },
    {
      image: agentImage,
      dockerHost: d.host,
      ecsConfig: `${dir}/ecs.config`,
      instanceConfig: `${dir}/none`,
      cacheDir: `${dir}/cache`,
      pullRetries: 0,
    },
  );
  const sup = new AgentSupervisor(
    { docker: port, agent, files, state, clock, log },
    { cacheDir: `${dir}/cache`, backoff: { minMs: 50, maxMs: 400, factor: 2, jitter: 0.2, healthyAfterMs: 60_000 }, dockerRetryMs: 200 },
  );
  running = sup.run(ac.signal);
  return sup;
}

const agent = () => docker.getContainer('ecs-agent').inspect();
const running_ = async () => ((await agent()).State.Running ? agent() : undefined);
/** SIGSTOP/SIGCONT the private dockerd: it keeps its socket and accepts connections but answers nothing. */
const wedge = (on: boolean) => process.kill(Number(readFileSync(d.pidfile, 'utf8').trim()), on ? 'SIGSTOP' : 'SIGCONT');
const saved = () => JSON.parse(readFileSync(`${dir}/state/${SUPERVISOR_STATE}`, 'utf8')) as SupervisorState;

beforeEach(async () => {
  await resetDocker(d, '{}\n');
  dir = mkdtempSync('/tmp/egv-sup-');
  mkdirSync(`${dir}/cache`);
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
  mkdirSync(DATA, { recursive: true });
  for (const f of ['stand-in-exit', 'stand-in-exit-once']) rmSync(`${DATA}/${f}`, { force: true });
  ac = new AbortController();
});

afterEach(async () => {
  ac.abort();
  await running;
  for (const f of ['stand-in-exit', 'stand-in-exit-once']) rmSync(`${DATA}/${f}`, { force: true });
});

describe('AgentSupervisor', () => {
  it('restarts an agent that keeps failing with backoff, and it stays up once healthy', async () => {
    writeFileSync(`${DATA}/stand-in-exit`, '1');
    const sup = supervisor();
    await until('three restarts', async () => sup.snapshot.restarts >= 3);
    rmSync(`${DATA}/stand-in-exit`);
    await until('the agent up again', async () => (await agent()).State.Running);
    const c = await agent();
    expect(c.HostConfig.Runtime).toBe('runc');
    expect(c.HostConfig.RestartPolicy?.Name).toBe(''); // the supervisor is the one owner of restarts
    expect(saved().lastExit).toMatchObject({ code: 1, decision: 'restart' });
    await new Promise((r) => setTimeout(r, 500));
    expect((await agent()).State.Running).toBe(true);
  });

  it('exit 5 is terminal: not restarted, last log lines kept', async () => {
    writeFileSync(`${DATA}/stand-in-exit`, '5');
    const sup = supervisor();
    await until(
      'the terminal exit, recorded',
      async () => sup.snapshot.stopped === 'terminal' && saved().lastExit?.decision === 'terminal',
    );
    await new Promise((r) => setTimeout(r, 1000)); // long enough for a wrong restart to show
    const c = await agent();
    expect(c.State.Running).toBe(false);
    expect(c.State.ExitCode).toBe(5);
    expect(sup.snapshot.restarts).toBe(0);
    expect(saved().lastExit).toMatchObject({ code: 5, decision: 'terminal' });
    expect(Array.isArray(saved().lastExit?.lastLines)).toBe(true);
  });

  it('exit 0 means done: not restarted', async () => {
    writeFileSync(`${DATA}/stand-in-exit-once`, '0');
    const sup = supervisor();
    await until('the exit', async () => sup.snapshot.stopped === 'done');
    await new Promise((r) => setTimeout(r, 800));
    expect((await agent()).State.Running).toBe(false);
    expect(sup.snapshot.restarts).toBe(0);
  });

  it('exit 0 holds only until Docker restarts: after a dockerd restart the agent runs again (ecs.service is PartOf=docker.service)', async () => {
    writeFileSync(`${DATA}/stand-in-exit-once`, '0');
    const sup = supervisor();
    // The state file is written just after the snapshot changes: wait for both, not for the first.
    await until('the exit, recorded', async () => sup.snapshot.stopped === 'done' && saved().stopped === 'done');
    await restartPrivateDockerd(d);
    await until('the agent running after dockerd came back', async () => (await agent()).State.Running, 60_000);
    expect(sup.snapshot.stopped).toBeUndefined();
    expect(saved().stopped).toBeUndefined();
  });

  it('a quiet event stream is not an outage: no idle timeout ends it, and the next event still arrives', async () => {
    const port = new DockerodeDocker(d.host, { idleTimeoutMs: 300 });
    const ac2 = new AbortController();
    const events = await port.containerEvents(undefined, ac2.signal);
    const it = events[Symbol.asyncIterator]();
    const next = it.next();
    await new Promise((r) => setTimeout(r, 1500)); // five idle timeouts' worth of silence
    const c = await docker.createContainer({ Image: agentImage, name: 'quiet-stream-probe', Entrypoint: ['true'] });
    const ev = await next;
    expect(ev.done).toBe(false);
    expect(ev.value).toMatchObject({ action: 'create', id: c.id });
    ac2.abort();
    events.close();
    await c.remove({ force: true });
  });

  it('exit 42 loads the desired image from the cache and restarts at once in a new container', async () => {
    const tarball = `${dir}/cache/ecs-agent-v9.9.9.tar`;
    await pipeline((await docker.getImage(agentImage).get()) as NodeJS.ReadableStream, createWriteStream(tarball));
    writeFileSync(`${dir}/cache/desired-image`, `${tarball}\n`);
    writeFileSync(`${DATA}/stand-in-exit-once`, '42');
    const sup = supervisor();
    await until('the update', async () => saved().lastExit?.decision === 'update');
    expect(saved().lastExit?.loaded).toBe(tarball);
    const c = await until('the new agent running', async () => ((await agent()).State.Running ? agent() : undefined));
    expect(c.HostConfig.Runtime).toBe('runc');
    expect(sup.snapshot.restarts).toBe(1);
  });

  it('survives a dockerd restart and brings the agent back', async () => {
    const sup = supervisor();
    const first = await until('the agent running', async () => ((await agent()).State.Running ? agent() : undefined));
    await restartPrivateDockerd(d);
    const back = await until(
      'the agent running after dockerd came back',
      async () => ((await agent()).State.Running ? agent() : undefined),
      60_000,
    );
    expect(back.Id).toBe(first.Id); // same container, started again: its spec did not change
    expect(back.State.StartedAt).not.toBe(first.State.StartedAt);
    expect(sup.snapshot.stopped).toBeUndefined();
  });

  it('a dockerd restart at any moment of an agent restart is survived (the restart comes within its second)', async () => {
    const sup = supervisor();
    let before = await until('the agent running', running_);
    for (const offsetMs of [0, 40, 120, 250, 500]) {
      await docker.getContainer('ecs-agent').kill();
      await new Promise((r) => setTimeout(r, offsetMs));
      await restartPrivateDockerd(d);
      const back = await until(
        `the agent back (dockerd restarted ${offsetMs} ms after the kill)`,
        async () => {
          const c = await running_();
          return c && c.State.StartedAt !== before.State.StartedAt ? c : undefined;
        },
        30_000,
      );
      expect(back.HostConfig.Runtime).toBe('runc');
      before = back;
    }
    expect(sup.snapshot.stopped).toBeUndefined();
  });

  it('a wedged dockerd (accepts, never answers) does not hang the supervisor: each call gives up at its deadline, then it converges', async () => {
    const sup = supervisor(1000);
    const first = await until('the agent running', running_);
    await docker.getContainer('ecs-agent').kill();
    // Wedge it before the supervisor's restart after the 50 ms backoff can reach Docker.
    wedge(true);
    try {
      await new Promise((r) => setTimeout(r, 4000));
      // A change to the agent is refused at the deadline, not left waiting on the mutex.
      const t0 = Date.now();
      await expect(sup.restartAgent('test')).rejects.toThrow(/did not answer within 1 s/);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(sup.busyMs()).toBe(0);
    } finally {
      wedge(false);
    }
    const back = await until(
      'the agent back once Docker answers',
      async () => {
        const c = await running_();
        return c && c.State.StartedAt !== first.State.StartedAt ? c : undefined;
      },
      30_000,
    );
    expect(back.Id).toBe(first.Id);
  });
});
