/**
 * What one pass of the sandbox audit costs with 50 task containers running in gVisor: the Docker list and
 * inspects, every process's command line, and per task the /proc and cgroup reads of the enforcement
 * check (sandbox, gofers, the container's and the task's limit files). CPU of this process per pass
 * (user + system, median of 10 passes) and wall time: a pass as most are (containers inspected since
 * their last event), the enforcement part alone, and a pass that inspects every container again. On a private dockerd with the current runsc (release-20260817, from the project's shared
 * test material).
 *
 * Usage: node <bundle> [tasks=50] (needs root, dockerd and busybox as the tests do).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { DockerodeDocker } from '../src/adapters/dockerode-docker.js';
import { LinuxHost } from '../src/adapters/linux-host.js';
import { NodeFiles } from '../src/adapters/node-files.js';
import { SystemClock } from '../src/adapters/system-clock.js';
import { AwsCaller } from '../src/aws/aws-caller.js';
import { StateStore } from '../src/state-store.js';
import { EcsTaskDirectory, TASK_LOOKUP_MS } from '../src/watch/ecs-tasks.js';
import { WatchMetrics } from '../src/watch/metrics.js';
import { AuditMonitor } from '../src/watch/monitors/audit-monitor.js';
import { WatchState } from '../src/watch/watch-state.js';
import { applyDaemonJson } from '../test/harness/docker-state.js';
import { BUSYBOX_IMAGE, buildBusyboxImage } from '../test/harness/images.js';
import { startPrivateDockerd, stopPrivateDockerd } from '../test/harness/private-dockerd.js';
import { percentile, report } from './figures.js';

const TASKS = Number(process.argv[2] ?? 50);
const PASSES = 10;
const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));
const dir = mkdtempSync('/tmp/egv-bench-audit-');
const log = pino({ level: 'silent' });

const d = await startPrivateDockerd();
const cpu = { pass: [] as number[], cold: [] as number[], enforcement: [] as number[] };
const wall: number[] = [];
let checked = 0;
let violations = 0;
try {
  const runsc = `${dir}/runsc`;
  copyFileSync(SHARED_RUNSC, runsc);
  await applyDaemonJson(d, { 'default-runtime': 'runsc', runtimes: { runsc: { path: runsc, runtimeArgs: ['--network=none'] } } }, 'runsc');
  await buildBusyboxImage(d.host);
  // Tasks as the ECS agent starts them: limits, and a cgroup parent per task (two containers a task).
  for (let i = 0; i < TASKS; i++) {
    const task = `bench${String(Math.floor(i / 2)).padStart(26, '0')}`;
    execFileSync(
      'docker',
      [
        '-H',
        d.host,
        'run',
        '-d',
        '--network',
        'none',
        '--name',
        `task-${i}`,
        '-m',
        '64m',
        '--cpus',
        '0.1',
        '--pids-limit',
        '50',
        '--cgroup-parent',
        `/ecs/${task}`,
        '--user',
        '1000',
        BUSYBOX_IMAGE,
        'sleep',
        '3600',
      ],
      { stdio: 'ignore' },
    );
  }

  const clock = new SystemClock();
  const docker = new DockerodeDocker(d.host);
  const host = new LinuxHost();
  const store = new StateStore(new NodeFiles(), `${dir}/state`);
  const state = new WatchState(
    { clock, log, metrics: new WatchMetrics() },
    { auditAction: 'report', network: false, acsGraceMs: 30_000 },
    undefined,
  );
  const unused = () => {
    throw new Error('no AWS in this bench');
  };
  const aws = new AwsCaller(
    { ecs: unused, autoScaling: unused, ec2: unused, imds: { get: unused }, clock, log },
    { maxCallsPerHour: 60, retry: { retries: 0, minMs: 1, maxMs: 1 } },
  );
  // Not registered here, so ECS is never asked about the tasks (their labels are looked at, no more).
  const tasks = new EcsTaskDirectory({ aws, clock, log }, { minIntervalMs: TASK_LOOKUP_MS });
  const audit = new AuditMonitor({ docker, host, clock, log, store, tasks }, state, { auditMs: 60_000, runtimeName: 'runsc', hygiene: [] });
  // A pass: what the audit observed, recorded as the watch records it.
  const monitor = { run: async (signal: AbortSignal) => state.record(await audit.run(signal)), forget: (id?: string) => audit.forget(id) };
  // The enforcement part alone: what the same pass spends reading cgroups and judging.
  const enforcement = (audit as unknown as { enforcement: (c: unknown, u: boolean) => Promise<unknown> }).enforcement.bind(audit);
  await monitor.run(new AbortController().signal); // warm
  const containers = await docker.listContainers({ all: false });
  const cpuOf = async (fn: () => Promise<unknown>) => {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  };
  for (let i = 0; i < PASSES; i++) {
    // A pass as most are: the containers inspected before and not changed since.
    const t0 = process.hrtime.bigint();
    cpu.pass.push(await cpuOf(() => monitor.run(new AbortController().signal)));
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
    cpu.enforcement.push(await cpuOf(() => Promise.all(containers.map((x) => enforcement(x, false)))));
    // A pass after dockerd came back (or 10 minutes on): every container inspected again.
    monitor.forget();
    cpu.cold.push(await cpuOf(() => monitor.run(new AbortController().signal)));
  }
  checked = state.snap.audit.checked;
  violations = state.snap.audit.violations.length;
} finally {
  await stopPrivateDockerd(d);
  rmSync(dir, { recursive: true, force: true });
}

const pass = percentile(cpu.pass, 50);
report('audit', [
  {
    metric: `one audit pass over ${checked} task containers in gVisor (${violations} violations): CPU, median of ${PASSES}`,
    value: pass,
    unit: 'ms',
    target: '≤ 50',
    ok: pass <= 50 && checked === TASKS && violations === 0,
  },
  {
    metric: 'of which the enforcement check (cgroups of sandboxes and gofers, limit files): CPU',
    value: percentile(cpu.enforcement, 50),
    unit: 'ms',
    target: 'report',
    ok: true,
  },
  {
    metric: 'a pass that inspects every container again (after dockerd came back; every 10 min): CPU',
    value: percentile(cpu.cold, 50),
    unit: 'ms',
    target: 'report',
    ok: true,
  },
  { metric: 'one audit pass: wall time, median', value: percentile(wall, 50), unit: 'ms', target: 'report', ok: true },
]);
