/**
 * Writes the plain CloudFormation template for an existing cluster and group (lib/existing-group-stack.ts)
 * to the path given, or to stdout: `npx tsx bin/template.ts out.json`. Offline; no bootstrap stack needed.
 */
import { writeFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { EcsGvisorExistingGroupStack } from '../lib/existing-group-stack.js';

const app = new App();
const stack = new EcsGvisorExistingGroupStack(app, 'EcsGvisorExistingGroup');
const template = `${JSON.stringify(app.synth().getStackArtifact(stack.artifactId).template, null, 2)}\n`;
if (process.argv[2]) writeFileSync(process.argv[2], template);
else process.stdout.write(template);
