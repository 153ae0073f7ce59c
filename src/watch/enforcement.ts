/**
 * Per-task enforcement and hygiene: each task container's sandbox (and its gofers) must sit in the
 * cgroup Docker made for the container, under the cgroup parent it was given, and that cgroup must hold
 * the limits Docker was asked for. Hygiene (root, writable host mounts, privileged, added capabilities)
 * is reported, or a violation where the policy says so. Pure: what was read comes in, verdicts go out;
 * `cgroupFilesFor` says which files to read.
 */

import {
  type Controller,
  cgroupDir,
  expectedLimits,
  isContainerCgroup,
  LIMIT_FILES,
  type Limits,
  limitProblems,
  locate,
  parentPath,
  parseLimits,
  parseProcCgroup,
  underParent,
} from '../cgroups.js';
import type { HygieneItem } from '../config.js';
import type { ContainerState, OomKill } from '../ports.js';
import { isTaskCgroup, type TaskClaim } from './ecs-tasks.js';

export interface Hygiene {
  /** Runs as root (uid 0) inside the container. */
  root: boolean;
  /** Docker's userns-remap maps that root to an unprivileged host user. */
  remapped: boolean;
  /** Host paths bind-mounted writable: the gofer writes to them on the sandbox's behalf. */
  writableHostMounts: string[];
  privileged: boolean;
  /** Capabilities added beyond Docker's default set. */
  capAdd: string[];
}

export interface TaskEnforcement {
  id: string;
  name: string;
  /** The sandbox's cgroup (memory controller's path on v1, the unified path on v2). */
  cgroup?: string;
  /** The PIDs of its gofers (runsc's file proxies beside the sandbox), each checked like the sandbox. */
  gofers: number[];
  cgroupParent: string;
  asked: Limits;
  enforced: Limits;
  /** The task-level cgroup (the container cgroup's parent) and its limits. */
  parent?: { path: string; limits: Limits };
  /** The ECS task the container claims (its label) and whether ECS confirmed it; `asked`: the task's limits. */
  task?: TaskClaim;
  /** What is wrong with enforcement (each a violation). */
  problems: string[];
  /**
   * The sandbox's pids in use against the lowest pids limit over it (its own cgroup's or its task's), when
   * there is one. `asked`: the container or its task asked for that limit (not a cgroup's default).
   * `tight`: within reach of the sandbox's own use (PIDS_TIGHT), where gVisor ends the whole sandbox.
   */
  pids?: PidsHeadroom;
  hygiene: Hygiene;
  /** The hygiene items the policy makes violations, when present. */
  hygieneViolations: HygieneItem[];
}

/** The /proc/<pid>/cgroup text of the container's sandbox and of each of its gofers. */
export interface ProcessCgroups {
  sandbox?: string;
  gofers: Array<{ pid: number; cgroups?: string }>;
}

const CONTROLLERS: readonly Controller[] = ['memory', 'cpu', 'pids'];

export interface PidsHeadroom {
  current: number;
  limit: number;
  asked: boolean;
  tight: boolean;
}

/**
 * A pids limit is tight when the sandbox already uses a quarter of it. Under gVisor the limit counts the
 * sandbox's own host threads (an idle one uses 25–30), not the task's processes, and reaching it ends the
 * whole sandbox where runc would refuse one fork.
 */
export const PIDS_TIGHT = 4;

export function pidsHeadroom(
  current: number | undefined,
  limits: ReadonlyArray<number | undefined>,
  asked: boolean,
): PidsHeadroom | undefined {
  const set = limits.filter((l): l is number => l !== undefined);
  if (current === undefined || set.length === 0) return undefined;
  const limit = Math.min(...set);
  return { current, limit, asked, tight: current * PIDS_TIGHT >= limit };
}

