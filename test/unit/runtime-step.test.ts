/**
 * The runtime step's decisions (write and reload, keep, roll back after a failed proof with the agent
 * stopped first, roll back on request, keep the entry for containers still using it), against Docker and
 * the files in memory, a reloader that makes the fake dockerd read daemon.json, and a proof that checks
 * Docker's live default. The real paths (a real dockerd, runsc, SIGHUP) are in
 * test/integration/runtime-step.test.ts.
 */
import pino from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { EcsGvisorError } from '../../src/errors.js';
import { BackupStore } from '../../src/runtime/backup-store.js';
import type { DockerdProcess, LiveExpectation } from '../../src/runtime/docker-reloader.js';
import { type Prover, type Reloader, RuntimeStep } from '../../src/runtime/runtime-step.js';
import type { SandboxEvidence } from '../../src/runtime/sandbox-proof.js';
import { StateStore } from '../../src/state-store.js';
import { MemoryDocker } from '../fakes/memory-docker.js';
import { MemoryFiles } from '../fakes/memory-files.js';

const DAEMON_JSON = '/etc/docker/daemon.json';
const ENTRY = '/usr/local/lib/ecs-gvisor/runsc-entry';
const STATE_DIR = '/var/lib/ecs-gvisor';

let docker: MemoryDocker;
let files: MemoryFiles;
/** What happened, in order, across the fakes and the callbacks. */
let events: string[];
let proofFails: string | undefined;

const reloader: Reloader = {
  locate: async (): Promise<DockerdProcess> => ({ pid: 1234, cmdline: ['dockerd'], viaSystemd: true }),
  reload: async () => docker.readDaemonJson(files.text(DAEMON_JSON)),
  apply: async (_proc: DockerdProcess, expect: LiveExpectation) => {
    docker.readDaemonJson(files.text(DAEMON_JSON));
    if (docker.live.defaultRuntime !== expect.defaultRuntime) throw new EcsGvisorError('DOCKER_API', 'not applied');
    return docker.live;
  },
};

const prover: Prover = {
  builtinImage: true,
  image: 'ecs-gvisor/probe:1',
  ensureImage: async () => {},
  removeStale: async () => 0,
  settled: async () => undefined,
  prove: async (name: string): Promise<SandboxEvidence> => {
    events.push(`prove (default ${docker.live.defaultRuntime})`);
    if (proofFails || docker.live.defaultRuntime !== name)
      throw new EcsGvisorError('SANDBOX_UNPROVEN', `The sandbox is not proven: ${proofFails ?? 'not the default'}.`);
    return {
      runtime: name,
      image: 'ecs-gvisor/probe:1',
      pid: 4242,
      cmdline: 'runsc-sandbox …',
      memoryLimitBytes: 64 << 20,
      cgroupLimitFile: '/sys/fs/cgroup/system.slice/docker-x.scope/memory.max',
      provenAt: '2026-12-07T04:00:00.000Z',
    };
  },
};

function step() {
  const state = new StateStore(files, STATE_DIR);
  return new RuntimeStep(
    {
      docker,
      files,
      clock: { now: () => Date.parse('2026-12-07T04:00:00Z'), sleep: async () => {} },
      log: pino({ level: 'silent' }),
      reloader,
      prover,
      backups: new BackupStore(files, STATE_DIR),
      state,
      runsc: async () => ({ version: 'release-20260817.0', spec: '1.1.0' }),
      detectRunsc: async () => ({ version: 'release-20260817.0', spec: '1.1.0' }),
    },
    {
      daemonJson: DAEMON_JSON,
      desired: { name: 'runsc', path: ENTRY, runtimeArgs: [] },
      entry: { runscPath: '/usr/local/bin/runsc', policy: 'auto' },
      replaceDefaultRuntime: false,
    },
  );
}

const daemonJson = () => JSON.parse(files.text(DAEMON_JSON) ?? 'null');

