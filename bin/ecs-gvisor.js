#!/usr/bin/env node
// Runs the compiled tree; before a build there is none, and the answer says what to run.
import { existsSync } from 'node:fs';

if (!existsSync(new URL('../dist/cli/main.js', import.meta.url))) {
  process.stderr.write('ecs-gvisor: not built yet: run `npm ci && npm run build` in the repository first (or use a release bundle).\n');
  process.exitCode = 4;
} else {
  const { main } = await import('../dist/cli/main.js');
  process.exitCode = await main(process.argv.slice(2), process.env);
}
