import { describe, expect, it } from 'vitest';
import { parseSpotNotice } from '../../src/lifecycle/lifecycle.js';
import {
  afterEffect,
  awaitsEcs,
  type Effect,
  heartbeatIntervalMs,
  type LifecyclePolicy,
  type LifecycleRecord,
  type LifecycleView,
  planLifecycle,
} from '../../src/lifecycle/lifecycle-plan.js';

const T0 = Date.parse('2026-11-23T00:00:00Z');
const policy: LifecyclePolicy = {
  launchHook: 'launch',
  terminateHook: 'terminate',
  spotDrain: true,
  heartbeatMs: 100_000,
  launchTimeoutMs: 1_800_000,
  drainTimeoutMs: 600_000,
};
const ready = { status: 'ACTIVE', agentConnected: true, runningTasksCount: 0, at: T0 };

function view(o: Partial<LifecycleView> = {}): LifecycleView {
  return { now: T0, stage: 'watching', target: 'InService', verified: true, registered: true, inGroup: true, ...o };
}

/** Plan, then fold every effect back as succeeded (the runner's loop, without the calls). */
function step(
  rec: LifecycleRecord,
  v: LifecycleView,
  p = policy,
  out: (e: Effect) => Parameters<typeof afterEffect>[2] = () => ({ kind: 'ok' }),
) {
  const plan = planLifecycle(rec, v, p);
  let r = plan.record;
  for (const e of plan.effects) r = afterEffect(r, e, out(e), v.now, p);
  return { ...plan, record: r, urgentEcs: awaitsEcs(r) };
}

const kinds = (effects: Effect[]) =>
  effects.map((e) =>
    e.kind === 'complete'
      ? `complete ${e.role} ${e.result}`
      : e.kind === 'agent'
        ? `agent ${e.want}`
        : `${e.kind}${'role' in e ? ` ${e.role}` : ''}`,
  );

describe('launch gate', () => {
  it('heartbeats while waiting and continues only once verified, registered, ACTIVE and connected', () => {
    let s = step({}, view({ registered: false }));
    expect(kinds(s.effects)).toEqual(['agent run', 'heartbeat launch']);
    expect(s.urgentEcs).toBe(true);
    s = step(s.record, view({ now: T0 + 5_000, ecs: { ...ready, agentConnected: false } }));
    expect(kinds(s.effects)).toEqual(['agent run']); // next heartbeat not yet due
    s = step(s.record, view({ now: T0 + 10_000, ecs: ready }));
    expect(kinds(s.effects)).toEqual(['agent run', 'complete launch CONTINUE']);
    expect(s.record.launch).toMatchObject({ phase: 'completed', result: 'CONTINUE', heartbeats: 1, target: 'InService' });
    expect(s.urgentEcs).toBe(false);
    expect(kinds(step(s.record, view({ now: T0 + 20_000, ecs: ready })).effects)).toEqual(['agent run']); // done once
  });

  it('only heartbeats during bootstrap, at a third of the heartbeat timeout', () => {
    expect(heartbeatIntervalMs(300)).toBe(100_000);
    expect(heartbeatIntervalMs(30)).toBe(10_000);
    let rec: LifecycleRecord = {};
    let beats = 0;
    for (let t = 0; t <= 1_000_000; t += 5_000) {
      const s = step(rec, view({ now: T0 + t, stage: 'bootstrap', ecs: ready }));
      beats += s.effects.filter((e) => e.kind === 'heartbeat').length;
      expect(s.effects.some((e) => e.kind === 'complete' || e.kind === 'agent')).toBe(false);
      rec = s.record;
    }
    expect(beats).toBe(11); // at 0, 100 s, …, 1000 s
  });

  it('abandons after the launch timeout, naming what was missing', () => {
    const s0 = step({}, view({ registered: false }));
    const s = step(s0.record, view({ now: T0 + 1_800_000, registered: false }));
    const c = s.effects.find((e) => e.kind === 'complete')!;
    expect(c).toMatchObject({ result: 'ABANDON', reason: expect.stringMatching(/the agent has not registered after 1800 s/) });
  });

  it('waits (no ABANDON) while not verified but within the timeout', () => {
    const s = step({}, view({ verified: false, ecs: ready }));
    expect(s.effects.some((e) => e.kind === 'complete')).toBe(false);
  });

  it('retries a failed completion after a pause, and records a ValidationError as not pending', () => {
    let s = step({}, view({ ecs: ready }), policy, (e) => (e.kind === 'complete' ? { kind: 'failed' } : { kind: 'ok' }));
    expect(s.record.launch?.phase).toBe('waiting');
    expect(kinds(step(s.record, view({ now: T0 + 5_000, ecs: ready })).effects)).not.toContain('complete launch CONTINUE');
    s = step(s.record, view({ now: T0 + 30_000, ecs: ready }), policy, () => ({
      kind: 'not-pending',
      detail: 'No active Lifecycle Action found',
    }));
    expect(s.record.launch).toMatchObject({ phase: 'not-pending', reason: 'No active Lifecycle Action found' });
  });

  it('does nothing for hooks outside an Auto Scaling group or without a launch hook', () => {
    expect(kinds(step({}, view({ inGroup: false })).effects)).toEqual(['agent run']);
    expect(kinds(step({}, view(), { ...policy, launchHook: undefined }).effects)).toEqual(['agent run']);
  });
});

