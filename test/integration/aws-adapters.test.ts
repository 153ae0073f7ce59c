/**
 * The adapters that leave the host, against real HTTP servers on 127.0.0.1 through the real SDK clients:
 * ECS (JSON protocol) with the budgeted caller, Auto Scaling (query protocol), EC2, IMDSv2, and systemd's
 * notify protocol through a local datagram socket.
 */
import { mkdtempSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsAutoScaling, AwsEc2, AwsEcs } from '../../src/adapters/aws.js';
import { ExecCommands } from '../../src/adapters/exec-commands.js';
import { ImdsV2 } from '../../src/adapters/imds-v2.js';
import { SystemClock } from '../../src/adapters/system-clock.js';
import { SystemdNotify } from '../../src/adapters/systemd-notify.js';
import { AwsCaller, type AwsService, type CallOutcome } from '../../src/aws/aws-caller.js';
import { EcsGvisorError } from '../../src/errors.js';
import type { Clock, EcsPort } from '../../src/ports.js';
import { ARN, FakeAutoScaling, FakeEc2, FakeEcs, FakeImds } from '../harness/fake-aws.js';
import { FakeClock } from '../harness/fake-clock.js';
import { NotifySocket } from '../harness/notify-socket.js';

const log = pino({ level: 'silent' });
let ecs: FakeEcs;
let asg: FakeAutoScaling;
let imds: FakeImds;

beforeAll(async () => {
  // The SDK's default credential chain reads these; nothing leaves 127.0.0.1.
  process.env.AWS_ACCESS_KEY_ID = 'AKIDTEST';
  process.env.AWS_SECRET_ACCESS_KEY = 'secret';
  ecs = await new FakeEcs().start();
  asg = await new FakeAutoScaling().start();
  imds = await new FakeImds().start();
});
afterAll(async () => {
  await Promise.all([ecs.stop(), asg.stop(), imds.stop()]);
});

function caller(maxCallsPerHour = 100, port = new AwsEcs({ region: 'us-east-1', endpoint: ecs.url, requestTimeoutMs: 500 })) {
  const outcomes: Array<[string, CallOutcome]> = [];
  const c = awsCaller(port, new SystemClock(), { maxCallsPerHour, retry: { retries: 3, minMs: 5, maxMs: 20 } }, (_svc, op, o) =>
    outcomes.push([op, o]),
  );
  return { c, outcomes };
}

/** The process's one AWS caller, its ECS port given, the others against the fakes. */
function awsCaller(
  port: EcsPort,
  clock: Clock,
  opts: ConstructorParameters<typeof AwsCaller>[1],
  onCall?: (svc: AwsService, op: string, o: CallOutcome) => void,
): AwsCaller {
  return new AwsCaller(
    {
      ecs: () => port,
      autoScaling: (region) => new AwsAutoScaling({ region, endpoint: asg.url }),
      ec2: (region) => new AwsEc2({ region, endpoint: ecs.url }),
      imds: new ImdsV2(clock, { baseUrl: imds.url }),
      clock,
      log,
      onCall,
    },
    opts,
  );
}

