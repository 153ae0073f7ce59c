/**
 * Ports: what the planners and steps need from the outside world. Adapters in src/adapters implement
 * them; tests and other environments can pass their own.
 */

export interface FilesPort {
  /** File bytes, or undefined when the file does not exist. Other errors throw. */
  read(path: string): Promise<Uint8Array | undefined>;
  /** The same as UTF-8 text. */
  readText(path: string): Promise<string | undefined>;
  /**
   * Replace a file atomically: temp file in the same directory, fsync, rename, fsync the directory.
   * A symlink is followed: the file it points at is replaced and the link kept.
   */
  writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void>;
  /** Write into an existing file in place (for /proc/sys, where rename is impossible). */
  overwrite(path: string, data: string): Promise<void>;
  /** Remove a file; absent is fine. */
  remove(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** What a path is (symlinks followed), or undefined when it does not exist. */
  kind(path: string): Promise<'file' | 'dir' | 'other' | undefined>;
  mkdirp(path: string, mode: number): Promise<void>;
  /** Resolve symlinks of an existing path (the path itself when it does not exist). */
  realpath(path: string): Promise<string>;
  /** Make a private temporary directory; the caller removes it with removeTree. */
  tempDir(prefix: string): Promise<string>;
  removeTree(path: string): Promise<void>;
  /** Copy a file into place atomically with the given mode. */
  installFile(from: string, to: string, mode: number): Promise<void>;
  /** Copy a directory tree into place, replacing what was there. */
  installTree(from: string, to: string): Promise<void>;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandsPort {
  /** Run a program with an argument array (never a shell string). Throws when it cannot be started. */
  run(file: string, args: readonly string[], opts?: { timeoutMs?: number }): Promise<CommandResult>;
}

export interface RuntimeInfo {
  path: string;
  runtimeArgs?: string[];
}

export interface DockerInfo {
  serverVersion: string;
  defaultRuntime: string;
  runtimes: Record<string, RuntimeInfo>;
  cgroupVersion: string;
  cgroupDriver: string;
}

export interface ContainerSpec {
  name?: string;
  Image: string;
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  Labels?: Record<string, string>;
  NetworkDisabled?: boolean;
  HostConfig?: Record<string, unknown>;
}

export interface ContainerState {
  id: string;
  name: string;
  runtime: string;
  status: string;
  running: boolean;
  pid: number;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  labels: Record<string, string>;
}

export interface DockerPort {
  /** Throws DOCKER_UNAVAILABLE when the API cannot be reached. */
  info(): Promise<DockerInfo>;
  imageExists(ref: string): Promise<boolean>;
  /** `docker import` of a root filesystem tarball as `ref`. */
  importImage(rootfsTar: Uint8Array, ref: string, cmd: readonly string[]): Promise<void>;
  removeImage(ref: string): Promise<void>;
  /** `docker load` of an image tarball on this host. */
  loadImage(tarballPath: string): Promise<void>;
  pullImage(ref: string): Promise<void>;
  /** The last `tail` lines of a container's output. */
  containerLogs(id: string, tail: number): Promise<string>;
  createContainer(spec: ContainerSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  /** undefined when the container does not exist. */
  inspectContainer(id: string): Promise<ContainerState | undefined>;
  /** Force-remove; absent is fine. */
  removeContainer(id: string): Promise<void>;
  listContainers(filter: { label?: string; all?: boolean }): Promise<ContainerState[]>;
  /**
   * Subscribe to one container's events. Resolves once Docker has accepted the subscription (so nothing
   * after it is missed); the iterable ends when dockerd goes away or `signal` aborts.
   */
  containerEvents(name: string, signal: AbortSignal): Promise<AsyncIterable<ContainerEvent>>;
}

export interface ContainerEvent {
  /** die, start, destroy, oom, health_status: healthy, … */
  action: string;
  id: string;
  exitCode?: number;
}

export interface HostPort {
  /** argv of a live process, or undefined when it does not exist. */
  cmdline(pid: number): Promise<string[] | undefined>;
  /** Send a signal; false when the process does not exist. */
  signal(pid: number, signal: NodeJS.Signals): boolean;
  /** Live processes whose command line contains `text`, with that command line. */
  processesMentioning(text: string): Promise<Array<{ pid: number; argv: string[] }>>;
  /** Whether systemd is PID 1's init (/run/systemd/system exists). */
  systemdRunning(): Promise<boolean>;
}

export interface UnitState {
  /** loaded, not-found, masked, … */
  load: string;
  /** active, inactive, failed, activating, … */
  active: string;
  /** enabled, disabled, masked, static, … (empty when not-found) */
  fileState: string;
}

export type UnitAction = 'stop' | 'disable' | 'mask' | 'unmask' | 'enable' | 'start';

export interface ServiceManagerPort {
  /** MainPID of a unit, 0 when not running, undefined when the unit is unknown. */
  mainPid(unit: string): Promise<number | undefined>;
  reload(unit: string): Promise<void>;
  /** A unit's state; undefined when there is no systemd to ask (no systemctl, or not booted with systemd). */
  unitState(unit: string): Promise<UnitState | undefined>;
  act(action: UnitAction, unit: string): Promise<void>;
}

export interface HttpPort {
  /** GET a URL; throws on a non-2xx status or timeout. */
  get(url: string, opts: { timeoutMs: number; maxBytes: number }): Promise<Uint8Array>;
}

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}
