/**
 * An ECS cluster on EC2 whose instances run every task in gVisor: a launch template (IMDSv2 required,
 * hop limit 1, ecs-gvisor's userdata), an Auto Scaling group with the launch and terminate hooks
 * ecs-gvisor completes from the instance, a capacity provider, a least-privilege instance role, and an
 * example service that lands only on instances whose sandbox is proven.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annotations, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';

/** Where the instances get ecs-gvisor and runsc; both pinned by SHA-512. */
export interface Artifacts {
  /**
   * The ecs-gvisor release tarball for the instance type's architecture (`npm run package` builds
   * ecs-gvisor-<version>-linux-x64.tar.gz and -linux-arm64.tar.gz), on S3 (s3://…) or HTTPS; `{arch}` in it
   * becomes x64 or arm64. Its SHA-512 is the one in that tarball's .sha512.
   */
  releaseUrl: string;
  releaseSha512: string;
  /**
   * A gVisor point release (e.g. 20261012.0) and the SHA-512 of its gvisor.tar.bz2 for the instance
   * type's architecture (gVisor publishes one per architecture).
   */
  runscRelease: string;
  runscSha512: string;
  /**
   * A copy of that gvisor.tar.bz2 (s3://… or https://…), so instances do not fetch runsc from gVisor's
   * storage on every boot; pinned by the same runscSha512.
   */
  runscMirrorUrl?: string;
}

/**
 * The CPU architecture of an EC2 instance type: Graviton families carry a "g" right after the
 * generation (m7g, c6gn, t4g, x2gd, im4gn, g5g), and a1 is the first Graviton.
 */
export function architectureOf(instanceType: string): 'arm64' | 'x86_64' {
  const family = instanceType.split('.')[0] ?? '';
  return family === 'a1' || /^[a-z]+\d+g[a-z]*$/.test(family) ? 'arm64' : 'x86_64';
}

/** The release's name for an architecture. */
export const RELEASE_ARCH = { x86_64: 'x64', arm64: 'arm64' } as const;

/**
 * The release tarball URL for instances of `architecture`: `{arch}` filled in; a URL that names the
 * other architecture's tarball is refused at synth, not at every boot.
 */
export function releaseUrlFor(url: string, architecture: 'arm64' | 'x86_64', instanceType: string): string {
  const arch = RELEASE_ARCH[architecture];
  const filled = url.replaceAll('{arch}', arch);
  const named = /-linux-(x64|arm64)\.tar\.gz$/.exec(filled)?.[1];
  if (named && named !== arch) {
    throw new Error(
      `releaseUrl ${filled} is the ${named} release; ${instanceType} instances are ${arch}: use ecs-gvisor-<version>-linux-${arch}.tar.gz and its SHA-512.`,
    );
  }
  return filled;
}

/** The bucket and key of an s3:// URL. */
export function s3Object(url: string): { bucket: string; key: string } | undefined {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
}

export interface EcsGvisorStackProps extends StackProps {
  clusterName: string;
  instanceType: string;
  minCapacity: number;
  maxCapacity: number;
  /** The hooks' HeartbeatTimeout (30–7200 s); ecs-gvisor heartbeats every third of it. */
  heartbeatTimeoutSeconds: number;
  launchHookName: string;
  terminateHookName: string;
  artifacts: Artifacts;
  /**
   * ECS managed instance draining on the capacity provider as well. ecs-gvisor's terminate hook drains
   * already; with both on, ECS's hook sets DRAINING, ecs-gvisor sees it and does not drain again, and the
   * instance terminates once both hooks are complete.
   */
  managedDraining: boolean;
  /** Add the example service (its task definition carries the sandbox placement constraint). */
  exampleService: boolean;
  /**
   * The healing ladder's last rung: an agent that stays unhealthy after its restarts marks the instance
   * Unhealthy in Auto Scaling (ECS_GVISOR_SET_INSTANCE_HEALTH). Off: the role has no SetInstanceHealth.
   */
  setInstanceHealth?: boolean;
  /** The ECS agent image, pinned (a tag ecs-gvisor runs instead of :latest). */
  agentImage: string;
  /** Session Manager access (ecs-gvisor status without SSH): the role gets the calls SSM's agent makes. */
  sessionManager?: boolean;
  /** An SNS topic the launch-failure alarm notifies (besides showing in CloudWatch). */
  alarmTopicArn?: string;
}

