/** The status report as text: one row a subject, aligned; `status --json` prints the report itself. */
import type { StatusReport } from './status-report.js';

export function renderStatusText(s: StatusReport): string {
  const r = s.runtime;
  const a = s.agent;
  const g = s.registration;
  const ago = (at?: string) => (at ? ` (at ${at})` : '');
  const rows: [string, string][] = [
    ['healthy', `${s.healthy ? 'yes' : 'NO'}: ${s.summary}`],
    ['runtime', r.name],
    ['runsc', `${r.runscPath} ${r.runscVersion ?? `(unavailable: ${r.runscProblem})`}`],
    ['docker default', r.dockerDefaultRuntime ?? `(unavailable: ${r.dockerProblem})`],
    ['verified', r.verified ? `yes, at ${r.verifiedAt}` : 'no'],
    ['evidence', r.evidence ? `pid ${r.evidence.pid} ${r.evidence.cmdline.split(' ')[0]}; memory limit on ${r.evidence.cgroupLimitFile}` : '-'],
    [
      'networks',
      `policy ${r.networkPolicy}; ECS modes proven: ${r.networkModes.join(', ') || 'none'}${Object.entries(r.evidence?.networks ?? {})
        .map(([m, p]) => `\n  ${m}: ${p.proven ? p.stack : `not proven (${p.reason})`}`)
        .join('')}`,
    ],
    ['agent', a.id ? `${a.container} ${a.id.slice(0, 12)} ${a.state} (runtime ${a.runtime}${a.health ? `, ${a.health}` : ''}), ${a.restarts} restart(s)` : 'no container'],
    ...(a.held ? ([['agent held', a.held]] as [string, string][]) : []),
    ...(a.stopped ? ([['agent stopped', `${a.stopped} (exit ${a.lastExit?.code})`]] as [string, string][]) : []),
    [
      'registration',
      g.containerInstanceArn
        ? `${g.cluster} ${g.containerInstanceArn}; ${g.status ?? 'ECS not asked yet'}${g.status ? `, agentConnected=${g.agentConnected}, health ${g.healthStatus ?? '-'}` : ''}${ago(g.checkedAt)}`
        : 'not registered',
    ],
    ['ecs calls', `${g.callsLastHour ?? 0} in the last hour${g.lastCall ? `; last ${g.lastCall.outcome}${ago(g.lastCall.at)}` : ''}`],
    [
      'audit',
      s.audit
        ? `${s.audit.checked} container(s), ${s.audit.violations.length} violation(s)${ago(s.audit.checkedAt)}${s.audit.violations.map((v) => `\n  ${v.name} ${v.id.slice(0, 12)}: ${v.reason}`).join('')}${(s.audit.networks ?? []).map((n) => `\n  ${n.name}: network ${n.networkMode || '-'}, ${n.stack === 'none' ? 'no sandbox' : n.stack}`).join('')}`
        : '-',
    ],
    ...(s.network
      ? ([['network rules', `${s.network.rules - s.network.missing}/${s.network.rules} in place${s.network.checkedAt ? ` (checked ${s.network.checkedAt})` : ''}; put back ${s.network.repairs} time(s)${s.network.repairedAt ? `, last at ${s.network.repairedAt}` : ''}`]] as [string, string][])
      : []),
    ['attributes', s.attributes && Object.keys(s.attributes.published).length ? Object.entries(s.attributes.published).map(([k, v]) => `${k}=${v}`).join(', ') : '-'],
    ['watch', s.watch.running ? `running (pid ${s.watch.pid}, updated ${s.watch.updatedAt})` : 'not running (start ecs-gvisor run)'],
    ['lifecycle', lifecycleRow(s.lifecycle)],
    ...(s.metrics ? ([['metrics', s.metrics.serving ? `http://127.0.0.1:${s.metrics.port}/metrics` : `off: ${s.metrics.problem ?? 'run is not serving them'}`]] as [string, string][]) : []),
    ['last error', r.lastError ? `${r.lastError.at} ${r.lastError.code}: ${r.lastError.message}` : '-'],
    ...s.lastErrors.slice(0, 3).map((e) => ['watch error', `${e.at} ${e.component} ${e.code}: ${e.message}`] as [string, string]),
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`;
}

function lifecycleRow(l: StatusReport['lifecycle']): string {
  if (!l.enabled) return 'off (no ECS_GVISOR_LAUNCH_HOOK, ECS_GVISOR_TERMINATE_HOOK or ECS_GVISOR_SPOT_DRAIN)';
  const parts = [`${l.instanceId ?? 'instance ?'} in ${l.group ?? 'no Auto Scaling group'}`, `target ${l.targetState ?? 'unknown'}`];
  const la = l.launch;
  if (la) parts.push(`launch hook ${la.hook}: ${la.phase === 'completed' ? `${la.result} at ${la.completedAt}` : la.phase}${la.heartbeats ? `, ${la.heartbeats} heartbeat(s)` : ''}${la.reason ? ` (${la.reason})` : ''}`);
  if (l.spot) parts.push(`spot notice ${l.spot.action}${l.spot.time ? ` at ${l.spot.time}` : ''}`);
  const d = l.drain;
  if (d) {
    parts.push(`${d.reason} drain ${d.phase}${d.by ? ` (${d.by})` : ''}${d.runningTasks !== undefined ? `, ${d.runningTasks} task(s)` : ''}`);
    if (d.hook) parts.push(`terminate hook ${d.hook.hook}: ${d.hook.phase === 'completed' ? `${d.hook.result} at ${d.hook.completedAt}` : d.hook.phase}`);
  }
  return parts.join('; ');
}
