#!/usr/bin/env node
// Measurements taken on a simulated instance itself (copied to /opt/e2e by bench/instance.bench.ts), so
// no `docker exec` round trip is in the figures. Plain Node, no dependencies; prints one JSON line.
//   recovery N      kill the agent N times (each after it has run 10.5 s), time until it runs again
//   idle SECONDS    CPU and RSS of ecs-gvisor.service over that long, and a bare idle Node's RSS beside it
//   status N        wall time of `ecs-gvisor status --json`, N runs
//   version N       wall time of `ecs-gvisor --version`, N runs, each beside one of `node -e 0`
//   baseline [n]    Docker's own work in a bootstrap: a reload, a runsc container, the agent's create+start
//                   (each n times, default 5: the medians)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const [what, arg] = process.argv.slice(2);

function docker(method, path) {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: '/var/run/docker.sock', method, path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body: body ? JSON.parse(body) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

const agent = async () => (await docker('GET', '/containers/ecs-agent/json')).body?.State;
const timed = (f) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};
const memKb = (pid) =>
  Object.fromEntries(
    [...readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(VmRSS|RssAnon|RssFile):\s+(\d+) kB$/gm)].map((m) => [m[1], Number(m[2])]),
  );
const sh = (cmd) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });
const show = (prop) => sh(`systemctl show ecs-gvisor.service -p ${prop} --value`).trim();

if (what === 'recovery') {
  const ms = [];
  for (let i = 0; i < Number(arg); i++) {
    let s;
    for (;;) {
      s = await agent();
      if (s?.Running && Date.now() - Date.parse(s.StartedAt) >= 10_500) break;
      await sleep(100);
    }
    await docker('POST', '/containers/ecs-agent/kill');
    const t = performance.now();
    for (;;) {
      const n = await agent().catch(() => undefined);
      if (n?.Running && n.StartedAt !== s.StartedAt) break;
      await sleep(20);
    }
    ms.push(performance.now() - t);
  }
  console.log(JSON.stringify({ ms }));
} else if (what === 'idle') {
  const pid = Number(show('MainPID'));
  const ticks = () =>
    readFileSync(`/proc/${pid}/stat`, 'utf8')
      .split(') ')[1]
      .split(' ')
      .slice(11, 15)
      .reduce((a, b) => a + Number(b), 0);
  const mem = () => memKb(pid);
  const hz = Number(sh('getconf CLK_TCK'));
  const cg0 = Number(show('CPUUsageNSec'));
  const t0 = ticks();
  const w0 = performance.now();
  const rss = [];
  const anon = [];
  while (performance.now() - w0 < Number(arg) * 1000) {
    const m = mem();
    rss.push(m.VmRSS);
    anon.push(m.RssAnon);
    await sleep(1000);
  }
  // One reading moves with the garbage collector's timing (±1.5 MB here): the median of one a second.
  const anonMedian = anon.sort((a, b) => a - b)[Math.floor(anon.length / 2)];
  const wall = (performance.now() - w0) / 1000;
  const cg1 = Number(show('CPUUsageNSec'));
  const ours = memKb(pid);
  // The floor: the same node doing nothing (its binary's pages are most of any Node process's RSS).
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await sleep(5000);
  const bareMem = memKb(bare.pid);
  bare.kill();
  console.log(
    JSON.stringify({
      seconds: wall,
      // The process and the children it waited for (systemd-notify), and the unit's cgroup as systemd counts it.
      cpuPercent: ((ticks() - t0) / hz / wall) * 100,
      cgroupCpuPercent: Number.isFinite(cg0) && Number.isFinite(cg1) && cg1 > 0 ? ((cg1 - cg0) / 1e9 / wall) * 100 : null,
      rssMbMax: Math.max(...rss) / 1024,
      rssMbLast: rss.at(-1) / 1024,
      // Anonymous: the process's own memory; file: mapped files (node's binary), shared and reclaimable.
      anonMb: anonMedian / 1024,
      anonMbMax: anon.at(-1) / 1024,
      fileMb: ours.RssFile / 1024,
      bareRssMb: bareMem.VmRSS / 1024,
      bareAnonMb: bareMem.RssAnon / 1024,
    }),
  );
} else if (what === 'status') {
  const ms = [];
  // Like --version below: the program itself, no shell in front (its exit code is the health, not asked).
  for (let i = 0; i < Number(arg); i++) ms.push(timed(() => spawnSync('/usr/local/bin/ecs-gvisor', ['status', '--json'])));
  console.log(JSON.stringify({ ms }));
} else if (what === 'version') {
  const ms = [];
  // The floor, taken in turn with it: the same Node (the test's, official 24) starting and doing nothing.
  const bareMs = [];
  for (let i = 0; i < Number(arg); i++) {
    ms.push(timed(() => execFileSync('/usr/local/bin/ecs-gvisor', ['--version'])));
    bareMs.push(timed(() => execFileSync(process.execPath, ['-e', '0'])));
  }
  console.log(JSON.stringify({ ms, bareMs, bareNode: process.version }));
} else if (what === 'baseline') {
  // Each part arg times (default 5), the median of each: one container's start varies by a quarter here.
  const runs = { reload: [], sandbox: [], agentRun: [] };
  for (let i = 0; i < Number(arg ?? 5); i++) {
    runs.reload.push(timed(() => sh('systemctl reload docker')));
    // As the proof starts its one probe before the agent: detached, its own namespace, a memory limit; its
    // removal comes after ready, so it is not timed here.
    runs.sandbox.push(
      timed(() => sh('docker run -d --runtime runsc --name bench-probe --network none --memory 64m busybox:latest sleep 60 > /dev/null')),
    );
    sh('docker rm -f bench-probe > /dev/null');
    runs.agentRun.push(
      timed(() => sh('docker run -d --runtime runc --name bench-agent --net host amazon/amazon-ecs-agent:latest > /dev/null')),
    );
    sh('docker rm -f bench-agent > /dev/null');
  }
  const mid = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const [reload, sandbox, agentRun] = [mid(runs.reload), mid(runs.sandbox), mid(runs.agentRun)];
  console.log(JSON.stringify({ reload, sandbox, agentRun, total: reload + sandbox + agentRun, runs }));
} else {
  console.error(`unknown measurement "${what}"`);
  process.exit(2);
}