/** The ECS agent this release was tested with. */
export const DEFAULT_AGENT_IMAGE = 'amazon/amazon-ecs-agent:v1.101.2';

/** The attribute ecs-gvisor publishes once it has proven the sandbox on an instance. */
export const SANDBOX_CONSTRAINT = 'attribute:ecs-gvisor.sandbox == verified';

const USERDATA = fileURLToPath(new URL('../../scripts/userdata.sh', import.meta.url));

export class EcsGvisorStack extends Stack {
  readonly cluster: ecs.Cluster;
  readonly group: autoscaling.AutoScalingGroup;
  readonly role: iam.Role;
  readonly launchFailures: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: EcsGvisorStackProps) {
    super(scope, id, props);
    const { clusterName, heartbeatTimeoutSeconds: heartbeat } = props;
    const architecture = architectureOf(props.instanceType);
    const releaseUrl = releaseUrlFor(props.artifacts.releaseUrl, architecture, props.instanceType);
    if (/:latest$|^[^:@]+$/.test(props.agentImage))
      throw new Error(`agentImage=${props.agentImage} must be pinned (a version tag or a digest), not :latest.`);
    if (heartbeat < 30 || heartbeat > 7200) throw new Error(`heartbeatTimeoutSeconds=${heartbeat} must be 30–7200 (Auto Scaling's range).`);
    // A name known at synth time: the role's policy names the group without depending on it.
    const groupName = `${this.stackName}-ecs-gvisor`;

    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 1 });
    this.cluster = new ecs.Cluster(this, 'Cluster', { clusterName, vpc });

    // No AWS managed policy: AmazonEC2ContainerServiceforEC2Role grants its ECS writes on "*" (any
    // instance could deregister or drain any other, in any cluster). The capacity provider below adds
    // the agent's core calls scoped to this cluster (register, submit, poll; its log writes on "*", as
    // the awslogs driver writes to whatever group a task definition names); the rest is here.
    this.role = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'ECS container instance with ecs-gvisor: the ECS agent, plus only the calls ecs-gvisor makes',
    });
    const arn = (service: string, resource: string) => `arn:${this.partition}:${service}:${this.region}:${this.account}:${resource}`;
    const clusterArn = arn('ecs', `cluster/${clusterName}`);
    const instancesArn = arn('ecs', `container-instance/${clusterName}/*`);
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcsAgentTagOnRegister',
        actions: ['ecs:TagResource'],
        resources: [instancesArn],
        conditions: { StringEquals: { 'ecs:CreateAction': 'RegisterContainerInstance' } },
      }),
    );
    // Reads ECR and EC2 offer no resource scoping for: image pulls from private ECR, the instance's tags.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcsAgentRead',
        actions: ['ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage', 'ec2:DescribeTags'],
        resources: ['*'],
      }),
    );
    // ecs-gvisor's own calls, each scoped to this cluster's container instances or this group.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcsGvisorContainerInstance',
        actions: ['ecs:DescribeContainerInstances', 'ecs:UpdateContainerInstancesState', 'ecs:PutAttributes', 'ecs:DeleteAttributes'],
        resources: [instancesArn],
        conditions: { ArnEquals: { 'ecs:cluster': clusterArn } },
      }),
    );
    // The audit asks ECS which task a container is part of and what that task's limits are.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcsGvisorTaskLimits',
        actions: ['ecs:DescribeTasks'],
        resources: [arn('ecs', `task/${clusterName}/*`)],
        conditions: { ArnEquals: { 'ecs:cluster': clusterArn } },
      }),
    );
    // The release and the runsc mirror, when they are on S3: exactly those objects.
    const objects = [releaseUrl, props.artifacts.runscMirrorUrl ?? ''].map(s3Object).filter((o) => o !== undefined);
    if (objects.length) {
      this.role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'EcsGvisorArtifacts',
          actions: ['s3:GetObject'],
          resources: objects.map((o) => `arn:${this.partition}:s3:::${o.bucket}/${o.key}`),
        }),
      );
    }
    if (props.sessionManager) {
      // What SSM's agent needs for Session Manager (no managed policy: see above).
      this.role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'SessionManager',
          actions: [
            'ssm:UpdateInstanceInformation',
            'ssmmessages:CreateControlChannel',
            'ssmmessages:CreateDataChannel',
            'ssmmessages:OpenControlChannel',
            'ssmmessages:OpenDataChannel',
          ],
          resources: ['*'],
        }),
      );
    }
    // Auto Scaling scopes these to a group (and its tags) only: no condition names the instance the call
    // is about, so an instance's role can act on any instance of its own group, never another group's.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcsGvisorLifecycle',
        actions: [
          'autoscaling:CompleteLifecycleAction',
          'autoscaling:RecordLifecycleActionHeartbeat',
          ...(props.setInstanceHealth ? ['autoscaling:SetInstanceHealth'] : []),
        ],
        resources: [arn('autoscaling', `autoScalingGroup:*:autoScalingGroupName/${groupName}`)],
      }),
    );

    const userData = ec2.UserData.custom(
      fill(readFileSync(USERDATA, 'utf8'), {
        ECS_CLUSTER: clusterName,
        RELEASE_URL: releaseUrl,
        RELEASE_SHA512: props.artifacts.releaseSha512,
        RUNSC_RELEASE: props.artifacts.runscRelease,
        RUNSC_SHA512: props.artifacts.runscSha512,
        LAUNCH_HOOK: props.launchHookName,
        TERMINATE_HOOK: props.terminateHookName,
        HEARTBEAT_TIMEOUT: String(heartbeat),
        ASG_NAME: groupName,
        SET_INSTANCE_HEALTH: props.setInstanceHealth ? 'true' : 'false',
        RUNSC_MIRROR_URL: props.artifacts.runscMirrorUrl ?? '',
        AGENT_IMAGE: props.agentImage,
      }),
    );

    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      // The ECS-optimized AMI for the instance type's architecture (Graviton: arm64).
      machineImage: ecs.EcsOptimizedImage.amazonLinux2023(
        architecture === 'arm64' ? ecs.AmiHardwareType.ARM : ecs.AmiHardwareType.STANDARD,
      ),
      blockDevices: [
        { deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(30, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) },
      ],
      instanceType: new ec2.InstanceType(props.instanceType),
      role: this.role,
      userData,
      // IMDSv2 only; a hop limit of 1 keeps bridge-mode task containers (one hop further) from the
      // instance's metadata and role, while the agent and ecs-gvisor (host network) reach it.
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      instanceMetadataTags: true,
      securityGroup: new ec2.SecurityGroup(this, 'InstanceSecurityGroup', { vpc, description: 'ECS container instances (gVisor)' }),
    });

    this.group = new autoscaling.AutoScalingGroup(this, 'Group', {
      vpc,
      autoScalingGroupName: groupName,
      launchTemplate,
      minCapacity: props.minCapacity,
      maxCapacity: props.maxCapacity,
    });
    // The hooks are part of the group itself, so the very first instances (launched while the stack is
    // created) wait at the launch gate too; hooks added as resources of their own come after the group.
    (this.group.node.defaultChild as autoscaling.CfnAutoScalingGroup).lifecycleHookSpecificationList = [
      {
        lifecycleHookName: props.launchHookName,
        lifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
        heartbeatTimeout: heartbeat,
        // No word from the instance means no proof: replace it.
        defaultResult: 'ABANDON',
      },
      {
        lifecycleHookName: props.terminateHookName,
        lifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
        heartbeatTimeout: heartbeat,
        defaultResult: 'CONTINUE',
      },
    ];

    // A launch that fails (ecs-gvisor abandoned its hook, the hook timed out, or EC2 could not launch)
    // is an "EC2 Instance Launch Unsuccessful" event from Auto Scaling; its StatusMessage says which.
    // Each is kept in a log group and counted by EventBridge's TriggeredRules metric, which the alarm
    // watches: a broken release or proof replaces instances in a loop, and this makes the loop visible.
    const failures = new logs.LogGroup(this, 'LaunchFailureLog', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // The log group's own resource policy lets EventBridge write to it (CDK's log-group target would add
    // a Lambda-backed custom resource to do the same).
    new logs.CfnResourcePolicy(this, 'LaunchFailureLogPolicy', {
      policyName: `${this.stackName}-ecs-gvisor-launch-failures`,
      policyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            Resource: `${failures.logGroupArn}`,
          },
        ],
      }),
    });
    const rule = new events.Rule(this, 'LaunchFailureRule', {
      description: `Launches of ${groupName} that did not complete (why: the event's detail.StatusMessage)`,
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: ['EC2 Instance Launch Unsuccessful'],
        detail: { AutoScalingGroupName: [groupName] },
      },
      targets: [{ bind: () => ({ arn: arn('logs', `log-group:${failures.logGroupName}`) }) }],
    });
    this.launchFailures = new cloudwatch.Alarm(this, 'LaunchFailureAlarm', {
      alarmDescription: `An instance of ${groupName} failed to launch. Why: the log group ${failures.logGroupName}, or aws autoscaling describe-scaling-activities; ecs-gvisor's own reason: aws ec2 get-console-output --instance-id <id>.`,
      metric: new cloudwatch.Metric({
        namespace: 'AWS/Events',
        metricName: 'TriggeredRules',
        dimensionsMap: { RuleName: rule.ruleName },
        statistic: 'Sum',
        period: Duration.minutes(5),
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    if (props.alarmTopicArn)
      this.launchFailures.addAlarmAction(new cwActions.SnsAction(sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn)));

    const provider = new ecs.AsgCapacityProvider(this, 'CapacityProvider', {
      autoScalingGroup: this.group,
      enableManagedDraining: props.managedDraining,
      // Scale-in protection would keep Auto Scaling from terminating instances with tasks; ecs-gvisor's
      // terminate hook drains them instead.
      enableManagedTerminationProtection: false,
    });
    // taskDrainTime 0: no draining Lambda of CDK's own (the very thing the terminate hook replaces). The
    // option is deprecated and gone from the typings, but still honoured.
    this.cluster.addAsgCapacityProvider(provider, { taskDrainTime: Duration.seconds(0) } as ecs.AddAutoScalingGroupCapacityOptions);

    if (props.exampleService) {
      const task = new ecs.Ec2TaskDefinition(this, 'ExampleTask', {
        networkMode: ecs.NetworkMode.BRIDGE,
        // Only on instances where ecs-gvisor has proven the sandbox (and withdraws it when it lapses).
        placementConstraints: [ecs.PlacementConstraint.memberOf(SANDBOX_CONSTRAINT)],
      });
      task.addContainer('app', {
        image: ecs.ContainerImage.fromRegistry('public.ecr.aws/docker/library/busybox:stable'),
        command: ['sh', '-c', 'dmesg | head -1; uname -r; sleep 3600'],
        memoryLimitMiB: 128,
        logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'gvisor-example' }),
      });
      new ecs.Ec2Service(this, 'ExampleService', {
        cluster: this.cluster,
        taskDefinition: task,
        desiredCount: 1,
        minHealthyPercent: 0,
        circuitBreaker: { rollback: true },
        capacityProviderStrategies: [{ capacityProvider: provider.capacityProviderName, weight: 1 }],
      });
    }

    if (Object.values(props.artifacts).some((v) => v.includes('example.invalid') || /^0+$/.test(v))) {
      Annotations.of(this).addWarning(
        'ecs-gvisor artifacts are placeholders: pass -c releaseUrl=… -c releaseSha512=… -c runscRelease=… -c runscSha512=… before deploying (instances would refuse to install).',
      );
    }
  }
}

/** Replace `__KEY__` placeholders, refusing to leave one unfilled or to put a quote into the shell. */
export function fill(template: string, values: Record<string, string>): string {
  let out = template;
  for (const [k, v] of Object.entries(values)) {
    if (/['\n\\]/.test(v))
      throw new Error(`userdata value for ${k} must not contain quotes, backslashes or newlines: ${JSON.stringify(v)}`);
    out = out.replaceAll(`__${k}__`, v);
  }
  const left = /__[A-Z0-9_]+__/.exec(out);
  if (left) throw new Error(`userdata placeholder ${left[0]} has no value`);
  return out;
}
