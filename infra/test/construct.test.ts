/**
 * The EcsGvisor construct for a cluster and group that exist already, read back as CloudFormation; the
 * plain CloudFormation template the release carries (every value a parameter); and the construct as a
 * package: built, packed with `npm pack`, installed into an empty app and synthesized from there.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import { EcsGvisor } from '../construct/src/index.js';
import { EcsGvisorExistingGroupStack } from '../lib/existing-group-stack.js';

const infra = fileURLToPath(new URL('../', import.meta.url));
const repo = fileURLToPath(new URL('../../', import.meta.url));
const SHA = 'cd'.repeat(64);
const ARTIFACTS = {
  releaseUrl: 's3://artifacts/ecs-gvisor-0.1.0-linux-{arch}.tar.gz',
  releaseSha512: SHA,
  runscRelease: '20261012.0',
  runscSha512: SHA,
};

type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
const statementsOf = (t: Template): Statement[] =>
  Object.values(t.findResources('AWS::IAM::Policy')).flatMap(
    (p) => (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties.PolicyDocument.Statement,
  );

/** A stack with the construct on an existing group, as an operator's own CDK app would have it. */
function existing(over: Partial<ConstructorParameters<typeof EcsGvisor>[2]> = {}) {
  const stack = new Stack(new App(), 'Existing', { env: { account: '111122223333', region: 'eu-west-1' } });
  const gv = new EcsGvisor(stack, 'EcsGvisor', {
    clusterName: 'prod',
    autoScalingGroupName: 'prod-asg',
    role: iam.Role.fromRoleName(stack, 'Role', 'prod-instance-role'),
    artifacts: ARTIFACTS,
    heartbeatTimeout: Duration.minutes(15),
    ...over,
  });
  return { gv, t: Template.fromStack(stack) };
}

describe('the EcsGvisor construct on an existing group', () => {
  it('adds the hooks to the group as resources (launch ABANDON, terminate CONTINUE) with the heartbeat given', () => {
    const { t } = existing();
    t.resourceCountIs('AWS::AutoScaling::LifecycleHook', 2);
    t.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      AutoScalingGroupName: 'prod-asg',
      LifecycleHookName: 'ecs-gvisor-launch',
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
      DefaultResult: 'ABANDON',
      HeartbeatTimeout: 900,
    });
    t.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      LifecycleHookName: 'ecs-gvisor-terminate',
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
      DefaultResult: 'CONTINUE',
    });
  });

  it('gives the existing role ecs-gvisor’s calls only, scoped to the cluster, its tasks, the group and the release object', () => {
    const { t } = existing();
    t.hasResourceProperties('AWS::IAM::Policy', { Roles: ['prod-instance-role'] });
    const statements = statementsOf(t);
    expect(statements.map((s) => s.Sid).sort()).toEqual([
      'EcsGvisorArtifacts',
      'EcsGvisorContainerInstance',
      'EcsGvisorLifecycle',
      'EcsGvisorTaskLimits',
    ]);
    for (const s of statements) expect([s.Resource].flat(), s.Sid).not.toContain('*');
    const by = (sid: string) => statements.find((s) => s.Sid === sid)!;
    expect(JSON.stringify(by('EcsGvisorContainerInstance').Resource)).toContain(':container-instance/prod/*');
    expect(JSON.stringify(by('EcsGvisorContainerInstance').Condition)).toContain(':cluster/prod');
    expect(JSON.stringify(by('EcsGvisorTaskLimits').Resource)).toContain(':task/prod/*');
    expect(JSON.stringify(by('EcsGvisorLifecycle').Resource)).toContain(':autoScalingGroup:*:autoScalingGroupName/prod-asg');
    expect([by('EcsGvisorLifecycle').Action].flat()).not.toContain('autoscaling:SetInstanceHealth');
    expect(by('EcsGvisorArtifacts').Resource).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::artifacts/ecs-gvisor-0.1.0-linux-{arch}.tar.gz']],
    });
    const healing = statementsOf(existing({ setInstanceHealth: true }).t);
    expect(JSON.stringify(healing)).toContain('autoscaling:SetInstanceHealth');
  });

  it('hands over the userdata for the launch template, every placeholder filled, and keeps each launch failure with an alarm', () => {
    const { gv, t } = existing({ agentImage: 'amazon/amazon-ecs-agent:v1.101.2' });
    if (gv.userData === undefined) throw new Error('no userdata');
    expect(gv.userData).not.toMatch(/__[A-Z0-9_]+__/);
    expect(gv.userData).toMatch(/^ECS_CLUSTER_NAME='prod' /m);
    expect(gv.userData).toMatch(/^ASG_NAME='prod-asg' /m);
    expect(gv.userData).toMatch(/^HEARTBEAT_TIMEOUT='900' /m);
    expect(gv.userData).toMatch(/^RELEASE_SHA512='c{1}d/m);
    expect(gv.userData).toBe(
      EcsGvisor.userDataFor({
        clusterName: 'prod',
        autoScalingGroupName: 'prod-asg',
        artifacts: ARTIFACTS,
        heartbeatTimeout: Duration.minutes(15),
      }),
    );
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { 'detail-type': ['EC2 Instance Launch Unsuccessful'], detail: { AutoScalingGroupName: ['prod-asg'] } },
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'TriggeredRules', Threshold: 1 });
    t.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('refuses what would break the instances at synth: an unpinned agent image, a heartbeat out of range, a quote in a value', () => {
    expect(() => existing({ agentImage: 'amazon/amazon-ecs-agent:latest' })).toThrow(/must be pinned/);
    expect(() => existing({ heartbeatTimeout: Duration.hours(3) })).toThrow(/must be 30–7200 s/);
    expect(() => existing({ clusterName: "pr'od" })).toThrow(/must not contain quotes/);
  });
});

