#!/usr/bin/env node
// The release bundle's size and cold-start time: `--version` and `status --json` (no Docker, no state)
// with a plain node, median of N runs. Usage: node bench/cold-start.mjs [runs=15] [--against OTHER.mjs]
// (after npm run bundle). With --against, another bundle (an older release, a branch's build) is timed
// in the same run, the two alternating, and printed side by side.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const at = args.indexOf('--against');
const other = at >= 0 ? args.splice(at, 2)[1] : undefined;
const bundle = fileURLToPath(new URL('../dist/bundle/ecs-gvisor.mjs', import.meta.url));
const runs = Number(args[0] ?? 15);
const state = mkdtempSync('/tmp/egv-bench-');
const env = {
  PATH: process.env.PATH,
  ECS_GVISOR_CONFIG: '/nonexistent',
  ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent.sock',
  ECS_GVISOR_STATE_DIR: state,
};

/** Median wall time of each file's run, the files alternating so load affects them alike. */
function medians(argv, files) {
  const times = files.map(() => []);
  for (let i = 0; i < runs; i++) {
    files.forEach((file, j) => {
      const t = process.hrtime.bigint();
      // status exits 8 here (nothing bootstrapped, no Docker): the time is what counts.
      spawnSync(process.execPath, file ? [file, ...argv] : argv, { env, stdio: 'ignore' });
      times[j].push(Number(process.hrtime.bigint() - t) / 1e6);
    });
  }
  return times.map((ts) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)].toFixed(0));
}

const files = other ? [bundle, other] : [bundle];
const cols = (values) => values.map((v) => `${v}`.padStart(8)).join('');
console.log(`node ${process.version}, ${runs} runs each${other ? `; this build vs ${other}` : ''}`);
console.log(`bundle size (KiB)   ${cols(files.map((f) => (statSync(f).size / 1024).toFixed(0)))}`);
console.log(`node -e 0 (ms)      ${cols(medians(['-e', '0'], [null]))}  (Node itself)`);
console.log(`--version (ms)      ${cols(medians(['--version'], files))}  (median)`);
console.log(`status --json (ms)  ${cols(medians(['status', '--json'], files))}  (median)`);
