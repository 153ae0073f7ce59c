/**
 * The container instance's attributes say what the watch knows about the sandbox: published when they
 * differ from ECS's (no call when they already agree), and at once when the verification changes.
 */
import type { AwsCaller } from '../aws/aws-caller.js';
import type { Logger } from '../logger.js';
import { desiredAttributes, isEmptyPlan, planAttributes } from './attributes.js';
import type { Scheduler } from './scheduler.js';
import type { WatchState } from './watch-state.js';

export class AttributePublisher {
  constructor(
    private readonly deps: { aws: AwsCaller; log: Logger; state: WatchState; sched: Scheduler },
    private readonly opts: { publish: boolean; alertPollMs: number },
  ) {}

  /** Make ECS's attributes (`current`) say what we know; only for a registration ECS confirmed. */
  async sync(current: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const { aws, log, state } = this.deps;
    const meta = state.confirmedMetadata();
    if (!this.opts.publish || !meta) return;
    const v = state.verified;
    const want = desiredAttributes(v.ok, v.version, state.snap.audit.violations.length, v.networks);
    const plan = planAttributes(want, current);
    if (isEmptyPlan(plan)) {
      state.snap.attributes.published = want;
      return;
    }
    const region = state.region();
    if (Object.keys(plan.put).length) {
      await aws.ecs(region, 'PutAttributes', (ecs) => ecs.putAttributes(meta.cluster, meta.containerInstanceArn, plan.put), signal);
    }
    if (plan.remove.length) {
      await aws.ecs(
        region,
        'DeleteAttributes',
        (ecs) => ecs.deleteAttributes(meta.cluster, meta.containerInstanceArn, plan.remove),
        signal,
      );
    }
    state.snap.attributes = { published: want, at: state.now() };
    log.info({ attributes: want, removed: plan.remove }, 'container instance attributes published');
  }

  /** The verification or the audit changed: publish now rather than at the next poll. */
  async republish(): Promise<void> {
    const { state } = this.deps;
    if (!state.confirmedMetadata() || !this.opts.publish) return;
    const known = state.obs.ecs && state.obs.ecs !== 'missing' ? state.obs.ecs.attributes : {};
    // What we published last is what ECS holds unless someone changed it (the next poll repairs that).
    const current = { ...known, ...state.snap.attributes.published };
    try {
      await this.sync(current);
      const ecs = state.obs.ecs;
      if (ecs && ecs !== 'missing') state.obs.ecs = { ...ecs, attributes: { ...ecs.attributes, ...state.snap.attributes.published } };
    } catch (err) {
      state.recordError('attributes', err);
      this.deps.sched.soon('ecs', this.opts.alertPollMs);
    }
  }
}
