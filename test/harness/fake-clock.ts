/**
 * A clock the test moves: sleep() waits for simulated time, never for real time. `run` moves time to the
 * next sleeper whenever the code under test has gone to sleep, so a simulated day takes seconds while
 * real I/O (HTTP to fakes, Docker) still happens for real in between.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Clock } from '../../src/ports.js';

export class FakeClock implements Clock {
  private t: number;
  private sleepers: Array<{ at: number; wake: () => void }> = [];

  constructor(start = Date.parse('2026-11-23T00:00:00Z')) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = { at: this.t + Math.max(0, ms), wake: () => resolve() };
      this.sleepers.push(entry);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== entry);
          resolve();
        },
        { once: true },
      );
    });
  }

  /** Move simulated time on by `ms` (waking any sleeper due by then). */
  advance(ms: number): void {
    this.t += ms;
    const due = this.sleepers.filter((s) => s.at <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.wake();
  }

  /** Advance simulated time, sleeper to sleeper, until `p` settles; returns its result. */
  async drive<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    const watched = p.finally(() => (settled = true));
    watched.catch(() => undefined);
    while (!settled) {
      await delay(1);
      if (settled || this.sleepers.length === 0) continue;
      await new Promise((r) => setImmediate(r));
      this.advanceToNext(Number.POSITIVE_INFINITY);
    }
    return watched;
  }

  private advanceToNext(end: number): void {
    this.sleepers.sort((a, b) => a.at - b.at);
    const next = this.sleepers[0]!;
    this.t = Math.min(end, Math.max(this.t, next.at));
    const due = this.sleepers.filter((s) => s.at <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.wake();
  }

  /** Advance simulated time until `end`, stepping from sleeper to sleeper. */
  async runUntil(end: number, opts: { stuckMs?: number } = {}): Promise<void> {
    const stuckMs = opts.stuckMs ?? 30_000;
    while (this.t < end) {
      const since = Date.now();
      while (this.sleepers.length === 0) {
        if (Date.now() - since > stuckMs)
          throw new Error(`nothing went to sleep for ${stuckMs} ms of real time at ${new Date(this.t).toISOString()}`);
        await delay(1);
      }
      // Let anything just woken settle, so two sleepers due together both get registered.
      await new Promise((r) => setImmediate(r));
      this.advanceToNext(end);
    }
  }
}
