/**
 * ecs-gvisor against the userdata script it replaces (../shared/seeds: append to daemon.json, restart
 * Docker, stop and disable ecs, `docker run` the agent under runc), side by side on the simulated ECS
 * instance of the end-to-end tests (systemd, a nested dockerd, Debian's runsc, ecs-init's unit), in one
 * run. Both start from the same state: the agent image loaded, no daemon.json (the script's append breaks
 * an existing one: measured separately), runsc at /usr/bin/runsc (neither downloads it).
 *
 * 1. Time to ready at first boot: ours is systemd's own measure of ecs-gvisor.service, start to READY
 *    (sandbox proven, agent running under runc); the script's is its wall time in the userdata.
 *    Overhead: ours minus what Docker itself spends on the same work (a reload, one runsc container,
 *    the agent's create and start; the median of five of each), measured on the same instance.
 * 2. An instance in service with five task containers: which survive the switch.
 * 3. Idle cost of `run` (default intervals) over 60 s, and `status` cold start, on the instance.
 * 4. Recovery: the agent killed 20 times (each after 10.5 s of running), time until it runs again.
 *
 * Usage: node <bundle> [rounds=3] (after `npm run package`; needs root, dockerd and runsc as the tests do).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startE2eWorld } from '../test/e2e/global-setup.js';
import { Instance, type InstanceOptions } from '../test/e2e/instance.js';
import { percentile, report } from './figures.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const WORKLOADS = 5;
// Runs bundled as bench/.out/instance.mjs (bench/run.mjs), two levels below the repository like test/e2e.
const onInstance = { text: readFileSync(fileURLToPath(new URL('../on-instance.mjs', import.meta.url)), 'utf8'), mode: 0o755 };

/** The article's userdata, as written, with runsc where Debian puts it and the flag this kernel needs. */
const SEED_SCRIPT = `cat <<EOF >> /etc/docker/daemon.json
{
    "default-runtime": "runsc",
    "runtimes": {
        "runsc": {
            "path": "/usr/bin/runsc",
            "runtimeArgs": ["--network=none"]
       }
    }
}
EOF
systemctl restart docker
systemctl stop ecs
systemctl disable ecs
docker run --name ecs-agent \\
    --runtime=runc \\
    --detach=true \\
    --restart=on-failure:10 \\
    --volume=/var/run/docker.sock:/var/run/docker.sock \\
    --volume=/var/log/ecs:/log \\
    --volume=/var/lib/ecs/data:/data \\
    --net=host \\
    --env-file=/etc/ecs/ecs.config \\
    --env=ECS_LOGFILE=/log/ecs-agent.log \\
    --env=ECS_DATADIR=/data/ \\
    --env=ECS_ENABLE_TASK_IAM_ROLE=true \\
    --env=ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true \\
    amazon/amazon-ecs-agent:latest`;

const TIMED_SCRIPT = `#!/bin/bash
set -euo pipefail
t0=$(cut -d' ' -f1 /proc/uptime)
${SEED_SCRIPT}
t1=$(cut -d' ' -f1 /proc/uptime)
mkdir -p /var/lib/bench
echo "$t0 $t1" > /var/lib/bench/script-times
`;

const LOAD = `systemctl start docker
docker load -i /var/cache/ecs/ecs-agent.tar > /dev/null
docker load -i /opt/e2e/busybox.tar > /dev/null`;
const NO_DAEMON_JSON = `rm -f /etc/docker/daemon.json
systemctl restart docker
${LOAD}`;
const TASKS = `for i in $(seq ${WORKLOADS}); do docker run -d --name task$i busybox:latest sleep 86400 > /dev/null; done`;

const files = { 'on-instance.mjs': onInstance, 'seed.sh': { text: TIMED_SCRIPT, mode: 0o755 } };
const launched: Instance[] = [];
const log = (l: string) => process.stderr.write(`bench: ${l}\n`);

async function launch(name: string, o: InstanceOptions): Promise<Instance> {
  log(`launching ${name}`);
  const i = await Instance.launch(world, `bench-${name}`, { fast: false, files, ...o });
  launched.push(i);
  return i;
}

