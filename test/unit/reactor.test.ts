/**
 * The watch's rules as a table: an observation and the facts after it was recorded go in, actions come
 * out, on a simulated clock. What carries them out (watch-loop.ts) is proven by test/integration/watch*.
 */
import { describe, expect, it } from 'vitest';
import type { AgentMetadata, ContainerInstanceView } from '../../src/ports.js';
import { HealingLadder } from '../../src/watch/health.js';
import type { Drift } from '../../src/watch/monitors/drift-monitor.js';
import { type Action, AFTER_RESTART_MS, type Facts, type Observation, react } from '../../src/watch/reactor.js';

const S = 1_000;
const meta: AgentMetadata = {
  cluster: 'prod',
  containerInstanceArn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc',
  version: 'Amazon ECS Agent - v1.101.2',
};
const view = (o: Partial<ContainerInstanceView> = {}): ContainerInstanceView => ({
  arn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc',
  status: 'ACTIVE',
  agentConnected: true,
  runningTasksCount: 0,
  pendingTasksCount: 0,
  attributes: { 'ecs-gvisor.sandbox': 'verified' },
  ec2InstanceId: 'i-0123',
  ...o,
});
const running = { running: true };
const facts = (o: Partial<Facts> = {}): Facts => ({
  health: { agent: running, metadata: meta, ecs: view() },
  confirmed: true,
  ecsUrgent: false,
  alertPollMs: 10 * S,
  auditAction: 'report',
  acsGraceMs: 30 * S,
  ...o,
});
const ladder = () => new HealingLadder({ unhealthyMs: 60 * S, maxRestarts: 2, windowMs: 3_600 * S, setInstanceHealth: true });
const agentObs = (registered = false): Observation => ({ kind: 'agent', supervisor: {}, metadata: meta, registered });
const ecsObs = (v?: ContainerInstanceView): Observation => ({
  kind: 'ecs',
  arn: meta.containerInstanceArn,
  answer: { view: v, thisInstance: 'i-0123' },
  lastCall: { outcome: 'ok', at: '' },
  callsLastHour: 1,
});
const drift = (o: Partial<Drift>): Drift =>
  ({ drifted: false, what: '/etc/docker/daemon.json changed', netDrift: false, any: false, ...o }) as Drift;
const kinds = (a: Action[]) => a.map((x) => x.kind);

