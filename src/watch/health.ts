/**
 * Is the agent doing its job? A pure verdict from what the monitors last saw, and the healing ladder that
 * turns a lasting "no" into actions: restart the agent, and after too many restarts in a window, ask
 * Auto Scaling to replace the instance (opt-in).
 */
import type { AgentMetadata, ContainerInstanceView } from '../ports.js';

export interface Observations {
  /** The agent container: undefined when absent. `pid`: its first process (docker-init); `startedAt`: Docker's. */
  agent?: { running: boolean; health?: string; pid?: number; startedAt?: string };
  /** Introspection's answer; undefined while nothing listens (not registered yet). */
  metadata?: AgentMetadata;
  /** ECS's view: undefined = not asked yet or the last call failed; 'missing' = ECS does not know the ARN. */
  ecs?: ContainerInstanceView | 'missing';
}

export type Verdict =
  /** Nothing to heal: the agent is down (the supervisor's job) or asked to stay down. */
  { kind: 'down'; reason: string } | { kind: 'healthy' } | { kind: 'wrong'; reason: string };

const OK_STATUSES = new Set(['ACTIVE', 'DRAINING']);

export function classify(o: Observations): Verdict {
  if (!o.agent) return { kind: 'down', reason: 'no agent container' };
  if (!o.agent.running) return { kind: 'down', reason: 'the agent container is not running' };
  if (o.agent.health === 'unhealthy') return { kind: 'wrong', reason: 'Docker reports the agent unhealthy' };
  if (!o.metadata) return { kind: 'wrong', reason: 'the agent has not registered (introspection does not answer)' };
  if (o.ecs === 'missing') return { kind: 'wrong', reason: 'ECS does not know this container instance' };
  if (o.ecs) {
    if (!OK_STATUSES.has(o.ecs.status)) return { kind: 'wrong', reason: `ECS reports the container instance ${o.ecs.status}` };
    if (!o.ecs.agentConnected) return { kind: 'wrong', reason: 'ECS reports the agent disconnected' };
    if (o.ecs.healthStatus === 'IMPAIRED') return { kind: 'wrong', reason: 'ECS reports the container instance IMPAIRED' };
  }
  return { kind: 'healthy' };
}

export interface HealingOptions {
  /** How long "wrong" must last before the agent is restarted. */
  unhealthyMs: number;
  /** Restarts allowed within `windowMs` before escalating. */
  maxRestarts: number;
  windowMs: number;
  /** Escalate to Auto Scaling SetInstanceHealth Unhealthy (off by default). */
  setInstanceHealth: boolean;
}

export type HealAction =
  | { kind: 'none' }
  | { kind: 'restart-agent'; reason: string; attempt: number }
  | { kind: 'mark-unhealthy'; reason: string }
  /** Out of restarts and escalation is off: reported once, then left to the operator. */
  | { kind: 'exhausted'; reason: string };

export interface HealingState {
  wrongSince?: number;
  reason?: string;
  restarts: number[];
  markedUnhealthy: boolean;
  exhaustedReported: boolean;
}

export class HealingLadder {
  private st: HealingState = { restarts: [], markedUnhealthy: false, exhaustedReported: false };

  constructor(private readonly opts: HealingOptions) {}

  get state(): Readonly<HealingState> {
    return this.st;
  }

  /** Feed the latest verdict; returns what to do now (at most one action per call). */
  observe(now: number, v: Verdict): HealAction {
    const st = this.st;
    st.restarts = st.restarts.filter((t) => t > now - this.opts.windowMs);
    if (v.kind !== 'wrong') {
      if (v.kind === 'healthy') {
        st.wrongSince = undefined;
        st.reason = undefined;
        st.exhaustedReported = false;
      }
      return { kind: 'none' };
    }
    st.reason = v.reason;
    if (st.wrongSince === undefined) st.wrongSince = now;
    if (now - st.wrongSince < this.opts.unhealthyMs) return { kind: 'none' };
    const reason = `${v.reason} for ${Math.round((now - st.wrongSince) / 1000)} s`;
    if (st.restarts.length < this.opts.maxRestarts) {
      st.restarts.push(now);
      st.wrongSince = now; // the restarted agent gets the full threshold to recover
      return { kind: 'restart-agent', reason, attempt: st.restarts.length };
    }
    if (this.opts.setInstanceHealth && !st.markedUnhealthy) {
      st.markedUnhealthy = true;
      return {
        kind: 'mark-unhealthy',
        reason: `${reason}, after ${st.restarts.length} agent restarts within ${Math.round(this.opts.windowMs / 1000)} s`,
      };
    }
    if (!st.exhaustedReported && !st.markedUnhealthy) {
      st.exhaustedReported = true;
      return {
        kind: 'exhausted',
        reason: `${reason}, after ${st.restarts.length} agent restarts within ${Math.round(this.opts.windowMs / 1000)} s`,
      };
    }
    return { kind: 'none' };
  }
}
