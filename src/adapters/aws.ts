/**
 * AWS API clients (ECS, Auto Scaling, EC2) through the AWS SDK. Endpoints follow the SDK's own settings
 * (`AWS_ENDPOINT_URL_ECS`, `AWS_ENDPOINT_URL_AUTO_SCALING`, `AWS_ENDPOINT_URL_EC2`), so tests and simulations reach local
 * servers. The SDK's own retries are off (maxAttempts 1): callers retry with p-retry inside the ECS call
 * budget, and one logical call is never multiplied by two retry layers.
 */
import { EcsGvisorError, type AwsOutcome } from '../errors.js';
import type { EC2Client } from './aws-sdk/ec2.js';
import type { AutoScalingClient, ECSClient } from './aws-sdk/ecs-autoscaling.js';
import type { AutoScalingPort, ContainerInstanceView, Ec2Port, EcsPort, LifecycleActionRef, LifecycleResult } from '../ports.js';

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
    requestHandler: { requestTimeout: o.requestTimeoutMs ?? 10_000, connectionTimeout: o.connectionTimeoutMs ?? 3_000, throwOnRequestTimeout: true },
  };
}

type LazySdk<M, C> = () => Promise<{ m: M; client: C }>;

/**
 * A client and its SDK module, loaded once on first use; a failed load is tried again next time. Commands
 * that never call AWS (status, plan, bootstrap without a lifecycle hook) then never evaluate the SDK, and
 * EC2's large model loads only when its one call is made.
 */
function lazySdk<M, C>(load: () => Promise<M>, make: (m: M) => C): LazySdk<M, C> {
  let loaded: ReturnType<LazySdk<M, C>> | undefined;
  return () =>
    (loaded ??= load().then(
      (m) => ({ m, client: make(m) }),
      (err: unknown) => {
        loaded = undefined;
        throw err;
      },
    ));
}

export class AwsEcs implements EcsPort {
  private readonly sdk: LazySdk<typeof import('./aws-sdk/ecs-autoscaling.js'), ECSClient>;

  constructor(opts: AwsClientOptions) {
    this.sdk = lazySdk(() => import('./aws-sdk/ecs-autoscaling.js'), (m) => new m.ECSClient(clientConfig(opts)));
  }

  async describeContainerInstance(cluster: string, arn: string): Promise<ContainerInstanceView | undefined> {
    let out;
    const { m, client } = await this.sdk();
    try {
      out = await client.send(
        new m.DescribeContainerInstancesCommand({ cluster, containerInstances: [arn], include: ['CONTAINER_INSTANCE_HEALTH'] }),
      );
    } catch (err) {
      throw awsError('ECS', 'DescribeContainerInstances', err);
    }
    // ECS always answers with a list (empty, with a failure, for an unknown ARN): no list is not "missing".
    const list: unknown = out.containerInstances;
    if (!(Array.isArray(list) && list.every((c) => c !== null && typeof c === 'object'))) {
      throw awsError('ECS', 'DescribeContainerInstances', new Error(`the reply's containerInstances is not a list of instances (${JSON.stringify(list)?.slice(0, 60)})`));
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
      attributes,
    };
  }

  async putAttributes(cluster: string, arn: string, attributes: Readonly<Record<string, string>>): Promise<void> {
    const { m, client } = await this.sdk();
    try {
      await client.send(
        new m.PutAttributesCommand({
          cluster,
          attributes: Object.entries(attributes).map(([name, value]) => ({ name, value, targetType: 'container-instance', targetId: arn })),
        }),
      );
    } catch (err) {
      throw awsError('ECS', 'PutAttributes', err);
    }
  }

  async deleteAttributes(cluster: string, arn: string, names: readonly string[]): Promise<void> {
    const { m, client } = await this.sdk();
    try {
      await client.send(
        new m.DeleteAttributesCommand({ cluster, attributes: names.map((name) => ({ name, targetType: 'container-instance', targetId: arn })) }),
      );
    } catch (err) {
      throw awsError('ECS', 'DeleteAttributes', err);
    }
  }

  async drain(cluster: string, arn: string): Promise<void> {
    let out;
    const { m, client } = await this.sdk();
    try {
      out = await client.send(new m.UpdateContainerInstancesStateCommand({ cluster, containerInstances: [arn], status: 'DRAINING' }));
    } catch (err) {
      throw awsError('ECS', 'UpdateContainerInstancesState', err);
    }
    const failure = out.failures?.[0];
    if (failure) {
      throw new EcsGvisorError('AWS_API', `ECS UpdateContainerInstancesState failed for ${arn}: ${failure.reason ?? 'unknown'}${failure.detail ? ` (${failure.detail})` : ''}.`, {
        details: { service: 'ECS', operation: 'UpdateContainerInstancesState', outcome: 'client-error', name: failure.reason },
      });
    }
  }
}

export class AwsAutoScaling implements AutoScalingPort {
  private readonly sdk: LazySdk<typeof import('./aws-sdk/ecs-autoscaling.js'), AutoScalingClient>;

  constructor(opts: AwsClientOptions) {
    this.sdk = lazySdk(() => import('./aws-sdk/ecs-autoscaling.js'), (m) => new m.AutoScalingClient(clientConfig(opts)));
  }

  async setInstanceHealth(instanceId: string, health: 'Healthy' | 'Unhealthy', respectGracePeriod: boolean): Promise<void> {
    const { m, client } = await this.sdk();
    try {
      await client.send(new m.SetInstanceHealthCommand({ InstanceId: instanceId, HealthStatus: health, ShouldRespectGracePeriod: respectGracePeriod }));
    } catch (err) {
      throw awsError('AutoScaling', 'SetInstanceHealth', err);
    }
  }

  async completeLifecycleAction(a: LifecycleActionRef, result: LifecycleResult): Promise<void> {
    const { m, client } = await this.sdk();
    try {
      await client.send(
        new m.CompleteLifecycleActionCommand({ AutoScalingGroupName: a.group, LifecycleHookName: a.hook, InstanceId: a.instanceId, LifecycleActionResult: result }),
      );
    } catch (err) {
      throw awsError('AutoScaling', 'CompleteLifecycleAction', err);
    }
  }

  async recordLifecycleActionHeartbeat(a: LifecycleActionRef): Promise<void> {
    const { m, client } = await this.sdk();
    try {
      await client.send(new m.RecordLifecycleActionHeartbeatCommand({ AutoScalingGroupName: a.group, LifecycleHookName: a.hook, InstanceId: a.instanceId }));
    } catch (err) {
      throw awsError('AutoScaling', 'RecordLifecycleActionHeartbeat', err);
    }
  }
}

export class AwsEc2 implements Ec2Port {
  private readonly sdk: LazySdk<typeof import('./aws-sdk/ec2.js'), EC2Client>;

  constructor(opts: AwsClientOptions) {
    this.sdk = lazySdk(() => import('./aws-sdk/ec2.js'), (m) => new m.EC2Client(clientConfig(opts)));
  }

  async autoScalingGroupOf(instanceId: string): Promise<string | undefined> {
    let out;
    const { m, client } = await this.sdk();
    try {
      out = await client.send(
        new m.DescribeTagsCommand({
          Filters: [
            { Name: 'resource-id', Values: [instanceId] },
            { Name: 'key', Values: ['aws:autoscaling:groupName'] },
          ],
        }),
      );
    } catch (err) {
      throw awsError('EC2', 'DescribeTags', err);
    }
    return out.Tags?.find((t) => t.ResourceId === instanceId && t.Key === 'aws:autoscaling:groupName')?.Value || undefined;
  }
}
