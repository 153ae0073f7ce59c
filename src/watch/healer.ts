/**
 * Turns the verdict on the agent into the healing ladder's actions: restart it, and after too many
 * restarts mark the instance Unhealthy in Auto Scaling (opt-in), through the AWS caller's retries.
 */
import type { AgentSupervisor } from '../agent/supervisor.js';
import type { AwsCaller } from '../aws/aws-caller.js';
import type { Logger } from '../logger.js';
import type { Clock } from '../ports.js';
import { classify, HealingLadder, type HealingOptions } from './health.js';
import type { Scheduler } from './scheduler.js';
import { iso, type WatchState } from './watch-state.js';

export class Healer {
  private readonly ladder: HealingLadder;

  constructor(
    private readonly deps: { aws: AwsCaller; supervisor: AgentSupervisor; clock: Clock; log: Logger; state: WatchState; sched: Scheduler },
    private readonly opts: HealingOptions,
  ) {
    this.ladder = new HealingLadder(opts);
  }

  async heal(signal?: AbortSignal): Promise<void> {
    const { state, clock, log, supervisor, aws } = this.deps;
    const verdict = classify(state.obs);
    state.snap.verdict = verdict;
    const action = this.ladder.observe(clock.now(), verdict);
    const st = this.ladder.state;
    state.snap.healing = {
      wrongSince: st.wrongSince === undefined ? undefined : iso(st.wrongSince),
      restartsInWindow: st.restarts.length,
      markedUnhealthy: st.markedUnhealthy,
    };
    switch (action.kind) {
      case 'none':
        return;
      case 'restart-agent':
        log.warn(
          { reason: action.reason, attempt: action.attempt, maxRestarts: this.opts.maxRestarts },
          'the agent is unhealthy: restarting it',
        );
        await supervisor.restartAgent(action.reason);
        state.obs.metadata = undefined; // it registers again
        this.deps.sched.soon('introspect', 5_000);
        return;
      case 'mark-unhealthy': {
        log.error(
          { reason: action.reason },
          'the agent cannot be healed here: marking the instance Unhealthy in Auto Scaling so it is replaced',
        );
        const instanceId = await aws.instanceId();
        await aws.autoScaling(state.region(), 'SetInstanceHealth', (as) => as.setInstanceHealth(instanceId, 'Unhealthy', true), signal);
        log.error({ instanceId }, 'instance marked Unhealthy in Auto Scaling');
        return;
      }
      case 'exhausted':
        log.error(
          { reason: action.reason },
          'the agent is still unhealthy after the allowed restarts; ECS_GVISOR_SET_INSTANCE_HEALTH is off, so an operator must look',
        );
        return;
    }
  }
}
