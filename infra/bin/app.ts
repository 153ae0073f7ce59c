/**
 * `npx cdk synth` (offline; no lookups): settings come from CDK context (`-c key=value` or cdk.json).
 * The artifact defaults are placeholders that synthesize but warn: pin real ones before deploying.
 */
import { App } from 'aws-cdk-lib';
import { DEFAULT_AGENT_IMAGE, EcsGvisorStack } from '../lib/ecs-gvisor-stack.js';

const app = new App();
const ctx = (key: string, fallback: string): string => String(app.node.tryGetContext(key) ?? fallback);
const num = (key: string, fallback: number): number => {
  const v = Number(ctx(key, String(fallback)));
  if (!Number.isInteger(v)) throw new Error(`context ${key}=${ctx(key, '')} must be a whole number`);
  return v;
};

new EcsGvisorStack(app, ctx('stackName', 'EcsGvisor'), {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  clusterName: ctx('clusterName', 'gvisor'),
  instanceType: ctx('instanceType', 'm6i.large'),
  minCapacity: num('minCapacity', 1),
  maxCapacity: num('maxCapacity', 4),
  heartbeatTimeoutSeconds: num('heartbeatTimeoutSeconds', 600),
  launchHookName: ctx('launchHookName', 'ecs-gvisor-launch'),
  terminateHookName: ctx('terminateHookName', 'ecs-gvisor-terminate'),
  managedDraining: ctx('managedDraining', 'false') === 'true',
  exampleService: ctx('exampleService', 'true') === 'true',
  setInstanceHealth: ctx('setInstanceHealth', 'false') === 'true',
  agentImage: ctx('agentImage', DEFAULT_AGENT_IMAGE),
  sessionManager: ctx('sessionManager', 'false') === 'true',
  ...(app.node.tryGetContext('alarmTopicArn') ? { alarmTopicArn: ctx('alarmTopicArn', '') } : {}),
  artifacts: {
    releaseUrl: ctx('releaseUrl', 'https://example.invalid/ecs-gvisor-0.1.0-linux-{arch}.tar.gz'),
    releaseSha512: ctx('releaseSha512', '0'.repeat(128)),
    runscRelease: ctx('runscRelease', '20261012.0'),
    runscSha512: ctx('runscSha512', '0'.repeat(128)),
    ...(app.node.tryGetContext('runscMirrorUrl') ? { runscMirrorUrl: ctx('runscMirrorUrl', '') } : {}),
  },
});
