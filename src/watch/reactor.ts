/**
 * The watch's rules, in one place: what a monitor observed (or an event, or the outcome of a repair) goes
 * in, with the facts the watch holds after recording it; what to do comes out. No I/O and no clock of its
 * own: the same inputs give the same actions. Its one memory is the healing ladder (health.ts), which it
 * is given and advances.
 *
 * The monitors observe and report; WatchState records what they saw (the snapshot `status` reads); the
 * loop carries out the actions (watch-loop.ts). So every "when X, do Y" of the watch is a line here.
 */
import type { AcsLocal } from '../agent/acs-evidence.js';
import { type AcsConfirmation, acsConfirmAt } from '../aws/budget.js';
import type { AgentMetadata, ContainerEvent, ContainerInstanceView } from '../ports.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import { classify, type HealAction, HealingLadder, type HealingOptions, type Observations, type Verdict } from './health.js';
import type { Drift } from './monitors/drift-monitor.js';
import type { WatchSnapshot } from './watch-state.js';

/** The monitors by name (the scheduler's keys). */
export type MonitorName = 'agent' | 'acs' | 'ecs' | 'drift' | 'audit' | 'lifecycle' | 'attributes' | 'heartbeat';

export type Observation =
  /**
   * The agent container, the supervisor's holds and last exit, and introspection's answer (believed only
   * from the agent's own listener). `registered`: a registration new to the watch.
   */
  | {
      kind: 'agent';
      container?: { id: string; runtime: string; status: string; running: boolean; health?: string; pid?: number; startedAt?: string };
      supervisor: { held?: string; stopped?: string; lastExit?: { code: number; decision: string; at: string } };
      metadata?: AgentMetadata;
      registered: boolean;
    }
  /**
   * ECS's answer about the registration `arn`: its view (undefined: ECS does not know the ARN) and this EC2
   * instance's ID (IMDS), to tell whether ECS says it is ours. No `answer`: the call failed.
   */
  | {
      kind: 'ecs';
      arn: string;
      answer?: { view?: ContainerInstanceView; thisInstance?: string };
      lastCall: { outcome: string; at: string };
      callsLastHour: number;
    }
  /**
   * The instance's own evidence of the agent's ACS connection (acs-evidence.ts): its log and the kernel.
   * `since`: when it last changed (ms).
   */
  | { kind: 'acs'; state: AcsLocal; why: string; since: number }
  /** The audit's pass; `stop`: the containers of its violations (stopped when the action says so). */
  | { kind: 'audit'; audit: AuditRecord; wasViolated: boolean; stop: string[] }
  | { kind: 'drift'; drift: Drift }
  /** Under the host lock, the runtime's drift read again: the repair starts. */
  | { kind: 'repairing'; drift: Drift }
  /** A repair's outcome: our network rules back, the runtime proven again (or not); what was held. */
  | {
      kind: 'repaired';
      network?: true;
      runtime?: { ok: true; state: RuntimeState } | { ok: false; reason: string };
      drifted: boolean;
      sandboxHeld: boolean;
    }
  /** The lifecycle's round (its hooks and drains are its own): what it wants of the agent and of ECS polls. */
  | {
      kind: 'lifecycle';
      agent?: { want: 'hold' | 'run'; reason: string };
      heldForLifecycle: boolean;
      urgentEcs: boolean;
      drainingByUs: boolean;
    }
  | { kind: 'event'; event: ContainerEvent | { action: 'docker-back' } | { action: 'proven' }; agentName: string };

/** The audit's pass as the snapshot keeps it (the action and what was stopped are the loop's). */
export type AuditRecord = Omit<WatchSnapshot['audit'], 'action' | 'stopped'>;

