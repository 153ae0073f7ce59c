/**
 * The watch's scheduler and watchdog on a simulated clock, with in-memory ports: a hung monitor stops the
 * pings once past its deadline, a slow one within it does not, and monitors run when due, earliest first.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../src/watch/scheduler.js';
import { Watchdog } from '../../src/watch/watchdog.js';
import { FakeClock } from '../harness/fake-clock.js';

const log = pino({ level: 'silent' });
const MIN = 60_000;

function harness(busyMs = () => 0) {
  const clock = new FakeClock();
  const sched = new Scheduler(clock);
  const pings: number[] = [];
  const start = clock.now();
  const dog = new Watchdog(
    { notify: async (f) => void (f.WATCHDOG && pings.push(clock.now() - start)), supervisor: { busyMs }, sched, clock, log },
    { periodMs: MIN, supervisorStallMs: 10 * MIN },
  );
  return { clock, sched, pings, start, dog };
}

describe('watch scheduler and watchdog', () => {
  it('pings every period through a 7-minute repair within its 30-minute deadline', async () => {
    const { clock, sched, pings, start, dog } = harness();
    const ac = new AbortController();
    const feeding = dog.run(ac.signal);
    const repair = sched.within('drift', 30 * MIN, () => clock.sleep(7 * MIN));
    await clock.runUntil(start + 8 * MIN);
    await repair;
    ac.abort();
    await feeding;
    expect(pings).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map((m) => m * MIN));
  });

  it('stops pinging once a hung monitor passes its deadline, and pings again when it ends', async () => {
    const { clock, sched, pings, start, dog } = harness();
    const ac = new AbortController();
    const feeding = dog.run(ac.signal);
    let release!: () => void;
    const hung = sched.within('audit', 3 * MIN, () => new Promise<void>((r) => (release = r)));
    await clock.runUntil(start + 10 * MIN);
    expect(pings).toEqual([0, 1, 2, 3].map((m) => m * MIN)); // at 3:00 it is not yet past its deadline
    expect(sched.overrun()).toMatchObject({ name: 'audit', overMs: 7 * MIN });
    release();
    await hung;
    await clock.runUntil(start + 11 * MIN);
    ac.abort();
    await feeding;
    expect(pings.at(-1)).toBe(11 * MIN);
  });

  it('stops pinging while the supervisor is stuck in one change past its limit', async () => {
    let busy = 0;
    const { clock, pings, start, dog } = harness(() => busy);
    const ac = new AbortController();
    const feeding = dog.run(ac.signal);
    await clock.runUntil(start + 2 * MIN);
    busy = 11 * MIN;
    await clock.runUntil(start + 5 * MIN);
    ac.abort();
    await feeding;
    expect(pings).toEqual([0, 1, 2].map((m) => m * MIN));
  });

  it('runs what is due, earliest first; brings a monitor forward but never later', () => {
    const clock = new FakeClock();
    const sched = new Scheduler(clock);
    sched.after('audit', 5_000);
    sched.after('drift', 1_000);
    sched.soon('audit', 10_000); // later than planned: ignored
    expect(sched.takeDue()).toEqual([]);
    expect(sched.nextDueInMs()).toBe(1_000);
    sched.soon('ecs', 0);
    expect(sched.takeDue()).toEqual(['ecs']);
    expect(sched.isPlanned('ecs')).toBe(false);
  });
});
