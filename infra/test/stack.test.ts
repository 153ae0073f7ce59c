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
import { EcsGvisorStack, fill, SANDBOX_CONSTRAINT, type EcsGvisorStackProps } from '../lib/ecs-gvisor-stack.js';

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
  artifacts: { releaseUrl: 's3://artifacts/ecs-gvisor-0.1.0.tar.gz', releaseSha512: SHA, runscRelease: '20261012.0', runscSha512: SHA },
};

function synth(over: Partial<EcsGvisorStackProps> = {}): Template {
  return Template.fromStack(new EcsGvisorStack(new App(), 'Test', { ...props, ...over }));
}

/** The launch template's userdata, with CloudFormation references written as ${…}. */
function userData(t: Template): string {
  const lt = Object.values(t.findResources('AWS::EC2::LaunchTemplate'))[0] as { Properties: { LaunchTemplateData: { UserData: { 'Fn::Base64': unknown } } } };
  const body = lt.Properties.LaunchTemplateData.UserData['Fn::Base64'];
  if (typeof body === 'string') return body;
  const [, parts] = (body as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return parts.map((p) => (typeof p === 'string' ? p : `\${${JSON.stringify(p)}}`)).join('');
}

describe('the ECS cluster stack', () => {
  it('has the launch and terminate hooks with the configured heartbeat timeout', () => {
    const t = synth();
    t.resourceCountIs('AWS::AutoScaling::LifecycleHook', 2);
    t.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      LifecycleHookName: 'gv-launch',
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
      HeartbeatTimeout: 900,
      DefaultResult: 'ABANDON',
    });
    t.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      LifecycleHookName: 'gv-terminate',
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
      HeartbeatTimeout: 900,
      DefaultResult: 'CONTINUE',
    });
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { AutoScalingGroupName: 'Test-ecs-gvisor', MinSize: '1', MaxSize: '3' });
    expect(() => synth({ heartbeatTimeoutSeconds: 20 })).toThrow(/must be 30–7200/);
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
    expect(u).toContain("RELEASE_URL='s3://artifacts/ecs-gvisor-0.1.0.tar.gz'");
    expect(u).toContain("LAUNCH_HOOK='gv-launch'");
    expect(u).toContain("TERMINATE_HOOK='gv-terminate'");
    expect(u).toContain("HEARTBEAT_TIMEOUT='900'");
    expect(u).toContain("ASG_NAME='Test-ecs-gvisor'");
    expect(u).not.toMatch(/__[A-Z0-9_]+__/);
    expect(() => fill('X=__A__ Y=__B__', { A: '1' })).toThrow(/__B__ has no value/);
    expect(() => fill('X=__A__', { A: "it's" })).toThrow(/must not contain quotes/);
  });

  it('grants ecs-gvisor only its own calls, with no "*" resource on any action that changes something', () => {
    const t = synth();
    const statements = Object.values(t.findResources('AWS::IAM::Policy')).flatMap(
      (p) => (p as { Properties: { PolicyDocument: { Statement: Array<{ Action: string | string[]; Resource: unknown }> } } }).Properties.PolicyDocument.Statement,
    );
    const mutating = /^(ecs:(UpdateContainerInstancesState|PutAttributes|DeleteAttributes|Submit|Register|Deregister)|autoscaling:(Complete|Record|SetInstanceHealth)|iam:|sns:|lambda:)/;
    const offenders = statements.filter((s) => [s.Action].flat().some((a) => mutating.test(a)) && [s.Resource].flat().includes('*'));
    expect(offenders).toEqual([]);
    // The calls ecs-gvisor makes are there, scoped to this cluster and this group.
    const json = JSON.stringify(statements);
    for (const a of ['ecs:DescribeContainerInstances', 'ecs:UpdateContainerInstancesState', 'autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat', 'autoscaling:SetInstanceHealth', 'ec2:DescribeTags']) {
      expect(json).toContain(a);
    }
    expect(json).toContain(':container-instance/tenants/*');
    expect(json).toContain(':autoScalingGroup:*:autoScalingGroupName/Test-ecs-gvisor');
    // No draining Lambda: the terminate hook on the instance replaces it.
    t.resourceCountIs('AWS::Lambda::Function', 0);
    t.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: Match.arrayWith([Match.objectLike({ 'Fn::Join': Match.arrayWith([Match.arrayWith([':iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role'])]) })]),
    });
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
    execFileSync(`${infra}node_modules/.bin/tsx`, ['bin/app.ts'], { cwd: infra, env: { PATH: process.env.PATH, CDK_OUTDIR: out }, encoding: 'utf8' });
    const template = JSON.parse(readFileSync(`${out}/EcsGvisor.template.json`, 'utf8')) as { Resources: Record<string, { Type: string }> };
    expect(Object.values(template.Resources).filter((r) => r.Type === 'AWS::AutoScaling::LifecycleHook')).toHaveLength(2);
    expect(readFileSync(`${out}/EcsGvisor.metadata.json`, 'utf8')).toContain('artifacts are placeholders');
  });
});
