/** Auto Scaling lifecycle (launch gate, warm pools, drains) as a monitor of the watch. */
import type { AgentSupervisor } from '../../agent/supervisor.js';
import type { Lifecycle } from '../../lifecycle/lifecycle.js';
import type { Monitor } from '../scheduler.js';
import { MINUTES, type WatchContext } from './context.js';
import type { EcsMonitor } from './ecs-monitor.js';

export class LifecycleMonitor implements Monitor {
  readonly name = 'lifecycle';
  /** IMDS, a hook call and a drain with their retries and budget waits, a hold or release of the agent. */
  readonly deadlineMs = 15 * MINUTES;

  constructor(
    private readonly deps: { lifecycle: Lifecycle; supervisor: AgentSupervisor; ecs: EcsMonitor },
    private readonly ctx: WatchContext,
    private readonly opts: { alertPollMs: number },
  ) {}

  nextInMs(): number {
    return this.deps.lifecycle.pollMs;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { lifecycle, supervisor, ecs } = this.deps;
    const { state, sched } = this.ctx;
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
    const heldForLifecycle = supervisor.snapshot.holds?.lifecycle !== undefined;
    if (r.agent?.want === 'hold' && !heldForLifecycle) await supervisor.hold(r.agent.reason, 'lifecycle');
    if (r.agent?.want === 'run' && heldForLifecycle) {
      await supervisor.release('lifecycle');
      sched.soon('introspect', 1_000);
    }
    // We set DRAINING ourselves: say so now rather than ACTIVE until the next poll.
    const drain = lifecycle.record.drain;
    const view = state.obs.ecs;
    if (drain?.by === 'ecs-gvisor' && view && view !== 'missing' && view.status === 'ACTIVE') {
      state.obs.ecs = { ...view, status: 'DRAINING' };
      state.snap.registration.status = 'DRAINING';
    }
    if (r.urgentEcs && !ecs.urgent && state.obs.metadata) sched.soon('ecs', this.opts.alertPollMs);
    ecs.urgent = r.urgentEcs;
  }
}
