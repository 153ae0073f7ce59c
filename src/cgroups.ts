/**
 * Where a process's cgroups are and what limits they hold, for cgroup v1 (a hierarchy per controller,
 * Amazon Linux 2), v2 (one unified hierarchy, Amazon Linux 2023) and hybrid hosts (v1 controllers plus
 * an empty v2 hierarchy). Pure: the text of /proc/<pid>/cgroup and of the limit files comes in.
 *
 * Docker's cgroupfs driver names a container's cgroup `<parent>/<id>` (parent /docker, or the task's
 * /ecs/<task id> under ECS); its systemd driver `<parent slice path>/docker-<id>.scope` (ECS on Amazon
 * Linux 2023: /ecstasks.slice/ecstasks-<task id>.slice/docker-<id>.scope).
 */

export type Controller = 'memory' | 'cpu' | 'pids';

export interface ProcCgroups {
  /** v1: controller → path (only the controllers of v1 hierarchies). */
  v1: Map<string, string>;
  /** The unified (v2) path, when the process is in a v2 hierarchy. */
  unified?: string;
}

/** Parse /proc/<pid>/cgroup: `hierarchy-ID:controller-list:path` a line; v2 is `0::path`. */
export function parseProcCgroup(text: string): ProcCgroups {
  const v1 = new Map<string, string>();
  let unified: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, id, controllers, path] = m as unknown as [string, string, string, string];
    if (id === '0' && controllers === '') unified = path;
    else for (const c of controllers.split(',')) if (c) v1.set(c, path);
  }
  return { v1, unified };
}

export interface CgroupLocation {
  version: 1 | 2;
  controller: Controller;
  /** The cgroup path as the kernel names it (relative to the hierarchy's root). */
  path: string;
}

/** Where a cgroup's files are: /sys/fs/cgroup/<controller><path> on v1, /sys/fs/cgroup<path> on v2. */
export function cgroupDir(at: Pick<CgroupLocation, 'version' | 'controller'>, path: string, root = '/sys/fs/cgroup'): string {
  const rel = path === '/' ? '' : path;
  return at.version === 1 ? `${root}/${at.controller}${rel}` : `${root}${rel}`;
}

/**
 * The cgroup that governs `controller` for a process: its v1 hierarchy when one carries the controller,
 * the unified hierarchy on a pure v2 host; undefined when neither does.
 */
export function locate(p: ProcCgroups, controller: Controller): CgroupLocation | undefined {
  const v1 = p.v1.get(controller);
  if (v1 !== undefined) return { version: 1, controller, path: v1 };
  // A hybrid host's unified hierarchy carries no controllers: only a pure v2 host's does.
  if (p.unified !== undefined && p.v1.size === 0) return { version: 2, controller, path: p.unified };
  return undefined;
}

/** Whether a cgroup path is the container's own (cgroupfs `…/<id>`, systemd `…/docker-<id>.scope`). */
export function isContainerCgroup(path: string, id: string): boolean {
  const leaf = path.slice(path.lastIndexOf('/') + 1);
  return leaf === id || leaf === `docker-${id}.scope` || leaf === `${id}.scope`;
}

/** The parent of a cgroup path ('/' for a top-level one). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/**
 * Whether `path` lies under the cgroup parent Docker was asked for: cgroupfs names it as a path
 * (`/ecs/<task>`); systemd as a slice (`ecstasks-<task>.slice`), which lives at
 * `/ecstasks.slice/ecstasks-<task>.slice` (each dash a level).
 */
export function underParent(path: string, cgroupParent: string): boolean {
  if (!cgroupParent) return true;
  if (cgroupParent.endsWith('.slice')) {
    const name = cgroupParent.slice(cgroupParent.lastIndexOf('/') + 1);
    return path.split('/').includes(name);
  }
  const parent = cgroupParent.startsWith('/') ? cgroupParent : `/${cgroupParent}`;
  return path === parent || path.startsWith(`${parent}/`);
}

