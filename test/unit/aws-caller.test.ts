/**
 * The AWS caller with in-memory ports on a simulated clock: every wait (retry backoff, the hourly
 * ceiling) is simulated time, so these run in milliseconds. The same caller against real HTTP servers
 * through the SDK is tested in test/integration/aws-adapters.test.ts.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { AwsCaller, BudgetSpent, type CallOutcome, TRUTH_CALLS_PER_HOUR } from '../../src/aws/aws-caller.js';
import { INSTANCE_ID_PATH } from '../../src/aws/imds-values.js';
import { type AwsOutcome, EcsGvisorError } from '../../src/errors.js';
import type { AutoScalingPort, ContainerInstanceView, Ec2Port, EcsPort, EcsTaskView, ImdsPort } from '../../src/ports.js';
import { backoffMs } from '../../src/retry.js';
import { FakeClock } from '../harness/fake-clock.js';

const log = pino({ level: 'silent' });
const ARN = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/0123';

const awsError = (outcome: AwsOutcome) => new EcsGvisorError('AWS_API', `failed: ${outcome}`, { details: { outcome, name: outcome } });

/** ECS in memory: answers from a script of outcomes, then OK; records when each call came. */
class MemoryEcs implements EcsPort {
  readonly calls: number[] = [];
  constructor(
    private readonly clock: FakeClock,
    private readonly script: AwsOutcome[] = [],
  ) {}
  async describeContainerInstance(): Promise<ContainerInstanceView> {
    this.calls.push(this.clock.now());
    const next = this.script.shift();
    if (next) throw awsError(next);
    return { arn: ARN, status: 'ACTIVE', agentConnected: true, runningTasksCount: 0, pendingTasksCount: 0, attributes: {} };
  }
  async putAttributes(): Promise<void> {}
  async deleteAttributes(): Promise<void> {}
  async drain(): Promise<void> {}
  async describeTasks(): Promise<EcsTaskView[]> {
    this.calls.push(this.clock.now());
    return [];
  }
}

class MemoryAutoScaling implements AutoScalingPort {
  readonly health: string[] = [];
  constructor(private readonly script: AwsOutcome[] = []) {}
  async setInstanceHealth(instanceId: string, health: 'Healthy' | 'Unhealthy'): Promise<void> {
    const next = this.script.shift();
    if (next) throw awsError(next);
    this.health.push(`${instanceId}=${health}`);
  }
  async completeLifecycleAction(): Promise<void> {}
  async recordLifecycleActionHeartbeat(): Promise<void> {}
}

const noEc2: Ec2Port = { autoScalingGroupOf: async () => undefined };

function caller(o: { ecs?: AwsOutcome[]; as?: AwsOutcome[]; maxCallsPerHour?: number; maxBudgetWaitMs?: number; imds?: ImdsPort } = {}) {
  const clock = new FakeClock();
  const ecs = new MemoryEcs(clock, o.ecs);
  const as = new MemoryAutoScaling(o.as);
  const outcomes: Array<[string, CallOutcome]> = [];
  const imdsAsked: string[] = [];
  const imds: ImdsPort = o.imds ?? {
    get: async (path) => {
      imdsAsked.push(path);
      return 'i-0123456789abcdef0';
    },
  };
  const aws = new AwsCaller(
    {
      ecs: () => ecs,
      autoScaling: () => as,
      ec2: () => noEc2,
      imds,
      clock,
      log,
      onCall: (svc, op, out) => outcomes.push([`${svc} ${op}`, out]),
    },
    { maxCallsPerHour: o.maxCallsPerHour ?? 100, retry: { retries: 3, minMs: 2_000, maxMs: 30_000 }, maxBudgetWaitMs: o.maxBudgetWaitMs },
  );
  return { clock, ecs, as, aws, outcomes, imdsAsked };
}

const describe1 = (aws: AwsCaller) => aws.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN));

