/**
 * AWS API clients (ECS, Auto Scaling, EC2) through the AWS SDK. Endpoints follow the SDK's own settings
 * (`AWS_ENDPOINT_URL_ECS`, `AWS_ENDPOINT_URL_AUTO_SCALING`, `AWS_ENDPOINT_URL_EC2`), so tests and simulations reach local
 * servers. The SDK's own retries are off (maxAttempts 1): callers retry with p-retry inside the ECS call
 * budget, and one logical call is never multiplied by two retry layers.
 */
import { type AwsOutcome, EcsGvisorError } from '../errors.js';
import type {
  AutoScalingPort,
  ContainerInstanceView,
  Ec2Port,
  EcsPort,
  EcsTaskView,
  LifecycleActionRef,
  LifecycleResult,
} from '../ports.js';
import type { EC2Client } from './aws-sdk/ec2.js';
import type { AutoScalingClient, ECSClient } from './aws-sdk/ecs-autoscaling.js';

export interface AwsClientOptions {
  region: string;
  /** Explicit endpoint; otherwise the SDK's own resolution (AWS_ENDPOINT_URL_<SERVICE>, then AWS). */
  endpoint?: string;
  /** Per-request limits: a slow endpoint must not wedge the watch loop. */
  requestTimeoutMs?: number;
  connectionTimeoutMs?: number;
}

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'SlowDown',
]);

/** Classify an SDK failure by exception name and HTTP status. */
export function awsOutcome(err: unknown): AwsOutcome {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; $retryable?: { throttling?: boolean }; code?: string } | null;
  const status = e?.$metadata?.httpStatusCode;
  if (e?.$retryable?.throttling || THROTTLING.has(e?.name ?? '') || status === 429) return 'throttled';
  if (e?.name === 'TimeoutError' || e?.name === 'RequestTimeout' || e?.code === 'ETIMEDOUT') return 'timeout';
  if (status !== undefined && status >= 500) return 'server-error';
  if (status !== undefined && status >= 400) return 'client-error';
  return 'network';
}

function awsError(service: string, operation: string, err: unknown): EcsGvisorError {
  const outcome = awsOutcome(err);
  const name = (err as { name?: string } | null)?.name ?? 'Error';
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  const text = (err as Error | null)?.message ?? String(err);
  return new EcsGvisorError('AWS_API', `${service} ${operation} failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${text}`, {
    cause: err,
    details: { service, operation, outcome, name, status },
  });
}

function clientConfig(o: AwsClientOptions) {
  return {
    region: o.region,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    maxAttempts: 1,
    requestHandler: {
      requestTimeout: o.requestTimeoutMs ?? 10_000,
      connectionTimeout: o.connectionTimeoutMs ?? 3_000,
      throwOnRequestTimeout: true,
    },
  };
}

/** One AWS call through a client: `send` gets the SDK module and the client. */
type SdkCall<M, C> = <O>(operation: string, send: (m: M, client: C) => Promise<O>) => Promise<O>;

/**
 * Calls through a client whose SDK module is loaded once, on the first call (a failed load is tried
 * again next time); a call's failure is an AWS_API error classified by name and status. Commands that
 * never call AWS (status, plan, bootstrap without a lifecycle hook) then never evaluate the SDK, and
 * EC2's large model loads only when its one call is made.
 */
function lazySdk<M, C>(service: string, load: () => Promise<M>, make: (m: M) => C): SdkCall<M, C> {
  let loaded: Promise<{ m: M; client: C }> | undefined;
  const sdk = () =>
    (loaded ??= load().then(
      (m) => ({ m, client: make(m) }),
      (err: unknown) => {
        loaded = undefined;
        throw err;
      },
    ));
  return async (operation, send) => {
    const { m, client } = await sdk();
    try {
      return await send(m, client);
    } catch (err) {
      throw awsError(service, operation, err);
    }
  };
}

export class AwsEcs implements EcsPort {
  private readonly call: SdkCall<typeof import('./aws-sdk/ecs-autoscaling.js'), ECSClient>;

  constructor(opts: AwsClientOptions) {
    this.call = lazySdk(
      'ECS',
      () => import('./aws-sdk/ecs-autoscaling.js'),
      (m) => new m.ECSClient(clientConfig(opts)),
    );
  }

  async describeContainerInstance(cluster: string, arn: string): Promise<ContainerInstanceView | undefined> {
    const out = await this.call('DescribeContainerInstances', (m, client) =>
      client.send(new m.DescribeContainerInstancesCommand({ cluster, containerInstances: [arn], include: ['CONTAINER_INSTANCE_HEALTH'] })),
    );
    // ECS always answers with a list (empty, with a failure, for an unknown ARN): no list is not "missing".
    const list: unknown = out.containerInstances;
    if (!(Array.isArray(list) && list.every((c) => c !== null && typeof c === 'object'))) {
      throw awsError(
        'ECS',
        'DescribeContainerInstances',
        new Error(`the reply's containerInstances is not a list of instances (${JSON.stringify(list)?.slice(0, 60)})`),
      );
    }
    const ci = out.containerInstances!.find((c) => c.containerInstanceArn === arn) ?? out.containerInstances![0];
    if (!ci) return undefined;
    const attributes: Record<string, string> = {};
    for (const a of ci.attributes ?? []) if (a.name) attributes[a.name] = a.value ?? '';
    return {
      arn: ci.containerInstanceArn ?? arn,
      status: ci.status ?? 'UNKNOWN',
      agentConnected: ci.agentConnected === true,
      healthStatus: ci.healthStatus?.overallStatus,
      runningTasksCount: ci.runningTasksCount ?? 0,
      pendingTasksCount: ci.pendingTasksCount ?? 0,
      ec2InstanceId: ci.ec2InstanceId,
      attributes,
    };
  }