/** Limits as numbers; undefined: no limit. */
export interface Limits {
  memoryBytes?: number;
  /** CPU quota per period, in µs (Docker's --cpus 0.5 is 50000 per 100000). */
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  pids?: number;
}

/** The files that hold each limit, relative to the controller's cgroup dir. */
export const LIMIT_FILES = {
  1: { memory: ['memory.limit_in_bytes'], cpu: ['cpu.cfs_quota_us', 'cpu.cfs_period_us'], pids: ['pids.max'] },
  2: { memory: ['memory.max'], cpu: ['cpu.max'], pids: ['pids.max'] },
} as const;

/** v1 writes "no memory limit" as the largest page-aligned value (9223372036854771712 on 4 KiB pages). */
const V1_UNLIMITED = 2 ** 62;

const num = (text: string | undefined): number | undefined => {
  const t = text?.trim();
  if (t === undefined || t === '' || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
};

/** The limits of one cgroup from its files' text (a missing file: that limit unknown). */
export function parseLimits(version: 1 | 2, files: Readonly<Record<string, string | undefined>>): Limits {
  if (version === 1) {
    const mem = num(files['memory.limit_in_bytes']);
    const quota = num(files['cpu.cfs_quota_us']);
    return {
      memoryBytes: mem !== undefined && mem < V1_UNLIMITED ? mem : undefined,
      cpuQuotaUs: quota !== undefined && quota > 0 ? quota : undefined,
      cpuPeriodUs: num(files['cpu.cfs_period_us']),
      pids: num(files['pids.max']),
    };
  }
  const [quota, period] = (files['cpu.max'] ?? '').trim().split(/\s+/);
  return { memoryBytes: num(files['memory.max']), cpuQuotaUs: num(quota), cpuPeriodUs: num(period), pids: num(files['pids.max']) };
}

/** What Docker was asked for (HostConfig): Memory, NanoCpus or CpuQuota/CpuPeriod, PidsLimit. */
export interface AskedLimits {
  memory?: number;
  nanoCpus?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  pidsLimit?: number;
}

/** Docker's own translation of HostConfig into cgroup values (runc's and runsc's alike). */
export function expectedLimits(h: AskedLimits): Limits {
  const out: Limits = {};
  if (h.memory && h.memory > 0) out.memoryBytes = h.memory;
  if (h.nanoCpus && h.nanoCpus > 0) {
    out.cpuPeriodUs = 100_000;
    out.cpuQuotaUs = Math.round((h.nanoCpus * 100_000) / 1e9);
  } else if (h.cpuQuota && h.cpuQuota > 0) {
    out.cpuQuotaUs = h.cpuQuota;
    out.cpuPeriodUs = h.cpuPeriod && h.cpuPeriod > 0 ? h.cpuPeriod : 100_000;
  }
  if (h.pidsLimit && h.pidsLimit > 0) out.pids = h.pidsLimit;
  return out;
}

/** Each asked limit that the cgroup does not hold, as a sentence. */
export function limitProblems(asked: Limits, enforced: Limits): string[] {
  const problems: string[] = [];
  if (asked.memoryBytes !== undefined && enforced.memoryBytes !== asked.memoryBytes) {
    problems.push(`memory limit ${asked.memoryBytes} asked, ${enforced.memoryBytes ?? 'none'} enforced`);
  }
  if (asked.cpuQuotaUs !== undefined) {
    const a = (asked.cpuQuotaUs / (asked.cpuPeriodUs ?? 100_000)).toFixed(3);
    const e = enforced.cpuQuotaUs === undefined ? 'none' : (enforced.cpuQuotaUs / (enforced.cpuPeriodUs ?? 100_000)).toFixed(3);
    if (a !== e) problems.push(`CPU quota ${a} CPUs asked, ${e === 'none' ? 'none' : `${e} CPUs`} enforced`);
  }
  if (asked.pids !== undefined && enforced.pids !== asked.pids)
    problems.push(`pids limit ${asked.pids} asked, ${enforced.pids ?? 'none'} enforced`);
  return problems;
}
