/**
 * Amazon Linux 2023's cgroup v2, on a simulated instance that is a virtual machine (vm-instance.ts): this
 * machine's kernel is cgroup v1 only, so the instance boots a kernel of its own under qemu's emulation,
 * with systemd, Docker on its default systemd cgroup driver, the current runsc and the release installed by
 * the userdata, and the fakes on its own loopback. The scenarios share one boot; each prints its time.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { AGENT_ARN, GROUP, INSTANCE_ID } from './instance.js';
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

  beforeAll(async () => {
    const t0 = Date.now();
    const image = await vmImage((l) => process.stderr.write(`e2e v2: ${l}\n`));
    timed('machine image ready', t0);
    const t1 = Date.now();
    vm = await VmInstance.launch(world, image, 'first-boot', {
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
    onTestFailed(async () => {
      if (vm) process.stderr.write(`\n${vm.name}:\n${await vm.diagnose()}\n`);
    });
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
    expect((await i().exec(['ecs-gvisor', 'status'])).stdout).toMatch(/^cgroups +v2, Docker's systemd driver$/m);

    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.State.Running).toBe(true);
    expect(agent.HostConfig.Runtime).toBe('runc');
    await i().until(
      'the verified attribute',
      async () => (await i().fakes()).ecs.instances[AGENT_ARN]?.attributes?.['ecs-gvisor.sandbox'] === 'verified',
      300_000,
    );
    const fakes = await i().fakes();
    expect(fakes.autoScaling.actions[`${GROUP}/launch/${INSTANCE_ID}`]).toMatchObject({ result: 'CONTINUE' });
    timed('scenario v2-1', t0);
  });
});
