/**
 * Retries with jittered exponential backoff whose waits go through the injected clock (p-retry counts
 * the attempts and honours the abort signal; its own timer is never used), so a test on a simulated
 * clock sees every wait and a real one sleeps as before.
 */
import pRetry, { AbortError } from 'p-retry';

export interface RetryOptions {
  retries: number;
  minMs: number;
  maxMs: number;
}

export interface RetryDeps {
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

/** The wait before retry `n` (1-based): minMs·2^(n−1), times a jitter in [1, 2), at most maxMs. */
export function backoffMs(n: number, o: RetryOptions, random: () => number = Math.random): number {
  return Math.min(o.maxMs, Math.round(o.minMs * 2 ** (n - 1) * (1 + random())));
}

export function retrying<T>(
  attempt: (n: number) => Promise<T>,
  o: RetryOptions &
    RetryDeps & {
      signal?: AbortSignal;
      /** Whether an error is worth another try (default: every error). */
      retryable?: (err: unknown) => boolean;
      /** Heard after each failed attempt that will be tried again. */
      onRetry?: (err: unknown, n: number) => void;
    },
): Promise<T> {
  return pRetry(
    async (n) => {
      try {
        return await attempt(n);
      } catch (err) {
        if (o.retryable && !o.retryable(err)) throw new AbortError(err as Error);
        throw err;
      }
    },
    {
      retries: o.retries,
      minTimeout: 0,
      maxTimeout: 0,
      signal: o.signal,
      // Called only when another attempt follows: the wait happens here, on the clock.
      shouldRetry: async ({ error, attemptNumber }) => {
        o.onRetry?.(error, attemptNumber);
        await o.sleep(backoffMs(attemptNumber, o, o.random), o.signal);
        return true;
      },
    },
  );
}
