/**
 * The ACS connection as the instance sees it, and what it changes in the ECS budget: the monitor's word
 * from log lines and the kernel (fakes of both), WatchState believing a reconnection without asking, and
 * the ECS poll's cadence (heartbeat, alert, steady) by what is known locally.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { AwsCaller } from '../../src/aws/aws-caller.js';
import type { ContainerInstanceView, HostPort } from '../../src/ports.js';
import type { TcpConnection } from '../../src/proc-net.js';
import { WatchMetrics } from '../../src/watch/metrics.js';
import { AcsMonitor } from '../../src/watch/monitors/acs-monitor.js';
import { EcsMonitor } from '../../src/watch/monitors/ecs-monitor.js';
import { WatchState } from '../../src/watch/watch-state.js';
import { testBudget as budget, containerInstanceView as view } from '../fakes/ecs-views.js';
import { FakeClock } from '../harness/fake-clock.js';

const ARN = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc';
const OTHER = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/old';
const line = (time: string, msg: string, arn?: string) =>
  `level=info time=${time} msg="${msg}"${arn ? ` containerInstanceARN="${arn}"` : ''}\n`;
const dial = (time: string, host: string) =>
  `level=info time=${time} msg="Establishing a Websocket connection" url="http://${host}/ws?clusterArn=prod&containerInstanceArn=x&seqNum=1"\n`;

function setup() {
  const clock = new FakeClock(Date.parse('2026-12-07T10:00:00Z'));
  const st = new WatchState(
    { clock, log: pino({ level: 'silent' }), metrics: new WatchMetrics() },
    { auditAction: 'report', network: false, acsGraceMs: 30_000 },
    undefined,
  );
  st.obs.agent = { running: true, pid: 100, startedAt: '2026-12-07T09:59:00Z' };
  st.obs.metadata = { cluster: 'prod', containerInstanceArn: ARN };
  let pending = '';
  let failure: Error | undefined;
  const failNext = (e: Error) => {
    failure = e;
  };
  const tail = {
    read: async () => {
      if (failure) {
        const e = failure;
        failure = undefined;
        throw e;
      }
      const t = pending;
      pending = '';
      return t;
    },
  };
  const conns = new Map<number, TcpConnection[]>();
  const host: Pick<HostPort, 'connectionsOf' | 'childrenOf'> = {
    childrenOf: async (pid) => (pid === 100 ? [101] : []),
    connectionsOf: async (pid) => conns.get(pid) ?? [],
  };
  const resolved: string[] = [];
  const mon = new AcsMonitor(
    {
      log: tail,
      host,
      resolve: async (n) => {
        resolved.push(n);
        return n === 'ecs-a-1.example' ? ['10.0.0.7'] : [];
      },
    },
    st,
    { everyMs: 10_000 },
  );
  const write = (t: string) => {
    pending += t;
  };
  const round = async () => {
    const o = await mon.run();
    if (o) st.record(o);
    return o;
  };
  return { clock, st, write, conns, round, resolved, failNext };
}

describe('the ACS monitor', () => {
  it('connected while the log says so and the agent’s child holds the connection; gone the moment the kernel drops it', async () => {
    const { st, write, conns, round, clock } = setup();
    expect(await round()).toMatchObject({ kind: 'acs', state: 'unknown' });
    write(dial('2026-12-07T10:00:01Z', '127.0.0.1:8123') + line('2026-12-07T10:00:01Z', 'Connected to ACS endpoint', ARN));
    conns.set(101, [{ remoteAddress: '127.0.0.1', remotePort: 8123, localPort: 40000 }]);
    clock.advance(10_000);
    expect(await round()).toMatchObject({ state: 'connected', since: clock.now() });
    const since = clock.now();
    clock.advance(10_000);
    expect(await round()).toMatchObject({ state: 'connected', since }); // unchanged: same since
    conns.set(101, []);
    clock.advance(10_000);
    expect(await round()).toMatchObject({ state: 'disconnected', since: clock.now(), why: expect.stringContaining('holds no connection') });
    expect(st.snap.registration.acs).toMatchObject({ state: 'disconnected' });
  });

  it('lines about another registration, or from before the agent container started, are not evidence', async () => {
    const { write, round } = setup();
    write(line('2026-12-07T09:58:00Z', 'Connected to ACS endpoint', ARN)); // an earlier container's
    write(line('2026-12-07T10:00:02Z', 'Connected to ACS endpoint', OTHER)); // another registration's
    expect(await round()).toMatchObject({ state: 'unknown' });
    write(line('2026-12-07T10:00:03Z', 'ACS WebSocket connection closed', ARN));
    expect(await round()).toMatchObject({ state: 'disconnected', why: expect.stringContaining('2026-12-07T10:00:03Z') });
    write(line('2026-12-07T10:00:04Z', 'Disconnected from ACS')); // names none: the current one's
    write(line('2026-12-07T10:00:05Z', 'Connected to ACS endpoint', ARN));
    expect(await round()).toMatchObject({ state: 'connected' });
  });

  it('a log that can no longer be believed makes the evidence unknown at once (ECS polled again), never stale', async () => {
    const { st, write, conns, round, failNext } = setup();
    write(dial('2026-12-07T10:00:01Z', '127.0.0.1:8123') + line('2026-12-07T10:00:01Z', 'Connected to ACS endpoint', ARN));
    conns.set(101, [{ remoteAddress: '127.0.0.1', remotePort: 8123, localPort: 40000 }]);
    expect(await round()).toMatchObject({ state: 'connected' });
    failNext(new Error('The agent’s log /var/log/ecs/ecs-agent.log is not believed: its file is writable by group or others (mode 666).'));
    expect(await round()).toMatchObject({ state: 'unknown' });
    expect(st.snap.lastErrors[0]).toMatchObject({ component: 'acs', message: expect.stringContaining('not believed') });
  });

  it('a named endpoint is resolved here: a connection to another address on its port is not ACS', async () => {
    const { write, conns, round, resolved } = setup();
    write(dial('2026-12-07T10:00:01Z', 'ecs-a-1.example') + line('2026-12-07T10:00:01Z', 'Connected to ACS endpoint', ARN));
    conns.set(100, [{ remoteAddress: '10.9.9.9', remotePort: 80, localPort: 40001 }]); // telemetry, an API call
    expect(await round()).toMatchObject({ state: 'disconnected' });
    conns.set(100, [{ remoteAddress: '10.0.0.7', remotePort: 80, localPort: 40002 }]);
    expect(await round()).toMatchObject({ state: 'connected' });
    expect(resolved.every((n) => n === 'ecs-a-1.example')).toBe(true);
  });
});

describe('what the local evidence changes in ECS polling', () => {
  const ecsMonitor = (st: WatchState, r = 0.5) => new EcsMonitor({ aws: {} as AwsCaller, random: () => r }, st, { budget });
  const acs = (st: WatchState, state: 'connected' | 'disconnected' | 'unknown', since: number) =>
    st.record({ kind: 'acs', state, why: '', since });
  const answer = (st: WatchState, v: ContainerInstanceView) =>
    st.record({
      kind: 'ecs',
      arn: ARN,
      answer: { view: { ...v, ec2InstanceId: 'i-1' }, thisInstance: 'i-1' },
      lastCall: { outcome: 'ok', at: '' },
      callsLastHour: 1,
    });

  it('connected here: the heartbeat (9–15 h); unknown: the steady rate, as before; ECS’s own trouble: the alert interval', () => {
    const { st, clock } = setup();
    answer(st, view());
    acs(st, 'connected', clock.now());
    expect(ecsMonitor(st, 0).nextInMs()).toBe(9 * 3_600_000);
    expect(ecsMonitor(st, 1).nextInMs()).toBe(15 * 3_600_000);
    acs(st, 'unknown', clock.now());
    expect(ecsMonitor(st).nextInMs()).toBe(315_000);
    acs(st, 'connected', clock.now());
    answer(st, view({ status: 'DRAINING' }));
    expect(ecsMonitor(st).nextInMs()).toBe(63_000);
  });

  it('a loss ECS confirmed is watched here, not polled; ECS saying disconnected to a connected instance is polled at the alert interval', () => {
    const { st, clock } = setup();
    acs(st, 'disconnected', clock.now());
    clock.advance(30_000);
    answer(st, view({ agentConnected: false }));
    expect(st.acs).toMatchObject({ state: 'disconnected', asks: 1, ecsConnected: false });
    expect(ecsMonitor(st).nextInMs()).toBeGreaterThanOrEqual(9 * 3_600_000);
    // Before any local change is seen, ECS says disconnected and the instance says connected: asked again soon.
    const other = setup();
    acs(other.st, 'connected', other.clock.now() - 1);
    other.clock.advance(1);
    answer(other.st, view({ agentConnected: false }));
    expect(ecsMonitor(other.st).nextInMs()).toBe(63_000);
  });

  it('connected again after ECS said disconnected: believed at once, no call; the verdict is healthy again', () => {
    const { st, clock } = setup();
    acs(st, 'disconnected', clock.now());
    answer(st, view({ agentConnected: false }));
    expect(st.obs.ecs).toMatchObject({ agentConnected: false });
    clock.advance(5_000);
    acs(st, 'connected', clock.now());
    expect(st.obs.ecs).toMatchObject({ agentConnected: true });
    expect(st.snap.registration).toMatchObject({ agentConnected: true, acs: { state: 'connected' } });
  });
});
