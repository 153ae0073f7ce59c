/** The status report as text: one row a subject, aligned; `status --json` prints the report itself. */
import type { Limits } from '../cgroups.js';
import { taskIdOf } from '../watch/ecs-tasks.js';
import type { TaskEnforcement } from '../watch/enforcement.js';
import type { StatusReport } from './status-report.js';

type Row = [string, string];

/** " (at …)" when a time is known. */
const ago = (at?: string) => (at ? ` (at ${at})` : '');
/** `text` when `cond`, else nothing. */
const when = (cond: unknown, text: string) => (cond ? text : '');
/** Indented lines under a row. */
const lines = (items: readonly string[]) => items.map((l) => `\n  ${l}`).join('');

export function renderStatusText(s: StatusReport): string {
  const r = s.runtime;
  const a = s.agent;
  const rows: Row[] = [
    ['healthy', `${s.healthy ? 'yes' : 'NO'}: ${s.summary}`],
    ['runtime', r.name],
    ['runsc', `${r.runscPath} ${r.runscVersion ?? `(unavailable: ${r.runscProblem})`}`],
    ['docker default', r.dockerDefaultRuntime ?? `(unavailable: ${r.dockerProblem})`],
    ['cgroups', r.cgroup ? `v${r.cgroup.version}, Docker's ${r.cgroup.driver || '?'} driver` : '?'],
    ['verified', r.verified ? `yes, at ${r.verifiedAt}` : 'no'],
    [
      'evidence',
      r.evidence
        ? `pid ${r.evidence.pid} ${r.evidence.cmdline.split(' ')[0]}; memory limit on ${r.evidence.cgroupLimitFile}${when(r.evidence.memoryChargedBytes, `, ${Math.round((r.evidence.memoryChargedBytes ?? 0) / 1048576)} MiB charged`)}`
        : '-',
    ],
    ['networks', networksRow(r)],
    ['agent', agentRow(a)],
    ...(a.held ? [['agent held', a.held] as Row] : []),
    ...(a.stopped ? [['agent stopped', `${a.stopped} (exit ${a.lastExit?.code})`] as Row] : []),
    ['registration', registrationRow(s.registration)],
    [
      'ecs calls',
      `${s.registration.callsLastHour ?? 0} in the last hour${when(s.registration.lastCall, `; last ${s.registration.lastCall?.outcome}${ago(s.registration.lastCall?.at)}`)}`,
    ],
    ['audit', auditRow(s.audit)],
    ...(s.network ? [['network rules', networkRulesRow(s.network)] as Row] : []),
    ['attributes', attributesRow(s.attributes)],
    ['watch', s.watch.running ? `running (pid ${s.watch.pid}, updated ${s.watch.updatedAt})` : 'not running (start ecs-gvisor run)'],
    ['lifecycle', lifecycleRow(s.lifecycle)],
    ...(s.metrics ? [['metrics', metricsRow(s.metrics)] as Row] : []),
    ['last error', r.lastError ? `${r.lastError.at} ${r.lastError.code}: ${r.lastError.message}` : '-'],
    ...s.lastErrors
      .slice(0, 3)
      .map((e): Row => ['watch error', `${e.at} ${e.component} ${e.code}: ${e.message}${e.count ? ` (${e.count} times in a row)` : ''}`]),
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`;
}

export function networksRow(r: StatusReport['runtime']): string {
  const modes = Object.entries(r.evidence?.networks ?? {}).map(([m, p]) => `${m}: ${p.proven ? p.stack : `not proven (${p.reason})`}`);
  // Proven after READY: a verified sandbox without them is still proving them.
  const pending = r.verified && !r.evidence?.networks ? ' (their probes are still starting)' : '';
  return `policy ${r.networkPolicy}; ECS modes proven: ${r.networkModes.join(', ') || 'none'}${pending}${lines(modes)}`;
}

function agentRow(a: StatusReport['agent']): string {
  if (!a.id) return 'no container';
  return `${a.container} ${a.id.slice(0, 12)} ${a.state} (runtime ${a.runtime}${when(a.health, `, ${a.health}`)}), ${a.restarts} restart(s)`;
}

function registrationRow(g: StatusReport['registration']): string {
  if (!g.containerInstanceArn) return 'not registered';
  const ecs = g.status ? `${g.status}, agentConnected=${g.agentConnected}, health ${g.healthStatus ?? '-'}` : 'ECS not asked yet';
  const acs = g.acs ? lines([`ACS connection seen here: ${g.acs.state} since ${g.acs.since} (${g.acs.why})`]) : '';
  return `${g.cluster} ${g.containerInstanceArn}; ${ecs}${ago(g.checkedAt)}${acs}`;
}

function auditRow(audit: StatusReport['audit']): string {
  if (!audit) return '-';
  const violations = audit.violations.map((v) => `${v.name} ${v.id.slice(0, 12)}: ${v.reason}`);
  const networks = (audit.networks ?? []).map(
    (n) => `${n.name}: network ${n.networkMode || '-'}, ${n.stack === 'none' ? 'no sandbox' : n.stack}`,
  );
  const tasks = (audit.tasks ?? []).map(taskLine);
  const ended = (audit.ended ?? []).map((e) => `ended ${e.at}: ${e.name} ${e.id.slice(0, 12)} ${e.reason}`);
  return `${audit.checked} container(s), ${audit.violations.length} violation(s)${ago(audit.checkedAt)}${lines([...violations, ...networks, ...tasks, ...ended])}`;
}

/** Limits as people read them: MiB, CPUs, pids (a task's own limits have no pids). */
function limitsText(l: Limits | undefined, withPids = true): string {
  const parts = [
    l?.memoryBytes === undefined ? 'no memory limit' : `memory ${Math.round(l.memoryBytes / 1048576)} MiB`,
    l?.cpuQuotaUs === undefined ? 'no CPU quota' : `${(l.cpuQuotaUs / (l.cpuPeriodUs ?? 100_000)).toFixed(2)} CPUs`,
    ...(withPids ? [l?.pids === undefined ? 'no pids limit' : `pids ${l.pids}`] : []),
  ];
  return parts.join(', ');
}

export function taskLine(t: TaskEnforcement): string {
  const h = t.hygiene;
  const hygiene = [
    h.root ? (h.remapped ? 'root (remapped)' : 'root') : 'not root',
    ...(h.writableHostMounts.length ? [`writable host mounts ${h.writableHostMounts.join(', ')}`] : []),
    ...(h.privileged ? ['privileged'] : []),
    ...(h.capAdd.length ? [`capabilities +${h.capAdd.join(',')}`] : []),
  ];
  const own = t.problems.filter((p) => !p.startsWith('task-level'));
  const limits = own.length
    ? `asked ${limitsText(t.asked)}; enforced ${limitsText(t.enforced)}`
    : // What the task asked, never a default of its cgroup's (a scope's pids.max is there whether asked or not).
      `limits as asked: ${limitsText(t.asked)}${t.asked.pids === undefined && t.enforced.pids !== undefined && !t.pids ? ` (its cgroup's own pids.max: ${t.enforced.pids})` : ''}`;
  return `${t.name}: cgroup ${t.cgroup ?? '?'}; ${limits}; ${hygiene.join(', ')}${taskText(t)}${pidsText(t.pids)}`;
}

/** The sandbox's pids against its limit: under gVisor the limit counts the sandbox's own threads. */
function pidsText(p: TaskEnforcement['pids']): string {
  if (!p) return '';
  const whose = p.asked ? 'the pids limit asked' : 'its cgroup’s own pids.max';
  const use = `${p.current} pids in use of ${p.limit} (${whose})`;
  return p.tight ? `; PIDS TIGHT: ${use}; at the limit gVisor ends the whole sandbox` : `; ${use}`;
}

/** The task's own limits (task definition) against its cgroup's, once ECS confirmed the task. */
function taskText(t: TaskEnforcement): string {
  const c = t.task;
  if (!c) return '';
  // The ARN came from a label any container can set: shown as an ID only when it looks like one.
  const last = taskIdOf(c.arn);
  const id = /^[A-Za-z0-9]{1,64}$/.test(last) ? last : JSON.stringify(c.arn.slice(0, 100));
  if (c.state !== 'confirmed') return `; task ${id}: ${c.reason}`;
  const text = (l: Limits | undefined) => limitsText(l, false);
  if (c.asked.memoryBytes === undefined && c.asked.cpuQuotaUs === undefined) return `; task ${id}: no task-level limits`;
  return t.problems.some((p) => p.startsWith('task-level'))
    ? `; task ${id}: asked ${text(c.asked)}; enforced ${text(t.parent?.limits)}`
    : `; task ${id}: task limits as asked: ${text(c.asked)}`;
}

function networkRulesRow(n: NonNullable<StatusReport['network']>): string {
  const checked = when(n.checkedAt, ` (checked ${n.checkedAt})`);
  return `${n.rules - n.missing}/${n.rules} in place${checked}; put back ${n.repairs} time(s)${when(n.repairedAt, `, last at ${n.repairedAt}`)}`;
}

function attributesRow(attributes: StatusReport['attributes']): string {
  const list = (a: Record<string, string>) =>
    Object.entries(a)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ');
  const published = list(attributes?.published ?? {}) || '-';
  const stale = attributes?.stale;
  // What ECS holds is not what we know: the scheduler reads the first, so say so on the same line.
  return stale ? `${published}; STALE since ${stale.since}: should be ${list(stale.want)} (${stale.reason})` : published;
}

/** An address and port as a URL has them (an IPv6 address in brackets). */
export function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

function metricsRow(m: NonNullable<StatusReport['metrics']>): string {
  const parts: string[] = [];
  if (m.port !== undefined) {
    parts.push(m.serving ? `http://${hostPort(m.address, m.port)}/metrics` : `off: ${m.problem ?? 'run is not serving them'}`);
  }
  if (m.textfile !== undefined)
    parts.push(m.textfileWriting ? `textfile ${m.textfile}` : `textfile off: ${m.textfileProblem ?? 'run is not writing it'}`);
  return parts.join('; ');
}

