/**
 * ecs-gvisor for an ECS cluster and Auto Scaling group you already have: the instances' userdata (which
 * installs ecs-gvisor, pinned), the launch and terminate lifecycle hooks it completes from the instance,
 * the instance role's permissions for its calls (scoped to the cluster and the group), and an alarm on
 * every launch that did not complete. Works with a group defined in the same app (the hooks go inside the
 * group, so its very first instances wait at the launch gate too) or with one that exists already (the
 * hooks are resources of their own; put `userData` in its launch template).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annotations, Duration, RemovalPolicy, Stack, Token, Tokenization } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** Where the instances get ecs-gvisor and runsc; both pinned by SHA-512. */
export interface Artifacts {
  /**
   * The ecs-gvisor release tarball for the instances' architecture (ecs-gvisor-<version>-linux-x64.tar.gz
   * or -linux-arm64.tar.gz), on S3 (s3://…) or HTTPS; `{arch}` in it becomes x64 or arm64 on the instance.
   * Its SHA-512 is the one in that tarball's .sha512.
   */
  releaseUrl: string;
  releaseSha512: string;
  /** A gVisor point release (e.g. 20261012.0) and the SHA-512 of its gvisor.tar.bz2 for the architecture. */
  runscRelease: string;
  runscSha512: string;
  /** A copy of that gvisor.tar.bz2 (s3://… or https://…), so instances do not fetch it from gVisor's storage. */
  runscMirrorUrl?: string;
}

export interface EcsGvisorProps {
  /** The ECS cluster the instances join (ECS_CLUSTER). */
  clusterName: string;
  /** The Auto Scaling group's name: the hooks, the role's lifecycle permissions and the alarm name it. */
  autoScalingGroupName: string;
  /**
   * The group, when this app defines it: the hooks become part of the group itself. Without it the
   * hooks are resources of their own, which apply to instances launched after they exist.
   */
  autoScalingGroup?: autoscaling.AutoScalingGroup;
  /**
   * The group's launch template, when this app defines it: the userdata is added to its own (which it
   * must have: `userData: ec2.UserData.forLinux()`), after whatever that already runs. Without it, put
   * `userData` in the launch template yourself.
   */
  launchTemplate?: ec2.LaunchTemplate;
  /** The instances' role: ecs-gvisor's calls are added to it. */
  role: iam.IRole;
  /**
   * The release and runsc the userdata installs. Omit it only when the userdata reaches the launch
   * template another way (the plain CloudFormation template leaves it to the operator): then there is
   * no `userData`.
   */
  artifacts?: Artifacts;
  /** The hooks' heartbeat timeout (30 s to 2 h; default 10 min); ecs-gvisor heartbeats every third of it. */
  heartbeatTimeout?: Duration;
  /** Default `ecs-gvisor-launch`. */
  launchHookName?: string;
  /** Default `ecs-gvisor-terminate`. */
  terminateHookName?: string;
  /** The ECS agent image, pinned (a version tag or a digest; default the one this release was tested with). */
  agentImage?: string;
  /** The healing ladder's last rung: mark an instance whose agent cannot be healed Unhealthy (default off). */
  setInstanceHealth?: boolean;
  /** Notified when a launch fails, besides the alarm showing in CloudWatch. */
  alarmTopic?: sns.ITopic;
}

/** The ECS agent this release was tested with. */
export const DEFAULT_AGENT_IMAGE = 'amazon/amazon-ecs-agent:v1.101.2';

/** The placement constraint a task definition carries to run only where the sandbox is proven. */
export const SANDBOX_CONSTRAINT = 'attribute:ecs-gvisor.sandbox == verified';

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