describe('the reactor', () => {
  it.each<[string, Observation, Partial<Facts>, Action[]]>([
    ['a new registration: ECS is asked about it first', agentObs(true), {}, [{ kind: 'first-ecs-poll' }]],
    ['the same registration, healthy: nothing', agentObs(), {}, []],
    [
      'ECS answers for a confirmed registration: the attributes are made to say what we know',
      ecsObs(view()),
      {},
      [{ kind: 'sync-attributes', current: { 'ecs-gvisor.sandbox': 'verified' } }],
    ],
    ['ECS says the ARN is another instance: no attributes for it', ecsObs(view()), { confirmed: false }, []],
    [
      'ECS answers while the lifecycle awaits it: the lifecycle goes at once',
      ecsObs(view()),
      { ecsUrgent: true },
      [
        { kind: 'poll', monitor: 'lifecycle', inMs: 0 },
        { kind: 'sync-attributes', current: { 'ecs-gvisor.sandbox': 'verified' } },
      ],
    ],
    [
      'the ECS call failed: nothing to act on',
      { kind: 'ecs', arn: meta.containerInstanceArn, lastCall: { outcome: 'throttled', at: '' }, callsLastHour: 3 },
      { ecsUrgent: true },
      [],
    ],
    [
      'a violation appears: the attributes are republished (withdrawn) at once',
      {
        kind: 'audit',
        audit: { checked: 2, violations: [{ id: 'c1', name: 't', runtime: 'runc', reason: 'x' }] },
        wasViolated: false,
        stop: ['c1'],
      },
      {},
      [{ kind: 'republish' }],
    ],
    [
      'with AUDIT_ACTION=stop, its containers are stopped too',
      {
        kind: 'audit',
        audit: { checked: 2, violations: [{ id: 'c1', name: 't', runtime: 'runc', reason: 'x' }] },
        wasViolated: true,
        stop: ['c1'],
      },
      { auditAction: 'stop' },
      [{ kind: 'stop-containers', ids: ['c1'] }],
    ],
    [
      'the last violation gone: republished (verified again, after its hold)',
      { kind: 'audit', audit: { checked: 2, violations: [] }, wasViolated: true, stop: [] },
      {},
      [{ kind: 'republish' }],
    ],
    ['no drift: no repair', { kind: 'drift', drift: drift({}) }, {}, []],
    [
      'drift: a repair (which reads again under the host lock)',
      { kind: 'drift', drift: drift({ netDrift: true, any: true }) },
      {},
      [{ kind: 'repair' }],
    ],
    [
      'the runtime drifted, read again under the lock: the proof lapses and ECS is told before the repair',
      { kind: 'repairing', drift: drift({ drifted: true, any: true }) },
      {},
      [{ kind: 'lapse', reason: 'drift: /etc/docker/daemon.json changed' }, { kind: 'republish' }],
    ],
    [
      'proven again: republished, and the agent released when the sandbox held it',
      {
        kind: 'repaired',
        runtime: { ok: true, state: { name: 'runsc', runscPath: '/r', verified: true } },
        drifted: false,
        sandboxHeld: true,
      },
      {},
      [{ kind: 'republish' }, { kind: 'release-agent', by: 'sandbox' }],
    ],
    [
      'not proven: the proof lapses and the agent is held (fail closed)',
      { kind: 'repaired', runtime: { ok: false, reason: 'runsc is gone' }, drifted: true, sandboxHeld: false },
      {},
      [
        { kind: 'lapse', reason: 'not proven: runsc is gone' },
        { kind: 'hold-agent', by: 'sandbox', reason: 'the sandbox is not proven: runsc is gone' },
      ],
    ],
    [
      'a warm pool: the lifecycle holds the agent',
      { kind: 'lifecycle', agent: { want: 'hold', reason: 'warmed' }, heldForLifecycle: false, urgentEcs: false, drainingByUs: false },
      {},
      [{ kind: 'hold-agent', by: 'lifecycle', reason: 'warmed' }],
    ],
    [
      'leaving the warm pool: released, introspection asked soon',
      { kind: 'lifecycle', agent: { want: 'run', reason: 'InService' }, heldForLifecycle: true, urgentEcs: false, drainingByUs: false },
      {},
      [
        { kind: 'release-agent', by: 'lifecycle' },
        { kind: 'poll', monitor: 'agent', inMs: 1_000 },
      ],
    ],
    [
      'a launch gate awaits ECS: ECS polled at the alert interval',
      { kind: 'lifecycle', heldForLifecycle: false, urgentEcs: true, drainingByUs: false },
      {},
      [
        { kind: 'poll', monitor: 'ecs', inMs: 10 * S },
        { kind: 'ecs-urgent', urgent: true },
      ],
    ],
    [
      'a task container starts: audited in half a second',
      { kind: 'event', event: { action: 'start', id: 'c2', name: 'task' }, agentName: 'ecs-agent' },
      {},
      [
        { kind: 'audit-forget', id: 'c2', died: false },
        { kind: 'poll', monitor: 'audit', inMs: 500 },
      ],
    ],
    [
      'a task container dies: audited, and why it ended read',
      { kind: 'event', event: { action: 'die', id: 'c2', name: 'task', exitCode: 137 }, agentName: 'ecs-agent' },
      {},
      [
        { kind: 'audit-forget', id: 'c2', died: true },
        { kind: 'poll', monitor: 'audit', inMs: 500 },
      ],
    ],
    [
      'the agent dies: introspection asked in a second',
      { kind: 'event', event: { action: 'die', id: 'a1', name: 'ecs-agent', exitCode: 1 }, agentName: 'ecs-agent' },
      {},
      [
        { kind: 'audit-forget', id: 'a1', died: true },
        { kind: 'poll', monitor: 'agent', inMs: 1_000 },
      ],
    ],
    [
      'dockerd came back: everything checked again',
      { kind: 'event', event: { action: 'docker-back' }, agentName: 'ecs-agent' },
      {},
      [
        { kind: 'audit-forget' },
        { kind: 'poll', monitor: 'drift', inMs: 0 },
        { kind: 'poll', monitor: 'audit', inMs: 0 },
        { kind: 'poll', monitor: 'agent', inMs: 0 },
      ],
    ],
    [
      'the proof’s network modes recorded: the attributes',
      { kind: 'event', event: { action: 'proven' }, agentName: 'ecs-agent' },
      {},
      [{ kind: 'poll', monitor: 'attributes', inMs: 0 }],
    ],
  ])('%s', (_, obs, f, want) => {
    expect(react(ladder(), obs, facts(f), 0).actions).toEqual(want);
  });

  it('a lost ACS connection: ECS is asked once it has lasted the grace period, again while ECS disagrees, and not when it came back first', () => {
    const acsObs = (state: 'connected' | 'disconnected', since = 0): Observation => ({ kind: 'acs', state, why: '', since });
    const asks = (acs: Facts['acs'], now: number, confirmed = true) =>
      react(
        ladder(),
        acsObs(acs?.state === 'connected' ? 'connected' : 'disconnected', acs?.since),
        facts({ acs, confirmed }),
        now,
      ).actions.filter((a) => a.kind === 'poll' && a.monitor === 'ecs').length;
    const lost = { state: 'disconnected' as const, since: 0, asks: 0 };
    expect(asks(lost, 29 * S)).toBe(0); // within the grace period: a reconnect, a blip
    expect(asks(lost, 30 * S)).toBe(1);
    expect(asks(lost, 40 * S, false)).toBe(0); // a registration ECS has not confirmed is never asked about here
    // ECS agrees: nothing more to ask (the instance sees the connection come back itself).
    expect(asks({ ...lost, asks: 1, ecsConnected: false }, 10_000 * S)).toBe(0);
    // ECS says connected: asked again after 2×, 4×, 8× the grace, then no more until the evidence changes.
    expect(asks({ ...lost, asks: 1, ecsConnected: true }, 59 * S)).toBe(0);
    expect(asks({ ...lost, asks: 1, ecsConnected: true }, 60 * S)).toBe(1);
    expect(asks({ ...lost, asks: 3, ecsConnected: true }, 240 * S)).toBe(1);
    expect(asks({ ...lost, asks: 4, ecsConnected: true }, 10_000 * S)).toBe(0);
    // Connected (or back before the grace ran out): never asked.
    expect(asks({ state: 'connected', since: 0, asks: 0 }, 10_000 * S)).toBe(0);
  });

  it('heals on the simulated clock: wrong for a minute restarts the agent, twice; then Auto Scaling replaces the instance, once', () => {
    const l = ladder();
    const disconnected = facts({ health: { agent: running, metadata: meta, ecs: view({ agentConnected: false }) } });
    const at = (t: number) => react(l, ecsObs(view({ agentConnected: false })), disconnected, t);
    expect(kinds(at(0).actions)).toEqual(['sync-attributes']);
    expect(at(0).healing?.verdict).toEqual({ kind: 'wrong', reason: 'ECS reports the agent disconnected' });
    expect(kinds(at(59 * S).actions)).toEqual(['sync-attributes']);
    const restart = at(60 * S).actions;
    expect(restart).toEqual([
      { kind: 'sync-attributes', current: { 'ecs-gvisor.sandbox': 'verified' } },
      { kind: 'restart-agent', reason: 'ECS reports the agent disconnected for 60 s', attempt: 1 },
      { kind: 'forget-registration-answer' },
      { kind: 'poll', monitor: 'agent', inMs: AFTER_RESTART_MS },
    ]);
    // The restarted agent gets the full minute again.
    expect(kinds(at(100 * S).actions)).toEqual(['sync-attributes']);
    expect(kinds(at(120 * S).actions)).toContain('restart-agent');
    const replace = at(180 * S);
    expect(replace.actions.at(-1)).toEqual({
      kind: 'mark-unhealthy',
      reason: 'ECS reports the agent disconnected for 60 s, after 2 agent restarts within 3600 s',
    });
    expect(replace.healing?.ladder).toMatchObject({ markedUnhealthy: true });
    expect(kinds(at(300 * S).actions)).toEqual(['sync-attributes']);
    // Healthy again: the ladder forgets the spell (the restarts stay counted in their window).
    expect(react(l, agentObs(), facts(), 301 * S)).toMatchObject({ actions: [], healing: { verdict: { kind: 'healthy' } } });
  });

  it('a verdict of "down" (the supervisor’s job) heals nothing, however long', () => {
    const l = ladder();
    const down = facts({ health: { agent: { running: false } } });
    for (const t of [0, 600 * S, 3_600 * S]) expect(react(l, agentObs(), down, t).actions).toEqual([]);
  });
});
