/** The one-line summary and the health verdict of a watch snapshot (status, systemd's STATUS=). */
import type { LifecycleRecord } from '../lifecycle/lifecycle-plan.js';
import type { WatchSnapshot } from '../watch/watch-state.js';

export function watchSummary(
  s: Pick<WatchSnapshot, 'runtime' | 'agent' | 'registration' | 'audit' | 'verdict'>,
  lc: LifecycleRecord | undefined,
): { summary: string; healthy: boolean } {
  const r = s.registration;
  const parts = [
    s.runtime.verified
      ? `sandbox verified (runsc ${s.runtime.runscVersion ?? '?'})`
      : `sandbox NOT verified${s.runtime.lapsed ? ` (${s.runtime.lapsed})` : ''}`,
    s.agent.held ? 'agent held stopped' : s.agent.running ? 'agent running' : `agent ${s.agent.stopped ?? s.agent.state ?? 'absent'}`,
    r.containerInstanceArn
      ? `registered in ${r.cluster}${r.status ? `, ${r.status}, ${r.agentConnected ? 'connected' : 'disconnected'}` : ''}`
      : 'not registered',
    `audit ${s.audit.violations.length} violation(s) in ${s.audit.checked}`,
  ];
  if (lc?.drain)
    parts.push(
      `${lc.drain.reason} drain ${lc.drain.phase}${lc.drain.runningTasks !== undefined ? ` (${lc.drain.runningTasks} task(s))` : ''}`,
    );
  else if (lc?.launch)
    parts.push(
      `launch ${lc.launch.phase === 'completed' ? lc.launch.result : lc.launch.phase}${lc.targetState ? ` (${lc.targetState})` : ''}`,
    );
  return { summary: parts.join('; '), healthy: s.runtime.verified && s.verdict.kind === 'healthy' && s.audit.violations.length === 0 };
}