function lifecycleRow(l: StatusReport['lifecycle']): string {
  if (!l.enabled) return 'off (no ECS_GVISOR_LAUNCH_HOOK, ECS_GVISOR_TERMINATE_HOOK or ECS_GVISOR_SPOT_DRAIN)';
  const parts = [`${l.instanceId ?? 'instance ?'} in ${l.group ?? 'no Auto Scaling group'}`, `target ${l.targetState ?? 'unknown'}`];
  const la = l.launch;
  if (la) {
    const state = la.phase === 'completed' ? `${la.result} at ${la.completedAt}` : la.phase;
    parts.push(
      `launch hook ${la.hook}: ${state}${when(la.heartbeats, `, ${la.heartbeats} heartbeat(s)`)}${when(la.reason, ` (${la.reason})`)}`,
    );
  }
  if (l.spot) parts.push(`spot notice ${l.spot.action}${when(l.spot.time, ` at ${l.spot.time}`)}`);
  const d = l.drain;
  if (d) {
    parts.push(
      `${d.reason} drain ${d.phase}${when(d.by, ` (${d.by})`)}${when(d.runningTasks !== undefined, `, ${d.runningTasks} task(s)`)}`,
    );
    if (d.hook)
      parts.push(
        `terminate hook ${d.hook.hook}: ${d.hook.phase === 'completed' ? `${d.hook.result} at ${d.hook.completedAt}` : d.hook.phase}`,
      );
  }
  return parts.join('; ');
}
