/**
 * The container instance's attributes say what the watch knows about the sandbox: published when they
 * differ from ECS's (no call when they already agree). A withdrawal of `verified` goes at once (with calls
 * of its own once routine ones have spent the hourly ceiling) and is retried until ECS has it; `verified`
 * again after a withdrawal waits out a hold that grows while the verdict flaps (attributes.ts), and then
 * only the latest verdict is sent. While ECS holds something else than we know, the snapshot says so,
 * and since when.
 */
import { type AwsCaller, BudgetSpent } from '../aws/aws-caller.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { EcsPort } from '../ports.js';
import {
  desiredAttributes,
  isEmptyPlan,
  ourAttributes,
  planAttributes,
  restoreHoldMs,
  SANDBOX_ATTRIBUTE,
  withdrawRetryMs,
  withdraws,
} from './attributes.js';
import { MINUTES } from './monitors/context.js';
import type { Monitor, Scheduler } from './scheduler.js';
import type { WatchState } from './watch-state.js';

const HOUR = 60 * MINUTES;

export class AttributePublisher implements Monitor {
  readonly name = 'attributes';
  /** Two calls with their retries. */
  readonly deadlineMs = 5 * MINUTES;
  /** When each withdrawal of the last hour reached ECS. */
  private withdrawals: number[] = [];
  /** Attempts in a row that ECS did not take. */
  private failures = 0;
  /** A publish is pending: try again in this long (a hold, a retry, the budget). */
  private retryInMs?: number;

  constructor(
    private readonly deps: { aws: AwsCaller; log: Logger; state: WatchState; sched: Scheduler },
    private readonly opts: { publish: boolean; alertPollMs: number },
  ) {}

  nextInMs(): number | undefined {
    return this.retryInMs;
  }

  /** A round of its own: the pending publish, when its hold or retry is over. Observes nothing. */
  async run(): Promise<undefined> {
    await this.republish();
    return undefined;
  }

  /**
   * Make ECS's attributes (`current`, as ECS reported them or as we last published them) say what we
   * know; only for a registration ECS confirmed. Throws when ECS did not take it (a retry is planned).
   */
  async sync(current: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const { state } = this.deps;
    const meta = state.confirmedMetadata();
    if (!this.opts.publish || !meta) return;
    const v = state.verified;
    const want = desiredAttributes(v.ok, v.version, state.snap.audit.violations.length, v.networks);
    const plan = planAttributes(want, current);
    const now = state.ms();
    this.retryInMs = undefined;
    if (isEmptyPlan(plan)) {
      this.published(want);
      return;
    }
    const truth = withdraws(want, current);
    this.withdrawals = this.withdrawals.filter((t) => t > now - HOUR);
    const holdMs = truth ? 0 : (this.withdrawals.at(-1) ?? 0) + restoreHoldMs(this.withdrawals.length) - now;
    if (holdMs > 0) {
      state.snap.attributes.published = ourAttributes(current);
      this.stale(want, `held ${Math.ceil(holdMs / 1000)} s more: ${this.withdrawals.length} withdrawals in the last hour`, true);
      this.plan(holdMs);
      return;
    }
    const region = state.region();
    // No wait for a budget slot inside the loop: BudgetSpent says when, and the retry is planned.
    const call = (operation: string, fn: (ecs: EcsPort) => Promise<void>) =>
      this.deps.aws.ecs(region, operation, fn, signal, 0, truth ? 'truth' : 'routine');
    const { cluster, containerInstanceArn: arn } = meta;
    try {
      if (Object.keys(plan.put).length) await call('PutAttributes', (ecs) => ecs.putAttributes(cluster, arn, plan.put));
      if (plan.remove.length) await call('DeleteAttributes', (ecs) => ecs.deleteAttributes(cluster, arn, plan.remove));
    } catch (err) {
      this.failures++;
      this.stale(want, messageOf(err));
      this.plan(err instanceof BudgetSpent ? err.retryInMs : withdrawRetryMs(this.failures));
      throw err;
    }
    if (truth) this.withdrawals.push(now);
    this.failures = 0;
    this.published(want);
    this.deps.log.info({ attributes: want, removed: plan.remove }, 'container instance attributes published');
  }

  /** The verification or the audit changed: publish now rather than at the next poll. */
  async republish(): Promise<void> {
    const { state } = this.deps;
    if (!state.confirmedMetadata() || !this.opts.publish) {
      this.retryInMs = undefined; // nothing to publish to: the next confirmed poll syncs
      return;
    }
    const known = state.obs.ecs && state.obs.ecs !== 'missing' ? state.obs.ecs.attributes : {};
    // What we published last is what ECS holds unless someone changed it (the next poll repairs that).
    const current = { ...known, ...state.snap.attributes.published };
    try {
      await this.sync(current);
    } catch (err) {
      state.recordError('attributes', err);
    }
    const ecs = state.obs.ecs;
    if (ecs && ecs !== 'missing') state.obs.ecs = { ...ecs, attributes: { ...ecs.attributes, ...state.snap.attributes.published } };
  }

  private published(want: Record<string, string>): void {
    const { state, log } = this.deps;
    const was = state.snap.attributes.stale;
    if (was) log.info({ attributes: want, staleSince: was.since }, 'the published attributes are current again');
    state.snap.attributes = { published: want, at: state.now() };
  }

  /**
   * ECS holds something other than `want`: kept in the snapshot with its first time, said once in the
   * log (`held`: on purpose, a flapping verdict's hold, at info level).
   */
  private stale(want: Record<string, string>, reason: string, held = false): void {
    const { state, log } = this.deps;
    const a = state.snap.attributes;
    const since = a.stale?.since ?? state.now();
    if (!a.stale || a.stale.want[SANDBOX_ATTRIBUTE] !== want[SANDBOX_ATTRIBUTE])
      log[held ? 'info' : 'warn'](
        { published: a.published, want, since, reason },
        `ECS's ${SANDBOX_ATTRIBUTE}=${a.published[SANDBOX_ATTRIBUTE] ?? '(none)'} is stale: it should say ${want[SANDBOX_ATTRIBUTE]} (${reason})`,
      );
    a.stale = { since, want, reason };
  }

  private plan(ms: number): void {
    this.retryInMs = Math.max(0, ms);
    this.deps.sched.after(this.name, this.retryInMs);
  }
}