describe('ECS through the SDK and the budgeted caller', () => {
  it('describes a container instance with its health and attributes; a missing ARN is undefined', async () => {
    ecs.instances.set(ARN, {
      status: 'ACTIVE',
      agentConnected: true,
      healthStatus: 'OK',
      runningTasksCount: 3,
      attributes: { 'ecs.os-type': 'linux' },
    });
    ecs.behaviour = () => 'ok';
    const { c } = caller();
    const v = await c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN));
    expect(v).toMatchObject({
      status: 'ACTIVE',
      agentConnected: true,
      healthStatus: 'OK',
      runningTasksCount: 3,
      attributes: { 'ecs.os-type': 'linux' },
    });
    const body = ecs.calls.at(-1)!.body;
    expect(body).toMatchObject({ cluster: 'prod', containerInstances: [ARN], include: ['CONTAINER_INSTANCE_HEALTH'] });
    expect(await c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', `${ARN}ff`))).toBeUndefined();
  });

  it('puts and deletes attributes on the container instance', async () => {
    const { c } = caller();
    await c.ecs('us-east-1', 'PutAttributes', (e) => e.putAttributes('prod', ARN, { 'ecs-gvisor.sandbox': 'verified' }));
    expect(ecs.instances.get(ARN)!.attributes['ecs-gvisor.sandbox']).toBe('verified');
    expect(ecs.calls.at(-1)!.body).toMatchObject({
      attributes: [{ name: 'ecs-gvisor.sandbox', targetType: 'container-instance', targetId: ARN }],
    });
    await c.ecs('us-east-1', 'DeleteAttributes', (e) => e.deleteAttributes('prod', ARN, ['ecs-gvisor.sandbox']));
    expect(ecs.instances.get(ARN)!.attributes).not.toHaveProperty('ecs-gvisor.sandbox');
  });

  it('describes tasks: task-level CPU and memory and the Docker IDs of their containers; an unknown task is left out', async () => {
    const task = 'arn:aws:ecs:us-east-1:111122223333:task/prod/0123456789abcdef0123456789abcdef';
    ecs.tasks.set(task, { containerInstanceArn: ARN, cpu: '256', memory: '512', runtimeIds: ['d0ck3r1d'] });
    const { c } = caller();
    const views = await c.ecs('us-east-1', 'DescribeTasks', (e) => e.describeTasks('prod', [task, `${task}ff`]));
    expect(views).toEqual([{ arn: task, containerInstanceArn: ARN, cpu: '256', memory: '512', runtimeIds: ['d0ck3r1d'] }]);
    expect(ecs.calls.at(-1)!.body).toEqual({ cluster: 'prod', tasks: [task, `${task}ff`] });
    ecs.behaviour = (op) => (op === 'DescribeTasks' ? { raw: '{"tasks": {"not": "a list"}}' } : 'ok');
    await expect(c.ecs('us-east-1', 'DescribeTasks', (e) => e.describeTasks('prod', [task]))).rejects.toThrow(
      /DescribeTasks.*not a list of tasks/,
    );
    ecs.behaviour = () => 'ok';
    ecs.tasks.clear();
  });

  it('drains a container instance (UpdateContainerInstancesState); an unknown one is an error naming it', async () => {
    const { c } = caller();
    ecs.instances.get(ARN)!.status = 'ACTIVE';
    await c.ecs('us-east-1', 'UpdateContainerInstancesState', (e) => e.drain('prod', ARN));
    expect(ecs.instances.get(ARN)!.status).toBe('DRAINING');
    expect(ecs.calls.at(-1)!.body).toEqual({ cluster: 'prod', containerInstances: [ARN], status: 'DRAINING' });
    await expect(c.ecs('us-east-1', 'UpdateContainerInstancesState', (e) => e.drain('prod', `${ARN}ff`))).rejects.toThrow(/MISSING/);
    ecs.instances.get(ARN)!.status = 'ACTIVE';
  });

  it('retries throttling and 5xx (each attempt counted), and does not retry a client error', async () => {
    const before = ecs.calls.length;
    ecs.behaviour = (_op, n) => (n - before === 0 ? 'throttle' : n - before === 1 ? 'server-error' : 'ok');
    const { c, outcomes } = caller();
    await c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN));
    expect(outcomes.map((o) => o[1])).toEqual(['throttled', 'server-error', 'ok']);

    ecs.behaviour = () => 'ok';
    const bad = caller();
    const err = await bad.c
      .ecs('us-east-1', 'PutAttributes', (e) => e.putAttributes('prod', `${ARN}-gone`, { a: 'b' }))
      .catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EcsGvisorError);
    expect((err as EcsGvisorError).details).toMatchObject({ outcome: 'client-error', name: 'TargetNotFoundException', status: 400 });
    expect(bad.outcomes).toEqual([['PutAttributes', 'client-error']]);
  });

  it('a slow endpoint times out (and is retried), a throttling storm gives up with a typed error', async () => {
    ecs.behaviour = () => ({ slowMs: 1_500 });
    const slow = caller();
    const err = await slow.c
      .ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN))
      .catch((x: unknown) => x);
    expect((err as EcsGvisorError).details.outcome).toMatch(/timeout|network/);
    expect(slow.outcomes).toHaveLength(4);

    ecs.behaviour = () => 'throttle';
    const storm = caller();
    const e2 = await storm.c
      .ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN))
      .catch((x: unknown) => x);
    expect((e2 as EcsGvisorError).details).toMatchObject({ outcome: 'throttled', name: 'ThrottlingException' });
    expect(storm.outcomes.every(([, o]) => o === 'throttled')).toBe(true);
    ecs.behaviour = () => 'ok';
  });

  it('never exceeds the hourly ceiling: the next call waits (on the injected clock) until a slot frees', async () => {
    const clock = new FakeClock();
    const port = new AwsEcs({ region: 'us-east-1', endpoint: ecs.url });
    const c = awsCaller(port, clock, { maxCallsPerHour: 2, retry: { retries: 0, minMs: 1, maxMs: 1 } });
    const before = ecs.calls.length;
    await c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN));
    await c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN));
    const start = clock.now();
    await clock.drive(c.ecs('us-east-1', 'DescribeContainerInstances', (e) => e.describeContainerInstance('prod', ARN)));
    expect(ecs.calls.length - before).toBe(3);
    expect(clock.now() - start).toBe(3_600_000); // waited exactly until the first call left the window
    expect(c.callsLastHour()).toBe(1);
  });
});