/** The limit files to read for a sandbox's cgroups (its own and its parent's), absolute paths. */
export function cgroupFilesFor(sandboxCgroups: string | undefined, root = '/sys/fs/cgroup'): string[] {
  if (!sandboxCgroups) return [];
  const p = parseProcCgroup(sandboxCgroups);
  const files: string[] = [];
  for (const c of CONTROLLERS) {
    const at = locate(p, c);
    if (!at) continue;
    for (const dir of [cgroupDir(at, at.path, root), cgroupDir(at, parentPath(at.path), root)]) {
      for (const f of LIMIT_FILES[at.version][c]) files.push(`${dir}/${f}`);
    }
    if (c === 'pids') files.push(`${cgroupDir(at, at.path, root)}/pids.current`);
  }
  return files;
}

/** The limits in one cgroup dir, from the files read (keyed by absolute path). */
function limitsIn(
  version: 1 | 2,
  dirs: Record<Controller, string | undefined>,
  files: Readonly<Record<string, string | undefined>>,
): Limits {
  const named: Record<string, string | undefined> = {};
  for (const c of CONTROLLERS) {
    const dir = dirs[c];
    if (dir) for (const f of LIMIT_FILES[version][c]) named[f] = files[`${dir}/${f}`];
  }
  return parseLimits(version, named);
}

export interface JudgeOptions {
  /** The hygiene items that are violations (the rest are reported). */
  policy: readonly HygieneItem[];
  /** The daemon runs with userns-remap. */
  usernsRemap: boolean;
  root?: string;
}

export function judgeTask(
  c: ContainerState,
  procs: ProcessCgroups,
  files: Readonly<Record<string, string | undefined>>,
  o: JudgeOptions,
  claim?: TaskClaim,
): TaskEnforcement {
  const root = o.root ?? '/sys/fs/cgroup';
  const r = c.resources ?? {};
  const asked = expectedLimits(r);
  const problems: string[] = [];
  const hygiene = hygieneOf(c, o.usernsRemap);
  const base = {
    id: c.id,
    name: c.name,
    cgroupParent: r.cgroupParent ?? '',
    gofers: procs.gofers.map((g) => g.pid),
    asked,
    hygiene,
    hygieneViolations: violatedHygiene(hygiene, o.policy),
    ...(claim ? { task: claim } : {}),
  };
  if (!procs.sandbox) return { ...base, enforced: {}, problems: ['its process cannot be read (gone, or in another PID namespace)'] };

  const p = parseProcCgroup(procs.sandbox);
  const mem = locate(p, 'memory') ?? locate(p, 'pids');
  const cgroup = mem?.path;
  if (!mem || !cgroup) return { ...base, enforced: {}, problems: ['its process is in no memory or pids cgroup this host can read'] };
  if (!isContainerCgroup(cgroup, c.id)) problems.push(`its process (pid ${c.pid}) is in cgroup ${cgroup}, not the container's own`);
  else if (!underParent(parentPath(cgroup), base.cgroupParent))
    problems.push(`its cgroup ${cgroup} is not under the cgroup parent ${base.cgroupParent}`);
  for (const g of procs.gofers) {
    const gp = g.cgroups ? locate(parseProcCgroup(g.cgroups), mem.controller) : undefined;
    if (gp && gp.path !== cgroup) problems.push(`its gofer (pid ${g.pid}) is in cgroup ${gp.path}, not the sandbox's ${cgroup}`);
  }

  const dirs = (parent: boolean) => {
    const out = {} as Record<Controller, string | undefined>;
    for (const ctl of CONTROLLERS) {
      const at = locate(p, ctl);
      out[ctl] = at && cgroupDir(at, parent ? parentPath(at.path) : at.path, root);
    }
    return out;
  };
  const enforced = limitsIn(mem.version, dirs(false), files);
  problems.push(...limitProblems(asked, enforced));
  const parent = { path: parentPath(cgroup), limits: limitsIn(mem.version, dirs(true), files) };
  if (claim?.state === 'confirmed' && isContainerCgroup(cgroup, c.id)) problems.push(...taskProblems(claim, parent));
  const ownPids = dirs(false).pids;
  const current = ownPids === undefined ? undefined : Number.parseInt(files[`${ownPids}/pids.current`] ?? '', 10);
  const pids = pidsHeadroom(
    Number.isFinite(current) ? current : undefined,
    [enforced.pids, parent.limits.pids],
    asked.pids !== undefined && asked.pids === Math.min(enforced.pids ?? Infinity, parent.limits.pids ?? Infinity),
  );
  return { ...base, cgroup, enforced, parent, problems, ...(pids ? { pids } : {}) };
}

