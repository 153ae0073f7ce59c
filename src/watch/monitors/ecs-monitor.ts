/**
 * ECS's view of the registration (DescribeContainerInstances, inside the budget): whether ECS says it
 * is this EC2 instance, its status and connection, and the attributes we publish on it.
 */
import { type AwsCaller, BudgetSpent, outcomeOf } from '../../aws/aws-caller.js';
import { type EcsBudget, nextPollMs } from '../../aws/budget.js';
import { EcsGvisorError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { ContainerInstanceView } from '../../ports.js';
import { classify } from '../health.js';
import type { WatchMetrics } from '../metrics.js';
import type { Monitor } from '../scheduler.js';
import { SUPERVISOR_STALL_MS } from '../watchdog.js';
import { MINUTES, type WatchContext } from './context.js';

export class EcsMonitor implements Monitor {
  readonly name = 'ecs';
  /** Three calls with their retries and budget waits, and a restart by the supervisor when healing. */
  readonly deadlineMs = SUPERVISOR_STALL_MS + 10 * MINUTES;
  private throttledStreak = 0;
  /** The ceiling was reached: ask again once a slot frees. */
  private budgetRetryMs?: number;
  /** The lifecycle awaits ECS's view (launch gate, drain): poll at the alert interval. */
  urgent = false;

  constructor(
    private readonly deps: { aws: AwsCaller; metrics: WatchMetrics; log: Logger; random: () => number },
    private readonly ctx: WatchContext,
    private readonly opts: { budget: EcsBudget },
  ) {}

  /** Only once registered; the agent monitor plans the first poll. */
  nextInMs(): number | undefined {
    if (!this.ctx.state.obs.metadata) return undefined;
    if (this.budgetRetryMs !== undefined) return this.budgetRetryMs;
    return nextPollMs(this.opts.budget, { wrong: this.wrong() || this.urgent, throttledStreak: this.throttledStreak }, this.deps.random);
  }

  private wrong(): boolean {
    const o = this.ctx.state.obs;
    const e = o.ecs;
    return classify(o).kind !== 'healthy' || e === undefined || e === 'missing' || e.status !== 'ACTIVE' || !e.agentConnected;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { aws, metrics } = this.deps;
    const { state, sched, attributes, healer } = this.ctx;
    this.budgetRetryMs = undefined;
    const meta = state.obs.metadata;
    if (!meta) return;
    const r = state.snap.registration;
    let view: ContainerInstanceView | undefined;
    try {
      view = await aws.ecs(
        state.region(),
        'DescribeContainerInstances',
        (ecs) => ecs.describeContainerInstance(meta.cluster, meta.containerInstanceArn),
        signal,
      );
      this.throttledStreak = 0;
      r.lastCall = { outcome: 'ok', at: state.now() };
    } catch (err) {
      if (err instanceof BudgetSpent) {
        this.budgetRetryMs = err.retryInMs;
        throw err;
      }
      const outcome = outcomeOf(err) ?? 'error';
      if (outcome === 'throttled') this.throttledStreak++;
      r.lastCall = { outcome, at: state.now() };
      throw err;
    } finally {
      r.callsLastHour = aws.callsLastHour();
    }
    // An ARN that ECS says is another EC2 instance is not our registration, whatever introspection said.
    const mine = view ? await this.confirmIdentity(meta.containerInstanceArn, view) : false;
    r.identity = view ? (mine ? 'confirmed' : 'mismatch') : undefined;
    r.ec2InstanceId = view?.ec2InstanceId;
    state.obs.ecs = view && mine ? view : 'missing';
    state.ecsAt = state.ms();
    if (this.urgent) sched.soon('lifecycle', 0); // a launch gate or a drain waits on this answer
    Object.assign(r, {
      status: view?.status,
      agentConnected: view?.agentConnected,
      healthStatus: view?.healthStatus,
      runningTasksCount: view?.runningTasksCount,
      missing: view ? undefined : true,
      checkedAt: state.now(),
    });
    metrics.agentConnected.set(view?.agentConnected && mine ? 1 : 0);
    if (view && mine) await attributes.sync(view.attributes, signal);
    await healer.heal(signal);
  }

  /** Whether ECS says `arn` is this EC2 instance; a mismatch is logged once, with both IDs. */
  private async confirmIdentity(arn: string, view: ContainerInstanceView): Promise<boolean> {
    const { state } = this.ctx;
    const own = await this.deps.aws.instanceId();
    const ok = view.ec2InstanceId === own;
    if (!ok && !(state.identity?.arn === arn && !state.identity.ok)) {
      this.deps.log.error(
        { containerInstanceArn: arn, ecsSaysEc2Instance: view.ec2InstanceId ?? '(none)', thisEc2Instance: own },
        'ECS says the container instance introspection named is another EC2 instance: no attributes, drain or lifecycle action for it',
      );
      state.recordError(
        'ecs',
        new EcsGvisorError('AWS_API', `ECS says ${arn} is EC2 instance ${view.ec2InstanceId ?? '(none)'}, not this instance ${own}.`),
      );
    }
    state.identity = { arn, ok };
    return ok;
  }
}