describe('the EcsGvisor construct on a group and launch template of the same app', () => {
  it('adds its userdata after the template’s own lines and the hooks inside the group', () => {
    const stack = new Stack(new App(), 'Mine', { env: { account: '111122223333', region: 'eu-west-1' } });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0 });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    const userData = ec2.UserData.forLinux();
    userData.addCommands('echo "the operator\'s own line"');
    const launchTemplate = new ec2.LaunchTemplate(stack, 'Lt', {
      machineImage: ec2.MachineImage.latestAmazonLinux2023(),
      instanceType: new ec2.InstanceType('m6i.large'),
      role,
      userData,
    });
    const group = new autoscaling.AutoScalingGroup(stack, 'Group', { vpc, launchTemplate, autoScalingGroupName: 'mine-asg' });
    new EcsGvisor(stack, 'EcsGvisor', {
      clusterName: 'mine',
      autoScalingGroupName: 'mine-asg',
      autoScalingGroup: group,
      launchTemplate,
      role,
      artifacts: ARTIFACTS,
    });
    const t = Template.fromStack(stack);
    const lt = Object.values(t.findResources('AWS::EC2::LaunchTemplate'))[0] as {
      Properties: { LaunchTemplateData: { UserData: { 'Fn::Base64': string } } };
    };
    const text = lt.Properties.LaunchTemplateData.UserData['Fn::Base64'];
    expect(text.indexOf("the operator's own line")).toBeGreaterThan(0);
    expect(text.indexOf("ECS_CLUSTER_NAME='mine'")).toBeGreaterThan(text.indexOf("the operator's own line"));
    t.resourceCountIs('AWS::AutoScaling::LifecycleHook', 0);
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      LifecycleHookSpecificationList: [
        Match.objectLike({ LifecycleHookName: 'ecs-gvisor-launch', DefaultResult: 'ABANDON', HeartbeatTimeout: 600 }),
        Match.objectLike({ LifecycleHookName: 'ecs-gvisor-terminate', DefaultResult: 'CONTINUE' }),
      ],
    });
    // A launch template without userdata of its own cannot be added to: one sentence, at synth.
    const bare = new ec2.LaunchTemplate(stack, 'Bare', { machineImage: ec2.MachineImage.latestAmazonLinux2023() });
    expect(
      () =>
        new EcsGvisor(stack, 'Again', {
          clusterName: 'mine',
          autoScalingGroupName: 'other',
          launchTemplate: bare,
          role,
          artifacts: ARTIFACTS,
        }),
    ).toThrow(/has no userData to add to/);
  });
});