  async putAttributes(cluster: string, arn: string, attributes: Readonly<Record<string, string>>): Promise<void> {
    await this.call('PutAttributes', (m, client) =>
      client.send(
        new m.PutAttributesCommand({
          cluster,
          attributes: Object.entries(attributes).map(([name, value]) => ({ name, value, targetType: 'container-instance', targetId: arn })),
        }),
      ),
    );
  }

  async deleteAttributes(cluster: string, arn: string, names: readonly string[]): Promise<void> {
    await this.call('DeleteAttributes', (m, client) =>
      client.send(
        new m.DeleteAttributesCommand({
          cluster,
          attributes: names.map((name) => ({ name, targetType: 'container-instance', targetId: arn })),
        }),
      ),
    );
  }

  async drain(cluster: string, arn: string): Promise<void> {
    const out = await this.call('UpdateContainerInstancesState', (m, client) =>
      client.send(new m.UpdateContainerInstancesStateCommand({ cluster, containerInstances: [arn], status: 'DRAINING' })),
    );
    const failure = out.failures?.[0];
    if (failure) {
      throw new EcsGvisorError(
        'AWS_API',
        `ECS UpdateContainerInstancesState failed for ${arn}: ${failure.reason ?? 'unknown'}${failure.detail ? ` (${failure.detail})` : ''}.`,
        {
          details: { service: 'ECS', operation: 'UpdateContainerInstancesState', outcome: 'client-error', name: failure.reason },
        },
      );
    }
  }

  async describeTasks(cluster: string, arns: readonly string[]): Promise<EcsTaskView[]> {
    if (!arns.length) return [];
    const out = await this.call('DescribeTasks', (m, client) => client.send(new m.DescribeTasksCommand({ cluster, tasks: [...arns] })));
    const list: unknown = out.tasks;
    if (!(Array.isArray(list) && list.every((t) => t !== null && typeof t === 'object'))) {
      throw awsError('ECS', 'DescribeTasks', new Error(`the reply's tasks is not a list of tasks (${JSON.stringify(list)?.slice(0, 60)})`));
    }
    return out.tasks!.flatMap((t) =>
      t.taskArn
        ? [
            {
              arn: t.taskArn,
              containerInstanceArn: t.containerInstanceArn,
              cpu: t.cpu,
              memory: t.memory,
              runtimeIds: (t.containers ?? []).flatMap((c) => (c.runtimeId ? [c.runtimeId] : [])),
            },
          ]
        : [],
    );
  }
}

export class AwsAutoScaling implements AutoScalingPort {
  private readonly call: SdkCall<typeof import('./aws-sdk/ecs-autoscaling.js'), AutoScalingClient>;

  constructor(opts: AwsClientOptions) {
    this.call = lazySdk(
      'AutoScaling',
      () => import('./aws-sdk/ecs-autoscaling.js'),
      (m) => new m.AutoScalingClient(clientConfig(opts)),
    );
  }

  async setInstanceHealth(instanceId: string, health: 'Healthy' | 'Unhealthy', respectGracePeriod: boolean): Promise<void> {
    await this.call('SetInstanceHealth', (m, client) =>
      client.send(
        new m.SetInstanceHealthCommand({ InstanceId: instanceId, HealthStatus: health, ShouldRespectGracePeriod: respectGracePeriod }),
      ),
    );
  }

  async completeLifecycleAction(a: LifecycleActionRef, result: LifecycleResult): Promise<void> {
    await this.call('CompleteLifecycleAction', (m, client) =>
      client.send(
        new m.CompleteLifecycleActionCommand({
          AutoScalingGroupName: a.group,
          LifecycleHookName: a.hook,
          InstanceId: a.instanceId,
          LifecycleActionResult: result,
        }),
      ),
    );
  }

  async recordLifecycleActionHeartbeat(a: LifecycleActionRef): Promise<void> {
    await this.call('RecordLifecycleActionHeartbeat', (m, client) =>
      client.send(
        new m.RecordLifecycleActionHeartbeatCommand({ AutoScalingGroupName: a.group, LifecycleHookName: a.hook, InstanceId: a.instanceId }),
      ),
    );
  }
}

export class AwsEc2 implements Ec2Port {
  private readonly call: SdkCall<typeof import('./aws-sdk/ec2.js'), EC2Client>;

  constructor(opts: AwsClientOptions) {
    this.call = lazySdk(
      'EC2',
      () => import('./aws-sdk/ec2.js'),
      (m) => new m.EC2Client(clientConfig(opts)),
    );
  }

  async autoScalingGroupOf(instanceId: string): Promise<string | undefined> {
    const out = await this.call('DescribeTags', (m, client) =>
      client.send(
        new m.DescribeTagsCommand({
          Filters: [
            { Name: 'resource-id', Values: [instanceId] },
            { Name: 'key', Values: ['aws:autoscaling:groupName'] },
          ],
        }),
      ),
    );
    return out.Tags?.find((t) => t.ResourceId === instanceId && t.Key === 'aws:autoscaling:groupName')?.Value || undefined;
  }
}