/** The bucket and key of an s3:// URL (none for a URL only known at deploy time). */
export function s3Object(url: string): { bucket: string; key: string } | undefined {
  if (Token.isUnresolved(url)) return undefined;
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
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

/** The userdata template: beside the built module in the package, or the repository's own. */
function userdataTemplate(): string {
  for (const rel of ['./userdata.sh', '../../../scripts/userdata.sh']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return readFileSync(path, 'utf8');
  }
  throw new Error('ecs-gvisor-cdk: userdata.sh is missing from the package');
}

/** The defaults filled in and checked: one sentence naming the setting when it is out of range. */
function settingsOf(props: Pick<EcsGvisorProps, 'heartbeatTimeout' | 'agentImage' | 'launchHookName' | 'terminateHookName'>) {
  const heartbeat = (props.heartbeatTimeout ?? Duration.minutes(10)).toSeconds();
  // (A deploy-time value, a CloudFormation parameter say, is checked by that parameter's own range.)
  if (!Token.isUnresolved(heartbeat) && (heartbeat < 30 || heartbeat > 7200))
    throw new Error(`heartbeatTimeout ${heartbeat} s must be 30–7200 s (Auto Scaling's range).`);
  const agentImage = props.agentImage ?? DEFAULT_AGENT_IMAGE;
  if (!Token.isUnresolved(agentImage) && /:latest$|^[^:@]+$/.test(agentImage))
    throw new Error(`agentImage=${agentImage} must be pinned (a version tag or a digest), not :latest.`);
  return {
    heartbeat,
    agentImage,
    launchHook: props.launchHookName ?? 'ecs-gvisor-launch',
    terminateHook: props.terminateHookName ?? 'ecs-gvisor-terminate',
  };
}

export class EcsGvisor extends Construct {
  /** The instances' userdata: install ecs-gvisor, pinned. Put it in the group's launch template. */
  readonly userData: string | undefined;
  /** Fires on every launch of the group that did not complete (ecs-gvisor abandoned it, or it timed out). */
  readonly launchFailures: cloudwatch.Alarm;
  /** Every unsuccessful launch, with Auto Scaling's reason (`detail.StatusMessage`), kept 30 days. */
  readonly launchFailureLog: logs.LogGroup;

  /**
   * The userdata alone, for a launch template that must exist before the group (and so before this
   * construct, which takes the group): the same text the construct's `userData` holds.
   */
  static userDataFor(props: Omit<EcsGvisorProps, 'role' | 'autoScalingGroup'> & { artifacts: Artifacts }): string {
    const { heartbeat, agentImage, launchHook, terminateHook } = settingsOf(props);
    const { artifacts } = props;
    return fill(userdataTemplate(), {
      ECS_CLUSTER: props.clusterName,
      RELEASE_URL: artifacts.releaseUrl,
      RELEASE_SHA512: artifacts.releaseSha512,
      RUNSC_RELEASE: artifacts.runscRelease,
      RUNSC_SHA512: artifacts.runscSha512,
      LAUNCH_HOOK: launchHook,
      TERMINATE_HOOK: terminateHook,
      HEARTBEAT_TIMEOUT: Tokenization.stringifyNumber(heartbeat),
      ASG_NAME: props.autoScalingGroupName,
      SET_INSTANCE_HEALTH: props.setInstanceHealth ? 'true' : 'false',
      RUNSC_MIRROR_URL: artifacts.runscMirrorUrl ?? '',
      AGENT_IMAGE: agentImage,
    });
  }

  constructor(scope: Construct, id: string, props: EcsGvisorProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { heartbeat, launchHook, terminateHook } = settingsOf(props);
    const { clusterName, autoScalingGroupName: groupName, role, artifacts } = props;

    const arn = (service: string, resource: string) => `arn:${stack.partition}:${service}:${stack.region}:${stack.account}:${resource}`;
    const clusterArn = arn('ecs', `cluster/${clusterName}`);
    // ecs-gvisor's own calls, each scoped to this cluster's container instances or tasks, or this group.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EcsGvisorContainerInstance',
        actions: ['ecs:DescribeContainerInstances', 'ecs:UpdateContainerInstancesState', 'ecs:PutAttributes', 'ecs:DeleteAttributes'],
        resources: [arn('ecs', `container-instance/${clusterName}/*`)],
        conditions: { ArnEquals: { 'ecs:cluster': clusterArn } },
      }),
    );
    // The audit asks ECS which task a container is part of and its limits, when the agent cannot say.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EcsGvisorTaskLimits',
        actions: ['ecs:DescribeTasks'],
        resources: [arn('ecs', `task/${clusterName}/*`)],
        conditions: { ArnEquals: { 'ecs:cluster': clusterArn } },
      }),
    );
    // The release and the runsc mirror, when they are on S3: exactly those objects.
    const objects = [artifacts?.releaseUrl ?? '', artifacts?.runscMirrorUrl ?? ''].map(s3Object).filter((o) => o !== undefined);
    if (objects.length) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'EcsGvisorArtifacts',
          actions: ['s3:GetObject'],
          resources: objects.map((o) => `arn:${stack.partition}:s3:::${o.bucket}/${o.key}`),
        }),
      );
    }
    // Auto Scaling scopes these to a group (and its tags) only: no condition names the instance the call
    // is about, so an instance's role can act on any instance of its own group, never another group's.
    role.addToPrincipalPolicy(
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

    this.userData = artifacts ? EcsGvisor.userDataFor({ ...props, artifacts }) : undefined;
    if (props.launchTemplate) {
      if (!this.userData) throw new Error('launchTemplate needs artifacts: the userdata installs that release.');
      const own = props.launchTemplate.userData;
      if (!own)
        throw new Error('The launch template has no userData to add to: create it with userData: ec2.UserData.forLinux().');
      // Its own lines first (they may set up what the instance needs), then ecs-gvisor's script, whole.
      own.addCommands(this.userData);
    }

    const hooks = [
      // No word from the instance means no proof: replace it.
      { name: launchHook, transition: 'autoscaling:EC2_INSTANCE_LAUNCHING', defaultResult: 'ABANDON' },
      { name: terminateHook, transition: 'autoscaling:EC2_INSTANCE_TERMINATING', defaultResult: 'CONTINUE' },
    ];
    if (props.autoScalingGroup) {
      // Part of the group itself, so the very first instances (launched while the stack is created) wait
      // at the launch gate too; hooks added as resources of their own come after the group.
      const group = props.autoScalingGroup.node.defaultChild as autoscaling.CfnAutoScalingGroup;
      const already = (group.lifecycleHookSpecificationList as autoscaling.CfnAutoScalingGroup.LifecycleHookSpecificationProperty[]) ?? [];
      group.lifecycleHookSpecificationList = [
        ...already,
        ...hooks.map((h) => ({
          lifecycleHookName: h.name,
          lifecycleTransition: h.transition,
          heartbeatTimeout: heartbeat,
          defaultResult: h.defaultResult,
        })),
      ];
    } else {
      for (const h of hooks) {
        new autoscaling.CfnLifecycleHook(this, h.transition.endsWith('LAUNCHING') ? 'LaunchHook' : 'TerminateHook', {
          autoScalingGroupName: groupName,
          lifecycleHookName: h.name,
          lifecycleTransition: h.transition,
          heartbeatTimeout: heartbeat,
          defaultResult: h.defaultResult,
        });
      }
    }

    // A launch that fails (ecs-gvisor abandoned its hook, the hook timed out, or EC2 could not launch)
    // is an "EC2 Instance Launch Unsuccessful" event from Auto Scaling; its StatusMessage says which.
    // Each is kept in a log group and counted by EventBridge's TriggeredRules metric, which the alarm
    // watches: a broken release or proof replaces instances in a loop, and this makes the loop visible.
    this.launchFailureLog = new logs.LogGroup(this, 'LaunchFailureLog', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // The log group's own resource policy lets EventBridge write to it (CDK's log-group target would add
    // a Lambda-backed custom resource to do the same).
    new logs.CfnResourcePolicy(this, 'LaunchFailureLogPolicy', {
      policyName: `${stack.stackName}-ecs-gvisor-launch-failures`,
      policyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            Resource: `${this.launchFailureLog.logGroupArn}`,
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
      targets: [{ bind: () => ({ arn: arn('logs', `log-group:${this.launchFailureLog.logGroupName}`) }) }],
    });
    this.launchFailures = new cloudwatch.Alarm(this, 'LaunchFailureAlarm', {
      alarmDescription: `An instance of ${groupName} failed to launch. Why: the log group ${this.launchFailureLog.logGroupName}, or aws autoscaling describe-scaling-activities; ecs-gvisor's own reason: aws ec2 get-console-output --instance-id <id>.`,
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
    if (props.alarmTopic) this.launchFailures.addAlarmAction(new cwActions.SnsAction(props.alarmTopic));

    const placeholder = (v: string) => !Token.isUnresolved(v) && (v.includes('example.invalid') || /^0+$/.test(v));
    if (Object.values(artifacts ?? {}).some((v) => typeof v === 'string' && placeholder(v))) {
      Annotations.of(this).addWarning(
        'ecs-gvisor artifacts are placeholders: give the release URL and SHA-512 and the runsc release and SHA-512 before deploying (instances would refuse to install).',
      );
    }
  }
}
