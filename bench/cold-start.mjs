#!/usr/bin/env node
// The release bundle's size and cold-start time: `--version` and `status --json` (no Docker, no state)
// with a plain node, median of N runs. Usage: node bench/cold-start.mjs [runs=15] (after npm run bundle).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = fileURLToPath(new URL('../dist/bundle/ecs-gvisor.mjs', import.meta.url));
const runs = Number(process.argv[2] ?? 15);
const state = mkdtempSync('/tmp/egv-bench-');
const env = {
  PATH: process.env.PATH,
  ECS_GVISOR_CONFIG: '/nonexistent',
  ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent.sock',
  ECS_GVISOR_STATE_DIR: state,
};

function median(args, file = bundle) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    // status exits 8 here (nothing bootstrapped, no Docker): the time is what counts.
    spawnSync(process.execPath, file ? [file, ...args] : args, { env, stdio: 'ignore' });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

console.log(`node ${process.version}, ${runs} runs each`);
console.log(`bundle size          ${(statSync(bundle).size / 1024).toFixed(0)} KiB`);
console.log(`node -e 0            ${median(['-e', '0'], null).toFixed(0)} ms (median; Node itself)`);
console.log(`--version            ${median(['--version']).toFixed(0)} ms (median)`);
console.log(`status --json        ${median(['status', '--json']).toFixed(0)} ms (median)`);
