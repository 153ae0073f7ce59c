/**
 * The ECS API budget of one instance. The read bucket (DescribeContainerInstances and friends) allows
 * 20 requests/s per account and region, shared by the whole fleet: 5,000 instances at 12 calls an hour
 * use 16.7/s. So the steady poll is 3600/callsPerHour seconds, jitter only lengthens it (the mean rate
 * stays under the budget), polls come faster only while something is wrong, and a rolling one-hour
 * ceiling bounds every call this instance makes (retries and attribute writes included).
 */

export interface EcsBudget {
  /** Steady-state DescribeContainerInstances calls per hour. */
  callsPerHour: number;
  /** Ceiling on all ECS calls in any rolling hour. */
  maxCallsPerHour: number;
  /** Poll interval while something is wrong (disconnected, not ACTIVE, impaired, unregistered). */
  alertPollMs: number;
}

const HOUR = 3_600_000;
/** Jitter: a poll waits 0–10 % longer than its base, so a fleet started together drifts apart. */
const JITTER = 0.1;

export function steadyPollMs(b: EcsBudget): number {
  return HOUR / b.callsPerHour;
}

/**
 * Delay before the next poll. `throttledStreak` counts polls in a row that ended throttled: each doubles
 * the longest delay (up to an hour), and the delay is drawn anywhere between the base and that, so a
 * fleet throttled together (a mass launch, every instance on the alert interval after a regional blip)
 * spreads over the whole window instead of arriving together again: the 0–10 % steady jitter is too
 * narrow to break up such a crowd.
 */
export function nextPollMs(b: EcsBudget, s: { wrong: boolean; throttledStreak: number }, random: () => number): number {
  const steady = steadyPollMs(b);
  const base = s.wrong ? Math.min(steady, b.alertPollMs) : steady;
  if (s.throttledStreak === 0) return Math.round(base * (1 + JITTER * random()));
  const longest = Math.min(HOUR, base * 2 ** Math.min(s.throttledStreak, 10));
  return Math.round(base + (Math.max(base, longest) - base) * random());
}

/** The first poll after registration: soon (launch gates wait on it), spread over the alert interval. */
export function firstPollMs(b: EcsBudget, random: () => number): number {
  return Math.round(Math.min(b.alertPollMs, 10_000) * random());
}

/** At most `limit` calls in any `windowMs`: how long the next call must wait. */
export class RollingWindow {
  private readonly times: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly windowMs = HOUR,
  ) {}

  /** 0 when a call may go now; else the wait until the oldest call leaves the window. */
  waitMs(now: number): number {
    this.expire(now);
    if (this.times.length < this.limit) return 0;
    return this.times[0]! + this.windowMs - now;
  }

  record(now: number): void {
    this.expire(now);
    this.times.push(now);
  }

  /** Calls in the window ending now. */
  count(now: number): number {
    this.expire(now);
    return this.times.length;
  }

  private expire(now: number): void {
    while (this.times.length > 0 && this.times[0]! <= now - this.windowMs) this.times.shift();
  }
}
