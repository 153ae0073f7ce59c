/**
 * ECS's view of the registration (DescribeContainerInstances, inside the budget): whether ECS says it is
 * this EC2 instance, its status and connection, and the attributes ECS holds for us.
 */
import { type AwsCaller, BudgetSpent, outcomeOf } from '../../aws/aws-caller.js';
import { type EcsBudget, nextPollMs } from '../../aws/budget.js';
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
    private readonly state: Pick<WatchState, 'obs' | 'ecsUrgent' | 'region' | 'now' | 'recordError'>,
    private readonly opts: { budget: EcsBudget },
  ) {}

  /** Only once registered; the reactor plans the first poll. */
  nextInMs(): number | undefined {
    if (!this.state.obs.metadata) return undefined;
    if (this.budgetRetryMs !== undefined) return this.budgetRetryMs;
    const wrong = this.wrong() || this.state.ecsUrgent;
    return nextPollMs(this.opts.budget, { wrong, throttledStreak: this.throttledStreak }, this.deps.random);
  }

  private wrong(): boolean {
    const o = this.state.obs;
    const e = o.ecs;
    return classify(o).kind !== 'healthy' || e === undefined || e === 'missing' || e.status !== 'ACTIVE' || !e.agentConnected;
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