describe('the AWS caller', () => {
  it('retries throttling with jittered exponential backoff on the clock, counting each attempt by outcome', async () => {
    const { clock, ecs, aws, outcomes } = caller({ ecs: ['throttled', 'server-error'] });
    const start = clock.now();
    const view = await clock.drive(describe1(aws));
    expect(view?.status).toBe('ACTIVE');
    expect(outcomes.map(([, o]) => o)).toEqual(['throttled', 'server-error', 'ok']);
    expect(new Set(outcomes.map(([call]) => call))).toEqual(new Set(['ecs DescribeContainerInstances']));
    const gaps = ecs.calls.map((t, i) => t - (ecs.calls[i - 1] ?? start));
    expect(gaps[0]).toBe(0);
    // Retry n waits minMs·2^(n−1) times a jitter in [1, 2): 2–4 s, then 4–8 s.
    expect(gaps[1]).toBeGreaterThanOrEqual(2_000);
    expect(gaps[1]).toBeLessThan(4_000);
    expect(gaps[2]).toBeGreaterThanOrEqual(4_000);
    expect(gaps[2]).toBeLessThan(8_000);
    expect(aws.callsLastHour()).toBe(3);
  });

  it('never retries a client error, and gives up with the last error after its retries', async () => {
    const bad = caller({ ecs: ['client-error'] });
    await expect(bad.clock.drive(describe1(bad.aws))).rejects.toMatchObject({ details: { outcome: 'client-error' } });
    expect(bad.ecs.calls).toHaveLength(1);
    const storm = caller({ ecs: ['throttled', 'throttled', 'throttled', 'throttled', 'throttled'] });
    await expect(storm.clock.drive(describe1(storm.aws))).rejects.toMatchObject({ details: { outcome: 'throttled' } });
    expect(storm.ecs.calls).toHaveLength(4); // the first try and 3 retries
  });

  it('waits for a slot under the hourly ceiling up to its limit; past it, BudgetSpent at once with the time to the next slot', async () => {
    const { clock, ecs, aws } = caller({ maxCallsPerHour: 2, maxBudgetWaitMs: 60_000 });
    await clock.drive(describe1(aws));
    await clock.drive(describe1(aws));
    const before = clock.now();
    const err = await clock.drive(describe1(aws)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetSpent);
    expect((err as BudgetSpent).retryInMs).toBe(3_600_000);
    expect(clock.now()).toBe(before); // no time spent waiting
    expect(ecs.calls).toHaveLength(2);
    // Within the limit it waits: 59 min later the first slot is 1 min away.
    await clock.drive(clock.sleep(59 * 60_000));
    await clock.drive(describe1(aws));
    expect(clock.now()).toBe(before + 3_600_000);
    expect(ecs.calls).toHaveLength(3);
  });

  it('once routine calls have spent the ceiling, withdrawals still have a few calls of their own', async () => {
    const { clock, ecs, aws } = caller({ maxCallsPerHour: 60, maxBudgetWaitMs: 60_000 });
    for (let i = 0; i < 60; i++) await clock.drive(describe1(aws));
    expect(await clock.drive(describe1(aws)).catch((e: unknown) => e)).toBeInstanceOf(BudgetSpent);
    const withdraw = () =>
      aws.ecs(
        'us-east-1',
        'PutAttributes',
        (e) => e.putAttributes('prod', ARN, { 'ecs-gvisor.sandbox': 'violated' }),
        undefined,
        0,
        'truth',
      );
    for (let i = 0; i < TRUTH_CALLS_PER_HOUR; i++) await clock.drive(withdraw());
    expect(ecs.calls).toHaveLength(60);
    expect(aws.callsLastHour()).toBe(60 + TRUTH_CALLS_PER_HOUR);
    // Those spent too: even the truth waits for a slot.
    expect(await clock.drive(withdraw()).catch((e: unknown) => e)).toBeInstanceOf(BudgetSpent);
    expect(aws.callsLastHour()).toBe(66);
  });

  it('a call that may come later does not wait for a slot: BudgetSpent at once, nothing sent', async () => {
    const { clock, ecs, aws } = caller({ maxCallsPerHour: 1, maxBudgetWaitMs: 60_000 });
    await clock.drive(describe1(aws));
    // The next slot is 30 s away: within the caller-wide limit, so an ordinary call would wait for it.
    await clock.drive(clock.sleep(3_600_000 - 30_000));
    const before = clock.now();
    const later = aws.ecs('us-east-1', 'DescribeTasks', (e) => e.describeTasks('prod', ['arn']), undefined, 0);
    expect(await clock.drive(later).catch((e: unknown) => e)).toBeInstanceOf(BudgetSpent);
    expect(clock.now()).toBe(before);
    expect(ecs.calls).toHaveLength(1);
    await clock.drive(describe1(aws));
    expect(clock.now()).toBe(before + 30_000);
    expect(ecs.calls).toHaveLength(2);
  });

  it('retries Auto Scaling like ECS, outside the ECS budget', async () => {
    const { clock, as, aws, outcomes } = caller({ as: ['throttled'], maxCallsPerHour: 1 });
    await clock.drive(describe1(aws)); // the ECS budget is spent
    await clock.drive(aws.autoScaling('us-east-1', 'SetInstanceHealth', (a) => a.setInstanceHealth('i-1', 'Unhealthy', true)));
    expect(as.health).toEqual(['i-1=Unhealthy']);
    // Counted under its own service, not ECS's.
    expect(outcomes.slice(-2)).toEqual([
      ['autoscaling SetInstanceHealth', 'throttled'],
      ['autoscaling SetInstanceHealth', 'ok'],
    ]);
  });

  it('asks IMDS for the instance ID once for the process; a failed ask is asked again', async () => {
    const { aws, imdsAsked } = caller();
    expect(await Promise.all([aws.instanceId(), aws.instanceId()])).toEqual(['i-0123456789abcdef0', 'i-0123456789abcdef0']);
    expect(await aws.instanceId()).toBe('i-0123456789abcdef0');
    expect(imdsAsked).toEqual([INSTANCE_ID_PATH]);
    let fail = true;
    const flaky = caller({
      imds: { get: async () => (fail ? Promise.reject(new EcsGvisorError('IMDS_FAILED', 'down')) : 'i-0fedcba9876543210') },
    });
    await expect(flaky.aws.instanceId()).rejects.toMatchObject({ code: 'IMDS_FAILED' });
    fail = false;
    expect(await flaky.aws.instanceId()).toBe('i-0fedcba9876543210');
  });

  it('backs off minMs·2^(n−1) with a jitter in [1, 2), capped at maxMs', () => {
    const o = { retries: 5, minMs: 2_000, maxMs: 30_000 };
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, o, () => 0))).toEqual([2_000, 4_000, 8_000, 16_000, 30_000]);
    expect(backoffMs(1, o, () => 0.999)).toBe(3_998);
  });
});
