/**
 * ECS's view of the registration (DescribeContainerInstances, inside the budget): whether ECS says it is
 * this EC2 instance, its status and connection, and the attributes ECS holds for us. How often it asks
 * (budget.ts): on the heartbeat while the agent's ACS connection is seen on the instance, at the alert
 * interval while ECS reports something that evidence does not explain, at the steady rate without it;
 * the reactor brings it forward at registration and to confirm a lost connection.
 */
import { type AwsCaller, BudgetSpent, outcomeOf } from '../../aws/aws-caller.js';
import { type EcsBudget, heartbeatMs, nextPollMs } from '../../aws/budget.js';
import type { ContainerInstanceView } from '../../ports.js';
import { classify } from '../health.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';
import { MINUTES } from './context.js';

export class EcsMonitor implements Monitor {
  readonly name = 'ecs';
  /** One call with its retries and budget waits. */
  readonly deadlineMs = 10 * MINUTES;
  private throttledStreak = 0;
  /** The ceiling was reached: ask again once a slot frees. */
  private budgetRetryMs?: number;

  constructor(
    private readonly deps: { aws: AwsCaller; random: () => number },
    private readonly state: Pick<WatchState, 'obs' | 'ecsUrgent' | 'acs' | 'region' | 'now' | 'recordError'>,
    private readonly opts: { budget: EcsBudget },
  ) {}

  /** Only once registered; the reactor plans the first poll. */
  nextInMs(): number | undefined {
    if (!this.state.obs.metadata) return undefined;
    if (this.budgetRetryMs !== undefined) return this.budgetRetryMs;
    const { budget } = this.opts;
    const local = this.state.acs?.state ?? 'unknown';
    const wrong = (local === 'unknown' ? this.wrong() : this.ecsWrong(local)) || this.state.ecsUrgent;
    if (local !== 'unknown' && !wrong && this.throttledStreak === 0) return heartbeatMs(budget, this.deps.random);
    return nextPollMs(budget, { wrong, throttledStreak: this.throttledStreak }, this.deps.random);
  }

  /** Without local evidence: anything wrong is watched at the alert interval. */
  private wrong(): boolean {
    const o = this.state.obs;
    const e = o.ecs;
    return classify(o).kind !== 'healthy' || e === undefined || e === 'missing' || e.status !== 'ACTIVE' || !e.agentConnected;
  }

  /**
   * With it: only what ECS reports and the instance cannot see (not ACTIVE, impaired, unknown, no answer),
   * or a lost connection the instance does not see; one it sees is watched here, and its end believed.
   */
  private ecsWrong(local: 'connected' | 'disconnected'): boolean {
    const e = this.state.obs.ecs;
    if (e === undefined || e === 'missing' || e.status !== 'ACTIVE' || e.healthStatus === 'IMPAIRED') return true;
    return !e.agentConnected && local === 'connected';
  }

  async run(signal: AbortSignal): Promise<Observation | undefined> {
    const { aws } = this.deps;
    const { state } = this;
    this.budgetRetryMs = undefined;
    const meta = state.obs.metadata;
    if (!meta) return undefined;
    let view: ContainerInstanceView | undefined;
    try {
      view = await aws.ecs(
        state.region(),
        'DescribeContainerInstances',
        (ecs) => ecs.describeContainerInstance(meta.cluster, meta.containerInstanceArn),
        signal,
      );
      this.throttledStreak = 0;
    } catch (err) {
      if (err instanceof BudgetSpent) {
        this.budgetRetryMs = err.retryInMs;
        throw err;
      }
      const outcome = outcomeOf(err) ?? 'error';
      if (outcome === 'throttled') this.throttledStreak++;
      state.recordError('ecs', err);
      return { kind: 'ecs', arn: meta.containerInstanceArn, lastCall: { outcome, at: state.now() }, callsLastHour: aws.callsLastHour() };
    }
    // An ARN that ECS says is another EC2 instance is not our registration, whatever introspection said.
    const own = view ? await aws.instanceId() : undefined;
    return {
      kind: 'ecs',
      arn: meta.containerInstanceArn,
      answer: { view, thisInstance: own },
      lastCall: { outcome: 'ok', at: state.now() },
      callsLastHour: aws.callsLastHour(),
    };
  }
}
