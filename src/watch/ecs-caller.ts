/**
 * Every ECS call of this instance goes through here: the rolling one-hour ceiling first, then the call;
 * throttling, 5xx, timeouts and network errors are retried with p-retry (jittered exponential backoff),
 * client errors are not. Each attempt counts against the budget and is counted by outcome. Auto Scaling
 * calls use the same retries without the ECS budget.
 */
import pRetry, { AbortError } from 'p-retry';
import { EcsGvisorError, messageOf, type AwsOutcome } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, EcsPort } from '../ports.js';
import { RollingWindow } from './budget.js';

export interface RetryOptions {
  retries: number;
  minMs: number;
  maxMs: number;
}

export type CallOutcome = 'ok' | AwsOutcome;

/** The region for ECS calls about a container instance: the configured one, else the ARN's own. */
export function regionOf(containerInstanceArn: string, configured: string | undefined): string {
  const region = configured ?? containerInstanceArn.split(':')[3];
  if (!region) throw new EcsGvisorError('CONFIG_INVALID', `No AWS region: set ECS_GVISOR_AWS_REGION (the container instance ARN "${containerInstanceArn}" names none).`);
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
  o: { retry: RetryOptions; log: Logger; signal?: AbortSignal; onOutcome?: (outcome: CallOutcome) => void },
): Promise<T> {
  return pRetry(
    async () => {
      try {
        const r = await attempt();
        o.onOutcome?.('ok');
        return r;
      } catch (err) {
        if (err instanceof AbortError) throw err;
        const outcome = outcomeOf(err) ?? 'network';
        o.onOutcome?.(outcome);
        if (outcome === 'client-error') throw new AbortError(err as Error);
        throw err;
      }
    },
    {
      retries: o.retry.retries,
      minTimeout: o.retry.minMs,
      maxTimeout: o.retry.maxMs,
      factor: 2,
      randomize: true,
      signal: o.signal,
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft > 0) o.log.info({ operation, attempt: attemptNumber, outcome: outcomeOf(error), err: messageOf(error) }, 'AWS call failed; retrying');
      },
    },
  );
}

export class EcsCaller {
  private readonly window: RollingWindow;

  constructor(
    private readonly deps: {
      ecs: (region: string) => EcsPort;
      clock: Clock;
      log: Logger;
      onCall?: (operation: string, outcome: CallOutcome) => void;
    },
    private readonly opts: { maxCallsPerHour: number; retry: RetryOptions },
  ) {
    this.window = new RollingWindow(opts.maxCallsPerHour);
  }

  /** Calls made in the last hour. */
  callsLastHour(): number {
    return this.window.count(this.deps.clock.now());
  }

  call<T>(region: string, operation: string, fn: (ecs: EcsPort) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const { clock, log } = this.deps;
    const ecs = this.deps.ecs(region);
    return withAwsRetries(
      operation,
      async () => {
        for (let wait = this.window.waitMs(clock.now()); wait > 0; wait = this.window.waitMs(clock.now())) {
          log.warn({ operation, waitMs: wait, maxCallsPerHour: this.opts.maxCallsPerHour }, 'ECS call budget spent for this hour; waiting');
          await clock.sleep(wait, signal);
          if (signal?.aborted) throw new AbortError('stopping');
        }
        this.window.record(clock.now());
        return fn(ecs);
      },
      { retry: this.opts.retry, log, signal, onOutcome: (outcome) => this.deps.onCall?.(operation, outcome) },
    );
  }
}
