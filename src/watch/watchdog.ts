/**
 * systemd's watchdog, fed on a timer of its own: a ping says the watch loop is alive — idle, or inside
 * a phase that has not overrun its deadline — and the supervisor is not stuck in one change to the
 * agent. Otherwise the ping is withheld and systemd restarts ecs-gvisor (the agent container keeps
 * running meanwhile).
 */
import type { Logger } from '../logger.js';
import type { Clock } from '../ports.js';
import type { Scheduler } from './scheduler.js';

/** Far past the longest legitimate change: a 30 s stop, a 15 s backoff and each Docker call's 60 s deadline. */
export const SUPERVISOR_STALL_MS = 10 * 60_000;

export class Watchdog {
  private withheld?: string;

  constructor(
    private readonly deps: {
      notify: (fields: Record<string, string>) => Promise<void>;
      supervisor: { busyMs(): number };
      sched: Scheduler;
      clock: Clock;
      log: Logger;
    },
    private readonly opts: { periodMs: number; supervisorStallMs: number },
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.feed();
      await this.deps.clock.sleep(this.opts.periodMs, signal);
    }
  }

  /** Ping, or say once why not. */
  async feed(): Promise<void> {
    const { sched, supervisor, log } = this.deps;
    const over = sched.overrun();
    const busy = supervisor.busyMs();
    if (!over && busy <= this.opts.supervisorStallMs) {
      if (this.withheld) log.warn({ was: this.withheld }, 'the watch moves again: pinging systemd’s watchdog again');
      this.withheld = undefined;
      await this.deps.notify({ WATCHDOG: '1' });
      return;
    }
    const why = over ? `monitor:${over.name}` : 'supervisor';
    if (this.withheld === why) return;
    this.withheld = why;
    if (over) {
      log.error(
        { monitor: over.name, runningMs: over.deadlineMs + over.overMs, deadlineMs: over.deadlineMs },
        `the watch's ${over.name} monitor has overrun its deadline: no longer pinging systemd’s watchdog, so systemd restarts ecs-gvisor`,
      );
    } else {
      log.error(
        { busyMs: busy, limitMs: this.opts.supervisorStallMs },
        'the supervisor is stuck in one change to the agent: no longer pinging systemd’s watchdog, so systemd restarts ecs-gvisor',
      );
    }
  }
}
