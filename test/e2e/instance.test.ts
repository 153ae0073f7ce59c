/**
 * End to end on simulated ECS instances (test/e2e/instance.ts): systemd boots, the userdata installs the
 * release with install.sh, systemd starts ecs-gvisor, ecs-init's unit is taken out of the way, Docker's
 * default becomes runsc, the agent runs under runc, tasks run in gVisor, and the Auto Scaling hooks are
 * answered, all against fakes on the instance's own loopback. One instance walks through the life of a
 * healthy host in order (boot, reboot, drift, faults, terminate, rollback); another has a broken runsc.
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { SEED_DAEMON_JSON } from './instance-image.js';
import { AGENT_ARN, GROUP, Instance, INSTANCE_ID } from './instance.js';

const world = inject('e2e');

/** Print what an operator would look at when a scenario fails. */
function diagnoseOnFailure(i: () => Instance | undefined): void {
  onTestFailed(async () => {
    const inst = i();
    if (inst) process.stderr.write(`\n${inst.name}:\n${await inst.diagnose()}\n`);
  });
}

const ours = (s: string) => s.split('\n').filter((l) => l.includes('ecs-gvisor')).sort();

describe('a healthy instance, from launch to rollback', () => {
  let inst: Instance | undefined;
  const i = () => inst!;

  beforeAll(async () => {
    inst = await Instance.launch(world, 'healthy');
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('1. fresh boot: ecs-init out of the way, runsc the default, the agent under runc, tasks in gVisor, launch CONTINUE', async () => {
    diagnoseOnFailure(i);
    // READY (Type=notify) comes only once the sandbox is proven and the agent runs.
    await i().until('ecs-gvisor.service active', async () => (await i().unit('ecs-gvisor.service')).active === 'active');

    expect(await i().unit('ecs.service')).toMatchObject({ active: 'inactive', enabled: 'masked' });
    const daemon = JSON.parse(await i().sh('cat /etc/docker/daemon.json')) as Record<string, any>;
    expect(daemon).toMatchObject({
      'log-driver': 'json-file',
      'log-opts': { 'max-size': '10m', 'max-file': '3' },
      'default-runtime': 'runsc',
      runtimes: { runsc: { path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] } },
    });
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');

    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.State.Running).toBe(true);
    expect(agent.Config.Image).toBe('amazon/amazon-ecs-agent:latest');
    // ecs-init parity (DESIGN.md §3), and runc stated explicitly.
    expect(agent.HostConfig).toMatchObject({ Runtime: 'runc', NetworkMode: 'host', UsernsMode: 'host', Init: true });
    expect(agent.HostConfig.CapAdd).toEqual(expect.arrayContaining(['NET_ADMIN', 'SYS_ADMIN']));
    expect(agent.HostConfig.Binds).toEqual(
      expect.arrayContaining(['/var/run:/var/run', '/var/log/ecs:/log', '/var/lib/ecs/data:/data', '/etc/ecs:/etc/ecs', '/var/cache/ecs:/var/cache/ecs', '/sys/fs/cgroup:/sys/fs/cgroup', '/proc:/host/proc:ro']),
    );
    expect(agent.Config.Env).toEqual(expect.arrayContaining(['ECS_CLUSTER=e2e', 'ECS_DATADIR=/data', 'ECS_LOGFILE=/log/ecs-agent.log']));

    // A task-like container started now lands in gVisor.
    await i().sh('docker load -q -i /opt/e2e/busybox.tar');
    expect(await i().sh('docker run --rm busybox:latest dmesg')).toContain('Starting gVisor');

    const status = await i().status();
    expect(status).toMatchObject({ healthy: true });
    const fakes = await i().fakes();
    expect(fakes.autoScaling.actions[`${GROUP}/launch/${INSTANCE_ID}`]).toMatchObject({ result: 'CONTINUE' });
    expect(fakes.ecs.instances[AGENT_ARN]).toMatchObject({ status: 'ACTIVE', agentConnected: true, attributes: { 'ecs-gvisor.sandbox': 'verified' } });

    // The network rules ecs-init would add, each once.
    const rules = ours(await i().sh('iptables-save'));
    expect(rules.length).toBeGreaterThan(0);
    expect(new Set(rules).size).toBe(rules.length);

    // ecs.config carries a credential: it never reaches the journal.
    expect(await i().sh('journalctl --no-pager -o cat')).not.toContain('hunter2');
  });
});
