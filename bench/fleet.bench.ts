/**
 * Fleet API budget: N instances' ECS monitors for a simulated day against one account's
 * DescribeContainerInstances token bucket (burst 100, refill 20/s), in one process, on simulated time.
 *
 * Each instance schedules its polls with the product's own code (`firstPollMs`, `nextPollMs`, the
 * rolling one-hour ceiling `RollingWindow`, the default budget from `parseConfig`, the retry settings
 * `AWS_RETRY`); a throttled attempt is retried as the product does (min·2^n, randomized ×1–2, capped). Some
 * instances' agents disconnect for a while: detection latency is the time until that instance's next
 * successful poll sees it.
 *
 * Scenarios: a fleet launched over 30 minutes (the steady day), and a fleet that registers within 10 s
 * (the worst case for the first polls). Usage: node <bundle> [instances=5000] [hours=24].
 */

import { type EcsBudget, firstPollMs, nextPollMs, RollingWindow } from '../src/aws/budget.js';
import { AWS_RETRY } from '../src/cli/options.js';
import { parseConfig } from '../src/config.js';
import { backoffMs } from '../src/retry.js';
import { TokenBucket } from '../test/harness/fake-aws.js';
import { percentile, report, seeded } from './figures.js';

const N = Number(process.argv[2] ?? 5000);
const HOURS = Number(process.argv[3] ?? 24);
const HOUR = 3_600_000;
const BUCKET = { burst: 100, perSecond: 20 };

const cfg = parseConfig({ fileText: undefined, filePath: '/nonexistent', env: {} });
const budget: EcsBudget = {
  callsPerHour: cfg.ECS_CALLS_PER_HOUR,
  maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR,
  alertPollMs: cfg.ECS_ALERT_POLL_SECONDS * 1000,
  heartbeatMs: cfg.ECS_HEARTBEAT_MINUTES * 60_000,
  acsGraceMs: cfg.ACS_GRACE_SECONDS * 1000,
};

