/**
 * Auto Scaling lifecycle from the instance, decided purely. Given what IMDS says (the target lifecycle
 * state, a spot notice) and what the watch knows (sandbox verified, agent registered, ECS's view), and the
 * record of what was done so far, decide the external effects: heartbeat or complete a hook's action,
 * drain the container instance, keep the agent down in a warm pool or start it. The runner applies the
 * effects and folds each outcome back with `afterEffect`.
 */
import type { LifecycleResult } from '../ports.js';

export interface HookAction {
  hook: string;
  /** waiting: we owe Auto Scaling a completion; not-pending: it had no such action for this instance. */
  phase: 'waiting' | 'completed' | 'not-pending';
  result?: LifecycleResult;
  reason?: string;
  heartbeats: number;
  nextHeartbeatAt?: string;
  /** After a failed completion: not again before this. */
  retryAt?: string;
  completedAt?: string;
  /** When we first saw the action (terminate): only an ECS view taken after it may complete it. */
  since?: string;
  /** Terminate after a finished drain: completed once ECS, asked after the action came, lists no task. */
  awaitingEcs?: boolean;
}

export interface LaunchRecord extends HookAction {
  /** The target the action is for: InService, Warmed:Stopped, … ('unknown' until IMDS says). */
  target: string;
  since: string;
}

export interface DrainRecord {
  reason: 'terminate' | 'spot';
  phase: 'draining' | 'drained' | 'timed-out' | 'nothing-to-drain';
  /** Who set DRAINING: we did, or the instance already was (ECS managed draining, the agent's spot draining, an operator). */
  by?: 'ecs-gvisor' | 'already-draining';
  since: string;
  runningTasks?: number;
  finishedAt?: string;
  /** The terminate hook's action (target state Terminated, hook configured, in a group). */
  hook?: HookAction;
}

/** What `lifecycle.json` holds for `status` and for a restarted `run` (keyed by instance). */
export interface LifecycleRecord {
  instanceId?: string;
  group?: string;
  targetState?: string;
  spot?: { action: string; time?: string; seenAt: string };
  launch?: LaunchRecord;
  drain?: DrainRecord;
}

export interface LifecycleView {
  now: number;
  /** bootstrap: before the watch (heartbeats only); watching: the watch's view is complete. */
  stage: 'bootstrap' | 'watching';
  /** IMDS target-lifecycle-state; undefined when it answered 404 (not yet). */
  target?: string;
  spot?: { action: string; time?: string };
  verified: boolean;
  registered: boolean;
  /**
   * The agent container runs: with no confirmed registration (introspection not answering, or answered
   * by something else on its port) it may still hold tasks, so a termination waits for one.
   */
  agentRunning?: boolean;
  /** ECS's latest view of the container instance since it registered, and when it was taken. */
  ecs?: { status: string; agentConnected: boolean; runningTasksCount: number; pendingTasksCount?: number; at: number } | 'missing';
  /** The instance belongs to an Auto Scaling group (its hooks' actions can be completed). */
  inGroup: boolean;
}

export interface LifecyclePolicy {
  launchHook?: string;
  terminateHook?: string;
  spotDrain: boolean;
  heartbeatMs: number;
  launchTimeoutMs: number;
  drainTimeoutMs: number;
}

export type HookRole = 'launch' | 'terminate';

export type Effect =
  | { kind: 'heartbeat'; role: HookRole; hook: string }
  | { kind: 'complete'; role: HookRole; hook: string; result: LifecycleResult; reason: string }
  | { kind: 'drain'; reason: DrainRecord['reason'] }
  | { kind: 'agent'; want: 'hold' | 'run'; reason: string };

export interface Note {
  level: 'info' | 'warn';
  msg: string;
  fields?: Record<string, unknown>;
}

export interface LifecyclePlan {
  record: LifecycleRecord;
  effects: Effect[];
  notes: Note[];
}

