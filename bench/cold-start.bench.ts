// Cold start of the release, side by side in one run: the executable (its own Node inside, V8's code
// cache built in) and the bundle on this node; `--version` and `status --json` (no Docker, no state),
// median of N runs, the programs alternating so load affects them alike. Memory and `status` on an
// instance are bench/instance.bench.ts's.
// Usage: npm run bench cold-start (node bench/run.mjs cold-start), after npm run package.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { report } from './figures.js';

// Runs bundled as bench/.out/cold-start.mjs (bench/run.mjs): the repository is two levels up.
const bundle = fileURLToPath(new URL('../../dist/bundle/ecs-gvisor.mjs', import.meta.url));
const exe = fileURLToPath(new URL(`../../dist/sea/${process.arch}/ecs-gvisor`, import.meta.url));
if (!existsSync(exe)) throw new Error(`${exe} is missing: run npm run package first`);
const runs = Number(process.env.COLD_START_RUNS ?? 21);
const state = mkdtempSync('/tmp/egv-bench-');
const env = {
  PATH: process.env.PATH,
  ECS_GVISOR_CONFIG: '/nonexistent',
  ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent.sock',
  ECS_GVISOR_STATE_DIR: state,
};

/** Each program: its command line before the arguments. */
const programs = [
  { name: 'executable', argv: [exe] },
  { name: `bundle (node ${process.version})`, argv: [process.execPath, bundle] },
];

/** Median wall time of each program's run, alternating. */
function medians(argv: string[], list: Array<{ argv: string[] }>): number[] {
  const times: number[][] = list.map(() => []);
  for (let i = 0; i < runs; i++) {
    list.forEach((p, j) => {
      const t = process.hrtime.bigint();
      // status exits 8 here (nothing bootstrapped, no Docker): the time is what counts.
      spawnSync(p.argv[0]!, [...p.argv.slice(1), ...argv], { env, stdio: 'ignore' });
      times[j]!.push(Number(process.hrtime.bigint() - t) / 1e6);
    });
  }
  return times.map((ts) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)]!);
}

const cols = (values: string[]) => values.map((v) => `${v}`.padStart(12)).join('');
const [bare = Number.NaN] = medians(['-e', '0'], [{ argv: [process.execPath] }]);
const version = medians(['--version'], programs);
const status = medians(['status', '--json'], programs);
console.log(`${runs} runs each, ms (median); node -e 0 alone: ${bare.toFixed(0)} ms`);
console.log(`${''.padEnd(20)}${programs.map((p) => p.name.padStart(Math.max(12, p.name.length + 2))).join('')}`);
console.log(`size (MiB)          ${cols(programs.map((p) => (statSync(p.argv.at(-1)!).size / 1048576).toFixed(1)))}`);
console.log(`--version           ${cols(version.map((v) => v.toFixed(0)))}`);
console.log(`status --json       ${cols(status.map((v) => v.toFixed(0)))}`);
report('cold-start', [
  {
    metric: `--version, executable / bundle on node ${process.version} (median of ${runs}; bare node -e 0: ${bare.toFixed(0)} ms)`,
    value: `${version[0]!.toFixed(0)} / ${version[1]!.toFixed(0)}`,
    unit: 'ms',
    target: '≤ 60 (executable)',
    ok: version[0]! <= 60,
  },
  {
    metric: `status --json, executable / bundle on node ${process.version} (no Docker here: the instance bench has it on an instance)`,
    value: `${status[0]!.toFixed(0)} / ${status[1]!.toFixed(0)}`,
    unit: 'ms',
    target: 'report',
    ok: true,
  },
]);