describe('Auto Scaling through the SDK', () => {
  it('marks an instance unhealthy', async () => {
    await new AwsAutoScaling({ region: 'us-east-1', endpoint: asg.url }).setInstanceHealth('i-0123456789abcdef0', 'Unhealthy', true);
    expect(asg.calls.at(-1)).toMatchObject({ Action: 'SetInstanceHealth' });
    expect(asg.calls.at(-1)!.params).toMatchObject({
      InstanceId: 'i-0123456789abcdef0',
      HealthStatus: 'Unhealthy',
      ShouldRespectGracePeriod: 'true',
    });
  });

  it('heartbeats and completes a pending lifecycle action; one not pending is a ValidationError, throttling is told apart', async () => {
    const as = new AwsAutoScaling({ region: 'us-east-1', endpoint: asg.url });
    const ref = { group: 'asg-1', hook: 'launch', instanceId: 'i-0123456789abcdef0' };
    asg.pend('asg-1', 'launch', 'i-0123456789abcdef0');
    await as.recordLifecycleActionHeartbeat(ref);
    await as.completeLifecycleAction(ref, 'CONTINUE');
    expect(asg.action('asg-1', 'launch', 'i-0123456789abcdef0')).toEqual({ result: 'CONTINUE', heartbeats: 1 });
    expect(asg.calls.at(-1)!.params).toMatchObject({
      AutoScalingGroupName: 'asg-1',
      LifecycleHookName: 'launch',
      InstanceId: 'i-0123456789abcdef0',
      LifecycleActionResult: 'CONTINUE',
    });
    // Completed already: Auto Scaling has no pending action.
    const again = await as.completeLifecycleAction(ref, 'ABANDON').catch((e: unknown) => e);
    expect(again).toBeInstanceOf(EcsGvisorError);
    expect((again as EcsGvisorError).details).toMatchObject({ outcome: 'client-error', name: 'ValidationError', status: 400 });
    asg.behaviour = () => 'throttle';
    const throttled = await as.recordLifecycleActionHeartbeat(ref).catch((e: unknown) => e);
    asg.behaviour = () => 'ok';
    expect((throttled as EcsGvisorError).details).toMatchObject({ outcome: 'throttled', name: 'Throttling' });
  });
});

