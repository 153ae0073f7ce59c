/**
 * The ECS API budget of one instance. The read bucket (DescribeContainerInstances and friends) allows
 * 20 requests/s per account and region, shared by the whole fleet and the customer's own tooling: 5,000
 * instances polling 12 times an hour would use 16.7/s. So ECS is asked at registration (which EC2
 * instance the ARN is), when the instance's own evidence of the agent's ACS connection changes and stays
 * changed for a grace period, and otherwise on a heartbeat of hours. Without that evidence (an agent whose
 * log says nothing of ACS) the steady poll is 3600/callsPerHour seconds, as before it existed. Polls come
 * at the alert interval only while ECS itself reports something wrong, and a rolling one-hour ceiling
 * bounds every call this instance makes (retries and attribute writes included).
 */

export interface EcsBudget {
  /** Steady-state DescribeContainerInstances calls per hour. */
  callsPerHour: number;
  /** Ceiling on all ECS calls in any rolling hour. */
  maxCallsPerHour: number;
  /** Poll interval while something is wrong (disconnected, not ACTIVE, impaired, unregistered). */
  alertPollMs: number;
  /** With the ACS connection seen locally: the interval between ECS's confirmations (±25 %). */
  heartbeatMs: number;
  /** How long the local evidence of a lost ACS connection must last before ECS is asked. */
  acsGraceMs: number;
  /** The first poll of a registration comes within this long (uniformly spread). */
  firstPollSpreadMs: number;
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

/** The heartbeat with the ACS connection seen locally: 0.75–1.25 × its interval, so a fleet never calls in step. */
export function heartbeatMs(b: EcsBudget, random: () => number): number {
  return Math.round(b.heartbeatMs * (0.75 + 0.5 * random()));
}

/** Asks of ECS after the first, while it disagrees with the local evidence of a lost connection. */
export const CONFIRM_REASKS = 3;

/** The local evidence of the agent's ACS connection, and what ECS answered since it last changed. */
export interface AcsConfirmation {
  state: 'connected' | 'disconnected' | 'unknown';
  /** When the evidence last changed (ms). */
  since: number;
  /** ECS answers since then. */
  asks: number;
  /** What the last of them said of the connection (undefined: none since, or the ARN unknown to ECS). */
  ecsConnected?: boolean;
}

/**
 * When ECS should be asked to confirm a lost ACS connection (undefined: not now). The evidence must have
 * lasted the grace period (a periodic reconnect, a blip, takes less). ECS saying "connected" to evidence
 * that says otherwise is asked again, after twice the wait each time, a few times: ECS may not have
 * noticed yet. Good news (connected again) is believed from the instance alone: it only stops healing.
 */
export function acsConfirmAt(c: AcsConfirmation, graceMs: number): number | undefined {
  if (c.state !== 'disconnected') return undefined;
  if (c.asks === 0) return c.since + graceMs;
  if (c.ecsConnected !== true || c.asks > CONFIRM_REASKS) return undefined;
  return c.since + graceMs * 2 ** c.asks;
}

/**
 * The first poll after registration: soon by default (new capacity takes untrusted tasks only once ECS
 * has said the registration is this instance), spread so a scale-out's instances do not ask together. A
 * launch hook awaiting ECS polls at the alert interval whatever the spread.
 */
export function firstPollMs(b: EcsBudget, random: () => number): number {
  return Math.round(b.firstPollSpreadMs * random());
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