/** A binary min-heap of events by time. */
class Events<T extends { at: number }> {
  private h: T[] = [];
  push(e: T): void {
    const h = this.h;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= h[i]!.at) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    if (h.length && last) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.at < h[m]!.at) m = l;
        if (r < h.length && h[r]!.at < h[m]!.at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

interface Instance {
  window: RollingWindow;
  throttledStreak: number;
  wrong: boolean;
  /** When its agent disconnects and reconnects (one outage at most). */
  outage?: { from: number; to: number; seenAt?: number };
  calls: number;
  maxInAnHour: number;
}

type Ev = { at: number; i: number; kind: 'poll' } | { at: number; i: number; kind: 'attempt'; n: number };

function simulate(launchSpreadMs: number, random: () => number) {
  let now = 0;
  // The account's bucket, as the fake ECS of the tests enforces it, on the simulation's clock.
  const bucket = new TokenBucket(BUCKET.burst, BUCKET.perSecond, () => now);
  const q = new Events<Ev>();
  const fleet: Instance[] = [];
  let calls = 0;
  let throttled = 0;
  let ceilingWaits = 0;
  let lastThrottledAt = 0;
  const end = HOURS * HOUR;
  const perHour = new Array<number>(HOURS).fill(0);
  for (let i = 0; i < N; i++) {
    const launched = random() * launchSpreadMs;
    // 2 % of the fleet has one agent outage of 2–20 minutes, after its first hour.
    const outage =
      random() < 0.02
        ? (() => {
            const from = launched + HOUR + random() * (end - 2 * HOUR);
            return { from, to: from + (2 + 18 * random()) * 60_000 };
          })()
        : undefined;
    fleet.push({ window: new RollingWindow(budget.maxCallsPerHour), throttledStreak: 0, wrong: false, outage, calls: 0, maxInAnHour: 0 });
    q.push({ at: launched + firstPollMs(budget, random), i, kind: 'poll' });
  }
  for (let e = q.pop(); e && e.at < end; e = q.pop()) {
    const inst = fleet[e.i]!;
    const n = e.kind === 'attempt' ? e.n : 0;
    // The rolling ceiling first, as EcsCaller does: wait until the oldest call leaves the hour.
    const wait = inst.window.waitMs(e.at);
    if (wait > 0) {
      ceilingWaits++;
      q.push({ ...e, at: e.at + wait });
      continue;
    }
    inst.window.record(e.at);
    inst.calls++;
    inst.maxInAnHour = Math.max(inst.maxInAnHour, inst.window.count(e.at));
    calls++;
    perHour[Math.floor(e.at / HOUR)]!++;
    now = e.at;
    if (!bucket.take()) {
      throttled++;
      lastThrottledAt = e.at;
      if (n < AWS_RETRY.retries) {
        const delay = backoffMs(n + 1, AWS_RETRY, random);
        q.push({ at: e.at + delay, i: e.i, kind: 'attempt', n: n + 1 });
        continue;
      }
      inst.throttledStreak++;
      q.push({ at: e.at + nextPollMs(budget, { wrong: inst.wrong, throttledStreak: inst.throttledStreak }, random), i: e.i, kind: 'poll' });
      continue;
    }
    inst.throttledStreak = 0;
    const o = inst.outage;
    const disconnected = o !== undefined && e.at >= o.from && e.at < o.to;
    if (disconnected && o.seenAt === undefined) o.seenAt = e.at;
    inst.wrong = disconnected;
    q.push({ at: e.at + nextPollMs(budget, { wrong: inst.wrong, throttledStreak: 0 }, random), i: e.i, kind: 'poll' });
  }
  const outages = fleet.flatMap((f) => (f.outage && f.outage.from < end ? [f.outage] : []));
  const latencies = outages.filter((o) => o.seenAt !== undefined).map((o) => (o.seenAt! - o.from) / 1000);
  // An outage shorter than one poll interval can fall between two polls; a longer one never may.
  const onePoll = (HOUR / budget.callsPerHour) * 1.1;
  const steadyHours = perHour.slice(1);
  return {
    callsPerInstanceHour: calls / N / HOURS,
    worstInstanceHour: Math.max(...fleet.map((f) => f.maxInAnHour)),
    peakFleetRate: Math.max(...steadyHours) / 3600,
    throttled,
    /** Seconds after the last launch when the last call was throttled. */
    throttledUntil: throttled ? (lastThrottledAt - launchSpreadMs) / 1000 : 0,
    ceilingWaits,
    outages: outages.length,
    missedShort: outages.filter((o) => o.seenAt === undefined && o.to - o.from <= onePoll).length,
    missedLong: outages.filter((o) => o.seenAt === undefined && o.to - o.from > onePoll).length,
    detectP50: percentile(latencies, 50),
    detectP95: percentile(latencies, 95),
    detectMax: Math.max(0, ...latencies),
  };
}

const t = process.hrtime.bigint();
const day = simulate(30 * 60_000, seeded(1));
const burst = simulate(10_000, seeded(2));
const realMs = Number(process.hrtime.bigint() - t) / 1e6;

console.log(
  `${N} instances, ${HOURS} simulated hours, bucket burst ${BUCKET.burst} / ${BUCKET.perSecond} per s; budget ${budget.callsPerHour}/h steady, ceiling ${budget.maxCallsPerHour}/h, alert poll ${budget.alertPollMs / 1000} s (${(realMs / 1000).toFixed(1)} s real)`,
);
console.log(`fleet launched over 30 min: ${JSON.stringify(day)}`);
console.log(`fleet registered within 10 s: ${JSON.stringify(burst)}`);

report('fleet', [
  {
    metric: `ECS calls per instance-hour (${N} instances, ${HOURS} h)`,
    value: day.callsPerInstanceHour,
    unit: '',
    target: '≤ 12',
    ok: day.callsPerInstanceHour <= 12,
  },
  {
    metric: 'most calls by one instance in any hour',
    value: day.worstInstanceHour,
    unit: '',
    target: `≤ ${budget.maxCallsPerHour} (ceiling)`,
    ok: day.worstInstanceHour <= budget.maxCallsPerHour,
  },
  {
    metric: 'fleet peak rate (hourly mean)',
    value: day.peakFleetRate,
    unit: '/s',
    target: `≤ ${BUCKET.perSecond}/s`,
    ok: day.peakFleetRate <= BUCKET.perSecond,
  },
  { metric: 'throttled calls (launched over 30 min)', value: day.throttled, unit: '', target: '0', ok: day.throttled === 0 },
  {
    metric: `disconnect detection p50 / p95 (${day.outages} outages)`,
    value: `${day.detectP50.toFixed(0)} / ${day.detectP95.toFixed(0)}`,
    unit: 's',
    target: `≤ ${Math.round((3600 / budget.callsPerHour) * 1.1)} s (one poll)`,
    ok: day.missedLong === 0 && day.detectMax <= (3600 / budget.callsPerHour) * 1.1,
  },
  {
    metric: 'outages longer than one poll not seen / shorter ones not seen',
    value: `${day.missedLong} / ${day.missedShort}`,
    unit: '',
    target: '0 / (by design)',
    ok: day.missedLong === 0,
  },
  {
    metric: 'all registered within 10 s: throttled calls, and until when',
    value: `${burst.throttled}, until ${burst.throttledUntil.toFixed(0)} s`,
    unit: '',
    target: 'none after 15 min',
    ok: burst.callsPerInstanceHour <= 12 && burst.throttledUntil < 900,
  },
]);