describe('the plain CloudFormation template', () => {
  const template = () => Template.fromStack(new EcsGvisorExistingGroupStack(new App(), 'Plain'));

  it('takes every value as a parameter, each string with a pattern', () => {
    const t = template().toJSON() as { Parameters: Record<string, { Type: string; AllowedPattern?: string; Default?: unknown }> };
    expect(Object.keys(t.Parameters).sort()).toEqual([
      'ArtifactBucket',
      'AutoScalingGroupName',
      'ClusterName',
      'HeartbeatTimeoutSeconds',
      'InstanceRoleName',
    ]);
    for (const [name, p] of Object.entries(t.Parameters)) if (p.Type === 'String') expect(p.AllowedPattern, name).toBeDefined();
    const accepts = (name: string, v: string) => new RegExp(t.Parameters[name]!.AllowedPattern!).test(v);
    expect(accepts('AutoScalingGroupName', 'prod-asg')).toBe(true);
    expect(accepts('ArtifactBucket', '')).toBe(true);
    expect(accepts('ArtifactBucket', 'Not_A_Bucket')).toBe(false);
    expect(accepts('ClusterName', 'prod/x')).toBe(false);
    // No CDK bootstrap needed to deploy it: no BootstrapVersion parameter or rule, no CDK metadata.
    expect(JSON.stringify(t)).not.toMatch(/BootstrapVersion|CDKMetadata/);
  });

  it('adds the hooks to the named group, the calls to the named role, and reads the release from S3 only when a bucket is named', () => {
    const t = template();
    t.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      AutoScalingGroupName: { Ref: 'AutoScalingGroupName' },
      HeartbeatTimeout: { Ref: 'HeartbeatTimeoutSeconds' },
      DefaultResult: 'ABANDON',
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: 'InstanceRoleName' }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Sid: 'EcsGvisorLifecycle' })]) },
    });
    t.hasResource('AWS::IAM::Policy', { Condition: 'ReleaseOnS3', Properties: { Roles: [{ Ref: 'InstanceRoleName' }] } });
    t.hasCondition('ReleaseOnS3', { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'ArtifactBucket' }, ''] }] });
    t.hasOutput('PlacementConstraint', { Value: 'attribute:ecs-gvisor.sandbox == verified' });
    t.hasOutput('HeartbeatTimeout', { Value: { Ref: 'HeartbeatTimeoutSeconds' } });
    // Nothing about the release: the userdata is the operator's to fill, so no parameter goes unused.
    expect(JSON.stringify(t.toJSON())).not.toContain('ReleaseUrl');
  });

  it('is what bin/template.ts writes for the release', () => {
    const out = `${mkdtempSync('/tmp/egv-cfn-')}/t.json`;
    execFileSync('npx', ['tsx', 'bin/template.ts', out], { cwd: infra, encoding: 'utf8' });
    const written = JSON.parse(readFileSync(out, 'utf8'));
    expect(written.Description).toMatch(/^ecs-gvisor for an existing ECS cluster/);
    expect(Object.keys(written.Resources).sort()).toEqual(Object.keys(template().toJSON().Resources).sort());
  });
});

describe('the construct as a package', () => {
  it('builds, packs, installs into an empty app and synthesizes there, its userdata.sh inside', () => {
    execFileSync(process.execPath, [`${infra}construct/build.mjs`], { encoding: 'utf8' });
    const packDir = mkdtempSync('/tmp/egv-pack-');
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: `${infra}construct`, encoding: 'utf8' }),
    ) as Array<{ filename: string; files: Array<{ path: string }> }>;
    expect(packed[0]!.files.map((f) => f.path).sort()).toEqual([
      'LICENSE',
      'README.md',
      'dist/index.d.ts',
      'dist/index.js',
      'dist/userdata.sh',
      'package.json',
    ]);
    // An app of its own: the package unpacked into its node_modules, aws-cdk-lib and constructs beside it.
    const app = mkdtempSync('/tmp/egv-cdkapp-');
    mkdirSync(`${app}/node_modules/ecs-gvisor-cdk`, { recursive: true });
    execFileSync('tar', ['-xzf', `${packDir}/${packed[0]!.filename}`, '-C', `${app}/node_modules/ecs-gvisor-cdk`, '--strip-components=1']);
    for (const dep of ['aws-cdk-lib', 'constructs']) symlinkSync(`${infra}node_modules/${dep}`, `${app}/node_modules/${dep}`);
    writeFileSync(`${app}/package.json`, '{ "type": "module" }\n');
    writeFileSync(
      `${app}/app.mjs`,
      `import { App, Stack } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { EcsGvisor } from 'ecs-gvisor-cdk';
const app = new App({ outdir: process.argv[2] });
const stack = new Stack(app, 'Mine');
const gv = new EcsGvisor(stack, 'Gv', {
  clusterName: 'mine', autoScalingGroupName: 'mine-asg', role: iam.Role.fromRoleName(stack, 'R', 'mine-role'),
  artifacts: { releaseUrl: 'https://example.com/ecs-gvisor-0.1.0-linux-{arch}.tar.gz', releaseSha512: '${SHA}', runscRelease: '20261012.0', runscSha512: '${SHA}' },
});
const t = app.synth().getStackByName('Mine').template;
process.stdout.write(JSON.stringify({ hooks: Object.values(t.Resources).filter((r) => r.Type === 'AWS::AutoScaling::LifecycleHook').length, cluster: /^ECS_CLUSTER_NAME='mine'/m.test(gv.userData ?? '') }));
`,
    );
    const result = execFileSync(process.execPath, [`${app}/app.mjs`, `${app}/cdk.out`], { cwd: app, encoding: 'utf8' });
    expect(JSON.parse(result)).toEqual({ hooks: 2, cluster: true });
    // The userdata inside the package is the repository's.
    expect(readFileSync(`${app}/node_modules/ecs-gvisor-cdk/dist/userdata.sh`, 'utf8')).toBe(
      readFileSync(`${repo}scripts/userdata.sh`, 'utf8'),
    );
  });
});
