/**
 * Every AWS call of the process goes through here. ECS: the rolling one-hour ceiling first, then the
 * call. All: throttling, 5xx, timeouts and network errors are retried (jittered exponential backoff,
 * waits on the clock), client errors are not; each attempt is counted by outcome.
 */
import { type AwsOutcome, EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AutoScalingPort, Clock, Ec2Port, EcsPort, ImdsPort } from '../ports.js';
import { type RetryOptions, retrying } from '../retry.js';
import { RollingWindow } from './budget.js';
import { INSTANCE_ID_PATH, instanceIdOf } from './imds-values.js';

export type { RetryOptions } from '../retry.js';

export type CallOutcome = 'ok' | AwsOutcome;
/** Which service a call went to, as the metrics label it (Prometheus's lower-case label values). */
export type AwsService = 'ecs' | 'autoscaling' | 'ec2';

/** The region for ECS calls about a container instance: the configured one, else the ARN's own. */
export function regionOf(containerInstanceArn: string, configured: string | undefined): string {
  const region = configured ?? containerInstanceArn.split(':')[3];
  if (!region)
    throw new EcsGvisorError(
      'CONFIG_INVALID',
      `No AWS region: set ECS_GVISOR_AWS_REGION (the container instance ARN "${containerInstanceArn}" names none).`,
    );
  return region;
}

export function outcomeOf(err: unknown): AwsOutcome | undefined {
  return err instanceof EcsGvisorError && err.code === 'AWS_API' ? (err.details.outcome as AwsOutcome) : undefined;
}

/**
 * One logical AWS call: throttling, 5xx, timeouts and network errors are retried with jittered
 * exponential backoff; client errors (a bad request, "no such lifecycle action") are not. `attempt`
 * runs once per try; `onOutcome` hears how each ended.
 */
export function withAwsRetries<T>(
  operation: string,
  attempt: () => Promise<T>,
  o: { retry: RetryOptions; clock: Clock; log: Logger; signal?: AbortSignal; onOutcome?: (outcome: CallOutcome) => void },
): Promise<T> {
  return retrying(
    async () => {
      try {
        const r = await attempt();
        o.onOutcome?.('ok');
        return r;
      } catch (err) {
        if (!(err instanceof BudgetSpent)) o.onOutcome?.(outcomeOf(err) ?? 'network');
        throw err;
      }
    },
    {
      ...o.retry,
      sleep: (ms, signal) => o.clock.sleep(ms, signal),
      signal: o.signal,
      retryable: (err) => !(err instanceof BudgetSpent) && outcomeOf(err) !== 'client-error',
      onRetry: (err, n) => o.log.info({ operation, attempt: n, outcome: outcomeOf(err), err: messageOf(err) }, 'AWS call failed; retrying'),
    },
  );
}

/**
 * `truth`: a call that tells the scheduler this instance is no place for untrusted tasks (withdrawing
 * `verified`). Once routine calls (polls, task look-ups, drains) have spent the hour's ceiling, these
 * still have a few calls of their own, so nothing routine can spend what a withdrawal needs.
 */
export type EcsPriority = 'routine' | 'truth';

/** Calls a rolling hour that only withdrawals may make beyond the ceiling: a few, with a retry each. */
export const TRUTH_CALLS_PER_HOUR = 6;

/** The hourly ECS ceiling is reached and the caller would not wait that long: ask again at `retryInMs`. */
export class BudgetSpent extends EcsGvisorError {
  constructor(
    operation: string,
    readonly retryInMs: number,
  ) {
    super('AWS_API', `${operation} not called: the hourly ECS call ceiling is reached; next slot in ${Math.ceil(retryInMs / 1000)} s.`, {
      details: { outcome: 'throttled', budget: true },
    });
  }
}

/**
 * Every AWS call of the process goes through one of these: ECS inside the hourly budget, Auto Scaling
 * and EC2 with the same retries and classification, and this instance's own ID asked of IMDS once.
 */
export class AwsCaller {
  private readonly window: RollingWindow;
  /** Withdrawals made once routine calls had spent the ceiling. */
  private readonly truthWindow: RollingWindow;
  private ownInstanceId?: Promise<string>;