describe('warm pools', () => {
  it('holds the agent, continues once verified without waiting for ECS, then gates InService anew', () => {
    let s = step({}, view({ target: 'Warmed:Running', registered: false }));
    expect(kinds(s.effects)).toEqual(['agent hold', 'complete launch CONTINUE']);
    expect(s.record.launch).toMatchObject({ target: 'Warmed:Running', phase: 'completed' });
    expect(s.urgentEcs).toBe(false);
    // Leaving the pool: a new launch action for InService, which waits for the registration.
    s = step(s.record, view({ now: T0 + 60_000, target: 'InService', registered: false }));
    expect(kinds(s.effects)).toEqual(['agent run', 'heartbeat launch']);
    expect(s.record.launch).toMatchObject({ target: 'InService', phase: 'waiting' });
    s = step(s.record, view({ now: T0 + 90_000, target: 'InService', ecs: ready }));
    expect(s.record.launch).toMatchObject({ target: 'InService', phase: 'completed', result: 'CONTINUE' });
  });

  it('keeps a record made before the target was known (404) for that target', () => {
    let s = step({}, view({ stage: 'bootstrap', target: undefined }));
    expect(s.record.launch?.target).toBe('unknown');
    s = step(s.record, view({ now: T0 + 5_000, target: 'InService', ecs: ready }));
    expect(s.record.launch).toMatchObject({ target: 'InService', phase: 'completed', heartbeats: 1 });
  });
});

