import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import Docker from 'dockerode';
import type { DockerdInfo } from './private-dockerd.js';

export const RUNSC = '/usr/bin/runsc';
/** Debian's runsc predates the root-netns fix; on this kernel it needs a network flag (docs/network-modes.md). */
export const RUNSC_ARGS = '--network=none';

export function dockerClient(d: DockerdInfo): Docker {
  return new Docker({ socketPath: d.socket });
}

/** The private dockerd's current PID (it changes when a test restarts dockerd). */
export function dockerdPid(d: DockerdInfo): number {
  return Number(readFileSync(d.pidfile, 'utf8').trim());
}

/** How many reloads dockerd has logged so far (a reload we did not want shows up here). */
export function reloadCount(d: DockerdInfo): number {
  return readFileSync(d.log, 'utf8')
    .split('\n')
    .filter((l) => l.includes('Got signal to reload configuration')).length;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(100);
  }
}

/** Write `daemon.json`, reload dockerd (SIGHUP) and wait until its live runtimes name `runtime`. */
export async function applyDaemonJson(d: DockerdInfo, daemon: object, runtime: string): Promise<void> {
  writeFileSync(d.daemonJson, `${JSON.stringify(daemon)}\n`);
  process.kill(dockerdPid(d), 'SIGHUP');
  await waitFor(`dockerd to know the runtime ${runtime}`, async () =>
    (await dockerClient(d).info()).Runtimes[runtime] ? true : undefined,
  );
}

/**
 * Bring the shared dockerd back to runc with no extra runtimes (a reload keeps keys absent from the
 * file, so this states them), remove every container, then put `text` in daemon.json (undefined = no
 * file) without reloading.
 */
export async function resetDocker(d: DockerdInfo, text: string | undefined): Promise<void> {
  const docker = dockerClient(d);
  for (const c of await docker.listContainers({ all: true })) await docker.getContainer(c.Id).remove({ force: true });
  writeFileSync(d.daemonJson, '{"default-runtime": "runc", "runtimes": {}}\n');
  process.kill(dockerdPid(d), 'SIGHUP');
  await waitFor('dockerd back on runc', async () => {
    const i = await docker.info();
    return i.DefaultRuntime === 'runc' && Object.keys(i.Runtimes).every((r: string) => r === 'runc' || r.startsWith('io.containerd'))
      ? true
      : undefined;
  });
  if (text === undefined) {
    rmSync(d.daemonJson, { force: true });
  } else {
    writeFileSync(d.daemonJson, text);
  }
}

/** Environment for the CLI pointed at the private dockerd and a fresh state dir. */
export function cliEnv(d: DockerdInfo, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ECS_GVISOR_CONFIG: '/nonexistent/ecs-gvisor.config',
    ECS_GVISOR_DOCKER_HOST: d.host,
    ECS_GVISOR_DAEMON_JSON: d.daemonJson,
    ECS_GVISOR_DOCKER_PIDFILE: d.pidfile,
    ECS_GVISOR_STATE_DIR: mkdtempSync('/tmp/egv-state-'),
    ECS_GVISOR_RUNSC_PATH: RUNSC,
    ECS_GVISOR_RUNSC_ARGS: RUNSC_ARGS,
    ECS_GVISOR_RELOAD_TIMEOUT_SECONDS: '10',
    // bootstrap waits this long for the agent to stay up (5 s by default): shorter in tests.
    ECS_GVISOR_AGENT_SETTLE_SECONDS: '1',
    ...extra,
  };
}

export async function liveRuntime(d: DockerdInfo): Promise<{ defaultRuntime: string; runtimes: string[] }> {
  const i = await dockerClient(d).info();
  return { defaultRuntime: i.DefaultRuntime, runtimes: Object.keys(i.Runtimes).sort() };
}

/** argv of a host process. */
export function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}
