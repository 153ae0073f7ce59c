/**
 * Auto Scaling lifecycle (launch gate, warm pools, drains) as a monitor of the watch. Its hooks and
 * drains are lifecycle.ts's own (a pure planner and its runner); what it wants of the agent (held for a
 * warm pool, running again) and of ECS polls goes to the reactor.
 */
import type { AgentSupervisor } from '../../agent/supervisor.js';
import type { Lifecycle } from '../../lifecycle/lifecycle.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';
import { MINUTES } from './context.js';

export class LifecycleMonitor implements Monitor {
  readonly name = 'lifecycle';
  /** IMDS, a hook call and a drain with their retries and budget waits. */
  readonly deadlineMs = 15 * MINUTES;

  constructor(
    private readonly deps: { lifecycle: Lifecycle; supervisor: Pick<AgentSupervisor, 'snapshot'> },
    private readonly state: Pick<WatchState, 'confirmedMetadata' | 'verified' | 'snap' | 'obs' | 'ecsAt'>,
  ) {}

  nextInMs(): number {
    return this.deps.lifecycle.pollMs;
  }

  async run(signal: AbortSignal): Promise<Observation> {
    const { lifecycle, supervisor } = this.deps;
    const { state } = this;
    // Hooks and drains act on the ECS record only once ECS has said it is this instance's.
    const meta = state.confirmedMetadata();
    const r = await lifecycle.tick(
      'watching',
      {
        verified: state.verified.ok,
        agentRunning: state.snap.agent.running,
        metadata: meta,
        ecs: meta ? state.obs.ecs : undefined,
        ecsAt: state.ecsAt,
      },
      signal,
    );
    return {
      kind: 'lifecycle',
      agent: r.agent,
      heldForLifecycle: supervisor.snapshot.holds?.lifecycle !== undefined,
      urgentEcs: r.urgentEcs,
      drainingByUs: lifecycle.record.drain?.by === 'ecs-gvisor',
    };
  }
}