/** A failed heartbeat or completion is tried again this soon (never sooner: a refusal is not hammered). */
export const RETRY_MS = 30_000;

export function isWarm(target: string | undefined): boolean {
  return target?.startsWith('Warmed:') === true;
}

/** Heartbeats at a third of the hook's timeout: two may fail before the action times out. */
export function heartbeatIntervalMs(timeoutSeconds: number): number {
  return Math.max(10_000, Math.floor((timeoutSeconds * 1000) / 3));
}

export function planLifecycle(rec: LifecycleRecord, v: LifecycleView, p: LifecyclePolicy): LifecyclePlan {
  const next: LifecycleRecord = structuredClone(rec);
  const effects: Effect[] = [];
  const notes: Note[] = [];
  const now = v.now;
  if (v.target !== undefined && v.target !== next.targetState) {
    notes.push({ level: 'info', msg: 'target lifecycle state changed', fields: { from: next.targetState, to: v.target } });
    next.targetState = v.target;
  }
  const target = next.targetState;
  if (v.spot && !next.spot) {
    next.spot = { ...v.spot, seenAt: iso(now) };
    // Not `time`: that is the log line's own key, which the notice's would overwrite.
    notes.push({
      level: 'warn',
      msg: 'spot interruption notice',
      fields: { action: v.spot.action, noticeTime: v.spot.time, drain: p.spotDrain },
    });
  }
  const watching = v.stage === 'watching';

  // Warm pools: the agent must not register while the instance waits in the pool.
  if (watching && target !== undefined && target !== 'Terminated') {
    effects.push(
      isWarm(target)
        ? { kind: 'agent', want: 'hold', reason: `the instance is in a warm pool (${target}): the agent starts when it goes InService` }
        : { kind: 'agent', want: 'run', reason: `target lifecycle state ${target}` },
    );
  }

  // Launch: continue once proven (and, for InService, registered and connected); abandon after the timeout.
  if (p.launchHook && v.inGroup && target !== 'Terminated') {
    const key = target ?? 'unknown';
    let l = next.launch;
    if (!l || (l.target !== key && l.target !== 'unknown' && key !== 'unknown')) {
      l = next.launch = newLaunch(p.launchHook, key, now);
    } else if (l.target === 'unknown') {
      l.target = key;
    }
    if (l.phase === 'waiting' && !before(now, l.retryAt)) {
      const done = watching ? launchVerdict(l, target, v, p) : undefined;
      if (done) effects.push({ kind: 'complete', role: 'launch', hook: l.hook, ...done });
      else if (!before(now, l.nextHeartbeatAt)) effects.push({ kind: 'heartbeat', role: 'launch', hook: l.hook });
    }
  }

  // Terminate and spot: drain, wait for the tasks to go, then complete the terminate hook.
  const trigger = target === 'Terminated' ? 'terminate' : p.spotDrain && next.spot ? 'spot' : undefined;
  if (watching && trigger) {
    let d = next.drain;
    if (!d) {
      // Unconfirmed while the agent runs is not "never registered": drained once confirmed, else at the timeout.
      const drain = v.registered || v.agentRunning === true;
      d = next.drain = drain
        ? { reason: trigger, phase: 'draining', since: iso(now) }
        : { reason: trigger, phase: 'nothing-to-drain', since: iso(now), finishedAt: iso(now) };
      notes.push({
        level: 'warn',
        msg: v.registered
          ? `${trigger === 'spot' ? 'spot interruption' : 'termination'}: draining the container instance`
          : drain
            ? `${trigger === 'spot' ? 'spot interruption' : 'termination'}: the agent runs but its registration is not confirmed; draining once it is (or completing at ECS_GVISOR_DRAIN_TIMEOUT_SECONDS)`
            : 'termination: the agent never registered, nothing to drain',
        fields: { reason: trigger },
      });
    }
    if (d.phase === 'draining') {
      const ecs = v.ecs !== undefined && v.ecs !== 'missing' && v.ecs.at >= Date.parse(d.since) ? v.ecs : undefined;
      if (ecs) d.runningTasks = tasksOn(ecs);
      if (!d.by) {
        effects.push({ kind: 'drain', reason: d.reason });
      } else if ((ecs && tasksOn(ecs) === 0) || v.ecs === 'missing') {
        Object.assign(d, { phase: 'drained', finishedAt: iso(now), runningTasks: 0 });
        notes.push({
          level: 'info',
          msg: 'drained: no tasks left on the container instance',
          fields: { seconds: secondsSince(d.since, now) },
        });
      }
      if (d.phase === 'draining' && now - Date.parse(d.since) >= p.drainTimeoutMs) {
        Object.assign(d, { phase: 'timed-out', finishedAt: iso(now) });
        notes.push({
          level: 'warn',
          msg: 'the drain took longer than ECS_GVISOR_DRAIN_TIMEOUT_SECONDS: completing anyway, tasks still running are stopped with the instance',
          fields: { runningTasks: d.runningTasks, seconds: secondsSince(d.since, now) },
        });
      }
    }
    if (target === 'Terminated' && p.terminateHook && v.inGroup) {
      d.hook ??= { hook: p.terminateHook, phase: 'waiting', heartbeats: 0, since: iso(now) };
      const h = d.hook;
      if (h.phase === 'waiting' && d.phase === 'drained') {
        // Drained before this action came (a spot drain, an earlier run): ECS's word now, not then.
        const asked = Date.parse(h.since ?? d.finishedAt ?? d.since);
        const fresh = v.ecs !== undefined && v.ecs !== 'missing' && v.ecs.at >= asked ? v.ecs : undefined;
        if (fresh && tasksOn(fresh) > 0) {
          Object.assign(d, { phase: 'draining', runningTasks: tasksOn(fresh), finishedAt: undefined });
          notes.push({
            level: 'warn',
            msg: 'termination: ECS lists tasks on the drained container instance again; waiting for them to go',
            fields: { tasks: tasksOn(fresh) },
          });
        } else if (!fresh && v.ecs !== 'missing') {
          h.awaitingEcs = true;
        } else {
          h.awaitingEcs = undefined;
        }
      }
      if (h.phase === 'waiting' && !before(now, h.retryAt)) {
        if (d.phase !== 'draining' && !h.awaitingEcs)
          effects.push({ kind: 'complete', role: 'terminate', hook: h.hook, result: 'CONTINUE', reason: drainSummary(d) });
        else if (!before(now, h.nextHeartbeatAt)) effects.push({ kind: 'heartbeat', role: 'terminate', hook: h.hook });
      }
    }
  }

  return { record: next, effects, notes };
}

