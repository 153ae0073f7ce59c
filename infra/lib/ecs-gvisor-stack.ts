/**
 * The example app: a new VPC and ECS cluster on EC2 whose instances run every task in gVisor. A launch
 * template (IMDSv2 required, hop limit 1, the userdata of the EcsGvisor construct), an Auto Scaling group,
 * a capacity provider, a least-privilege instance role for the agent, an example service that lands only
 * on instances whose sandbox is proven, and the EcsGvisor construct (ecs-gvisor's calls on the role, the
 * lifecycle hooks inside the group, the launch-failure alarm). For a cluster you already have, use the
 * construct (infra/construct) alone.
 */
import { Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import {
  type Artifacts,
  architectureOf,
  DEFAULT_AGENT_IMAGE,
  EcsGvisor,
  fill,
  RELEASE_ARCH,
  releaseUrlFor,
  SANDBOX_CONSTRAINT,
  s3Object,
} from '../construct/src/index.js';

// The example app's own tests and bin/ read these from here.
export { type Artifacts, architectureOf, DEFAULT_AGENT_IMAGE, fill, RELEASE_ARCH, releaseUrlFor, SANDBOX_CONSTRAINT, s3Object };

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

export class EcsGvisorStack extends Stack {
  readonly cluster: ecs.Cluster;
  readonly group: autoscaling.AutoScalingGroup;
  readonly role: iam.Role;
  readonly launchFailures: cloudwatch.Alarm;
  readonly ecsGvisor: EcsGvisor;

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
    const _clusterArn = arn('ecs', `cluster/${clusterName}`);
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

    // ecs-gvisor itself: its calls on the role, its userdata, the hooks and the launch-failure alarm. The
    // group is made below with the userdata; the construct puts the hooks inside it once it exists.
    const gvisorProps = {
      clusterName,
      autoScalingGroupName: groupName,
      role: this.role,
      artifacts: { ...props.artifacts, releaseUrl },
      heartbeatTimeout: Duration.seconds(heartbeat),
      launchHookName: props.launchHookName,
      terminateHookName: props.terminateHookName,
      agentImage: props.agentImage,
      setInstanceHealth: props.setInstanceHealth,
      ...(props.alarmTopicArn ? { alarmTopic: sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) } : {}),
    };
    const userData = ec2.UserData.custom(EcsGvisor.userDataFor(gvisorProps));

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
    this.ecsGvisor = new EcsGvisor(this, 'EcsGvisor', { ...gvisorProps, autoScalingGroup: this.group });
    this.launchFailures = this.ecsGvisor.launchFailures;

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
  }
}
