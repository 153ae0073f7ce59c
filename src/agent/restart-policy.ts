/**
 * What to do when the agent exits, by ecs-init's exit-code contract, and how long to wait before a
 * restart. ecs-init's backoff (500 ms → 15 s) never resets, so one bad hour slows every later restart;
 * here it resets once the agent has run healthily for a while.
 */

export type ExitDecision =
  | { kind: 'done' } // 0: the agent asked not to be restarted
  | { kind: 'terminal' } // 5: bad config or refused registration; restarting cannot help
  | { kind: 'update' } // 42: load the desired image and restart at once
  | { kind: 'restart' };

export function decideExit(code: number): ExitDecision {
  if (code === 0) return { kind: 'done' };
  if (code === 5) return { kind: 'terminal' };
  if (code === 42) return { kind: 'update' };
  return { kind: 'restart' };
}

export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  factor: number;
  /** ±jitter as a fraction of the delay, so a fleet does not restart in step. */
  jitter: number;
  /** A run at least this long counts as healthy and resets the backoff. */
  healthyAfterMs: number;
  /**
   * Each whole `decayMs` of a shorter run takes the backoff one step back: the delay follows how dense the
   * crashes are, so an agent killed now and then (OOM, an operator) is back at once, while one that keeps
   * dying within seconds still reaches the cap.
   */
  decayMs?: number;
}

export const AGENT_BACKOFF: BackoffOptions = { minMs: 500, maxMs: 15_000, factor: 2, jitter: 0.2, healthyAfterMs: 60_000, decayMs: 10_000 };

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly opts: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** Delay before the next restart, given how long the run that just ended lasted. */
  next(runMs: number): number {
    if (runMs >= this.opts.healthyAfterMs) this.attempt = 0;
    else if (this.opts.decayMs) this.attempt = Math.max(0, this.attempt - Math.floor(runMs / this.opts.decayMs));
    const base = Math.min(this.opts.maxMs, this.opts.minMs * this.opts.factor ** this.attempt);
    this.attempt++;
    const spread = base * this.opts.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(Math.min(this.opts.maxMs, base + spread)));
  }
}

/** The image tarball a 42 exit asks for: the basename of desired-image's first line, in the cache dir. */
export function desiredImageTarball(cacheDir: string, desiredImageText: string | undefined): string | undefined {
  const first = desiredImageText?.split('\n')[0]?.trim();
  if (!first) return undefined;
  const base = first.split('/').pop()!;
  if (base === '' || base === '.' || base === '..') return undefined;
  return `${cacheDir}/${base}`;
}
