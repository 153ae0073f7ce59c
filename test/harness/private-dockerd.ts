/**
 * A private dockerd for tests: its own data/exec roots, socket, pidfile and
 * daemon.json, no bridge and no iptables, so it never touches another engine's state. Output goes to a
 * log file, never to the test runner's pipes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import Docker from 'dockerode';

export interface DockerdInfo {
  dir: string;
  socket: string;
  host: string;
  pidfile: string;
  daemonJson: string;
  log: string;
  pid: number;
}

export async function startPrivateDockerd(): Promise<DockerdInfo> {
  const dir = mkdtempSync('/tmp/egv-dockerd-');
  const info: Omit<DockerdInfo, 'pid'> = {
    dir,
    socket: `${dir}/docker.sock`,
    host: `unix://${dir}/docker.sock`,
    pidfile: `${dir}/docker.pid`,
    daemonJson: `${dir}/daemon.json`,
    log: `${dir}/dockerd.log`,
  };
  writeFileSync(info.daemonJson, '{}\n');
  return spawnDockerd(info);
}

/** Stop the private dockerd (its containers stop with it), leave it down `downMs`, start it on the same state. */
export async function restartPrivateDockerd(info: DockerdInfo, downMs = 0): Promise<DockerdInfo> {
  const pid = Number(readFileSync(info.pidfile, 'utf8').trim());
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && alive(pid)) await delay(100);
  await delay(downMs);
  return spawnDockerd(info);
}

async function spawnDockerd(info: Omit<DockerdInfo, 'pid'>): Promise<DockerdInfo> {
  const dockerd = which('dockerd');
  const dir = info.dir;
  const args = [
    '--data-root',
    `${dir}/data`,
    '--exec-root',
    `${dir}/exec`,
    '--pidfile',
    info.pidfile,
    '-H',
    info.host,
    '--config-file',
    info.daemonJson,
    '--bridge=none',
    '--iptables=false',
  ];
  // A dockerd started with --bridge=none deletes an existing docker0; keep away from another engine's bridge.
  const isolate = existsSync('/sys/class/net/docker0');
  const out = openSync(info.log, 'a');
  const child = spawn(isolate ? 'unshare' : dockerd, isolate ? ['--net', '--', dockerd, ...args] : args, {
    detached: true,
    stdio: ['ignore', out, out],
  });
  child.unref();
  const docker = new Docker({ socketPath: info.socket });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`private dockerd exited ${child.exitCode}: ${tail(info.log)}`);
    try {
      if (existsSync(info.socket)) {
        await docker.info();
        break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`private dockerd did not come up in 60 s: ${tail(info.log)}`);
    await delay(250);
  }
  const pid = Number(readFileSync(info.pidfile, 'utf8').trim());
  return { ...info, pid };
}

export async function stopPrivateDockerd(info: DockerdInfo): Promise<void> {
  try {
    const docker = new Docker({ socketPath: info.socket });
    const all = await docker.listContainers({ all: true });
    await Promise.all(
      all.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
  } catch {
    // engine already gone
  }
  const pid = Number(readFileSync(info.pidfile, 'utf8').trim());
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return cleanup(info);
  }
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && alive(pid)) await delay(200);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  await delay(200);
  cleanup(info);
}

function cleanup(info: DockerdInfo): void {
  // Shims and sandboxes of containers the engine could not stop outlive it; they all name its directory.
  try {
    execFileSync('pkill', ['-KILL', '-f', info.dir], { stdio: 'ignore' });
  } catch {
    // none left
  }
  // dockerd leaves mounts behind (overlay layers, its default netns file): detach them before removing.
  for (const m of [`${info.dir}/exec/netns/default`, `${info.dir}/data`, `${info.dir}/exec`]) {
    try {
      execFileSync('umount', ['-R', '-l', m], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
  try {
    rmSync(info.dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    process.stderr.write(`note: could not remove ${info.dir}: ${(err as Error).message}\n`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function which(cmd: string): string {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    if (existsSync(`${d}/${cmd}`)) return `${d}/${cmd}`;
  }
  throw new Error(
    `${cmd} is not installed: the integration tests need a real Docker engine (apt-get install docker.io runsc busybox-static); .ci/run installs them`,
  );
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}