beforeEach(() => {
  docker = new MemoryDocker();
  files = new MemoryFiles({ [DAEMON_JSON]: '{\n  "log-driver": "json-file",\n  "log-opts": { "max-size": "10m" }\n}\n' });
  docker.readDaemonJson(files.text(DAEMON_JSON));
  docker.changes.length = 0;
  events = [];
  proofFails = undefined;
});

describe('the runtime step against Docker in memory', () => {
  it('merges runsc into daemon.json as the default, writes the entry point first, reloads, proves, records the proof', async () => {
    const s = await step().apply();
    expect(daemonJson()).toEqual({
      'log-driver': 'json-file',
      'log-opts': { 'max-size': '10m' },
      'default-runtime': 'runsc',
      runtimes: { runsc: { path: ENTRY } },
    });
    expect(files.files.get(ENTRY)).toMatchObject({ mode: 0o755 });
    expect(files.text(ENTRY)).toContain('/usr/local/bin/runsc');
    expect(docker.live.defaultRuntime).toBe('runsc');
    expect(s).toMatchObject({ verified: true, runscVersion: 'release-20260817.0', verifiedAt: '2026-12-07T04:00:00.000Z' });
    expect(JSON.parse(files.text(`${STATE_DIR}/runtime.json`)!)).toMatchObject({ verified: true, name: 'runsc' });
    expect(events).toEqual(['prove (default runsc)']);
  });

  it('converged already: no write, no reload, proven again', async () => {
    await step().apply();
    const before = files.text(DAEMON_JSON);
    docker.changes.length = 0;
    await step().apply();
    expect(files.text(DAEMON_JSON)).toBe(before);
    expect(docker.changes).toEqual([]);
  });

  it('a failed proof: the agent stopped first, then daemon.json and Docker’s default put back, the failure recorded', async () => {
    const original = files.text(DAEMON_JSON);
    proofFails = 'no runsc-sandbox process';
    const err = (await step()
      .apply({ beforeUndo: async () => events.push(`stop the agent (default ${docker.live.defaultRuntime})`) })
      .catch((e: unknown) => e)) as EcsGvisorError;
    expect(err.code).toBe('SANDBOX_UNPROVEN');
    expect(err.message).toBe(
      `The sandbox is not proven: no runsc-sandbox process. ${DAEMON_JSON} and Docker's default runtime were restored.`,
    );
    // Stopped while runsc was still the default: it never placed a task on runc meanwhile.
    expect(events).toEqual(['prove (default runsc)', 'stop the agent (default runsc)']);
    expect(files.text(DAEMON_JSON)).toBe(original);
    expect(docker.live.defaultRuntime).toBe('runc');
    expect(JSON.parse(files.text(`${STATE_DIR}/runtime.json`)!)).toMatchObject({
      verified: false,
      lastError: { code: 'SANDBOX_UNPROVEN' },
    });
  });

  it('rollback gives the original bytes back and removes the entry point; with a container still on runsc, the entry stays for it', async () => {
    const original = files.text(DAEMON_JSON);
    await step().apply();
    expect(await step().rollback()).toEqual({ restored: true, keptFor: [] });
    expect(files.text(DAEMON_JSON)).toBe(original);
    expect(files.text(ENTRY)).toBeUndefined();
    expect(docker.live.defaultRuntime).toBe('runc');

    await step().apply();
    docker.addContainer({ name: 'task-1', runtime: 'runsc' });
    expect(await step().rollback()).toEqual({ restored: true, keptFor: ['task-1'] });
    expect(docker.live.defaultRuntime).toBe('runc');
    expect(daemonJson().runtimes).toEqual({ runsc: { path: ENTRY } });
    expect(files.text(ENTRY)).toBeDefined();
  });

  it('plan says what apply would change, and changes nothing', async () => {
    const p = await step().plan();
    expect(p.daemonJson).toMatchObject({ changed: true });
    expect(p.daemonJson.diff).toContain('"default-runtime": "runsc"');
    expect(p.live).toMatchObject({ defaultRuntime: 'runc', converged: false });
    expect(p.entry).toMatchObject({ path: ENTRY, changed: true });
    expect(files.text(ENTRY)).toBeUndefined();
    expect(docker.changes).toEqual([]);
  });
});