  constructor(
    private readonly deps: {
      ecs: (region: string) => EcsPort;
      autoScaling: (region: string) => AutoScalingPort;
      ec2: (region: string) => Ec2Port;
      imds: ImdsPort;
      clock: Clock;
      log: Logger;
      onCall?: (service: AwsService, operation: string, outcome: CallOutcome) => void;
    },
    private readonly opts: {
      maxCallsPerHour: number;
      retry: RetryOptions;
      /** The longest an ECS call waits for a slot under the ceiling; past it, BudgetSpent (default: no limit). */
      maxBudgetWaitMs?: number;
    },
  ) {
    this.window = new RollingWindow(opts.maxCallsPerHour);
    this.truthWindow = new RollingWindow(TRUTH_CALLS_PER_HOUR);
  }

  /** Calls made in the last hour. */
  callsLastHour(): number {
    const now = this.deps.clock.now();
    return this.window.count(now) + this.truthWindow.count(now);
  }

  /** How long until the next ECS call of this priority fits under the hourly ceiling (0: now). */
  budgetWaitMs(priority: EcsPriority = 'routine'): number {
    const now = this.deps.clock.now();
    const routine = this.window.waitMs(now);
    return priority === 'truth' && routine > 0 ? Math.min(routine, this.truthWindow.waitMs(now)) : routine;
  }

  /** This EC2 instance's ID (IMDS), asked once for the process; a failed ask is asked again next time. */
  instanceId(): Promise<string> {
    this.ownInstanceId ??= this.deps.imds.get(INSTANCE_ID_PATH).then(
      (text) => instanceIdOf(text).trim(),
      (err: unknown) => {
        this.ownInstanceId = undefined;
        throw err;
      },
    );
    return this.ownInstanceId;
  }

  /**
   * One ECS call inside the budget. When the ceiling is reached it waits for a slot, up to
   * `maxBudgetWaitMs` (or the caller's own, shorter `maxWaitMs`: 0 for a call that may simply come
   * later); past that it throws BudgetSpent at once, so a loop with other work asks again later instead
   * of sleeping through it.
   */
  ecs<T>(
    region: string,
    operation: string,
    fn: (ecs: EcsPort) => Promise<T>,
    signal?: AbortSignal,
    maxWaitMs?: number,
    priority: EcsPriority = 'routine',
  ): Promise<T> {
    const { clock, log } = this.deps;
    maxWaitMs = Math.min(maxWaitMs ?? Number.POSITIVE_INFINITY, this.opts.maxBudgetWaitMs ?? Number.POSITIVE_INFINITY);
    const ecs = this.deps.ecs(region);
    return withAwsRetries(
      operation,
      async () => {
        for (let wait = this.budgetWaitMs(priority); wait > 0; wait = this.budgetWaitMs(priority)) {
          if (wait > maxWaitMs) throw new BudgetSpent(operation, wait);
          log.warn({ operation, waitMs: wait, maxCallsPerHour: this.opts.maxCallsPerHour }, 'ECS call budget spent for this hour; waiting');
          await clock.sleep(wait, signal);
          signal?.throwIfAborted();
        }
        // Within the ceiling if it has room; a withdrawal past it counts in its own few.
        if (this.window.waitMs(clock.now()) === 0) this.window.record(clock.now());
        else this.truthWindow.record(clock.now());
        return fn(ecs);
      },
      this.retryOptions('ecs', operation, signal),
    );
  }

  /** One Auto Scaling call, retried like ECS's (Auto Scaling has its own, separate rate limits). */
  autoScaling<T>(region: string, operation: string, fn: (as: AutoScalingPort) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const as = this.deps.autoScaling(region);
    return withAwsRetries(operation, () => fn(as), this.retryOptions('autoscaling', operation, signal));
  }

  /** One EC2 call, retried the same way. */
  ec2<T>(region: string, operation: string, fn: (ec2: Ec2Port) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const ec2 = this.deps.ec2(region);
    return withAwsRetries(operation, () => fn(ec2), this.retryOptions('ec2', operation, signal));
  }

  private retryOptions(service: AwsService, operation: string, signal: AbortSignal | undefined) {
    return {
      retry: this.opts.retry,
      clock: this.deps.clock,
      log: this.deps.log,
      signal,
      onOutcome: (outcome: CallOutcome) => this.deps.onCall?.(service, operation, outcome),
    };
  }
}