/** ECS's view is awaited (a launch gate or a drain): the watch polls at the alert interval, not the steady one. */
export function awaitsEcs(rec: LifecycleRecord): boolean {
  const t = rec.targetState;
  return (
    (rec.launch?.phase === 'waiting' && !isWarm(t) && t !== 'Terminated') ||
    rec.drain?.phase === 'draining' ||
    rec.drain?.hook?.awaitingEcs === true
  );
}

/** Tasks on the container instance as ECS counts them: running and pending (placed, not started yet). */
function tasksOn(ecs: { runningTasksCount: number; pendingTasksCount?: number }): number {
  return ecs.runningTasksCount + (ecs.pendingTasksCount ?? 0);
}

/** A launch action Auto Scaling is waiting on, from now. */
export function newLaunch(hook: string, target: string, now: number): LaunchRecord {
  return { hook, target, phase: 'waiting', since: iso(now), heartbeats: 0 };
}

/** CONTINUE when ready, ABANDON after the timeout, else nothing yet. */
function launchVerdict(
  l: LaunchRecord,
  target: string | undefined,
  v: LifecycleView,
  p: LifecyclePolicy,
): { result: LifecycleResult; reason: string } | undefined {
  const warm = isWarm(target);
  const missing = launchMissing(v, warm);
  if (!missing) {
    return {
      result: 'CONTINUE',
      reason: warm
        ? `sandbox verified; ${target}: the agent starts when the instance goes InService`
        : 'sandbox verified, agent registered, ECS reports the instance ACTIVE and connected',
    };
  }
  const waited = v.now - Date.parse(l.since);
  if (waited >= p.launchTimeoutMs)
    return { result: 'ABANDON', reason: `${missing} after ${Math.round(waited / 1000)} s (ECS_GVISOR_LAUNCH_TIMEOUT_SECONDS)` };
  return undefined;
}

