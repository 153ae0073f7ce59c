/**
 * The watch's one loop runs monitors one at a time, each when it is due. Every phase of the loop (a
 * monitor's round, publishing the snapshot) has a deadline: the watchdog, on a timer of its own, pings
 * systemd only while no phase has overrun, so a hung monitor gets ecs-gvisor restarted while a long
 * legitimate one (a drift repair that downloads runsc again) does not.
 */
import type { Clock } from '../ports.js';
import type { Observation } from './reactor.js';

/** One thing the watch observes, behind one small interface: it reports, the reactor decides. */
export interface Monitor {
  readonly name: string;
  /**
   * The longest one round may take, every wait inside it included (Docker's and AWS's deadlines and
   * retries, a repair). Past it the loop counts as hung.
   */
  readonly deadlineMs: number;
  /** One round: what it observed (nothing: nothing to say). Errors are recorded by the loop, never fatal. */
  run(signal: AbortSignal): Promise<Observation | undefined>;
  /** After a round: the wait until the next one; undefined: only when another monitor asks for it. */
  nextInMs(): number | undefined;
}

export interface Phase {
  name: string;
  since: number;
  deadlineMs: number;
}

export class Scheduler {
  private readonly due = new Map<string, number>();
  private current?: Phase;

  constructor(private readonly clock: Clock) {}

  /** Bring a monitor forward (never later than already planned). */
  soon(name: string, ms: number): void {
    const at = this.clock.now() + ms;
    const cur = this.due.get(name);
    if (cur === undefined || at < cur) this.due.set(name, at);
  }

  /** Plan a monitor's next round, replacing what was planned. */
  after(name: string, ms: number): void {
    this.due.set(name, this.clock.now() + ms);
  }

  isPlanned(name: string): boolean {
    return this.due.has(name);
  }

  /** The monitors due now, earliest first; each is unplanned until its round ends. */
  takeDue(): string[] {
    const now = this.clock.now();
    const names = [...this.due.entries()]
      .filter(([, at]) => at <= now)
      .sort((a, b) => a[1] - b[1])
      .map(([n]) => n);
    for (const n of names) this.due.delete(n);
    return names;
  }

  /** Milliseconds until the next planned round (Infinity: none). */
  nextDueInMs(): number {
    return Math.max(0, Math.min(...this.due.values()) - this.clock.now());
  }

  /** Run one phase of the loop under its deadline (a phase inside another has its own, then the outer's again). */
  async within<T>(name: string, deadlineMs: number, fn: () => Promise<T>): Promise<T> {
    const outer = this.current;
    this.current = { name, since: this.clock.now(), deadlineMs };
    try {
      return await fn();
    } finally {
      this.current = outer;
    }
  }

  /** The phase running past its deadline, if one is. */
  overrun(): (Phase & { overMs: number }) | undefined {
    const c = this.current;
    if (!c) return undefined;
    const overMs = this.clock.now() - c.since - c.deadlineMs;
    return overMs > 0 ? { ...c, overMs } : undefined;
  }
}