describe('terminate drain', () => {
  const draining = (n: number, at: number) => ({ status: 'DRAINING', agentConnected: true, runningTasksCount: n, at });

  it('drains, waits for the tasks to go 3 → 0 with heartbeats, then continues', () => {
    let s = step(
      { launch: { hook: 'launch', target: 'InService', phase: 'completed', since: '', heartbeats: 0 } },
      view({ target: 'Terminated', ecs: ready }),
      policy,
      (e) => (e.kind === 'drain' ? { kind: 'ok', drainedBy: 'ecs-gvisor', runningTasks: 3 } : { kind: 'ok' }),
    );
    expect(kinds(s.effects)).toEqual(['drain', 'heartbeat terminate']);
    expect(s.record.drain).toMatchObject({ reason: 'terminate', phase: 'draining', by: 'ecs-gvisor', runningTasks: 3 });
    expect(s.urgentEcs).toBe(true);
    s = step(s.record, view({ now: T0 + 60_000, target: 'Terminated', ecs: draining(1, T0 + 60_000) }));
    expect(kinds(s.effects)).toEqual([]);
    expect(s.record.drain?.runningTasks).toBe(1);
    s = step(s.record, view({ now: T0 + 120_000, target: 'Terminated', ecs: draining(0, T0 + 120_000) }));
    expect(kinds(s.effects)).toEqual(['complete terminate CONTINUE']); // a heartbeat was due, but the completion ends the action
    expect(s.record.drain).toMatchObject({
      phase: 'drained',
      hook: { phase: 'completed', result: 'CONTINUE', reason: expect.stringMatching(/set DRAINING by ecs-gvisor/) },
    });
  });

  it('ignores an ECS view taken before the drain began', () => {
    const s0 = step({}, view({ target: 'Terminated' }), policy, (e) =>
      e.kind === 'drain' ? { kind: 'ok', drainedBy: 'ecs-gvisor', runningTasks: 2 } : { kind: 'ok' },
    );
    const s = step(s0.record, view({ now: T0 + 5_000, target: 'Terminated', ecs: { ...ready, at: T0 - 1 } }));
    expect(s.record.drain?.phase).toBe('draining');
  });

  it('completes anyway when the drain exceeds its timeout, and says so', () => {
    const s0 = step({}, view({ target: 'Terminated' }), policy, (e) =>
      e.kind === 'drain' ? { kind: 'ok', drainedBy: 'already-draining', runningTasks: 2 } : { kind: 'ok' },
    );
    const s = step(s0.record, view({ now: T0 + 600_000, target: 'Terminated', ecs: draining(2, T0 + 590_000) }));
    expect(s.record.drain).toMatchObject({
      phase: 'timed-out',
      runningTasks: 2,
      hook: { phase: 'completed', reason: 'drain timed out with 2 task(s) still running' },
    });
    expect(s.notes.some((n) => n.level === 'warn' && /DRAIN_TIMEOUT/.test(n.msg))).toBe(true);
  });

  it('with nothing registered, completes at once', () => {
    const s = step({}, view({ target: 'Terminated', registered: false }));
    expect(kinds(s.effects)).toEqual(['complete terminate CONTINUE']);
    expect(s.record.drain?.phase).toBe('nothing-to-drain');
  });

  it('a spot notice drains at once, without a hook to complete', () => {
    const s = step({}, view({ spot: parseSpotNotice('{"action": "terminate", "time": "2026-11-23T00:02:00Z"}'), ecs: ready }), {
      ...policy,
      launchHook: undefined,
    });
    expect(kinds(s.effects)).toEqual(['agent run', 'drain']);
    expect(s.record.spot).toMatchObject({ action: 'terminate', time: '2026-11-23T00:02:00Z' });
    // The log line keeps its own `time`: the notice's goes under another key.
    const note = s.notes.find((n) => n.msg === 'spot interruption notice')!;
    expect(note.fields).toEqual({ action: 'terminate', noticeTime: '2026-11-23T00:02:00Z', drain: true });
    expect(s.record.drain?.reason).toBe('spot');
    expect(kinds(step({}, view({ spot: { action: 'stop' } }), { ...policy, launchHook: undefined, spotDrain: false }).effects)).toEqual([
      'agent run',
    ]);
  });

  it('terminate after a spot drain asks ECS afresh: a task ECS lists (running or pending) is waited for, then CONTINUE', () => {
    const p = { ...policy, launchHook: undefined };
    const spot = parseSpotNotice('{"action": "terminate", "time": "2026-11-23T00:02:00Z"}');
    let s = step({}, view({ spot, ecs: ready }), p, (e) => (e.kind === 'drain' ? { kind: 'ok', drainedBy: 'ecs-gvisor' } : { kind: 'ok' }));
    s = step(s.record, view({ now: T0 + 10_000, spot, ecs: { ...ready, at: T0 + 10_000 } }), p);
    expect(s.record.drain?.phase).toBe('drained');
    // The terminate action comes later. The view in hand is from before it: no completion on it.
    s = step(s.record, view({ now: T0 + 60_000, target: 'Terminated', spot, ecs: { ...ready, at: T0 + 10_000 } }), p);
    expect(kinds(s.effects)).not.toContain('complete terminate CONTINUE');
    expect(s.urgentEcs).toBe(true); // the watch asks ECS at the alert interval
    // ECS, asked now, has a task pending on the instance: back to waiting for it.
    const busy = { ...ready, runningTasksCount: 0, pendingTasksCount: 1, at: T0 + 61_000 };
    s = step(s.record, view({ now: T0 + 61_000, target: 'Terminated', spot, ecs: busy }), p);
    expect(kinds(s.effects)).not.toContain('complete terminate CONTINUE');
    expect(s.record.drain).toMatchObject({ phase: 'draining', runningTasks: 1 });
    // Gone: CONTINUE.
    s = step(s.record, view({ now: T0 + 70_000, target: 'Terminated', spot, ecs: { ...ready, at: T0 + 70_000 } }), p);
    expect(kinds(s.effects)).toContain('complete terminate CONTINUE');
  });

  it('an agent that runs with its registration unconfirmed (its port squatted) is not "nothing to drain": no CONTINUE before the drain or its timeout', () => {
    const p = { ...policy, launchHook: undefined };
    let s = step({}, view({ target: 'Terminated', registered: false, agentRunning: true }), p, (e) =>
      e.kind === 'drain' ? { kind: 'failed' } : { kind: 'ok' },
    );
    expect(s.record.drain).toMatchObject({ phase: 'draining' });
    expect(kinds(s.effects)).toEqual(['drain', 'heartbeat terminate']);
    s = step(s.record, view({ now: T0 + 60_000, target: 'Terminated', registered: false, agentRunning: true }), p, (e) =>
      e.kind === 'drain' ? { kind: 'failed' } : { kind: 'ok' },
    );
    expect(kinds(s.effects)).not.toContain('complete terminate CONTINUE');
    // At the drain timeout it completes, and says so.
    s = step(s.record, view({ now: T0 + 600_000, target: 'Terminated', registered: false, agentRunning: true }), p, (e) =>
      e.kind === 'drain' ? { kind: 'failed' } : { kind: 'ok' },
    );
    expect(kinds(s.effects)).toContain('complete terminate CONTINUE');
    expect(s.record.drain?.phase).toBe('timed-out');
  });

  it('a failed drain call is tried again on the next round', () => {
    const s0 = step({}, view({ target: 'Terminated' }), policy, (e) => (e.kind === 'drain' ? { kind: 'failed' } : { kind: 'ok' }));
    expect(s0.record.drain?.by).toBeUndefined();
    expect(kinds(step(s0.record, view({ now: T0 + 5_000, target: 'Terminated' })).effects)).toContain('drain');
  });
});

describe('parseSpotNotice', () => {
  it('reads the notice, and takes anything unreadable at that path as a notice too', () => {
    expect(parseSpotNotice('{"action":"stop","time":"x"}')).toEqual({ action: 'stop', time: 'x' });
    expect(parseSpotNotice('garbage')).toEqual({ action: 'unknown' });
  });
});