export type Action =
  | { kind: 'poll'; monitor: MonitorName; inMs: number }
  /** The first ECS poll of a new registration (jittered, the budget's first-poll rule). */
  | { kind: 'first-ecs-poll' }
  | { kind: 'restart-agent'; reason: string; attempt: number }
  | { kind: 'mark-unhealthy'; reason: string }
  | { kind: 'healing-exhausted'; reason: string }
  | { kind: 'republish' }
  /** Make ECS's attributes (as ECS just reported them) say what the watch knows. */
  | { kind: 'sync-attributes'; current: Record<string, string> }
  | { kind: 'hold-agent'; by: 'sandbox' | 'lifecycle'; reason: string }
  | { kind: 'release-agent'; by: 'sandbox' | 'lifecycle' }
  | { kind: 'stop-containers'; ids: string[] }
  /** Put back what drifted (drift-repair.ts: under the host lock, what drifted read again first). */
  | { kind: 'repair' }
  /** The proof no longer holds (drift found, a repair failed): status and attributes say so. */
  | { kind: 'lapse'; reason: string }
  /** Introspection's answer is stale (the agent restarts): it registers again. */
  | { kind: 'forget-registration-answer' }
  /** The audit inspects this container again (any event about it), and reads why it ended (`died`). */
  | { kind: 'audit-forget'; id?: string; died?: boolean }
  /** ECS is polled at the alert interval while the lifecycle awaits its answer. */
  | { kind: 'ecs-urgent'; urgent: boolean };

/** What the watch holds, as the reactor needs it, after the observation was recorded. */
export interface Facts {
  /** What the healing verdict is drawn from. */
  health: Observations;
  /** The registration ECS confirmed is this instance's. */
  confirmed: boolean;
  /** The ECS poll is at the alert interval (the lifecycle awaits ECS). */
  ecsUrgent: boolean;
  alertPollMs: number;
  auditAction: 'report' | 'stop';
  /** The local evidence of the ACS connection and ECS's answers since it changed; the grace period. */
  acs?: AcsConfirmation;
  acsGraceMs: number;
}

export interface Reaction {
  actions: Action[];
  /** The verdict and the ladder's state, when this observation fed the ladder. */
  healing?: { verdict: Verdict; ladder: HealingLadder['state'] };
}

/** The reactor's memory: the healing ladder. */
export class Reactor {
  private readonly ladder: HealingLadder;

  constructor(opts: HealingOptions) {
    this.ladder = new HealingLadder(opts);
  }

  react(obs: Observation, facts: Facts, now: number): Reaction {
    return react(this.ladder, obs, facts, now);
  }
}

/** After a restart the agent registers again: introspection is asked this soon. */
export const AFTER_RESTART_MS = 5_000;

