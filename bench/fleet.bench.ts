/**
 * The account's ECS read budget through a simulated day: 20,000 instances in four clusters of 5,000 (one
 * account and region), their calls and the customer's own 10 reads/s drawing on one token bucket
 * (burst 50, 20/s), on simulated time, in one process.
 *
 * Each instance decides with the product's own rules: the first poll of a registration (`firstPollMs`),
 * the heartbeat (`heartbeatMs`), when a lost ACS connection is confirmed and asked again (`acsConfirmAt`),
 * the hourly ceiling (`RollingWindow`), and throttled attempts retried as `AWS_RETRY` says. The defaults
 * come from `parseConfig`.
 *
 * The day: the fleet is registered and connected at its start. 2 % of the agents lose their ACS connection
 * once, at a random time: 80 % of them closed (ECS and the instance see it at once; the instance at its
 * next check), 20 % silently (a peer that vanished: the agent closes after its heartbeat timeout of 1–2 min,
 * and ECS notices after its own); 30 % of the losses are blips of 2–20 s, the rest last 1–30 min. A lost
 * connection confirmed by ECS and lasting UNHEALTHY_SECONDS has the agent restarted (up to
 * HEAL_MAX_RESTARTS), each restart a new registration and its first poll. At hour 12, 2,000 instances
 * launch within 5 minutes and register after a 1–3 minute boot.
 *
 * Tasks cost no call: the audit learns a container's task and its limits from the agent (its introspection
 * and task metadata endpoint, agent-tasks.ts); DescribeTasks is left for a container the agent cannot
 * speak for, which the agents in use do not leave (test/integration/real-agent.test.ts).
 *
 * Usage: node <bundle> [instances=20000] [hours=24].
 */

import { acsConfirmAt, type EcsBudget, firstPollMs, heartbeatMs, RollingWindow } from '../src/aws/budget.js';
import { AWS_RETRY } from '../src/cli/options.js';
import { parseConfig } from '../src/config.js';
import { backoffMs } from '../src/retry.js';
import { TokenBucket } from '../test/harness/fake-aws.js';
import { percentile, report, seeded } from './figures.js';

const N = Number(process.argv[2] ?? 20_000);
const HOURS = Number(process.argv[3] ?? 24);
const CLUSTERS = 4;
const S = 1000;
const MIN = 60 * S;
const HOUR = 60 * MIN;
const BUCKET = { burst: 50, perSecond: 20 };
const CUSTOMER_PER_S = 10;
const SCALE_OUT = { at: 12 * HOUR, instances: 2_000, withinMs: 5 * MIN };

const cfg = parseConfig({ fileText: undefined, filePath: '/nonexistent', env: {} });
const budget: EcsBudget = {
  callsPerHour: cfg.ECS_CALLS_PER_HOUR,
  maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR,
  alertPollMs: cfg.ECS_ALERT_POLL_SECONDS * S,
  heartbeatMs: cfg.ECS_HEARTBEAT_MINUTES * MIN,
  acsGraceMs: cfg.ACS_GRACE_SECONDS * S,
  firstPollSpreadMs: cfg.ECS_FIRST_POLL_SPREAD_SECONDS * S,
};
/** The instance's own check of the ACS evidence (with introspection). */
const CHECK_MS = cfg.INTROSPECTION_SECONDS * S;
const UNHEALTHY_MS = cfg.UNHEALTHY_SECONDS * S;

