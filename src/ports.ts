/**
 * Ports: what the planners and steps need from the outside world. Adapters in src/adapters implement
 * them; tests and other environments can pass their own.
 */
import type { TcpConnection } from './proc-net.js';

export interface ReadOptions {
  /** Refuse a larger file (default: 128 MiB for bytes, 4 MiB for text). */
  maxBytes?: number;
  /** Refuse a symbolic link instead of reading what it points at. */
  noFollow?: boolean;
}

export interface FilesPort {
  /**
   * File bytes, or undefined when the file does not exist. A FIFO, device or other non-regular file,
   * or one past the limit, throws (never hangs, never reads it whole). Other errors throw.
   */
  read(path: string, opts?: ReadOptions): Promise<Uint8Array | undefined>;
  /** The same as UTF-8 text. */
  readText(path: string, opts?: ReadOptions): Promise<string | undefined>;
  /**
   * Replace a file atomically: temp file in the same directory, fsync, rename, fsync the directory.
   * A symlink is followed: the file it points at is replaced and the link kept (`noFollow`: the link
   * itself is replaced).
   */
  writeAtomic(path: string, data: string | Uint8Array, mode: number, opts?: { noFollow?: boolean }): Promise<void>;
  /** Write into an existing file in place (for /proc/sys, where rename is impossible). */
  overwrite(path: string, data: string): Promise<void>;
  /** Remove a file; absent is fine. */
  remove(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** What a path is (symlinks followed), or undefined when it does not exist. */
  kind(path: string): Promise<'file' | 'dir' | 'other' | undefined>;
  /** Device, inode, size and mtime (symlinks followed): changes whenever the file is replaced or written. */
  identity(path: string): Promise<string | undefined>;
  mkdirp(path: string, mode: number): Promise<void>;
  /**
   * A directory only we may change: created with `mode` when missing; refused (throws) when it is a
   * symbolic link, not a directory, not owned by our user, or writable by group or others; narrowed
   * to `mode` when it is wider.
   */
  privateDir(path: string, mode: number): Promise<void>;
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
  /** Run a program with an argument array (never a shell string), `input` on its stdin. Throws when it cannot be started. */
  run(
    file: string,
    args: readonly string[],
    opts?: { timeoutMs?: number; env?: Record<string, string>; input?: string },
  ): Promise<CommandResult>;
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
  /** The daemon remaps container root (userns-remap: "name=userns" among its security options). */
  usernsRemap?: boolean;
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
  /** Docker saw the kernel's OOM killer end it (State.OOMKilled). */
  oomKilled?: boolean;
  /** The ID of the image the container was created from. */
  imageId?: string;
  /** HostConfig.NetworkMode: none, bridge, host, container:<id>, a network's name. */
  networkMode?: string;
  labels: Record<string, string>;
  /** The agent's task metadata (v4) endpoint ID it gave this container, when it did (its creator's word only). */
  metadataEndpointId?: string;
  /** Docker's health check verdict (healthy, unhealthy, starting), when the container has one. */
  health?: string;
  /** The limits it was created with (HostConfig) and its cgroup parent; 0 or absent: none. */
  resources?: { memory?: number; nanoCpus?: number; cpuQuota?: number; cpuPeriod?: number; pidsLimit?: number; cgroupParent?: string };
  /** What it runs as and may touch on the host. */
  security?: {
    /** Config.User ('' = the image's default, root unless the image says otherwise). */
    user: string;
    privileged: boolean;
    capAdd: string[];
    /** Host paths bind-mounted read-write. */
    writableHostMounts: string[];
    /** HostConfig.UsernsMode: "host" turns the daemon's userns-remap off for this container. */
    usernsMode: string;
  };
}

export interface DockerPort {
  /** Throws DOCKER_UNAVAILABLE when the API cannot be reached. */
  info(): Promise<DockerInfo>;
  imageExists(ref: string): Promise<boolean>;
  /** The ID (`sha256:…`) of the image `ref` names now, or undefined when there is none. */
  imageId(ref: string): Promise<string | undefined>;
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
  renameContainer(id: string, name: string): Promise<void>;
  /** Stop (SIGTERM, then SIGKILL after `timeoutSeconds`); absent or already stopped is fine. */
  stopContainer(id: string, timeoutSeconds: number): Promise<void>;
  listContainers(filter: { label?: string; all?: boolean }): Promise<ContainerState[]>;
  /** The IDs of the running containers: one request, no inspects. */
  runningIds(): Promise<string[]>;
  /**
   * Subscribe to container events (one container's by name, or every container's). Resolves once Docker
   * has accepted the subscription (so nothing after it is missed); the iterable ends when dockerd goes
   * away, `signal` aborts, or it is closed (which an iteration never started needs: nothing else ends it).
   */
  containerEvents(name: string | undefined, signal: AbortSignal): Promise<ContainerEvents>;
}

export interface ContainerEvents extends AsyncIterable<ContainerEvent> {
  close(): void;
}

export interface ContainerEvent {
  /** die, start, destroy, oom, health_status: healthy, … */
  action: string;
  id: string;
  /** The container's name (without the leading slash). */
  name: string;
  exitCode?: number;
}

export interface HostPort {
  /** argv of a live process, or undefined when it does not exist. */
  cmdline(pid: number): Promise<string[] | undefined>;
  /** Send a signal; false when the process does not exist. */
  signal(pid: number, signal: NodeJS.Signals): boolean;
  /** PIDs holding a TCP socket that listens on `port` (IPv4 or IPv6) in our network namespace. */
  listeners(port: number): Promise<number[]>;
  /** The ESTABLISHED TCP connections of a live process (IPv4 and IPv6, in its network namespace); [] when it does not exist. */
  connectionsOf(pid: number): Promise<TcpConnection[]>;
  /** What a live process executes, as its /proc/<pid>/exe link reads (a path in its own mount namespace). */
  exe(pid: number): Promise<string | undefined>;
  /** The parent PID of a live process, or undefined when it does not exist. */
  parentOf(pid: number): Promise<number | undefined>;
  /**
   * When a live process started (clock ticks since boot, /proc/<pid>/stat), or undefined when it does not
   * exist: with its PID, a process's identity (a PID can be reused, not with the same start).
   */
  startTime(pid: number): Promise<number | undefined>;
  /** Live processes whose command line contains `text`, with that command line. */
  processesMentioning(text: string): Promise<Array<{ pid: number; argv: string[] }>>;
  /** Whether systemd is PID 1's init (/run/systemd/system exists). */
  systemdRunning(): Promise<boolean>;
  /** The children of a live process (of all its threads); [] when it does not exist. */
  childrenOf(pid: number): Promise<number[]>;
  /**
   * The text of a small kernel file (/proc/<pid>/cgroup, a cgroup's limit file), or undefined when it
   * does not exist. Only for files the kernel makes, which no local user can turn into a FIFO or a link.
   */
  kernelText(path: string): Promise<string | undefined>;
  /**
   * The OOM killer's kills still in the kernel's log (/dev/kmsg, which only root can write): whose memory
   * cgroup's limit was reached, and the killed process's cgroup. Oldest first.
   */
  oomKills(): Promise<OomKill[]>;
}

export interface OomKill {
  /** The cgroup whose limit was reached (the container's own, or its task's). */
  limitCgroup: string;
  /** The killed process's cgroup. */
  cgroup: string;
}

export interface UnitState {
  /** loaded, not-found, masked, … */
  load: string;
  /** active, inactive, failed, activating, … */
  active: string;
  /** enabled, disabled, masked, static, … (empty when not-found) */
  fileState: string;
  /** Where the unit file is (FragmentPath); empty when unknown. */
  fragmentPath?: string;
}

export type UnitAction = 'stop' | 'disable' | 'mask' | 'unmask' | 'enable' | 'start';

export interface ServiceManagerPort {
  /** MainPID of a unit, 0 when not running, undefined when the unit is unknown. */
  mainPid(unit: string): Promise<number | undefined>;
  reload(unit: string): Promise<void>;
  /** A unit's state; undefined when there is no systemd to ask (no systemctl, or not booted with systemd). */
  unitState(unit: string): Promise<UnitState | undefined>;
  /**
   * `reload: false` leaves systemd's reload after a unit-file change (enable, disable, mask, unmask) to a
   * later change in the same run; each reload costs ~0.15 s.
   */
  act(action: UnitAction, unit: string, opts?: { reload?: boolean }): Promise<void>;
}

export interface HttpPort {
  /** GET a URL; throws HttpError on a non-2xx status, a refused connection or a timeout. */
  get(url: string, opts: { timeoutMs: number; maxBytes: number }): Promise<Uint8Array>;
}

/** A container instance as DescribeContainerInstances reports it. */
export interface ContainerInstanceView {
  arn: string;
  /** ACTIVE, DRAINING, REGISTERING, DEREGISTERING, REGISTRATION_FAILED, INACTIVE */
  status: string;
  agentConnected: boolean;
  /** overallStatus of CONTAINER_INSTANCE_HEALTH: OK, IMPAIRED, INSUFFICIENT_DATA, INITIALIZING */
  healthStatus?: string;
  runningTasksCount: number;
  pendingTasksCount: number;
  /** The EC2 instance ECS says this container instance is (from the agent's instance identity document). */
  ec2InstanceId?: string;
  /** Every attribute on the instance (ECS's own and custom), name → value. */
  attributes: Record<string, string>;
}

/**
 * The ECS API calls ecs-gvisor makes. Failures throw EcsGvisorError AWS_API with `details.outcome`
 * (throttled, server-error, client-error, network, timeout) and `details.name` (the exception class).
 */
export interface EcsPort {
  /** undefined when ECS reports the ARN as missing. */
  describeContainerInstance(cluster: string, arn: string): Promise<ContainerInstanceView | undefined>;
  putAttributes(cluster: string, arn: string, attributes: Readonly<Record<string, string>>): Promise<void>;
  deleteAttributes(cluster: string, arn: string, names: readonly string[]): Promise<void>;
  /** UpdateContainerInstancesState → DRAINING: ECS stops placing tasks here and replaces service tasks. */
  drain(cluster: string, arn: string): Promise<void>;
  /** DescribeTasks for up to 100 ARNs; the tasks ECS does not know are left out. */
  describeTasks(cluster: string, arns: readonly string[]): Promise<EcsTaskView[]>;
}

/** What ECS says of one task: where it runs, its task-level limits, its containers' Docker IDs. */
export interface EcsTaskView {
  arn: string;
  containerInstanceArn?: string;
  /** Task-level CPU in CPU units (1024 = one vCPU) and memory in MiB, as ECS reports them (strings). */
  cpu?: string;
  memory?: string;
  /** The Docker IDs of its containers (ECS's `runtimeId`). */
  runtimeIds: string[];
}

/** One pending lifecycle action of this instance: `InstanceId` names it (IMDS gives no action token). */
export interface LifecycleActionRef {
  group: string;
  hook: string;
  instanceId: string;
}

export type LifecycleResult = 'CONTINUE' | 'ABANDON';

/**
 * The Auto Scaling calls ecs-gvisor makes. Failures throw AWS_API like EcsPort's; Auto Scaling answers
 * `ValidationError` (a client error) when no such lifecycle action is pending.
 */
export interface AutoScalingPort {
  setInstanceHealth(instanceId: string, health: 'Healthy' | 'Unhealthy', respectGracePeriod: boolean): Promise<void>;
  completeLifecycleAction(action: LifecycleActionRef, result: LifecycleResult): Promise<void>;
  recordLifecycleActionHeartbeat(action: LifecycleActionRef): Promise<void>;
}

export interface Ec2Port {
  /** The instance's `aws:autoscaling:groupName` tag, or undefined when it is not in a group. */
  autoScalingGroupOf(instanceId: string): Promise<string | undefined>;
}

/** Instance metadata (IMDSv2). */
export interface ImdsPort {
  /** The text at a metadata path (`/latest/meta-data/...`), or undefined on 404. Throws IMDS_FAILED. */
  get(path: string): Promise<string | undefined>;
}

/** What the agent's introspection endpoint says once it has registered. */
export interface AgentMetadata {
  cluster: string;
  containerInstanceArn: string;
  version?: string;
}

/** systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=…); a no-op when not started by systemd. */
export interface NotifyPort {
  readonly enabled: boolean;
  notify(fields: Readonly<Record<string, string>>): Promise<void>;
}

/** Gives the lock back; resolves once it is free for the next holder. */
export type ReleaseLock = () => Promise<void>;

/** One host-wide lock for the commands that change the host (bootstrap, rollback, the watch's repairs). */
export interface HostLockPort {
  /** Take it, waiting up to `waitMs` for a holder to finish; throws HOST_LOCKED naming the holder after that. */
  acquire(purpose: string, waitMs: number): Promise<ReleaseLock>;
  /** Take it if it is free now; undefined when another process holds it. */
  tryAcquire(purpose: string): Promise<ReleaseLock | undefined>;
}

export interface Clock {
  now(): number;
  /** Resolves after `ms`, or early (without error) once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}