export function react(ladder: HealingLadder, obs: Observation, f: Facts, now: number): Reaction {
  const heal = (): Reaction => {
    const verdict = classify(f.health);
    const action = ladder.observe(now, verdict);
    return { actions: healActions(action), healing: { verdict, ladder: ladder.state } };
  };
  switch (obs.kind) {
    case 'agent': {
      const h = heal();
      // A new registration: ECS is asked about it (which EC2 instance it is) before anything is done for it.
      return { ...h, actions: [...(obs.registered ? [{ kind: 'first-ecs-poll' } as const] : []), ...h.actions] };
    }
    case 'acs': {
      // A lost connection that lasted the grace period: ECS is asked to confirm it (again while it
      // disagrees, a few times). Asked only once due: evidence that changes back asks nothing.
      const at = f.acs && f.confirmed ? acsConfirmAt(f.acs, f.acsGraceMs) : undefined;
      const h = heal();
      const ask = at !== undefined && now >= at ? [{ kind: 'poll', monitor: 'ecs', inMs: 0 } as const] : [];
      return { ...h, actions: [...ask, ...h.actions] };
    }
    case 'ecs': {
      if (!obs.answer) return { actions: [] }; // the call failed: nothing new to act on
      const actions: Action[] = [];
      // A launch gate or a drain waits on this answer.
      if (f.ecsUrgent) actions.push({ kind: 'poll', monitor: 'lifecycle', inMs: 0 });
      const { view } = obs.answer;
      if (view && f.confirmed) actions.push({ kind: 'sync-attributes', current: view.attributes });
      const h = heal();
      return { ...h, actions: [...actions, ...h.actions] };
    }
    case 'audit': {
      const actions: Action[] = [];
      if (f.auditAction === 'stop' && obs.stop.length) actions.push({ kind: 'stop-containers', ids: obs.stop });
      // The scheduler must know at once: no untrusted task is placed here while a violation stands.
      if (obs.wasViolated !== obs.audit.violations.length > 0) actions.push({ kind: 'republish' });
      return { actions };
    }
    case 'drift':
      return { actions: obs.drift.any ? [{ kind: 'repair' }] : [] };
    case 'repairing':
      // The attributes lapse before the runtime is applied again: that may take minutes (runsc downloaded again).
      return { actions: obs.drift.drifted ? [{ kind: 'lapse', reason: `drift: ${obs.drift.what}` }, { kind: 'republish' }] : [] };
    case 'repaired': {
      const r = obs.runtime;
      if (!r) return { actions: [] };
      if (r.ok)
        return { actions: [{ kind: 'republish' }, ...(obs.sandboxHeld ? [{ kind: 'release-agent', by: 'sandbox' } as const] : [])] };
      return {
        actions: [
          { kind: 'lapse', reason: `not proven: ${r.reason}` },
          { kind: 'hold-agent', by: 'sandbox', reason: `the sandbox is not proven: ${r.reason}` },
        ],
      };
    }
    case 'lifecycle': {
      const actions: Action[] = [];
      if (obs.agent?.want === 'hold' && !obs.heldForLifecycle)
        actions.push({ kind: 'hold-agent', by: 'lifecycle', reason: obs.agent.reason });
      if (obs.agent?.want === 'run' && obs.heldForLifecycle)
        actions.push({ kind: 'release-agent', by: 'lifecycle' }, { kind: 'poll', monitor: 'agent', inMs: 1_000 });
      if (obs.urgentEcs && !f.ecsUrgent && f.health.metadata) actions.push({ kind: 'poll', monitor: 'ecs', inMs: f.alertPollMs });
      if (obs.urgentEcs !== f.ecsUrgent) actions.push({ kind: 'ecs-urgent', urgent: obs.urgentEcs });
      return { actions };
    }
    case 'event':
      return { actions: eventActions(obs.event, obs.agentName) };
  }
}

function healActions(a: HealAction): Action[] {
  switch (a.kind) {
    case 'none':
      return [];
    case 'restart-agent':
      // It registers again: what introspection said is stale, and it is asked again soon.
      return [
        { kind: 'restart-agent', reason: a.reason, attempt: a.attempt },
        { kind: 'forget-registration-answer' },
        { kind: 'poll', monitor: 'agent', inMs: AFTER_RESTART_MS },
      ];
    case 'mark-unhealthy':
      return [{ kind: 'mark-unhealthy', reason: a.reason }];
    case 'exhausted':
      return [{ kind: 'healing-exhausted', reason: a.reason }];
  }
}

function eventActions(ev: ContainerEvent | { action: 'docker-back' } | { action: 'proven' }, agentName: string): Action[] {
  if (ev.action === 'proven') return [{ kind: 'poll', monitor: 'attributes', inMs: 0 }];
  if (ev.action === 'docker-back')
    // dockerd restarted: settings may have changed with it; check everything soon.
    return [
      { kind: 'audit-forget' },
      { kind: 'poll', monitor: 'drift', inMs: 0 },
      { kind: 'poll', monitor: 'audit', inMs: 0 },
      { kind: 'poll', monitor: 'agent', inMs: 0 },
    ];
  const e = ev as ContainerEvent;
  const actions: Action[] = [{ kind: 'audit-forget', id: e.id, died: e.action === 'die' }];
  if (e.name === agentName) {
    if (e.action.startsWith('health_status')) actions.push({ kind: 'poll', monitor: 'agent', inMs: 0 });
    if (e.action === 'start' || e.action === 'die') actions.push({ kind: 'poll', monitor: 'agent', inMs: 1_000 });
  } else if (e.action === 'start' || e.action === 'die') {
    // A new container: audit it now, not at the next round; one gone: its violation with it.
    actions.push({ kind: 'poll', monitor: 'audit', inMs: 500 });
  }
  return actions;
}