describe('EC2 through the SDK', () => {
  it('finds the instance’s Auto Scaling group from its tag, and none for an instance outside a group', async () => {
    const ec2 = await new FakeEc2().start();
    try {
      ec2.tags.push(
        { resourceId: 'i-0123456789abcdef0', key: 'aws:autoscaling:groupName', value: 'asg-1' },
        { resourceId: 'i-0123456789abcdef0', key: 'Name', value: 'x' },
      );
      const port = new AwsEc2({ region: 'us-east-1', endpoint: ec2.url });
      expect(await port.autoScalingGroupOf('i-0123456789abcdef0')).toBe('asg-1');
      expect(await port.autoScalingGroupOf('i-0fffffffffffffff0')).toBeUndefined();
      expect(ec2.calls[0]).toMatchObject({
        Action: 'DescribeTags',
        'Filter.1.Name': 'resource-id',
        'Filter.1.Value.1': 'i-0123456789abcdef0',
      });
    } finally {
      await ec2.stop();
    }
  });
});

describe('IMDSv2', () => {
  it('gets a token once and reuses it, answers undefined on 404, refreshes on 401, times out', async () => {
    imds.paths.set('/latest/meta-data/instance-id', 'i-0123456789abcdef0');
    const client = new ImdsV2(new SystemClock(), { baseUrl: imds.url, timeoutMs: 500 });
    expect(await client.get('/latest/meta-data/instance-id')).toBe('i-0123456789abcdef0');
    expect(await client.get('/latest/meta-data/spot/instance-action')).toBeUndefined();
    expect(imds.requests.filter((r) => r.method === 'PUT')).toHaveLength(1);
    expect(imds.requests.filter((r) => r.method === 'GET').every((r) => r.token === 'token-1')).toBe(true);

    imds.revokeTokens();
    expect(await client.get('/latest/meta-data/instance-id')).toBe('i-0123456789abcdef0');
    expect(imds.requests.filter((r) => r.method === 'PUT')).toHaveLength(2);

    const dead = new ImdsV2(new SystemClock(), { baseUrl: 'http://127.0.0.1:1', timeoutMs: 300 });
    await expect(dead.get('/latest/meta-data/instance-id')).rejects.toMatchObject({ code: 'IMDS_FAILED' });
  });

  it('renews the token before it expires', async () => {
    const clock = new FakeClock();
    const client = new ImdsV2(clock, { baseUrl: imds.url, tokenTtlSeconds: 60 });
    const puts = () => imds.requests.filter((r) => r.method === 'PUT').length;
    const before = puts();
    await client.get('/latest/meta-data/instance-id');
    await client.get('/latest/meta-data/instance-id');
    expect(puts() - before).toBe(1);
    await clock.drive(clock.sleep(55_000));
    await client.get('/latest/meta-data/instance-id');
    expect(puts() - before).toBe(2);
  });
});

describe('systemd notify', () => {
  it('names our PID (MAINPID, and the credentials where the kernel lets it), then waits on a barrier; a no-op without NOTIFY_SOCKET', async () => {
    const sock = await new NotifySocket(`${mkdtempSync('/tmp/egv-notify-')}/notify.sock`).start();
    try {
      const n = new SystemdNotify(new ExecCommands(), sock.path, process.pid);
      expect(n.enabled).toBe(true);
      await n.notify({ READY: '1', STATUS: 'sandbox verified;\nagent running' });
      // Resolved only once the receiver has read the message and closed the barrier's descriptor.
      expect(sock.messages).toHaveLength(2);
      expect(sock.messages[0]).toMatchObject({
        pid: process.pid,
        fields: { READY: '1', STATUS: 'sandbox verified; agent running', MAINPID: String(process.pid) },
      });
      expect(sock.messages[1]!.fields).toEqual({ BARRIER: '1' });
      const off = new SystemdNotify(new ExecCommands(), undefined, process.pid);
      expect(off.enabled).toBe(false);
      await off.notify({ READY: '1' });
      await new Promise((r) => setTimeout(r, 200));
      expect(sock.messages).toHaveLength(2);
    } finally {
      sock.stop();
    }
  });
});
