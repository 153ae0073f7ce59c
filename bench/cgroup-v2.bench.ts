/**
 * The proof on cgroup v2 (Amazon Linux 2023's layout: Docker's systemd driver) beside cgroup v1, in one
 * run: the container instance of the end-to-end tests (this machine's kernel, v1, cgroupfs) and the
 * virtual-machine instance (a v2 kernel under qemu's software emulation), each with the same release and
 * the current runsc, installed but not started, so nothing else runs while it is timed.
 *
 * Emulation makes everything in the machine slower, so its raw times say little about v2 itself: beside
 * each figure is Docker's own work on the same instance (a runsc container, a runc one), and the ratio
 * that matters is the proof's against a runsc container on each side.
 *
 * Times are taken inside the instance (`date` around the command), so the command channel is not in them.
 * Usage: node <bundle> [rounds=3] (after `npm run package`; needs root, dockerd and qemu as the tests do).
 */
import { fileURLToPath } from 'node:url';
import { startE2eWorld } from '../test/e2e/global-setup.js';
import { Instance, type InstanceBase, type InstanceOptions } from '../test/e2e/instance.js';
import { vmImage } from '../test/e2e/vm-image.js';
import { VmInstance } from '../test/e2e/vm-instance.js';
import { type Figure, percentile, report } from './figures.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const log = (l: string) => process.stderr.write(`bench: ${l}\n`);
const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));
const OPTIONS: InstanceOptions = {
  install: 'no-start',
  fast: false,
  runscPath: '/opt/e2e/runsc',
  copies: { runsc: SHARED_RUNSC },
  settings: { ECS_GVISOR_RUNSC_ARGS: '' },
};

/** One command's wall time on the instance, in ms; it must exit 0. */
async function timed(i: InstanceBase, command: string): Promise<number> {
  const out = await i.sh(
    `t0=$(date +%s%N); ${command} > /tmp/bench.out 2>&1 || { cat /tmp/bench.out; exit 1; }; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))`,
  );
  return Number(out.trim()) / 1000;
}

interface Side {
  firstMs: number;
  proofMs: number[];
  runscMs: number[];
  runcMs: number[];
  cgroup: string;
}

async function measure(i: InstanceBase): Promise<Side> {
  await i.sh('docker load -q -i /opt/e2e/busybox.tar');
  // First: daemon.json written, Docker reloaded, the sandbox proven. Then with it in place: the proof alone.
  const firstMs = await timed(i, 'ecs-gvisor bootstrap --only runtime');
  const cgroup = (await i.sh("docker info --format 'v{{.CgroupVersion}} {{.CgroupDriver}}'")).trim();
  const side: Side = { firstMs, proofMs: [], runscMs: [], runcMs: [], cgroup };
  for (let r = 0; r < ROUNDS; r++) {
    // In turn, so a slow spell of the machine falls on each alike.
    side.proofMs.push(await timed(i, 'ecs-gvisor bootstrap --only runtime'));
    side.runscMs.push(await timed(i, 'docker run --rm busybox:latest true'));
    side.runcMs.push(await timed(i, 'docker run --rm --runtime runc busybox:latest true'));
  }
  return side;
}

const med = (xs: number[]) => percentile(xs, 50);
const s = (ms: number) => (ms / 1000).toFixed(2);
const x = (a: number, b: number) => `${(a / b).toFixed(2)} ×`;

const { world, stop } = await startE2eWorld(log);
const launched: InstanceBase[] = [];
try {
  log('the v1 instance (a container on this kernel)');
  const v1i = await Instance.launch(world, 'bench-v1', OPTIONS);
  launched.push(v1i);
  const v1 = await measure(v1i);
  await v1i.destroy();
  launched.pop();

  log('the v2 instance (a virtual machine)');
  const image = await vmImage(log);
  const t0 = Date.now();
  const v2i = await VmInstance.launch(world, image, 'bench-v2', OPTIONS);
  launched.push(v2i);
  const bootMs = Date.now() - t0;
  const v2 = await measure(v2i);

  const proof = [med(v1.proofMs), med(v2.proofMs)] as const;
  const runsc = [med(v1.runscMs), med(v2.runscMs)] as const;
  const runc = [med(v1.runcMs), med(v2.runcMs)] as const;
  const figures: Figure[] = [
    {
      metric: 'the instances: cgroups, Docker’s driver (v1 / v2)',
      value: `${v1.cgroup} / ${v2.cgroup}`,
      unit: '',
      target: 'report',
      ok: true,
    },
    {
      metric: `the proof alone (\`bootstrap --only runtime\` with daemon.json in place: a probe sandbox started, its evidence read), median of ${ROUNDS}: v1 / v2`,
      value: `${s(proof[0])} / ${s(proof[1])} s (v2 : v1 ${x(proof[1], proof[0])})`,
      unit: '',
      target: 'report',
      ok: true,
    },
    {
      metric: `Docker’s own work beside it, median of ${ROUNDS}: a runsc container (docker run --rm … true), v1 / v2; a runc one, v1 / v2`,
      value: `${s(runsc[0])} / ${s(runsc[1])} s (${x(runsc[1], runsc[0])}); ${s(runc[0])} / ${s(runc[1])} s (${x(runc[1], runc[0])}: emulation)`,
      unit: '',
      target: 'report',
      ok: true,
    },
    {
      // Emulation slows both alike: what is left is what v2 itself costs the proof.
      metric: 'the proof against a runsc container on the same instance: v1 / v2',
      value: `${x(proof[0], runsc[0])} / ${x(proof[1], runsc[1])}`,
      unit: '',
      target: 'v2 ≤ 1.5 × v1’s',
      ok: proof[1] / runsc[1] <= 1.5 * (proof[0] / runsc[0]),
    },
    {
      metric: 'first proof (daemon.json written, Docker reloaded, the sandbox proven): v1 / v2',
      value: `${s(v1.firstMs)} / ${s(v2.firstMs)} s`,
      unit: '',
      target: 'report',
      ok: true,
    },
    {
      metric: 'the v2 machine’s boot (qemu -accel tcg) until systemd finished and the userdata ran',
      value: s(bootMs),
      unit: 's',
      target: 'report',
      ok: true,
    },
  ];
  report('cgroup-v2', figures);
} finally {
  for (const i of launched) await i.destroy().catch(() => undefined);
  await stop();
}
