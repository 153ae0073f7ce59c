/**
 * The stack, synthesized and read back as CloudFormation (aws-cdk-lib/assertions): the hooks ecs-gvisor
 * completes, IMDSv2 on the launch template, ecs-gvisor's userdata, a least-privilege role (no `*` on
 * any action that changes something), the capacity provider, and the example service's placement
 * constraint. Also the app itself, run as `cdk synth` runs it, offline.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { architectureOf, EcsGvisorStack, type EcsGvisorStackProps, fill, SANDBOX_CONSTRAINT } from '../lib/ecs-gvisor-stack.js';

const infra = fileURLToPath(new URL('../', import.meta.url));
const SHA = 'ab'.repeat(64);
const props: EcsGvisorStackProps = {
  env: { account: '111122223333', region: 'eu-west-1' },
  clusterName: 'tenants',
  instanceType: 'm6i.large',
  minCapacity: 1,
  maxCapacity: 3,
  heartbeatTimeoutSeconds: 900,
  launchHookName: 'gv-launch',
  terminateHookName: 'gv-terminate',
  managedDraining: false,
  exampleService: true,
  agentImage: 'amazon/amazon-ecs-agent:v1.101.2',
  artifacts: {
    releaseUrl: 's3://artifacts/ecs-gvisor-0.1.0-linux-{arch}.tar.gz',
    releaseSha512: SHA,
    runscRelease: '20261012.0',
    runscSha512: SHA,
  },
};

function synth(over: Partial<EcsGvisorStackProps> = {}): Template {
  return Template.fromStack(new EcsGvisorStack(new App(), 'Test', { ...props, ...over }));
}

/** The launch template's userdata, with CloudFormation references written as ${…}. */
function userData(t: Template): string {
  const lt = Object.values(t.findResources('AWS::EC2::LaunchTemplate'))[0] as {
    Properties: { LaunchTemplateData: { UserData: { 'Fn::Base64': unknown } } };
  };
  const body = lt.Properties.LaunchTemplateData.UserData['Fn::Base64'];
  if (typeof body === 'string') return body;
  const [, parts] = (body as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return parts.map((p) => (typeof p === 'string' ? p : `\${${JSON.stringify(p)}}`)).join('');
}

describe('the ECS cluster stack', () => {
  it('has the launch and terminate hooks inside the group (so its first instances wait too), with the configured heartbeat timeout', () => {
    const t = synth();
    // Not as resources of their own: those are created after the group and its first instances.
    t.resourceCountIs('AWS::AutoScaling::LifecycleHook', 0);
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      LifecycleHookSpecificationList: [
        {
          LifecycleHookName: 'gv-launch',
          LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
          HeartbeatTimeout: 900,
          DefaultResult: 'ABANDON',
        },
        {
          LifecycleHookName: 'gv-terminate',
          LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
          HeartbeatTimeout: 900,
          DefaultResult: 'CONTINUE',
        },
      ],
    });
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { AutoScalingGroupName: 'Test-ecs-gvisor', MinSize: '1', MaxSize: '3' });
    expect(() => synth({ heartbeatTimeoutSeconds: 20 })).toThrow(/must be 30–7200/);
  });

  it('makes every unsuccessful launch of the group a logged event and an alarm (a broken release or proof no longer replaces instances silently)', () => {
    const t = synth();
    const rules = t.findResources('AWS::Events::Rule');
    const [ruleId, rule] = Object.entries(rules).find(([, r]) => JSON.stringify(r).includes('Launch Unsuccessful'))! as [
      string,
      { Properties: Record<string, any> },
    ];
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.autoscaling'],
      'detail-type': ['EC2 Instance Launch Unsuccessful'],
      detail: { AutoScalingGroupName: ['Test-ecs-gvisor'] },
    });
    // Its target is the stack's log group (the events keep Auto Scaling's StatusMessage: why).
    const [logId] = Object.keys(t.findResources('AWS::Logs::LogGroup', { Properties: { RetentionInDays: 30 } }));
    expect(JSON.stringify(rule.Properties.Targets)).toContain(`:log-group:",{"Ref":"${logId}"}`);
    // EventBridge may write to that group only, through the group's own policy: no Lambda custom resource.
    const policy = Object.values(t.findResources('AWS::Logs::ResourcePolicy'))[0] as { Properties: { PolicyDocument: unknown } };
    const doc = JSON.stringify(policy.Properties.PolicyDocument);
    expect(doc).toContain('events.amazonaws.com');
    expect(doc).toContain(`{"Fn::GetAtt":["${logId}","Arn"]}`);
    t.resourceCountIs('AWS::Lambda::Function', 0);
    // The alarm counts the rule's matches: one failed launch in five minutes is enough.
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Events',
      MetricName: 'TriggeredRules',
      Dimensions: [{ Name: 'RuleName', Value: { Ref: ruleId } }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmDescription: Match.objectLike({
        'Fn::Join': Match.arrayWith([Match.arrayWith([Match.stringLikeRegexp('get-console-output')])]),
      }),
    });
    expect(JSON.stringify(t.findResources('AWS::CloudWatch::Alarm'))).not.toContain('AlarmActions');
    const topic = 'arn:aws:sns:eu-west-1:111122223333:ops';
    synth({ alarmTopicArn: topic }).hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'TriggeredRules',
      AlarmActions: [topic],
    });
  });

  it('picks the ECS-optimized AMI for the instance type’s architecture: x86_64, or arm64 on Graviton', () => {
    const amiOf = (t: Template) => JSON.stringify(t.toJSON().Parameters);
    expect(amiOf(synth())).toContain('/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id');
    expect(amiOf(synth())).not.toContain('arm64');
    const graviton = synth({ instanceType: 'm7g.large' });
    expect(amiOf(graviton)).toContain('/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id');
    graviton.hasResourceProperties('AWS::EC2::LaunchTemplate', { LaunchTemplateData: Match.objectLike({ InstanceType: 'm7g.large' }) });
    // Its release is the arm64 one; a URL naming the other architecture's is refused at synth.
    expect(userData(graviton)).toContain("RELEASE_URL='s3://artifacts/ecs-gvisor-0.1.0-linux-arm64.tar.gz'");
    const x64Url = { ...props.artifacts, releaseUrl: 's3://artifacts/ecs-gvisor-0.1.0-linux-x64.tar.gz' };
    expect(() => synth({ instanceType: 'm7g.large', artifacts: x64Url })).toThrow(
      'releaseUrl s3://artifacts/ecs-gvisor-0.1.0-linux-x64.tar.gz is the x64 release; m7g.large instances are arm64: use ecs-gvisor-<version>-linux-arm64.tar.gz and its SHA-512.',
    );
    for (const t of ['m7g.large', 'c6gn.xlarge', 't4g.micro', 'x2gd.2xlarge', 'im4gn.large', 'g5g.xlarge', 'a1.large', 'c8g.medium'])
      expect(architectureOf(t), t).toBe('arm64');
    for (const t of ['m6i.large', 'c7a.xlarge', 'g4dn.xlarge', 'p5.48xlarge', 'inf2.xlarge', 't3.micro', 'm5d.large'])
      expect(architectureOf(t), t).toBe('x86_64');
  });

  it('grants s3:GetObject on exactly the release and runsc mirror objects, and fetches runsc from the mirror', () => {
    const t = synth({ artifacts: { ...props.artifacts, runscMirrorUrl: 's3://mirror-bkt/gvisor/20261012.0/aarch64/gvisor.tar.bz2' } });
    const json = JSON.stringify(t.findResources('AWS::IAM::Policy'));
    const grant = Object.values(t.findResources('AWS::IAM::Policy'))
      .flatMap(
        (p) =>
          (p as { Properties: { PolicyDocument: { Statement: Array<{ Action: unknown; Resource: unknown }> } } }).Properties.PolicyDocument
            .Statement,
      )
      .filter((s) => [s.Action].flat().includes('s3:GetObject'));
    expect(grant).toHaveLength(1);
    expect(JSON.stringify(grant[0]!.Resource)).toContain(':s3:::artifacts/ecs-gvisor-0.1.0-linux-x64.tar.gz');
    expect(JSON.stringify(grant[0]!.Resource)).toContain(':s3:::mirror-bkt/gvisor/20261012.0/aarch64/gvisor.tar.bz2');
    expect(json).not.toContain('s3:::artifacts/*');
    expect(userData(t)).toContain("RUNSC_MIRROR_URL='s3://mirror-bkt/gvisor/20261012.0/aarch64/gvisor.tar.bz2'");
    // HTTPS artifacts need no grant at all.
    const https = synth({ artifacts: { ...props.artifacts, releaseUrl: 'https://releases.example/ecs-gvisor-0.1.0-linux-x64.tar.gz' } });
    expect(JSON.stringify(https.findResources('AWS::IAM::Policy'))).not.toContain('s3:GetObject');
  });

  it('encrypts the root volume, pins the agent image, and grants Session Manager only when asked', () => {
    const t = synth();
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: Match.objectLike({ Encrypted: true, VolumeType: 'gp3' }) }],
      }),
    });
    expect(userData(t)).toContain("AGENT_IMAGE='amazon/amazon-ecs-agent:v1.101.2'");
    expect(() => synth({ agentImage: 'amazon/amazon-ecs-agent:latest' })).toThrow(/must be pinned/);
    expect(() => synth({ agentImage: 'amazon/amazon-ecs-agent' })).toThrow(/must be pinned/);
    expect(JSON.stringify(t.findResources('AWS::IAM::Policy'))).not.toContain('ssmmessages:');
    expect(JSON.stringify(synth({ sessionManager: true }).findResources('AWS::IAM::Policy'))).toContain('ssmmessages:OpenDataChannel');
  });

  it('requires IMDSv2 with a hop limit that keeps bridge-mode tasks away from instance metadata', () => {
    synth().hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ MetadataOptions: Match.objectLike({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 }) }),
    });
  });

  it('boots instances with ecs-gvisor’s userdata, every placeholder filled', () => {
    const u = userData(synth());
    expect(u).toMatch(/^#!\/bin\/bash\n/);
    expect(u).toContain("ECS_CLUSTER_NAME='tenants'");
    // The instance type's architecture's release (the default here is x86: x64).
    expect(u).toContain("RELEASE_URL='s3://artifacts/ecs-gvisor-0.1.0-linux-x64.tar.gz'");
    expect(u).toContain("LAUNCH_HOOK='gv-launch'");
    expect(u).toContain("TERMINATE_HOOK='gv-terminate'");
    expect(u).toContain("HEARTBEAT_TIMEOUT='900'");
    expect(u).toContain("ASG_NAME='Test-ecs-gvisor'");
    expect(u).not.toMatch(/__[A-Z0-9_]+__/);
    expect(() => fill('X=__A__ Y=__B__', { A: '1' })).toThrow(/__B__ has no value/);
    expect(() => fill('X=__A__', { A: "it's" })).toThrow(/must not contain quotes/);
  });

  it('grants the agent and ecs-gvisor only their own calls: no managed policy, no "*" resource on any action that changes something', () => {
    const t = synth();
    // Every policy the role gets is in the template: an AWS managed policy (ECS's own for container
    // instances grants its writes on "*") would be invisible to the checks below.
    const roles = Object.values(t.findResources('AWS::IAM::Role')).filter((r) => JSON.stringify(r).includes('ec2.amazonaws.com'));
    expect(roles).toHaveLength(1);
    expect((roles[0] as { Properties: Record<string, unknown> }).Properties.ManagedPolicyArns).toBeUndefined();
    const statements = Object.values(t.findResources('AWS::IAM::Policy')).flatMap(
      (p) =>
        (
          p as {
            Properties: {
              PolicyDocument: { Statement: Array<{ Sid?: string; Action: string | string[]; Resource: unknown; Condition?: unknown }> };
            };
          }
        ).Properties.PolicyDocument.Statement,
    );
    const actions = statements.flatMap((s) => [s.Action].flat());
    // A write on "*" only where ECS narrows it to this cluster by condition; and the agent's log writes,
    // which go to whatever group a task definition names (the awslogs driver runs on the instance).
    const writes =
      /^(ecs:(?!Describe|List|DiscoverPollEndpoint)|autoscaling:(?!Describe)|ec2:(?!Describe)|ecr:(Put|Delete|Create|Upload|Initiate|Complete)|iam:|sns:|lambda:)/;
    const clusterOnly = (s: { Condition?: unknown }) => JSON.stringify(s.Condition ?? {}).includes('"ecs:cluster"');
    const offenders = statements.filter(
      (s) => [s.Action].flat().some((a) => writes.test(a)) && [s.Resource].flat().includes('*') && !clusterOnly(s),
    );
    expect(offenders).toEqual([]);
    const logWrites = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith('logs:')));
    expect([...new Set(logWrites.flatMap((s) => [s.Action].flat()).filter((a) => a.startsWith('logs:')))].sort()).toEqual([
      'logs:CreateLogStream',
      'logs:PutLogEvents',
    ]);
    const json = JSON.stringify(statements);
    // What the ECS agent needs (what the managed policy gave it), scoped to this cluster.
    const of = (action: string) =>
      statements.find((s) => [s.Action].flat().some((a) => a === action || (a.endsWith('*') && action.startsWith(a.slice(0, -1)))))!;
    for (const a of [
      'ecs:RegisterContainerInstance',
      'ecs:DeregisterContainerInstance',
      'ecs:SubmitTaskStateChange',
      'ecs:SubmitContainerStateChange',
    ]) {
      expect(JSON.stringify(of(a).Resource), a).toMatch(/ClusterEB0386A7|:cluster\/tenants/);
    }
    for (const a of ['ecs:Poll', 'ecs:StartTelemetrySession']) expect(clusterOnly(of(a)), a).toBe(true);
    for (const a of ['ecs:TagResource', 'ecs:UpdateContainerInstancesState', 'ecs:PutAttributes', 'ecs:DescribeContainerInstances']) {
      expect(JSON.stringify(of(a).Resource), a).toContain(':container-instance/tenants/*');
    }
    expect(JSON.stringify(of('ecs:DescribeTasks').Resource)).toContain(':task/tenants/*');
    expect(clusterOnly(of('ecs:DescribeTasks'))).toBe(true);
    expect(of('ecs:TagResource').Condition).toEqual({ StringEquals: { 'ecs:CreateAction': 'RegisterContainerInstance' } });
    for (const a of [
      'ecs:DiscoverPollEndpoint',
      'ecr:GetAuthorizationToken',
      'ecr:BatchGetImage',
      'ecr:GetDownloadUrlForLayer',
      'ec2:DescribeTags',
      'logs:PutLogEvents',
    ])
      expect(actions).toContain(a);
    // ecs-gvisor's lifecycle calls: this group only. Nothing it does not call.
    expect(JSON.stringify(of('autoscaling:CompleteLifecycleAction').Resource)).toContain(
      ':autoScalingGroup:*:autoScalingGroupName/Test-ecs-gvisor',
    );
    expect(actions).not.toContain('ec2:DescribeInstances');
    expect(actions).not.toContain('autoscaling:SetInstanceHealth');
    expect(json).not.toContain('ecs:CreateCluster');
    // SetInstanceHealth only with the healing ladder's last rung on, and then the instance is told so.
    const healing = synth({ setInstanceHealth: true });
    const healingJson = JSON.stringify(healing.findResources('AWS::IAM::Policy'));
    expect(healingJson).toContain('autoscaling:SetInstanceHealth');
    expect(userData(healing)).toContain("SET_INSTANCE_HEALTH='true'");
    expect(userData(t)).toContain("SET_INSTANCE_HEALTH='false'");
    // No draining Lambda: the terminate hook on the instance replaces it.
    t.resourceCountIs('AWS::Lambda::Function', 0);
  });

  it('adds a capacity provider (managed draining as configured) and an example service that lands only on proven instances', () => {
    const t = synth();
    t.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: Match.objectLike({ ManagedDraining: 'DISABLED', ManagedTerminationProtection: 'DISABLED' }),
    });
    synth({ managedDraining: true }).hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: Match.objectLike({ ManagedDraining: 'ENABLED' }),
    });
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      PlacementConstraints: [{ Type: 'memberOf', Expression: SANDBOX_CONSTRAINT }],
    });
    expect(SANDBOX_CONSTRAINT).toBe('attribute:ecs-gvisor.sandbox == verified');
    t.resourceCountIs('AWS::ECS::Service', 1);
    synth({ exampleService: false }).resourceCountIs('AWS::ECS::Service', 0);
  });

  it('synthesizes from the app as `cdk synth` runs it, offline, with placeholder artifacts flagged', () => {
    const out = mkdtempSync('/tmp/egv-cdk-out-');
    const app = JSON.parse(readFileSync(`${infra}cdk.json`, 'utf8')).app as string;
    expect(app).toBe('npx tsx bin/app.ts');
    execFileSync(`${infra}node_modules/.bin/tsx`, ['bin/app.ts'], {
      cwd: infra,
      env: { PATH: process.env.PATH, CDK_OUTDIR: out },
      encoding: 'utf8',
    });
    const template = JSON.parse(readFileSync(`${out}/EcsGvisor.template.json`, 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const group = Object.values(template.Resources).find((r) => r.Type === 'AWS::AutoScaling::AutoScalingGroup')!;
    expect(group.Properties.LifecycleHookSpecificationList).toHaveLength(2);
    expect(readFileSync(`${out}/EcsGvisor.metadata.json`, 'utf8')).toContain('artifacts are placeholders');
  });
});