async function measure<T>(i: Instance, ...args: string[]): Promise<T> {
  const r = await i.exec(['/opt/e2e-node/node', '/opt/e2e/on-instance.mjs', ...args], 900_000);
  if (r.code !== 0) throw new Error(`on-instance.mjs ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Where ecs-gvisor's first run spent its time: each log line, in ms since the first. */
async function breakdown(i: Instance): Promise<Array<[number, string]>> {
  const lines = (await i.sh('journalctl -u ecs-gvisor -o cat --no-pager | head -40'))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { time: string; msg: string });
  return lines.map((l) => [Date.parse(l.time) - Date.parse(lines[0]!.time), l.msg]);
}

/** systemd's own measure of our unit: start (leaving inactive) to READY (entering active). */
async function serviceReadyMs(i: Instance): Promise<number> {
  return (await serviceTimes(i)).readyMs;
}

/**
 * The same, and how long after READY the network modes were recorded (their probes start after the
 * agent's): the journal's monotonic time of that log line against systemd's of READY, one clock.
 */
async function serviceTimes(i: Instance): Promise<{ readyMs: number; modesAfterReadyMs: number }> {
  await i.until('ecs-gvisor.service active', async () => (await i.unit('ecs-gvisor.service')).active === 'active', 180_000);
  const p = Object.fromEntries(
    (await i.sh('systemctl show ecs-gvisor.service -p InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic'))
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  const readyMs = (Number(p.ActiveEnterTimestampMonotonic) - Number(p.InactiveExitTimestampMonotonic)) / 1000;
  const modes = await i.until(
    'the network modes recorded',
    async () =>
      (await i.sh('journalctl -u ecs-gvisor -o json --no-pager'))
        .split('\n')
        .filter((l) => l.includes('network modes proven'))
        .map((l) => Number((JSON.parse(l) as { __MONOTONIC_TIMESTAMP: string }).__MONOTONIC_TIMESTAMP))[0],
    120_000,
  );
  return { readyMs, modesAfterReadyMs: (modes - Number(p.ActiveEnterTimestampMonotonic)) / 1000 };
}

async function scriptMs(i: Instance): Promise<number> {
  const [t0, t1] = (await i.sh('cat /var/lib/bench/script-times')).trim().split(' ').map(Number);
  return (t1! - t0!) * 1000;
}

async function agentUnderRunc(i: Instance): Promise<boolean> {
  const a = await i.until(
    'the agent running',
    async () => ((await i.inspect('ecs-agent'))?.State.Running ? i.inspect('ecs-agent') : undefined),
    120_000,
  );
  return a?.HostConfig.Runtime === 'runc';
}

async function userdataDone(i: Instance): Promise<string> {
  return i.until(
    'the userdata to finish',
    async () => {
      const s = (await i.unit('cloud-final.service')).active;
      return s === 'active' || s === 'failed' ? s : undefined;
    },
    180_000,
  );
}

async function tasksStarted(i: Instance): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (let n = 1; n <= WORKLOADS; n++) {
    const c = await i.inspect(`task${n}`);
    if (c?.State.Running) m.set(`task${n}`, c.State.StartedAt as string);
  }
  return m;
}

/** Task containers still running as the same process (not stopped, not restarted). */
async function kept(i: Instance, before: Map<string, string>): Promise<number> {
  const after = await tasksStarted(i);
  return [...before].filter(([name, at]) => after.get(name) === at).length;
}

const median = (xs: number[]) => percentile(xs, 50);
const s = (ms: number) => `${(ms / 1000).toFixed(2)}`;

const { world, stop } = await startE2eWorld(log);
try {
  // 1. First boot, alternating, ROUNDS each: the release executable, the bundle on the test's Node 24
  // (install.sh --node), and the script.
  const ours: number[] = [];
  const modesAfter: number[] = [];
  const bundled: number[] = [];
  const script: number[] = [];
  let steady: Instance | undefined;
  let steadyBundle: Instance | undefined;
  let oursRunc = true;
  let scriptRunc = true;
  let verified = true;
  for (let r = 1; r <= ROUNDS; r++) {
    const a = await launch(`ours-${r}`, { before: NO_DAEMON_JSON });
    const t = await serviceTimes(a);
    ours.push(t.readyMs);
    modesAfter.push(t.modesAfterReadyMs);
    oursRunc &&= await agentUnderRunc(a);
    verified &&= (await a.status()).runtime?.verified === true;
    if (r === 1) steady = a;
    else await a.destroy();
    const n = await launch(`bundle-${r}`, { before: NO_DAEMON_JSON, installArgs: '--node /opt/e2e-node/node' });
    bundled.push(await serviceReadyMs(n));
    if (r === 1) steadyBundle = n;
    else await n.destroy();
    const b = await launch(`script-${r}`, { install: 'none', before: `${NO_DAEMON_JSON}\n/opt/e2e/seed.sh` });
    if ((await userdataDone(b)) !== 'active') throw new Error(`the script failed on a clean instance:\n${await b.diagnose()}`);
    script.push(await scriptMs(b));
    scriptRunc &&= await agentUnderRunc(b);
    await b.destroy();
    log(`round ${r}: executable ${s(ours.at(-1)!)} s, bundle ${s(bundled.at(-1)!)} s, script ${s(script.at(-1)!)} s`);
  }

  // The script on the instance as it comes (an operator's daemon.json in place).
  const seeded = await launch('script-seeded', { install: 'none', before: `${LOAD}\n/opt/e2e/seed.sh` });
  const seededDone = await userdataDone(seeded);
  const seededDefault = (await seeded.exec(['docker', 'info', '--format', '{{.DefaultRuntime}}'])).stdout.trim() || 'none (Docker down)';
  const seededOutcome = `${seededDone === 'active' ? 'ran without error' : 'userdata failed'}; Docker's default runtime afterwards: ${seededDefault}`;
  await seeded.destroy();

  // 2. In service: ecs-init's agent and five tasks running, then the switch.
  const a2 = await launch('ours-in-service', { install: 'no-start', before: `${NO_DAEMON_JSON}\n${TASKS}` });
  await userdataDone(a2);
  await agentUnderRunc(a2); // ecs-init's, under the default (runc) for now
  const a2Before = await tasksStarted(a2);
  await a2.sh('systemctl start ecs-gvisor');
  const oursInService = await serviceReadyMs(a2);
  const oursKept = await kept(a2, a2Before);
  const a2Runc = await agentUnderRunc(a2);
  await a2.destroy();

  const b2 = await launch('script-in-service', { install: 'none', before: `${NO_DAEMON_JSON}\n${TASKS}` });
  await userdataDone(b2);
  await agentUnderRunc(b2);
  const b2Before = await tasksStarted(b2);
  const b2Run = await b2.exec(['/opt/e2e/seed.sh']);
  const scriptInService = b2Run.code === 0 ? await scriptMs(b2) : Number.NaN;
  const scriptOutcome = b2Run.code === 0 ? 'ran' : `failed: ${(b2Run.stderr || b2Run.stdout).trim().split('\n').at(-1)}`;
  const scriptKept = await kept(b2, b2Before);
  await b2.destroy();

  // 3 and 4 on the first-boot instance, now in its steady state with the product's intervals.
  const i = steady!;
  await new Promise((r) => setTimeout(r, 20_000)); // past the first ECS poll and audit
  type Idle = {
    cpuPercent: number;
    cgroupCpuPercent: number | null;
    rssMbMax: number;
    anonMb: number;
    anonMbMax: number;
    fileMb: number;
    bareRssMb: number;
    bareAnonMb: number;
  };
  log('idle for 60 s (executable), then 60 s (bundle)');
  const idle = await measure<Idle>(i, 'idle', '60');
  const idleBundle = await measure<Idle>(steadyBundle!, 'idle', '60');
  const status = await measure<{ ms: number[] }>(i, 'status', '15');
  const statusBundle = await measure<{ ms: number[] }>(steadyBundle!, 'status', '15');
  const version = await measure<{ ms: number[]; bareMs: number[]; bareNode: string }>(i, 'version', '15');
  const versionBundle = await measure<{ ms: number[] }>(steadyBundle!, 'version', '15');
  await steadyBundle!.destroy();
  log('killing the agent 20 times');
  const recovery = await measure<{ ms: number[] }>(i, 'recovery', '20');
  const baseline = await measure<{ reload: number; sandbox: number; agentRun: number; total: number }>(i, 'baseline', '5');
  console.log('where the first boot of ecs-gvisor spent its time (ms since its first log line):');
  for (const [ms, msg] of (await breakdown(i)).slice(0, 25)) console.log(`  +${String(ms).padStart(5)} ms  ${msg}`);

  const oursMs = median(ours);
  const bundleMs = median(bundled);
  const scriptMedian = median(script);
  const overhead = oursMs - baseline.total;
  const bundleOverhead = bundleMs - baseline.total;
  console.log(
    JSON.stringify({
      ours,
      modesAfter,
      bundled,
      script,
      oursInService,
      scriptInService,
      oursKept,
      scriptKept,
      scriptOutcome,
      seededOutcome,
      idle,
      idleBundle,
      status,
      statusBundle,
      version,
      versionBundle,
      recovery,
      baseline,
    }),
  );
  report('instance', [
    {
      metric: `time to ready, first boot (median of ${ROUNDS}): executable / bundle on Node 24 / script`,
      value: `${s(oursMs)} / ${s(bundleMs)} / ${s(scriptMedian)}`,
      unit: 's',
      target: 'report',
      ok: oursRunc && scriptRunc && verified,
    },
    { metric: 'ratio ecs-gvisor : script', value: oursMs / scriptMedian, unit: '×', target: '≤ 0.5×', ok: oursMs / scriptMedian <= 0.5 },
    // The script proves nothing; with one runsc container of its own (Docker's cost of a proof) it would.
    {
      metric: `ratio ecs-gvisor : the script followed by one runsc container (${s(baseline.sandbox)} s), like for like`,
      value: oursMs / (scriptMedian + baseline.sandbox),
      unit: '×',
      target: 'report',
      ok: true,
    },
    {
      metric: `overhead beyond Docker's own work (medians of 5: reload ${s(baseline.reload)} + runsc container ${s(baseline.sandbox)} + agent create/start ${s(baseline.agentRun)} s): executable / bundle`,
      value: `${s(overhead)} / ${s(bundleOverhead)}`,
      unit: 's',
      target: '≤ 0.3 s (executable)',
      ok: overhead <= 300,
    },
    {
      metric: `network modes recorded after READY (their probes start once the agent has; median of ${ROUNDS})`,
      value: s(median(modesAfter)),
      unit: 's',
      target: 'report',
      ok: true,
    },
    {
      metric: 'in service: time to ready, ecs-gvisor / script',
      value: `${s(oursInService)} / ${Number.isNaN(scriptInService) ? scriptOutcome : s(scriptInService)}`,
      unit: 's',
      target: 'report',
      ok: a2Runc,
    },
    {
      metric: `in service: task containers kept, ecs-gvisor / script (of ${WORKLOADS})`,
      value: `${oursKept} / ${scriptKept}`,
      unit: '',
      target: `${WORKLOADS} (100 %)`,
      ok: oursKept === WORKLOADS,
    },
    { metric: 'the script with the instance’s own daemon.json in place', value: seededOutcome, unit: '', target: 'report', ok: true },
    {
      metric: 'idle `run` over 60 s: CPU (process and children; unit cgroup)',
      value: `${idle.cpuPercent.toFixed(3)}; ${idle.cgroupCpuPercent?.toFixed(3) ?? 'n/a'}`,
      unit: '% of a core',
      target: '≤ 0.2 %',
      ok: idle.cpuPercent <= 0.2,
    },
    { metric: 'idle `run` over 60 s: RSS (max), executable', value: idle.rssMbMax, unit: 'MB', target: 'report', ok: true },
    {
      metric:
        'idle `run` over 60 s: RSS private (anonymous, median of one a second; max) + file-backed at the end: executable / bundle on Node 24',
      value: `${idle.anonMb.toFixed(1)} (${idle.anonMbMax.toFixed(1)}) + ${idle.fileMb.toFixed(0)} / ${idleBundle.anonMb.toFixed(1)} (${idleBundle.anonMbMax.toFixed(1)}) + ${idleBundle.fileMb.toFixed(0)}`,
      unit: 'MB',
      target: 'private ≤ 24 MB (executable)',
      ok: idle.anonMb <= 24,
    },
    {
      metric: 'a bare idle `node` on the instance: RSS (anonymous)',
      value: `${idle.bareRssMb.toFixed(0)} (${idle.bareAnonMb.toFixed(0)})`,
      unit: 'MB',
      target: 'report',
      ok: true,
    },
    {
      metric: '`status --json` cold start on the instance (median of 15): executable / bundle on Node 24',
      value: `${median(status.ms).toFixed(0)} / ${median(statusBundle.ms).toFixed(0)}`,
      unit: 'ms',
      target: '≤ 150 ms (executable)',
      ok: median(status.ms) <= 150,
    },
    {
      metric: `\`--version\` on the instance (median of 15): executable / bundle on Node 24 / the same Node ${version.bareNode} running nothing (\`node -e 0\`, in turn with the executable)`,
      value: `${median(version.ms).toFixed(0)} / ${median(versionBundle.ms).toFixed(0)} / ${median(version.bareMs).toFixed(0)}`,
      unit: 'ms',
      target: '≤ 60 ms (executable)',
      ok: median(version.ms) <= 60,
    },
    {
      metric: 'agent killed 20×: back running p50 / p95',
      value: `${s(median(recovery.ms))} / ${s(percentile(recovery.ms, 95))}`,
      unit: 's',
      target: 'p95 ≤ 3 s',
      ok: percentile(recovery.ms, 95) <= 3000,
    },
  ]);
} finally {
  for (const i of launched) await i.destroy();
  await stop();
}