function launchMissing(v: LifecycleView, warm: boolean): string | undefined {
  if (!v.verified) return 'the sandbox is not verified';
  if (warm) return undefined;
  if (!v.registered) return 'the agent has not registered';
  if (v.ecs === undefined) return 'ECS has not reported the container instance yet';
  if (v.ecs === 'missing') return 'ECS does not know the container instance';
  if (v.ecs.status !== 'ACTIVE') return `ECS reports the container instance ${v.ecs.status}`;
  if (!v.ecs.agentConnected) return 'ECS reports the agent disconnected';
  return undefined;
}

function drainSummary(d: DrainRecord): string {
  switch (d.phase) {
    case 'drained':
      return `drained (${d.by === 'already-draining' ? 'the instance was already DRAINING' : 'set DRAINING by ecs-gvisor'}), no tasks left`;
    case 'timed-out':
      return `drain timed out with ${d.runningTasks ?? '?'} task(s) still running`;
    case 'nothing-to-drain':
      return 'the agent never registered: nothing to drain';
    default:
      return 'draining';
  }
}

export type EffectOutcome =
  | { kind: 'ok'; drainedBy?: DrainRecord['by']; runningTasks?: number; missing?: boolean }
  | { kind: 'not-pending'; detail: string }
  | { kind: 'failed' };

/** Fold an effect's outcome into the record. */
export function afterEffect(rec: LifecycleRecord, e: Effect, out: EffectOutcome, now: number, p: LifecyclePolicy): LifecycleRecord {
  const next = structuredClone(rec);
  if (e.kind === 'heartbeat' || e.kind === 'complete') {
    const h = e.role === 'launch' ? next.launch : next.drain?.hook;
    if (!h) return next;
    if (e.kind === 'heartbeat') {
      if (out.kind === 'ok') h.heartbeats++;
      // A refused heartbeat is not fatal: the completion decides whether an action was pending.
      h.nextHeartbeatAt = iso(now + (out.kind === 'failed' ? Math.min(p.heartbeatMs, RETRY_MS) : p.heartbeatMs));
    } else if (out.kind === 'ok') {
      Object.assign(h, { phase: 'completed', result: e.result, reason: e.reason, completedAt: iso(now), retryAt: undefined });
    } else if (out.kind === 'not-pending') {
      Object.assign(h, { phase: 'not-pending', reason: out.detail, completedAt: iso(now), retryAt: undefined });
    } else {
      h.retryAt = iso(now + RETRY_MS);
    }
  } else if (e.kind === 'drain' && next.drain && out.kind === 'ok') {
    const d = next.drain;
    if (out.missing) Object.assign(d, { phase: 'nothing-to-drain', finishedAt: iso(now) });
    else {
      d.by = out.drainedBy;
      d.runningTasks = out.runningTasks;
      if (out.runningTasks === 0) Object.assign(d, { phase: 'drained', finishedAt: iso(now) });
    }
  }
  return next;
}

function before(now: number, at: string | undefined): boolean {
  return at !== undefined && now < Date.parse(at);
}

function secondsSince(at: string, now: number): number {
  return Math.round((now - Date.parse(at)) / 1000);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