/**
 * The task definition's task-level limits must hold on the task's own cgroup, the container's parent.
 * Each problem starts with "task-level".
 */
function taskProblems(claim: Extract<TaskClaim, { state: 'confirmed' }>, parent: { path: string; limits: Limits }): string[] {
  const asked = claim.asked;
  if (asked.memoryBytes === undefined && asked.cpuQuotaUs === undefined) return [];
  if (!isTaskCgroup(parent.path, claim.taskId))
    return [
      `task-level limits do not hold it: its cgroup's parent ${parent.path} is not its task's (/ecs/${claim.taskId} or ecstasks-${claim.taskId}.slice)`,
    ];
  return limitProblems(asked, parent.limits).map((p) => `task-level ${p}`);
}

export function hygieneOf(c: ContainerState, usernsRemap: boolean): Hygiene {
  const s = c.security;
  const user = (s?.user ?? '').split(':')[0] ?? '';
  return {
    // Config.User carries the image's USER unless the run overrode it: empty means root.
    root: user === '' || user === '0' || user === 'root',
    remapped: usernsRemap && s?.usernsMode !== 'host',
    writableHostMounts: s?.writableHostMounts ?? [],
    privileged: s?.privileged === true,
    capAdd: s?.capAdd ?? [],
  };
}

function violatedHygiene(h: Hygiene, policy: readonly HygieneItem[]): HygieneItem[] {
  const present: Record<HygieneItem, boolean> = {
    root: h.root && !h.remapped,
    'writable-host-mounts': h.writableHostMounts.length > 0,
    privileged: h.privileged,
    capabilities: h.capAdd.length > 0,
  };
  return policy.filter((i) => present[i]);
}

/** A task's sandbox that a limit ended: the kernel's OOM killer, or a pids limit it was within reach of. */
export interface SandboxEnd {
  id: string;
  name: string;
  /** Docker's FinishedAt. */
  at: string;
  exitCode: number;
  limit: 'memory' | 'pids';
  reason: string;
}

/**
 * Why a sandboxed container ended, when a limit ended it; undefined for any other end (the task's own
 * exit, ECS stopping it: SIGTERM, then SIGKILL's 137 without an OOM kill). Docker does not always see an
 * OOM kill of a sandbox (OOMKilled stays false under the runc shim on cgroup v1), so the kernel's word
 * counts too: a kill in a cgroup of this container's (`kills`). `last`: its last audit, for the pids it
 * used then: runsc ends the whole sandbox at its pids limit, and nothing records that it did.
 */
export function sandboxEnd(c: ContainerState, last: TaskEnforcement | undefined, kills: readonly OomKill[]): SandboxEnd | undefined {
  const base = { id: c.id, name: c.name, at: c.finishedAt, exitCode: c.exitCode };
  const kill = kills.findLast((k) => isContainerCgroup(k.cgroup, c.id));
  if (c.oomKilled || kill) {
    const own = !kill || isContainerCgroup(kill.limitCgroup, c.id);
    const mib = c.resources?.memory ? `${Math.round(c.resources.memory / 1048576)} MiB` : 'its cgroup’s';
    const which = own
      ? `its memory limit (${mib}; exit ${c.exitCode})`
      : `its task’s memory limit (${kill.limitCgroup}; exit ${c.exitCode})`;
    return {
      ...base,
      limit: 'memory',
      reason: `killed at ${which}: under gVisor the whole sandbox goes, not only the process that asked for more`,
    };
  }
  const p = last?.pids;
  if (p?.tight && ![0, 137, 143].includes(c.exitCode))
    return {
      ...base,
      limit: 'pids',
      reason: `exited ${c.exitCode} with ${p.current} of its ${p.limit} pids in use when last audited: at a pids limit gVisor ends the whole sandbox`,
    };
  return undefined;
}
