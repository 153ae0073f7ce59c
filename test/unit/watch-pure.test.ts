/** The watch's pure parts: budget arithmetic, the health verdict, the healing ladder, audit, attributes. */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseMetadata } from '../../src/agent/introspection.js';
import { firstPollMs, nextPollMs, RollingWindow, steadyPollMs } from '../../src/aws/budget.js';
import type { ContainerState } from '../../src/ports.js';
import {
  attributeValue,
  desiredAttributes,
  planAttributes,
  provenEcsModes,
  restoreHoldMs,
  withdrawRetryMs,
  withdraws,
} from '../../src/watch/attributes.js';
import { audit } from '../../src/watch/audit.js';
import { classify, HealingLadder } from '../../src/watch/health.js';
import { WatchMetrics } from '../../src/watch/metrics.js';
import { WatchState } from '../../src/watch/watch-state.js';
import { testBudget as budget, containerInstanceView as view } from '../fakes/ecs-views.js';
import { FakeClock } from '../harness/fake-clock.js';

const meta = { cluster: 'prod', containerInstanceArn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc' };

describe('ECS budget', () => {
  it('steady polls never come sooner than 3600/callsPerHour seconds and at most 10 % later', () => {
    expect(steadyPollMs(budget)).toBe(300_000);
    for (const r of [0, 0.5, 0.999]) {
      const ms = nextPollMs(budget, { wrong: false, throttledStreak: 0 }, () => r);
      expect(ms).toBeGreaterThanOrEqual(300_000);
      expect(ms).toBeLessThanOrEqual(330_000);
    }
  });

  it('polls at the alert interval while wrong, and backs off (capped at an hour) while throttled', () => {
    expect(nextPollMs(budget, { wrong: true, throttledStreak: 0 }, () => 0)).toBe(60_000);
    // Throttled: anywhere from the base up to base × 2^streak (an hour at most), so a crowd spreads out.
    expect(nextPollMs(budget, { wrong: true, throttledStreak: 2 }, () => 0)).toBe(60_000);
    expect(nextPollMs(budget, { wrong: true, throttledStreak: 2 }, () => 0.999_999)).toBe(240_000);
    expect(nextPollMs(budget, { wrong: false, throttledStreak: 9 }, () => 0.999_999)).toBeGreaterThan(3_599_000);
    expect(nextPollMs(budget, { wrong: false, throttledStreak: 30 }, () => 1)).toBe(3_600_000);
    expect(nextPollMs(budget, { wrong: false, throttledStreak: 9 }, () => 0.5)).toBe(1_950_000);
    expect(firstPollMs(budget, () => 1)).toBeLessThanOrEqual(10_000);
  });

  it('the rolling window allows `limit` calls per hour and says how long to wait', () => {
    const w = new RollingWindow(3, 3_600_000);
    for (const t of [0, 10, 20]) {
      expect(w.waitMs(t)).toBe(0);
      w.record(t);
    }
    expect(w.waitMs(30)).toBe(3_600_000 - 30);
    expect(w.waitMs(3_600_000)).toBe(0); // the call at 0 has left the window
    expect(w.count(3_600_015)).toBe(1);
  });
});

describe('health verdict', () => {
  const agent = { running: true };
  it('names what is wrong, in order of what matters', () => {
    expect(classify({})).toMatchObject({ kind: 'down' });
    expect(classify({ agent: { running: false } })).toMatchObject({ kind: 'down' });
    expect(classify({ agent })).toMatchObject({ kind: 'wrong', reason: expect.stringMatching(/not registered/) });
    expect(classify({ agent, metadata: meta })).toEqual({ kind: 'healthy' }); // ECS not asked yet
    expect(classify({ agent, metadata: meta, ecs: 'missing' })).toMatchObject({
      kind: 'wrong',
      reason: expect.stringMatching(/does not know/),
    });
    expect(classify({ agent, metadata: meta, ecs: view({ agentConnected: false }) })).toMatchObject({
      reason: expect.stringMatching(/disconnected/),
    });
    expect(classify({ agent, metadata: meta, ecs: view({ status: 'INACTIVE' }) })).toMatchObject({
      reason: expect.stringMatching(/INACTIVE/),
    });
    expect(classify({ agent, metadata: meta, ecs: view({ healthStatus: 'IMPAIRED' }) })).toMatchObject({
      reason: expect.stringMatching(/IMPAIRED/),
    });
    expect(classify({ agent: { running: true, health: 'unhealthy' }, metadata: meta, ecs: view() })).toMatchObject({ kind: 'wrong' });
    expect(classify({ agent, metadata: meta, ecs: view({ status: 'DRAINING' }) })).toEqual({ kind: 'healthy' });
  });
});

describe('healing ladder', () => {
  const wrong = { kind: 'wrong', reason: 'ECS reports the agent disconnected' } as const;
  it('restarts after the threshold, gives each restart the full threshold, then escalates once', () => {
    const l = new HealingLadder({ unhealthyMs: 100, maxRestarts: 2, windowMs: 10_000, setInstanceHealth: true });
    expect(l.observe(0, wrong).kind).toBe('none');
    expect(l.observe(99, wrong).kind).toBe('none');
    expect(l.observe(100, wrong)).toMatchObject({ kind: 'restart-agent', attempt: 1 });
    expect(l.observe(150, wrong).kind).toBe('none'); // the restarted agent gets its 100 ms
    expect(l.observe(200, wrong)).toMatchObject({ kind: 'restart-agent', attempt: 2 });
    expect(l.observe(300, wrong)).toMatchObject({ kind: 'mark-unhealthy' });
    expect(l.observe(400, wrong).kind).toBe('none'); // once
  });

  it('a healthy verdict resets the clock; restarts age out of the window; without escalation it reports once', () => {
    const l = new HealingLadder({ unhealthyMs: 100, maxRestarts: 1, windowMs: 1_000, setInstanceHealth: false });
    l.observe(0, wrong);
    expect(l.observe(50, { kind: 'healthy' }).kind).toBe('none');
    expect(l.observe(120, wrong).kind).toBe('none'); // a new spell began at 120
    expect(l.observe(220, wrong).kind).toBe('restart-agent');
    expect(l.observe(320, wrong).kind).toBe('exhausted');
    expect(l.observe(420, wrong).kind).toBe('none');
    expect(l.observe(1_300, wrong).kind).toBe('restart-agent'); // the restart at 220 left the window
    expect(l.observe(1_350, { kind: 'down', reason: 'stopped' }).kind).toBe('none');
  });
});

describe('sandbox audit', () => {
  const c = (o: Partial<ContainerState>): ContainerState => ({
    id: 'id',
    name: 'task',
    runtime: 'runsc',
    status: 'running',
    running: true,
    pid: 10,
    startedAt: '',
    finishedAt: '',
    exitCode: 0,
    labels: {},
    ...o,
  });
  it('flags other runtimes and runsc containers without a sandbox process; exempts our agent and probes by their recorded IDs only', () => {
    const cmd = new Map<number, string[] | undefined>([
      [10, ['runsc-sandbox', '--root=/x', 'boot']],
      [11, ['/pause']],
      [12, ['nvidia-thing']],
    ]);
    const r = audit(
      [
        c({ id: 'a', pid: 10 }),
        c({ id: 'b', pid: 11 }),
        c({ id: 'c', pid: 12, runtime: 'nvidia' }),
        c({ id: 'd', name: 'ecs-agent', runtime: 'runc', labels: { 'ecs-gvisor.managed': 'true' } }),
        c({ id: 'e', name: 'ecs-agent', runtime: 'runc' }), // someone else's: not exempt
        c({ id: 'f', runtime: 'runc', labels: { 'ecs-gvisor.probe': '1' } }),
        c({ id: 'g', running: false, runtime: 'runc' }),
        // A task can set any label: our probe's label on a runc container makes it no probe of ours.
        c({ id: 'h', name: 'task-h', runtime: 'runc', labels: { 'ecs-gvisor.probe': '1', 'ecs-gvisor.managed': 'true' } }),
      ],
      cmd,
      'runsc',
      new Set(['d', 'f']), // the IDs ecs-gvisor recorded when it created them
    );
    expect(r.checked).toBe(5);
    expect(r.violations.map((v) => [v.id, v.reason])).toEqual([
      ['b', expect.stringMatching(/not a gVisor sandbox/)],
      ['c', expect.stringMatching(/runtime "nvidia"/)],
      ['e', expect.stringMatching(/runtime "runc"/)],
      ['h', expect.stringMatching(/runtime "runc"/)],
    ]);
  });
  it('reports each container’s network mode and the stack its sandbox runs', () => {
    const cmd = new Map<number, string[] | undefined>([
      [10, ['runsc-sandbox', '--network=none', 'boot']],
      [11, ['runsc-sandbox', '--network=none', '--network=host', 'boot']], // the entry point's flag comes last
      [12, ['sleep']],
    ]);
    const r = audit(
      [
        c({ id: 'a', pid: 10, networkMode: 'bridge' }),
        c({ id: 'b', pid: 11, networkMode: 'container:pause' }),
        c({ id: 'c', pid: 12, runtime: 'runc', networkMode: 'host' }),
      ],
      cmd,
      'runsc',
      new Set(),
    );
    // --network=none (ECS_GVISOR_RUNSC_ARGS) leaves the sandbox loopback only: not netstack.
    expect(r.networks.map((n) => [n.id, n.networkMode, n.stack])).toEqual([
      ['a', 'bridge', 'no-network'],
      ['b', 'container:pause', 'passthrough'],
      ['c', 'host', 'none'],
    ]);
  });
});

describe('attributes', () => {
  it('publishes verified with a valid version value, replaces it when verification lapses, and stays quiet when in place', () => {
    expect(attributeValue('0.0~20221219')).toBe('0.0_20221219');
    const want = desiredAttributes(true, '0.0~20221219');
    expect(planAttributes(want, {})).toEqual({
      put: { 'ecs-gvisor.sandbox': 'verified', 'ecs-gvisor.runsc-version': '0.0_20221219' },
      remove: [],
    });
    expect(planAttributes(want, { ...want, 'ecs.os-type': 'linux' })).toEqual({ put: {}, remove: [] });
    expect(planAttributes(desiredAttributes(false, undefined), want)).toEqual({
      put: { 'ecs-gvisor.sandbox': 'unverified' },
      remove: ['ecs-gvisor.runsc-version'],
    });
  });
  it('publishes one attribute per ECS network mode proven (awsvpc needs its own and a joined namespace), and removes them when not', () => {
    const ok = { proven: true as const, stack: 'netstack' as const };
    const no = { proven: false as const, reason: 'x' };
    expect(provenEcsModes({ own: ok, joined: ok, host: ok })).toEqual(['bridge', 'awsvpc', 'host']);
    expect(provenEcsModes({ own: ok, joined: no, host: no })).toEqual(['bridge']);
    expect(provenEcsModes({ own: no, joined: ok, host: ok })).toEqual(['host']);
    const all = desiredAttributes(true, '1', 0, { own: ok, joined: ok, host: ok });
    expect(all).toMatchObject({
      'ecs-gvisor.network.bridge': 'verified',
      'ecs-gvisor.network.awsvpc': 'verified',
      'ecs-gvisor.network.host': 'verified',
    });
    expect(planAttributes(desiredAttributes(true, '1', 0, { own: ok, joined: no, host: no }), all).remove).toEqual([
      'ecs-gvisor.network.awsvpc',
      'ecs-gvisor.network.host',
    ]);
    expect(planAttributes(desiredAttributes(false, undefined), all).remove).toEqual([
      'ecs-gvisor.runsc-version',
      'ecs-gvisor.network.bridge',
      'ecs-gvisor.network.awsvpc',
      'ecs-gvisor.network.host',
    ]);
  });
});

describe('introspection metadata', () => {
  it('reads the ARN, treats an empty one as not registered, and refuses garbage', () => {
    expect(parseMetadata('u', JSON.stringify({ Cluster: 'prod', ContainerInstanceArn: meta.containerInstanceArn, Version: 'v1' }))).toEqual(
      {
        ...meta,
        version: 'v1',
      },
    );
    expect(parseMetadata('u', '{"Cluster":"prod","ContainerInstanceArn":""}')).toBeUndefined();
    expect(() => parseMetadata('http://127.0.0.1:51678/v1/metadata', '<html>')).toThrow(/51678.*not JSON/);
    expect(() => parseMetadata('u', '{"ContainerInstanceArn":"i-123"}')).toThrow(/not a container instance ARN/);
  });
});

describe('the region of calls about the registration', () => {
  it('while introspection has not answered again (the agent restarting), the recorded ARN gives it: no false configuration error', () => {
    const st = new WatchState(
      { clock: new FakeClock(), log: pino({ level: 'silent' }), metrics: new WatchMetrics() },
      { auditAction: 'report', network: false, acsGraceMs: 30_000 },
      undefined,
    );
    expect(() => st.region()).toThrow(/No AWS region/);
    st.snap.registration.containerInstanceArn = meta.containerInstanceArn;
    expect(st.obs.metadata).toBeUndefined();
    expect(st.region()).toBe('us-east-1');
  });
});

describe('publishing the attributes', () => {
  it('a withdrawal is one that takes verified away; restoring it waits longer the more it flapped; a failed withdrawal is retried, backing off', () => {
    const verified = { 'ecs-gvisor.sandbox': 'verified' };
    expect(withdraws({ 'ecs-gvisor.sandbox': 'violated' }, verified)).toBe(true);
    expect(withdraws({ 'ecs-gvisor.sandbox': 'unverified' }, {})).toBe(true);
    expect(withdraws(verified, { 'ecs-gvisor.sandbox': 'violated' })).toBe(false);
    expect(withdraws({ 'ecs-gvisor.sandbox': 'violated' }, { 'ecs-gvisor.sandbox': 'violated' })).toBe(false);
    expect([0, 1, 2, 3, 4, 10].map(restoreHoldMs)).toEqual([0, 0, 30_000, 60_000, 120_000, 900_000]);
    expect([1, 2, 3, 10].map(withdrawRetryMs)).toEqual([5_000, 10_000, 20_000, 300_000]);
  });
});