/** A binary min-heap of events by time. */
class Events<T extends { at: number }> {
  private h: T[] = [];
  get size(): number {
    return this.h.length;
  }
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

interface Outage {
  from: number;
  to: number;
  silent: boolean;
  /** When the instance's evidence shows it (its check after the agent noticed), and when ECS knows it. */
  seenAt?: number;
  ecsKnowsAt: number;
  asks: number;
  ecsConnected?: boolean;
  confirmedAt?: number;
  restarts: number;
}

interface Instance {
  cluster: number;
  window: RollingWindow;
  /** The phase of its evidence checks. */
  phase: number;
  outage?: Outage;
}

type Why = 'first' | 'heartbeat' | 'confirm';
type Ev =
  | { at: number; kind: 'call'; i: number; why: Why; n: number }
  | { at: number; kind: 'check'; i: number }
  | { at: number; kind: 'register'; i: number }
  | { at: number; kind: 'restart'; i: number }
  | { at: number; kind: 'customer' };

function simulate(random: () => number, budget: EcsBudget) {
  let now = 0;
  const bucket = new TokenBucket(BUCKET.burst, BUCKET.perSecond, () => now);
  const alone = new TokenBucket(BUCKET.burst, BUCKET.perSecond, () => now); // the customer's, without us
  const q = new Events<Ev>();
  const fleet: Instance[] = [];
  const end = HOURS * HOUR;
  const ours: number[] = []; // times of our calls that reached ECS (throttled or not)
  const byWhy: Record<Why, number> = { first: 0, heartbeat: 0, confirm: 0 };
  let throttled = 0;
  let customerThrottled = 0;
  let customerThrottledAlone = 0;
  let customerCalls = 0;
  let ceilingWaits = 0;
  const nextCheck = (inst: Instance, t: number) => t + ((((inst.phase - t) % CHECK_MS) + CHECK_MS) % CHECK_MS);

  const add = (registered: number, cluster: number, outage: boolean, atStart: boolean) => {
    const i = fleet.length;
    const inst: Instance = {
      cluster,
      window: new RollingWindow(budget.maxCallsPerHour),
      phase: random() * CHECK_MS,
    };
    fleet.push(inst);
    if (outage) {
      const from = registered + HOUR + random() * (end - registered - 2 * HOUR);
      const blip = random() < 0.3;
      const to = from + (blip ? (2 + 18 * random()) * S : (1 + 29 * random()) * MIN);
      const silent = random() < 0.2;
      inst.outage = { from, to, silent, ecsKnowsAt: from + (silent ? (60 + 60 * random()) * S : 0), asks: 0, restarts: 0 };
      // The agent notices a silent loss at its heartbeat timeout (if it lasts that long); the instance at its next check.
      const agentKnows = from + (silent ? (60 + 60 * random()) * S : 0);
      if (agentKnows < to) q.push({ at: nextCheck(inst, agentKnows), kind: 'check', i });
    }
    if (atStart) {
      // Registered before the day: its heartbeat anywhere in one interval.
      q.push({ at: heartbeatMs(budget, random) * random(), kind: 'call', i, why: 'heartbeat', n: 0 });
    } else q.push({ at: registered, kind: 'register', i });
  };

  for (let k = 0; k < N; k++) add(0, k % CLUSTERS, random() < 0.02, true);
  for (let k = 0; k < SCALE_OUT.instances; k++) {
    const launched = SCALE_OUT.at + random() * SCALE_OUT.withinMs;
    add(launched + (60 + 120 * random()) * S, k % CLUSTERS, random() < 0.02, false);
  }
  q.push({ at: -Math.log(1 - random()) * (S / CUSTOMER_PER_S), kind: 'customer' });

  const call = (i: number, why: Why, at: number) => q.push({ at, kind: 'call', i, why, n: 0 });
  for (let e = q.pop(); e && e.at < end; e = q.pop()) {
    now = e.at;
    if (e.kind === 'customer') {
      customerCalls++;
      if (!bucket.take()) customerThrottled++;
      if (!alone.take()) customerThrottledAlone++;
      q.push({ at: e.at - Math.log(1 - random()) * (S / CUSTOMER_PER_S), kind: 'customer' });
      continue;
    }
    const inst = fleet[e.i]!;
    const o = inst.outage;
    switch (e.kind) {
      case 'register':
        call(e.i, 'first', e.at + firstPollMs(budget, random));
        continue;
      case 'restart':
        // The agent restarted by the healing ladder registers again: its first poll.
        if (o && e.at < o.to) call(e.i, 'first', e.at + 5 * S + firstPollMs(budget, random));
        continue;
      case 'check': {
        // The instance's evidence check while the connection is gone: asks ECS when acsConfirmAt says so.
        if (!o || e.at >= o.to || o.confirmedAt !== undefined) continue;
        o.seenAt ??= e.at;
        const due = acsConfirmAt({ state: 'disconnected', since: o.seenAt, asks: o.asks, ecsConnected: o.ecsConnected }, budget.acsGraceMs);
        if (due === undefined) continue;
        if (e.at >= due) call(e.i, 'confirm', e.at);
        else q.push({ at: nextCheck(inst, due), kind: 'check', i: e.i });
        continue;
      }
      case 'call': {
        const wait = inst.window.waitMs(e.at);
        if (wait > 0) {
          ceilingWaits++;
          q.push({ ...e, at: e.at + wait });
          continue;
        }
        inst.window.record(e.at);
        ours.push(e.at);
        if (e.n === 0) byWhy[e.why]++;
        if (!bucket.take()) {
          throttled++;
          if (e.n < AWS_RETRY.retries) {
            q.push({ ...e, at: e.at + backoffMs(e.n + 1, AWS_RETRY, random), n: e.n + 1 });
            continue;
          }
          // Given up: asked again at the next check.
          q.push({ ...e, at: e.at + CHECK_MS, n: 0 });
          continue;
        }
        // ECS's answer about the registration.
        const lost = o !== undefined && e.at >= o.from && e.at < o.to;
        if (lost && o.seenAt !== undefined && o.confirmedAt === undefined) {
          o.asks++;
          o.ecsConnected = e.at < o.ecsKnowsAt;
          if (!o.ecsConnected) {
            o.confirmedAt = e.at;
            // The healing ladder: a restart each UNHEALTHY_SECONDS the loss lasts, up to its maximum.
            for (let k = 1; k <= cfg.HEAL_MAX_RESTARTS && e.at + k * UNHEALTHY_MS < o.to; k++)
              q.push({ at: e.at + k * UNHEALTHY_MS, kind: 'restart', i: e.i });
          } else q.push({ at: nextCheck(inst, e.at + 1), kind: 'check', i: e.i });
        }
        if (e.why !== 'confirm') call(e.i, 'heartbeat', e.at + heartbeatMs(budget, random));
        continue;
      }
    }
  }

  // Rates: the steady day outside the scale-out's hour; the scale-out's busiest minute.
  const so = { from: SCALE_OUT.at, to: SCALE_OUT.at + HOUR };
  const steadyCalls = ours.filter((t) => t < so.from || t >= so.to).length;
  const steadyRate = steadyCalls / ((end - HOUR) / S);
  const perMinute = new Map<number, number>();
  for (const t of ours) if (t >= so.from && t < so.to) perMinute.set(Math.floor(t / MIN), (perMinute.get(Math.floor(t / MIN)) ?? 0) + 1);
  const peakMinute = Math.max(0, ...perMinute.values()) / 60;
  const perSecond = new Map<number, number>();
  for (const t of ours) perSecond.set(Math.floor(t / S), (perSecond.get(Math.floor(t / S)) ?? 0) + 1);
  const peakSecond = Math.max(0, ...perSecond.values());
  const outages = fleet.flatMap((f) => (f.outage && f.outage.from < end ? [f.outage] : []));
  const confirmed = outages.filter((o) => o.confirmedAt !== undefined);
  const lat = (os: Outage[]) => os.map((o) => (o.confirmedAt! - o.from) / S);
  const closed = confirmed.filter((o) => !o.silent);
  const silent = confirmed.filter((o) => o.silent);
  // Longer than the grace period, plus one check to see it and one to ask: these must all be confirmed.
  const mustSee = outages.filter((o) => !o.silent && o.to - o.from > budget.acsGraceMs + 2 * CHECK_MS);
  const between = outages.filter(
    (o) => !o.silent && o.to - o.from > budget.acsGraceMs && o.to - o.from <= budget.acsGraceMs + 2 * CHECK_MS && !o.confirmedAt,
  );
  return {
    instances: fleet.length,
    steadyRate,
    peakMinute,
    peakSecond,
    byWhy,
    perInstanceDay: ours.length / fleet.length / (HOURS / 24),
    throttled,
    ceilingWaits,
    customerCalls,
    customerThrottled,
    customerThrottledAlone,
    outages: outages.length,
    blips: outages.filter((o) => o.to - o.from <= budget.acsGraceMs).length,
    askedForBlips: outages.filter((o) => o.to - o.from <= budget.acsGraceMs && o.asks > 0).length,
    missed: mustSee.filter((o) => o.confirmedAt === undefined).length,
    endedBeforeAsked: between.length,
    closedP50: percentile(lat(closed), 50),
    closedP95: percentile(lat(closed), 95),
    silentP50: percentile(lat(silent), 50),
    silentP95: percentile(lat(silent), 95),
    confirmCalls: outages.reduce((n, o) => n + o.asks, 0),
  };
}

const t = process.hrtime.bigint();
const day = simulate(seeded(33), budget);
/** The operator's choice for large scale-outs: first polls spread over 10 minutes. */
const SPREAD_S = 600;
const spread = simulate(seeded(33), { ...budget, firstPollSpreadMs: SPREAD_S * S });
const realMs = Number(process.hrtime.bigint() - t) / 1e6;
console.log(
  `${N} instances in ${CLUSTERS} clusters + a scale-out of ${SCALE_OUT.instances} in ${SCALE_OUT.withinMs / MIN} min, ${HOURS} simulated hours; one bucket (burst ${BUCKET.burst}, ${BUCKET.perSecond}/s) shared with the customer's ${CUSTOMER_PER_S}/s; heartbeat ${budget.heartbeatMs / HOUR} h ±25 %, grace ${budget.acsGraceMs / S} s, checks every ${CHECK_MS / S} s (${(realMs / 1000).toFixed(1)} s real)`,
);
console.log(JSON.stringify(day));

const fleetN = `${N.toLocaleString('en')} instances`;
report('fleet', [
  {
    metric: `steady rate of ${fleetN} (every ECS read; 2 % losing ACS; tasks learned from the agent)`,
    value: day.steadyRate,
    unit: '/s',
    target: '≤ 1/s (5 % of 20/s)',
    ok: day.steadyRate <= 1,
  },
  {
    metric: `of the day's calls: first polls / heartbeats / confirmations`,
    value: `${day.byWhy.first} / ${day.byWhy.heartbeat} / ${day.byWhy.confirm}`,
    unit: '',
    target: 'report',
    ok: true,
  },
  {
    metric: `scale-out of ${SCALE_OUT.instances} in 5 min: busiest minute / busiest second`,
    value: `${day.peakMinute.toFixed(2)} /s / ${day.peakSecond}`,
    unit: '',
    target: '≤ 5/s',
    ok: day.peakMinute <= 5,
  },
  {
    metric: `the same with ECS_GVISOR_ECS_FIRST_POLL_SPREAD_SECONDS=${SPREAD_S} (new instances confirmed ${SPREAD_S / 120} min later on average); its steady rate`,
    value: `${spread.peakMinute.toFixed(2)} /s / ${spread.peakSecond}; ${spread.steadyRate.toFixed(2)} /s`,
    unit: '',
    target: '≤ 5/s',
    ok: spread.peakMinute <= 5,
  },
  {
    metric: `customer's calls throttled with us / without us (of ${day.customerCalls.toLocaleString('en')})`,
    value: `${day.customerThrottled} / ${day.customerThrottledAlone}`,
    unit: '',
    target: '0 caused by us',
    ok: day.customerThrottled === day.customerThrottledAlone,
  },
  { metric: 'our calls throttled', value: day.throttled, unit: '', target: '0', ok: day.throttled === 0 },
  {
    metric: `lost ACS connection confirmed by ECS, p50 / p95 (${day.outages} losses; closed ones)`,
    value: `${day.closedP50.toFixed(0)} / ${day.closedP95.toFixed(0)}`,
    unit: 's',
    target: '≤ 120 s p95 (was 296)',
    ok: day.closedP95 <= 120,
  },
  {
    metric: 'the same for silent losses (the agent’s own heartbeat timeout of 1–2 min first)',
    value: `${day.silentP50.toFixed(0)} / ${day.silentP95.toFixed(0)}`,
    unit: 's',
    target: 'report',
    ok: true,
  },
  {
    metric: `losses longer than the grace period (+2 checks) not confirmed / blips asked about (of ${day.blips})`,
    value: `${day.missed} / ${day.askedForBlips}`,
    unit: '',
    target: '0 / 0',
    ok: day.missed === 0 && day.askedForBlips === 0,
  },
  {
    // The calls of a real watch loop through idle hours are counted in test/integration/watch-day.test.ts.
    metric: 'one idle connected instance-hour: heartbeats (mean); other calls: none (watch-day test, the real loop)',
    value: HOUR / budget.heartbeatMs,
    unit: '',
    target: '≤ 0.2',
    ok: HOUR / budget.heartbeatMs <= 0.2,
  },
]);
