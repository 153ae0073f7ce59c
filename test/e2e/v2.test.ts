/**
 * Amazon Linux 2023's cgroup v2, on a simulated instance that is a virtual machine (vm-instance.ts): this
 * machine's kernel is cgroup v1 only, so the instance boots a kernel of its own under qemu's emulation,
 * with systemd, Docker on its default systemd cgroup driver, the current runsc, the real ECS agent (1.101.2)
 * in the AMI's cache, the release installed by the userdata, and the fakes on its own loopback. The
 * scenarios share one boot; each prints its time.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { diagnoseOnFailure, GROUP, INSTANCE_ID } from './instance.js';
import { vmImage } from './vm-image.js';
import { VmInstance } from './vm-instance.js';

const world = inject('e2e');
const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));
/** A task's containers' cgroup as Docker's systemd driver makes it: `<slice>/docker-<id>.scope`. */
const SCOPE = /^\/sys\/fs\/cgroup\/system\.slice\/docker-[0-9a-f]{64}\.scope\/memory\.max$/;

function timed(what: string, started: number): void {
  process.stderr.write(`e2e v2: ${what} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

describe('an instance on cgroup v2 (Amazon Linux 2023’s layout), in a virtual machine', () => {
  let vm: VmInstance | undefined;
  const i = () => vm!;
  /** The container instance the real agent registered (v2-1). */
  let arn = '';

  beforeAll(async () => {
    const t0 = Date.now();
    const image = await vmImage((l) => process.stderr.write(`e2e v2: ${l}\n`));
    timed('machine image ready', t0);
    const t1 = Date.now();
    vm = await VmInstance.launch(world, image, 'first-boot', {
      realAgent: true,
      runscPath: '/opt/e2e/runsc',
      copies: { runsc: SHARED_RUNSC },
      // The current runsc runs gVisor's own network stack: no runtimeArgs.
      settings: { ECS_GVISOR_RUNSC_ARGS: '' },
    });
    timed('booted (systemd finished; the userdata ran)', t1);
  }, 1_200_000);
  afterAll(async () => {
    await vm?.destroy();
  });

  it('v2-1. first boot: Docker on systemd and cgroup v2, the sandbox proven in its docker-<id>.scope with the probe’s limit, READY, the attribute published', async () => {
    diagnoseOnFailure(i);
    const t0 = Date.now();
    expect((await i().sh('stat -fc %T /sys/fs/cgroup')).trim()).toBe('cgroup2fs');
    expect((await i().sh("docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}'")).trim()).toBe('systemd 2');
    // READY (Type=notify) only once the sandbox is proven and the agent runs.
    await i().until('ecs-gvisor.service active', async () => (await i().unit('ecs-gvisor.service')).active === 'active', 600_000);
    timed('READY after boot', t0);

    const status = await i().status();
    expect(status.runtime).toMatchObject({ verified: true, cgroup: { version: '2', driver: 'systemd' } });
    // The probe's own limit, read where Docker's systemd driver puts a container on v2.
    expect(status.runtime.evidence.cgroupLimitFile).toMatch(SCOPE);
    expect(status.runtime.evidence.memoryLimitBytes).toBe(64 * 1024 * 1024);
    // No runtimeArgs: what runsc gets on this driver is Docker's to give (v2-2 reads a sandbox's flags).
    expect(JSON.parse(await i().sh('cat /etc/docker/daemon.json')).runtimes.runsc.runtimeArgs).toBeUndefined();
    expect((await i().exec(['ecs-gvisor', 'status'])).stdout).toMatch(/^cgroups +v2, Docker's systemd driver$/m);

    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.State.Running).toBe(true);
    expect(agent.HostConfig.Runtime).toBe('runc');
    // The real agent registers itself (its identity document), and the proof is published on its record.
    arn = await i().until(
      'the agent registered and the verified attribute published',
      async () => {
        const f = await i().fakes();
        const [found, rec] = Object.entries(f.ecs.instances).find(([, v]) => v.ec2InstanceId === INSTANCE_ID) ?? [];
        return found && rec?.attributes?.['ecs-gvisor.sandbox'] === 'verified' ? found : undefined;
      },
      300_000,
    );
    const healthy = await i().until(
      'status healthy',
      async () => {
        const st = await i().status();
        return st.healthy === true ? st : undefined;
      },
      300_000,
    );
    expect(healthy.registration).toMatchObject({ containerInstanceArn: arn, agentVersion: expect.stringMatching(/1\.101\.2/) });
    // The agent's own cgroup v2 set-up, through systemd over the bus (/var/run bound in as ecs-init binds
    // it). The root slice it makes for its tasks' slices holds nothing yet, so systemd stops it again.
    expect(await i().sh('cat /var/log/ecs/ecs-agent.log')).toContain('ECS task resource limits cgroupv2 functionality initialized');
    const fakes = await i().fakes();
    expect(fakes.autoScaling.actions[`${GROUP}/launch/${INSTANCE_ID}`]).toMatchObject({ result: 'CONTINUE' });
    timed('scenario v2-1', t0);
  });

  // What the ECS agent does for a task on v2 (agent/taskresource/cgroup): a slice of the task's own under
  // ecstasks.slice with the task-level limits, and each container in a scope under it. The real agent in
  // this machine gets no task: tasks reach it only over ACS, its websocket channel, which the fakes do not
  // speak. So the test makes the slice as the agent does, through systemd, and starts the container as the
  // agent would (its cgroup parent, limits and task label).
  const TASK = '0123456789abcdef0123456789abcdef';
  const TASK_ARN = `arn:aws:ecs:us-east-1:111122223333:task/e2e/${TASK}`;
  const SLICE = `/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice`;

  it('v2-2. a task as the agent makes it: its slice and scope hold the limits asked, the audit is clean; a raised limit or a sandbox moved out is a violation within seconds', async () => {
    diagnoseOnFailure(i);
    const t0 = Date.now();
    await i().sh('docker load -q -i /opt/e2e/busybox.tar');
    await i().sh(`systemctl set-property --runtime ecstasks-${TASK}.slice MemoryMax=128M CPUQuota=50%`);
    const id = (
      await i().sh(
        `docker create --name task-v2 --cgroup-parent ecstasks-${TASK}.slice -m 64m --cpus 0.5 --label com.amazonaws.ecs.task-arn=${TASK_ARN} busybox:latest sleep 3600`,
      )
    ).trim();
    // ECS knows the task before its container starts (the audit asks about it on the start event).
    await i().fakes('POST', '/ecs/task', { arn: TASK_ARN, containerInstanceArn: arn, cpu: '512', memory: '128', runtimeIds: [id] });
    await i().sh(`docker start ${id}`);
    const scope = `${SLICE}/docker-${id}.scope`;
    // Docker's systemd driver hands runsc --systemd-cgroup itself (no runtimeArgs in daemon.json).
    const sandbox = (await i().sh(`docker inspect -f '{{.State.Pid}}' ${id}`)).trim();
    expect((await i().sh(`tr '\\0' '\\n' < /proc/${sandbox}/cmdline`)).split('\n')).toContain('--systemd-cgroup=true');
    expect((await i().sh(`cat ${scope}/memory.max ${scope}/cpu.max ${SLICE}/memory.max`)).split('\n').slice(0, 3)).toEqual([
      String(64 << 20),
      '50000 100000',
      String(128 << 20),
    ]);
    const task = async () => ((await i().status()).audit?.tasks ?? []).find((t: { name: string }) => t.name === 'task-v2');
    onTestFailed(async () => {
      if (vm) process.stderr.write(`\nthe task as audited: ${JSON.stringify(await task())}\n`);
    });
    const clean = await i().until(
      'the task audited, ECS confirming it',
      async () => {
        const t = await task();
        return t?.task?.state === 'confirmed' ? t : undefined;
      },
      120_000,
    );
    expect(clean).toMatchObject({
      cgroup: `/ecstasks.slice/ecstasks-${TASK}.slice/docker-${id}.scope`,
      enforced: { memoryBytes: 64 << 20, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000 },
      problems: [],
    });
    expect((await i().status()).audit.violations).toEqual([]);
    // No pids limit asked: the scope's own pids.max (systemd's default) is shown as that, far from tight.
    expect(clean.pids).toMatchObject({ asked: false, tight: false });
    expect(clean.pids.limit).toBe(Number((await i().sh(`cat ${scope}/pids.max`)).trim()));
    timed('v2-2: the task audited clean', t0);

    // A limit raised by hand: not enforced any more.
    await i().sh(`echo max > ${scope}/memory.max`);
    const raised = await i().until(
      'the raised limit a violation',
      async () => {
        const v = (await i().status()).audit.violations as Array<{ reason: string }>;
        return v.find((x) => /not enforced: memory limit 67108864 asked, none enforced/.test(x.reason));
      },
      60_000,
    );
    expect(raised).toBeDefined();
    expect((await i().fakes()).ecs.instances[arn]?.attributes?.['ecs-gvisor.sandbox']).toBe('violated');
    await i().sh(`echo ${64 << 20} > ${scope}/memory.max`);
    await i().until('clean again', async () => (await i().status()).audit.violations.length === 0, 60_000);
    timed('v2-2: a raised limit seen and cleared', t0);

    // The sandbox moved out of its scope (to the root cgroup): its limits no longer hold it.
    const pid = (await i().sh(`docker inspect -f '{{.State.Pid}}' ${id}`)).trim();
    await i().sh(`echo ${pid} > /sys/fs/cgroup/cgroup.procs`);
    const moved = await i().until(
      'the moved sandbox a violation',
      async () => {
        const v = (await i().status()).audit.violations as Array<{ id: string; reason: string }>;
        return v.find((x) => x.id === id && x.reason.startsWith('not enforced'));
      },
      60_000,
    );
    expect(moved).toBeDefined();
    await i().sh('docker rm -f task-v2');
    await i().until('clean once it is gone', async () => (await i().status()).audit.violations.length === 0, 60_000);
    timed('scenario v2-2', t0);
  });

  it('v2-3. a pids limit within reach of the sandbox’s own use is reported; a task at its memory limit loses its whole sandbox, and the audit says which limit', async () => {
    diagnoseOnFailure(i);
    const t0 = Date.now();
    const run = (name: string, args: string) =>
      i().sh(`docker run -d --name ${name} --cgroup-parent ecstasks-${TASK}.slice --label com.amazonaws.ecs.task-arn=${TASK_ARN} ${args}`);
    // 50 pids: an idle sandbox already uses about half (the limit counts its threads, not the task's processes).
    const tight = (await run('task-pids', '--pids-limit 50 busybox:latest sleep 3600')).trim();
    const seen = await i().until(
      'the tight pids limit reported',
      async () => {
        const t = ((await i().status()).audit?.tasks ?? []).find((x: { id: string }) => x.id === tight);
        return t?.pids ? t : undefined;
      },
      120_000,
    );
    process.stderr.write(`e2e v2: an idle sandbox on v2 uses ${seen.pids.current} pids\n`);
    expect(seen.pids).toMatchObject({ limit: 50, asked: true, tight: true });
    expect(seen.pids.current).toBe(Number((await i().sh(`cat ${SLICE}/docker-${tight}.scope/pids.current`)).trim()));
    expect((await i().exec(['ecs-gvisor', 'status'])).stdout).toContain(
      `PIDS TIGHT: ${seen.pids.current} pids in use of 50 (the pids limit asked); at the limit gVisor ends the whole sandbox`,
    );
    // Reported, not a violation: the limit holds; it is the task's to size.
    expect((await i().status()).audit.violations).toEqual([]);
    await i().sh('docker rm -f task-pids');
    timed('v2-3: the tight pids limit reported', t0);

    // A task that allocates past its 64 MiB: the kernel kills the whole sandbox.
    const hog = (await run('task-hog', '-m 64m busybox:latest busybox dd if=/dev/zero of=/dev/null bs=200M count=1')).trim();
    const end = await i().until(
      'the hog’s end reported',
      async () => ((await i().status()).audit?.ended ?? []).find((e: { id: string }) => e.id === hog),
      120_000,
    );
    const state = JSON.parse(await i().sh(`docker inspect -f '{{json .State}}' ${hog}`));
    process.stderr.write(`e2e v2: the hog as Docker saw it: exit ${state.ExitCode}, OOMKilled ${state.OOMKilled}\n`);
    expect(state.ExitCode).toBe(137);
    expect(end).toMatchObject({ limit: 'memory', exitCode: 137 });
    expect(end.reason).toMatch(/^killed at its memory limit \(64 MiB; exit 137\)/);
    expect((await i().exec(['ecs-gvisor', 'status'])).stdout).toContain(
      `task-hog ${hog.slice(0, 12)} killed at its memory limit (64 MiB; exit 137)`,
    );
    await i().sh('docker rm -f task-hog');
    timed('scenario v2-3', t0);
  });

  it('v2-4. Docker restarted: the agent back under runc and the sandbox proven again; rollback gives the host back', async () => {
    diagnoseOnFailure(i);
    const t0 = Date.now();
    await i().sh('systemctl restart docker');
    await i().until(
      'the agent back under runc',
      async () => {
        const a = await i().inspect('ecs-agent');
        return a?.State.Running && a.HostConfig.Runtime === 'runc';
      },
      300_000,
    );
    await i().until('verified again', async () => (await i().status()).runtime.verified === true, 300_000);
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');
    // The real agent exited 0 on Docker's SIGTERM, and came back as the same container instance.
    const back = await i().until(
      'status healthy again',
      async () => {
        const st = await i().status();
        return st.healthy === true && st.agent.lastExit ? st : undefined;
      },
      300_000,
    );
    expect(back.agent.lastExit).toMatchObject({ code: 0 });
    expect(back.registration.containerInstanceArn).toBe(arn);
    timed('v2-4: back after the Docker restart', t0);

    const r = await i().exec(['systemd-run', '--quiet', '--wait', '--pipe', '--collect', '--', 'ecs-gvisor', 'rollback']);
    expect(r.code, r.stderr).toBe(0);
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runc');
    // ecs-init runs its agent again, as on the AMI.
    await i().until('ecs-init’s agent', async () => (await i().inspect('ecs-agent'))?.State.Running, 300_000);
    timed('scenario v2-4', t0);
  });

  it('v2-5. Docker on the cgroupfs driver on v2, as an operator might set it: proven; with --systemd-cgroup refused in one sentence', async () => {
    diagnoseOnFailure(i);
    const t0 = Date.now();
    await i().sh('systemctl stop ecs.service');
    await i().sh(`printf '%s' '{"exec-opts": ["native.cgroupdriver=cgroupfs"]}' > /etc/docker/daemon.json && systemctl restart docker`);
    expect((await i().sh("docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}'")).trim()).toBe('cgroupfs 2');
    const proven = await i().exec(['ecs-gvisor', 'bootstrap', '--only', 'runtime']);
    expect(proven.code, proven.stderr + proven.stdout.slice(-2000)).toBe(0);
    const s = await i().status();
    expect(s.runtime).toMatchObject({ verified: true, cgroup: { version: '2', driver: 'cgroupfs' } });
    expect(s.runtime.evidence.cgroupLimitFile).toMatch(/^\/sys\/fs\/cgroup\/.*[0-9a-f]{64}\/memory\.max$/);
    expect((await i().exec(['ecs-gvisor', 'rollback', '--only', 'runtime'])).code).toBe(0);
    const refused = await i().exec(['env', 'ECS_GVISOR_RUNSC_ARGS=--systemd-cgroup', 'ecs-gvisor', 'bootstrap', '--only', 'runtime']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      'ecs-gvisor: ECS_GVISOR_RUNSC_ARGS has --systemd-cgroup, but Docker uses the cgroupfs cgroup driver, under which runsc starts no sandbox with it; remove the flag (or switch Docker to the systemd driver). Nothing was changed.\n',
    );
    timed('scenario v2-5', t0);
  });
});
