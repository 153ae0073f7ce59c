/**
 * What the runtime entry point adds to a container start, against runsc named directly, in one run.
 *
 * 1. The entry's own cost: `create` as containerd's shim calls it, on a real bundle's config.json (one
 *    joined namespace, the case that parses furthest), with `true` standing in for runsc, against `true`
 *    called directly. This is the whole of what it adds; measured 200 times, interleaved.
 * 2. Whole container starts on a private dockerd with the current runsc (release-20260817, from the
 *    project's shared test material): `docker run --rm` of busybox `true` through a runtime whose path is the
 *    entry point, and through one whose path is runsc, alternating; p50 and p95 of each, and the added p95.
 *
 * Usage: node <bundle> [starts=20] (after `npm run package`; needs root, dockerd and busybox as the tests do).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderRuntimeEntry } from '../src/runtime/runtime-entry.js';
import { applyDaemonJson } from '../test/harness/docker-state.js';
import { BUSYBOX_IMAGE, buildBusyboxImage } from '../test/harness/images.js';
import { startPrivateDockerd, stopPrivateDockerd } from '../test/harness/private-dockerd.js';
import { percentile, report } from './figures.js';

const STARTS = Number(process.argv[2] ?? 20);
// Bundled as bench/.out/runtime-entry.mjs: the shared material is beside the repository.
const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));

const dir = mkdtempSync('/tmp/egv-bench-entry-');
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

// 1. The entry's own cost.
const bundle = `${dir}/bundle`;
mkdirSync(bundle);
writeFileSync(
  `${bundle}/config.json`,
  JSON.stringify({
    ociVersion: '1.0.2',
    process: { args: ['sh'], env: Array.from({ length: 40 }, (_, i) => `V${i}=x`) },
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/proc/1/ns/net' }],
    },
  }),
);
const entry = `${dir}/entry`;
writeFileSync(entry, renderRuntimeEntry({ runscPath: '/bin/true', policy: 'auto' }), { mode: 0o755 });
const shimArgs = [
  '--root',
  '/run/docker/runtime-runc/moby',
  '--log',
  `${bundle}/log.json`,
  '--log-format',
  'json',
  'create',
  '--bundle',
  bundle,
  '--pid-file',
  `${bundle}/init.pid`,
  'c0ffee',
];
const viaEntry: number[] = [];
const direct: number[] = [];
for (let i = 0; i < 200; i++) {
  let t0 = process.hrtime.bigint();
  spawnSync(entry, shimArgs);
  viaEntry.push(ms(t0));
  t0 = process.hrtime.bigint();
  spawnSync('/bin/true', shimArgs);
  direct.push(ms(t0));
}
const added = percentile(viaEntry, 95) - percentile(direct, 95);

// 2. Whole starts.
const d = await startPrivateDockerd();
const starts = { entry: [] as number[], runsc: [] as number[] };
try {
  const runsc = `${dir}/runsc`;
  copyFileSync(SHARED_RUNSC, runsc);
  const real = `${dir}/entry-runsc`;
  writeFileSync(real, renderRuntimeEntry({ runscPath: runsc, policy: 'auto' }), { mode: 0o755 });
  await applyDaemonJson(d, { runtimes: { 'via-entry': { path: real }, 'runsc-direct': { path: runsc } } }, 'via-entry');
  await buildBusyboxImage(d.host);
  const run = (runtime: string) => {
    const t0 = process.hrtime.bigint();
    execFileSync('docker', ['-H', d.host, 'run', '--rm', '--runtime', runtime, '--network', 'none', BUSYBOX_IMAGE, 'true']);
    return ms(t0);
  };
  run('via-entry');
  run('runsc-direct'); // warm both
  for (let i = 0; i < STARTS; i++) {
    starts.entry.push(run('via-entry'));
    starts.runsc.push(run('runsc-direct'));
  }
} finally {
  await stopPrivateDockerd(d);
  rmSync(dir, { recursive: true, force: true });
}
const addedStart = percentile(starts.entry, 95) - percentile(starts.runsc, 95);

report('runtime-entry', [
  {
    metric: 'entry point alone: create through it vs the program direct, p50 / p95 (200 each)',
    value: `${percentile(viaEntry, 50).toFixed(1)} / ${percentile(viaEntry, 95).toFixed(1)} vs ${percentile(direct, 50).toFixed(1)} / ${percentile(direct, 95).toFixed(1)} ms`,
    unit: '',
    target: '–',
    ok: true,
  },
  { metric: 'entry point alone: added p95', value: added, unit: 'ms', target: '≤ 20', ok: added <= 20 },
  {
    metric: `docker run --rm (runsc 20260817) through the entry vs runsc direct, p50 / p95 (${STARTS} each, alternating)`,
    value: `${Math.round(percentile(starts.entry, 50))} / ${Math.round(percentile(starts.entry, 95))} vs ${Math.round(percentile(starts.runsc, 50))} / ${Math.round(percentile(starts.runsc, 95))} ms`,
    unit: '',
    target: '–',
    ok: true,
  },
  {
    metric: 'container start: added p95 (noise of whole starts included)',
    value: addedStart,
    unit: 'ms',
    target: '≤ 20',
    ok: addedStart <= 20,
  },
]);
