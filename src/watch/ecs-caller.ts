/**
 * Every ECS call of this instance goes through here: the rolling one-hour ceiling first, then the call;
 * throttling, 5xx, timeouts and network errors are retried with p-retry (jittered exponential backoff),
 * client errors are not. Each attempt counts against the budget and is counted by outcome.
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

export function outcomeOf(err: unknown): AwsOutcome | undefined {
  return err instanceof EcsGvisorError && err.code === 'AWS_API' ? (err.details.outcome as AwsOutcome) : undefined;
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

  async call<T>(region: string, operation: string, fn: (ecs: EcsPort) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const { clock, log } = this.deps;
    const ecs = this.deps.ecs(region);
    return pRetry(
      async () => {
        for (let wait = this.window.waitMs(clock.now()); wait > 0; wait = this.window.waitMs(clock.now())) {
          log.warn({ operation, waitMs: wait, maxCallsPerHour: this.opts.maxCallsPerHour }, 'ECS call budget spent for this hour; waiting');
          await clock.sleep(wait, signal);
          if (signal?.aborted) throw new AbortError('stopping');
        }
        this.window.record(clock.now());
        try {
          const r = await fn(ecs);
          this.deps.onCall?.(operation, 'ok');
          return r;
        } catch (err) {
          const outcome = outcomeOf(err) ?? 'network';
          this.deps.onCall?.(operation, outcome);
          if (outcome === 'client-error') throw new AbortError(err as Error);
          throw err;
        }
      },
      {
        retries: this.opts.retry.retries,
        minTimeout: this.opts.retry.minMs,
        maxTimeout: this.opts.retry.maxMs,
        factor: 2,
        randomize: true,
        signal,
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          if (retriesLeft > 0) log.info({ operation, attempt: attemptNumber, outcome: outcomeOf(error), err: messageOf(error) }, 'ECS call failed; retrying');
        },
      },
    );
  }
}
