/**
 * The plain CloudFormation template the release carries, for those who do not use CDK: the EcsGvisor
 * construct for a cluster, an Auto Scaling group and an instance role that exist already, every value a
 * parameter. It adds ecs-gvisor's calls to the role, the two lifecycle hooks to the group, and the
 * launch-failure log and alarm. CloudFormation cannot edit a launch template it does not own, so the
 * release's userdata.sh, its block filled in (the release, runsc, and the hook names and heartbeat the
 * outputs give), goes into the group's launch template by hand; then an instance refresh.
 */
import { Aws, BootstraplessSynthesizer, CfnCondition, CfnOutput, CfnParameter, Duration, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { EcsGvisor } from '../construct/src/index.js';

export class EcsGvisorExistingGroupStack extends Stack {
  readonly ecsGvisor: EcsGvisor;

  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, { synthesizer: new BootstraplessSynthesizer(), analyticsReporting: false, ...props });
    this.templateOptions.description =
      'ecs-gvisor for an existing ECS cluster and Auto Scaling group: the instance role’s permissions, the lifecycle hooks, a launch-failure alarm, and the userdata to put in the launch template.';
    const param = (name: string, description: string, o: Partial<ConstructorParameters<typeof CfnParameter>[2]> = {}) =>
      new CfnParameter(this, name, { type: 'String', description, ...o });
    const cluster = param('ClusterName', 'The ECS cluster the instances join.', { allowedPattern: '^[A-Za-z0-9_-]{1,255}$' });
    const group = param('AutoScalingGroupName', 'The Auto Scaling group of the instances.', {
      allowedPattern: '^[A-Za-z0-9_.:/@-]{1,255}$',
      constraintDescription: 'letters, digits and _ . : / @ - only (the userdata names it)',
    });
    const role = param('InstanceRoleName', 'The name of the instances’ IAM role (not the instance profile).', {
      allowedPattern: '^[A-Za-z0-9+=,.@_-]{1,64}$',
    });
    const bucket = param(
      'ArtifactBucket',
      'The S3 bucket holding the release, if it is on S3: the role may read its objects. Empty: none.',
      {
        default: '',
        allowedPattern: '^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$',
      },
    );
    const heartbeat = new CfnParameter(this, 'HeartbeatTimeoutSeconds', {
      type: 'Number',
      description: 'The lifecycle hooks’ heartbeat timeout; ecs-gvisor heartbeats every third of it.',
      default: 600,
      minValue: 30,
      maxValue: 7200,
    });
    this.ecsGvisor = new EcsGvisor(this, 'EcsGvisor', {
      clusterName: cluster.valueAsString,
      autoScalingGroupName: group.valueAsString,
      role: iam.Role.fromRoleName(this, 'InstanceRole', role.valueAsString),
      heartbeatTimeout: Duration.seconds(heartbeat.valueAsNumber),
    });

    // Reading the release from S3, only when a bucket is named.
    const onS3 = new CfnCondition(this, 'ReleaseOnS3', { expression: Fn.conditionNot(Fn.conditionEquals(bucket.valueAsString, '')) });
    const read = new iam.CfnPolicy(this, 'ReleaseReadPolicy', {
      policyName: `${Aws.STACK_NAME}-ecs-gvisor-release`,
      roles: [role.valueAsString],
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'EcsGvisorArtifacts',
            Effect: 'Allow',
            Action: 's3:GetObject',
            Resource: `arn:${Aws.PARTITION}:s3:::${bucket.valueAsString}/*`,
          },
        ],
      },
    });
    read.cfnOptions.condition = onS3;

    new CfnOutput(this, 'LaunchHookName', { description: 'LAUNCH_HOOK in userdata.sh.', value: 'ecs-gvisor-launch' });
    new CfnOutput(this, 'TerminateHookName', { description: 'TERMINATE_HOOK in userdata.sh.', value: 'ecs-gvisor-terminate' });
    new CfnOutput(this, 'HeartbeatTimeout', { description: 'HEARTBEAT_TIMEOUT in userdata.sh.', value: heartbeat.valueAsString });
    new CfnOutput(this, 'NextStep', {
      description: 'What is left to do by hand.',
      value:
        'Put the release’s userdata.sh in a new version of the group’s launch template, its block filled in (the cluster, the release and runsc with their SHA-512s, these hook names and heartbeat, the group), then start an instance refresh.',
    });
    new CfnOutput(this, 'PlacementConstraint', {
      description: 'Give task definitions that must run in gVisor this memberOf placement constraint.',
      value: 'attribute:ecs-gvisor.sandbox == verified',
    });
  }
}
