/**
 * Apply daemon.json by reload, never restart: `systemctl reload` when systemd runs the dockerd we talk
 * to, else SIGHUP to the PID in the pidfile. dockerd reloads asynchronously and a refused reload only
 * shows in its log, so the outcome is confirmed through the API.
 */
import { EcsGvisorError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, DockerInfo, DockerPort, FilesPort, HostPort, ServiceManagerPort } from '../ports.js';

export interface LiveExpectation {
  defaultRuntime: string;
  /** Runtime names that must be registered (with these entries when given). */
  present: Record<string, { path: string; runtimeArgs: readonly string[] } | true>;
  absent: readonly string[];
}

export interface DockerdProcess {
  pid: number | undefined;
  cmdline: string[] | undefined;
  viaSystemd: boolean;
}

export class DockerReloader {
  constructor(
    private readonly deps: {
      docker: Pick<DockerPort, 'info'>;
      files: Pick<FilesPort, 'readText'>;
      host: Pick<HostPort, 'cmdline' | 'signal' | 'systemdRunning' | 'startTime'>;
      services: Pick<ServiceManagerPort, 'mainPid' | 'reload'>;
      clock: Clock;
      log: Logger;
    },
    private readonly opts: { pidfile: string; unit: string; timeoutMs: number },
  ) {}

  /** Which dockerd we would reload, and how. */
  async locate(): Promise<DockerdProcess> {
    const raw = await this.deps.files.readText(this.opts.pidfile);
    const fromFile = raw ? Number.parseInt(raw.trim(), 10) : NaN;
    let pid = Number.isInteger(fromFile) && fromFile > 0 ? fromFile : undefined;
    let viaSystemd = false;
    if (await this.deps.host.systemdRunning()) {
      const main = await this.mainPid();
      // Only reload through systemd when its unit runs the dockerd of our pidfile (or there is no pidfile).
      if (main && (pid === undefined || main === pid)) {
        viaSystemd = true;
        pid = main;
      }
    }
    const cmdline = pid === undefined ? undefined : await this.deps.host.cmdline(pid);
    return { pid: cmdline ? pid : undefined, cmdline, viaSystemd };
  }

  /** The unit's main PID as systemd last said, while that very process (PID and start) still runs. */
  private known?: { pid: number; start: number };

  /**
   * The docker unit's main PID. systemd is asked (an exec of systemctl) only when the process it named
   * last is gone: the drift check locates dockerd every minute, and the answer changes only when dockerd
   * does.
   */
  private async mainPid(): Promise<number | undefined> {
    const k = this.known;
    if (k && (await this.deps.host.startTime(k.pid)) === k.start) return k.pid;
    const main = await this.deps.services.mainPid(this.opts.unit);
    const start = main ? await this.deps.host.startTime(main) : undefined;
    this.known = main && start !== undefined ? { pid: main, start } : undefined;
    return main;
  }

  async reload(proc: DockerdProcess): Promise<void> {
    if (proc.viaSystemd) {
      this.deps.log.info({ unit: this.opts.unit }, 'reloading dockerd through systemd');
      await this.deps.services.reload(this.opts.unit);
      return;
    }
    if (proc.pid === undefined || !this.deps.host.signal(proc.pid, 'SIGHUP')) {
      throw new EcsGvisorError(
        'RELOAD_FAILED',
        `cannot reload dockerd: ${this.opts.unit} is not running under systemd and ${this.opts.pidfile} names no live process (set ECS_GVISOR_DOCKER_PIDFILE).`,
      );
    }
    this.deps.log.info({ pid: proc.pid }, 'sent SIGHUP to dockerd');
  }

  /** Poll the API until it reports what we expect; throws RELOAD_FAILED with what it reports instead. */
  async confirm(expect: LiveExpectation, file: string): Promise<DockerInfo> {
    const deadline = this.deps.clock.now() + this.opts.timeoutMs;
    let info = await this.deps.docker.info();
    while (!matches(info, expect)) {
      if (this.deps.clock.now() >= deadline) {
        throw new EcsGvisorError(
          'RELOAD_FAILED',
          `dockerd did not apply ${file} within ${Math.round(this.opts.timeoutMs / 1000)} s: it reports default runtime "${info.defaultRuntime}" and runtimes [${Object.keys(info.runtimes).sort().join(', ')}] (dockerd's log says why it refused the file).`,
          { details: { liveDefaultRuntime: info.defaultRuntime, liveRuntimes: Object.keys(info.runtimes) } },
        );
      }
      await this.deps.clock.sleep(200);
      info = await this.deps.docker.info();
    }
    return info;
  }

  /** Reload and confirm in one. */
  async apply(proc: DockerdProcess, expect: LiveExpectation, file: string): Promise<DockerInfo> {
    await this.reload(proc);
    return this.confirm(expect, file);
  }
}

export function matches(info: DockerInfo, expect: LiveExpectation): boolean {
  if (info.defaultRuntime !== expect.defaultRuntime) return false;
  for (const [name, want] of Object.entries(expect.present)) {
    const have = info.runtimes[name];
    if (!have) return false;
    if (want !== true) {
      if (have.path !== want.path) return false;
      if ((have.runtimeArgs ?? []).join('\0') !== want.runtimeArgs.join('\0')) return false;
    }
  }
  return expect.absent.every((name) => !(name in info.runtimes));
}
