/**
 * End to end on simulated ECS instances (test/e2e/instance.ts): systemd boots, the userdata installs the
 * release with install.sh, systemd starts ecs-gvisor, ecs-init's unit is taken out of the way, Docker's
 * default becomes runsc, the agent runs under runc, tasks run in gVisor, and the Auto Scaling hooks are
 * answered, all against fakes on the instance's own loopback. One instance walks through the life of a
 * healthy host in order (boot, reboot, drift, faults, terminate, rollback); another has a broken runsc.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AGENT_ARN, diagnoseOnFailure, GROUP, INSTANCE_ID, Instance } from './instance.js';
import { SEED_DAEMON_JSON } from './instance-image.js';

const world = inject('e2e');

const ours = (s: string) =>
  s
    .split('\n')
    .filter((l) => l.includes('ecs-gvisor'))
    .sort();

/**
 * The host as it was before ecs-gvisor (after `rollback`, or erasing the rpm): ecs-init enabled and
 * running its own agent under the default runtime, runc the default again, daemon.json byte for byte the
 * seed, no rule of ours left.
 */
async function hostGivenBack(i: Instance): Promise<void> {
  await i.until(
    'ecs.service running its agent',
    async () => (await i.unit('ecs.service')).active === 'active' && (await i.inspect('ecs-agent'))?.State.Running === true,
    90_000,
  );
  expect(await i.unit('ecs.service')).toMatchObject({ active: 'active', enabled: 'enabled' });
  expect(await i.sh('cat /etc/docker/daemon.json')).toBe(SEED_DAEMON_JSON);
  expect((await i.sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runc');
  expect(ours(await i.sh('iptables-save'))).toEqual([]);
  expect((await i.inspect('ecs-agent'))!.HostConfig.Runtime).toBe('runc');
}

/**
 * The sandbox not proven, closed as it should be: the unit failed with exit 5 and was not restarted, no
 * agent, the operator's daemon.json back byte for byte, Docker's default runc, the launch ABANDONed.
 * Returns ecs-gvisor's journal.
 */
async function failedClosed(i: Instance, daemonJson: string): Promise<string> {
  const failed = await i.until('ecs-gvisor.service to fail', async () => {
    const u = await i.unit('ecs-gvisor.service');
    return u.active === 'failed' ? u : undefined;
  });
  expect(failed.pid).toBe(0);
  expect((await i.sh('systemctl show ecs-gvisor.service -p ExecMainStatus -p NRestarts')).trim().split('\n').sort()).toEqual([
    'ExecMainStatus=5',
    'NRestarts=0',
  ]);
  expect(await i.inspect('ecs-agent')).toBeUndefined();
  expect(await i.sh('cat /etc/docker/daemon.json')).toBe(daemonJson);
  expect((await i.sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runc');
  expect((await i.fakes()).autoScaling.actions[`${GROUP}/launch/${INSTANCE_ID}`]).toMatchObject({ result: 'ABANDON' });
  const journal = await i.sh('journalctl --no-pager -o cat -u ecs-gvisor');
  expect(journal).toContain('SANDBOX_UNPROVEN');
  return journal;
}

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

    // Stopped before anything changed; disabled and masked (for the next boot) after READY.
    expect((await i().unit('ecs.service')).active).toBe('inactive');
    await i().until('ecs-init masked', async () => (await i().unit('ecs.service')).enabled === 'masked', 60_000);
    // The proof's probes go after READY too, and their record with them.
    await i().until(
      'the probes removed',
      async () =>
        (
          await i().sh('docker ps -aq --filter label=ecs-gvisor.probe; test -e /var/lib/ecs-gvisor/probes.json && echo recorded || true')
        ).trim() === '',
      60_000,
    );
    // The release's executable runs the service: no Node on the instance's PATH, none installed.
    const main = (await i().unit('ecs-gvisor.service')).pid;
    expect((await i().sh(`readlink /proc/${main}/exe`)).trim()).toBe('/usr/local/bin/ecs-gvisor');
    // The unit caps glibc's malloc arenas (the idle memory figure depends on it).
    expect((await i().sh(`tr '\\0' '\\n' < /proc/${main}/environ`)).split('\n')).toContain('MALLOC_ARENA_MAX=2');
    expect((await i().exec(['sh', '-c', 'command -v node nodejs'])).stdout).toBe('');
    expect(await i().sh('ecs-gvisor --version')).toMatch(/^ecs-gvisor 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/);
    const daemon = JSON.parse(await i().sh('cat /etc/docker/daemon.json')) as Record<string, any>;
    expect(daemon).toMatchObject({
      'log-driver': 'json-file',
      'log-opts': { 'max-size': '10m', 'max-file': '3' },
      'default-runtime': 'runsc',
      // The entry point, which runs /usr/bin/runsc with the network stack each container needs.
      runtimes: { runsc: { path: '/var/lib/ecs-gvisor/bin/runsc', runtimeArgs: ['--network=none'] } },
    });
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');

    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.State.Running).toBe(true);
    expect(agent.Config.Image).toBe('amazon/amazon-ecs-agent:latest');
    // ecs-init parity (docs/how-it-works.md: The agent step), and runc stated explicitly.
    expect(agent.HostConfig).toMatchObject({ Runtime: 'runc', NetworkMode: 'host', UsernsMode: 'host', Init: true });
    expect(agent.HostConfig.CapAdd).toEqual(expect.arrayContaining(['NET_ADMIN', 'SYS_ADMIN']));
    expect(agent.HostConfig.Binds).toEqual(
      expect.arrayContaining([
        '/var/run:/var/run',
        '/var/log/ecs:/log',
        '/var/lib/ecs/data:/data',
        '/etc/ecs:/etc/ecs',
        '/var/cache/ecs:/var/cache/ecs',
        '/sys/fs/cgroup:/sys/fs/cgroup',
        '/proc:/host/proc:ro',
      ]),
    );
    expect(agent.Config.Env).toEqual(expect.arrayContaining(['ECS_CLUSTER=e2e', 'ECS_DATADIR=/data', 'ECS_LOGFILE=/log/ecs-agent.log']));

    // A task-like container started now lands in gVisor.
    await i().sh('docker load -q -i /opt/e2e/busybox.tar');
    expect(await i().sh('docker run --rm busybox:latest dmesg')).toContain('Starting gVisor');

    const status = await i().status();
    expect(status).toMatchObject({ healthy: true });
    // Healthy is exit 0 (like systemctl is-active), for scripts and SSM Run Command.
    expect((await i().exec(['ecs-gvisor', 'status'])).code).toBe(0);
    const fakes = await i().fakes();
    expect(fakes.autoScaling.actions[`${GROUP}/launch/${INSTANCE_ID}`]).toMatchObject({ result: 'CONTINUE' });
    // The group was read from the instance's tag through EC2 (the bundle carries that SDK as a string).
    expect(fakes.ec2.calls).toEqual([expect.objectContaining({ Action: 'DescribeTags', 'Filter.1.Value.1': INSTANCE_ID })]);
    expect(fakes.ecs.instances[AGENT_ARN]).toMatchObject({
      status: 'ACTIVE',
      agentConnected: true,
      attributes: { 'ecs-gvisor.sandbox': 'verified' },
    });

    // The network rules ecs-init would add, each once.
    const rules = ours(await i().sh('iptables-save'));
    expect(rules.length).toBeGreaterThan(0);
    expect(new Set(rules).size).toBe(rules.length);

    // ecs.config carries a credential: it never reaches the journal.
    expect(await i().sh('journalctl --no-pager -o cat')).not.toContain('hunter2');
  });

  it('2. reboot: converges again, the same agent container, each rule once, the launch not completed twice', async () => {
    diagnoseOnFailure(i);
    const agentId = (await i().inspect('ecs-agent'))!.Id as string;
    const rulesBefore = ours(await i().sh('iptables-save'));
    await i().reboot();
    await i().until('ecs-gvisor.service active again', async () => (await i().unit('ecs-gvisor.service')).active === 'active');
    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.Id).toBe(agentId);
    expect(agent.State.Running).toBe(true);
    expect(ours(await i().sh('iptables-save'))).toEqual(rulesBefore);
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');
    expect(await i().unit('ecs.service')).toMatchObject({ active: 'inactive', enabled: 'masked' });
    // The userdata ran once (cloud-init's marker), and the launch action was completed once.
    expect(await i().sh('journalctl --no-pager -o cat -u cloud-final | grep -c "install.sh: enabled and starting" || true')).toBe('1\n');
    const fakes = await i().fakes();
    expect(fakes.autoScaling.calls.filter((c) => c.Action === 'CompleteLifecycleAction')).toHaveLength(1);
  });

  it('3. an operator takes runsc out of daemon.json and reloads Docker: the drift is repaired, their edit kept', async () => {
    diagnoseOnFailure(i);
    await i().sh(`printf '%s' '${SEED_DAEMON_JSON.replace(/'/g, "'\\''")}' > /etc/docker/daemon.json && systemctl reload docker`);
    const repaired = await i().until(
      'daemon.json to name runsc again',
      async () => {
        const d = JSON.parse(await i().sh('cat /etc/docker/daemon.json')) as Record<string, any>;
        return d['default-runtime'] === 'runsc' && d.runtimes?.runsc ? d : undefined;
      },
      60_000,
    );
    expect(repaired['log-opts']).toEqual({ 'max-size': '10m', 'max-file': '3' });
    await i().until(
      'Docker to default to runsc',
      async () => (await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim() === 'runsc',
      30_000,
    );
    expect(await i().sh('docker run --rm busybox:latest dmesg')).toContain('Starting gVisor');
    expect((await i().inspect('ecs-agent'))!.HostConfig.Runtime).toBe('runc');
  });

  it('4. the agent killed comes back under runc; a Docker restart is survived and converged', async () => {
    diagnoseOnFailure(i);
    const before = (await i().inspect('ecs-agent'))!;
    await i().sh('docker kill ecs-agent');
    const t0 = Date.now();
    const back = await i().until(
      'the agent running again',
      async () => {
        const a = await i().inspect('ecs-agent');
        return a?.State.Running && a.State.StartedAt !== before.State.StartedAt ? a : undefined;
      },
      60_000,
    );
    process.stderr.write(`e2e: agent back ${((Date.now() - t0) / 1000).toFixed(1)} s after docker kill\n`);
    expect(back.HostConfig.Runtime).toBe('runc');
    // Docker restarted within the second of the agent's restart: the moment that once hung the supervisor.
    const service = await i().unit('ecs-gvisor.service');
    await i().sh('systemctl restart docker');
    await i().until(
      'the agent running after the Docker restart',
      async () => (await i().inspect('ecs-agent'))?.State.Running === true,
      90_000,
    );
    expect(await i().unit('ecs-gvisor.service')).toMatchObject({ active: 'active', pid: service.pid });
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');
    expect((await i().inspect('ecs-agent'))!.HostConfig.Runtime).toBe('runc');
    await i().until('status healthy again', async () => (await i().status()).healthy === true, 60_000);

    // systemd takes the watchdog pings (WatchdogSec=10 here): the last one moves on, no restart ever.
    const watchdog = async () => Number((await i().sh('systemctl show ecs-gvisor.service -p WatchdogTimestampMonotonic --value')).trim());
    const first = await watchdog();
    await i().until('another watchdog ping', async () => (await watchdog()) > first, 15_000);
    expect((await i().sh('systemctl show ecs-gvisor.service -p NRestarts --value')).trim()).toBe('0');
  });

  it('6. terminate: DRAINING, the tasks leave, then CONTINUE', async () => {
    diagnoseOnFailure(i);
    await i().fakes('POST', '/ecs/instance', { arn: AGENT_ARN, runningTasksCount: 3 });
    await i().fakes('POST', '/as/pend', { hook: 'terminate' });
    await i().fakes('POST', '/imds', { '/latest/meta-data/autoscaling/target-lifecycle-state': 'Terminated' });
    const done = await i().until(
      'the terminate action completed',
      async () => {
        const f = await i().fakes();
        return f.autoScaling.actions[`${GROUP}/terminate/${INSTANCE_ID}`]?.result ? f : undefined;
      },
      90_000,
    );
    expect(done.autoScaling.actions[`${GROUP}/terminate/${INSTANCE_ID}`]!.result).toBe('CONTINUE');
    expect(done.ecs.instances[AGENT_ARN]).toMatchObject({ status: 'DRAINING', runningTasksCount: 0 });
    const drain = done.ecs.calls.findIndex((c) => c.operation === 'UpdateContainerInstancesState' && c.body.status === 'DRAINING');
    expect(drain).toBeGreaterThanOrEqual(0);
    const complete = done.autoScaling.calls.find(
      (c) => c.Action === 'CompleteLifecycleAction' && c.params.LifecycleHookName === 'terminate',
    )!;
    expect(complete.at).toBeGreaterThan(done.ecs.calls[drain]!.at);
  });

  it('7. rollback: ecs-init back and running its agent, daemon.json as before, our rules gone, ecs-gvisor stopped', async () => {
    diagnoseOnFailure(i);
    // As from an operator's login session (sshd's children run in systemd's context, not docker exec's).
    const r = await i().exec(['systemd-run', '--quiet', '--wait', '--pipe', '--collect', '--', 'ecs-gvisor', 'rollback']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await hostGivenBack(i());
    expect(await i().unit('ecs-gvisor.service')).toMatchObject({ active: 'inactive', enabled: 'disabled' });
  });
});

describe('an instance whose runsc cannot start a sandbox', () => {
  let inst: Instance | undefined;
  const i = () => inst!;
  const BROKEN = `#!/bin/sh
# Answers --version like runsc, cannot start a sandbox.
for a; do [ "$a" = --version ] && exec /usr/bin/runsc --version; done
echo "runsc: cannot create sandbox: broken on purpose" >&2
exit 1
`;

  beforeAll(async () => {
    inst = await Instance.launch(world, 'broken', { runscPath: '/opt/e2e/runsc', files: { runsc: { text: BROKEN, mode: 0o755 } } });
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('5. fails closed: no agent, the launch ABANDONed, daemon.json restored, not restarted', async () => {
    diagnoseOnFailure(i);
    await failedClosed(i(), SEED_DAEMON_JSON);
  });
});

describe('an instance running the real ECS agent', () => {
  let inst: Instance | undefined;
  const i = () => inst!;

  beforeAll(async () => {
    inst = await Instance.launch(world, 'real-agent', { realAgent: true });
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('8. boot: the real agent registers itself, the proof is published on its record; a Docker restart brings it back as the same instance', async () => {
    diagnoseOnFailure(i);
    await i().until('ecs-gvisor.service active', async () => (await i().unit('ecs-gvisor.service')).active === 'active');
    const agent = (await i().inspect('ecs-agent'))!;
    expect(agent.HostConfig.Runtime).toBe('runc');
    // Its own RegisterContainerInstance, with its identity document: not the stand-in's.
    const registered = await i().until('the agent registered and the attribute published', async () => {
      const f = await i().fakes();
      const [arn, rec] = Object.entries(f.ecs.instances).find(([, v]) => v.ec2InstanceId === INSTANCE_ID) ?? [];
      return arn && rec?.attributes['ecs-gvisor.sandbox'] === 'verified' ? { arn, f } : undefined;
    });
    const register = registered.f.ecs.calls.filter((c) => c.operation === 'RegisterContainerInstance');
    expect(register.length).toBeGreaterThanOrEqual(1);
    expect(register[0]!.body).toHaveProperty('instanceIdentityDocument');
    const st = await i().until('status healthy', async () => {
      const s = await i().status();
      return s.healthy === true ? s : undefined;
    });
    expect(st.registration.containerInstanceArn).toBe(registered.arn);
    expect(st.registration.agentVersion).toMatch(/1\.101\.2/);

    const service = await i().unit('ecs-gvisor.service');
    await i().sh('systemctl restart docker');
    const back = await i().until(
      'the agent running again after the Docker restart',
      async () => {
        const a = await i().inspect('ecs-agent');
        return a?.State.Running && a.State.StartedAt !== agent.State.StartedAt ? a : undefined;
      },
      120_000,
    );
    expect(back.HostConfig.Runtime).toBe('runc');
    const after = await i().until(
      'status healthy again',
      async () => {
        const s = await i().status();
        return s.healthy === true && s.agent.lastExit ? s : undefined;
      },
      120_000,
    );
    // Docker's SIGTERM made it exit 0; that did not keep it down.
    expect(after.agent.lastExit).toMatchObject({ code: 0 });
    expect(after.registration.containerInstanceArn).toBe(registered.arn);
    expect(await i().unit('ecs-gvisor.service')).toMatchObject({ active: 'active', pid: service.pid });
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');
    expect(await i().sh('journalctl --no-pager -o cat -u ecs-gvisor')).not.toContain('test-secret-not-real');
  });
});

describe('an instance with a current runsc: every network mode', () => {
  let inst: Instance | undefined;
  const i = () => inst!;
  const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));

  beforeAll(async () => {
    // The current runsc as the instance's own, no runtimeArgs: gVisor's netstack wherever it can work.
    inst = await Instance.launch(world, 'netmodes', {
      runscPath: '/opt/e2e/runsc',
      copies: { runsc: SHARED_RUNSC },
      settings: { ECS_GVISOR_RUNSC_ARGS: '' },
    });
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('9. awsvpc under real systemd: an interface the CNI plugin adds after the pause container started is shared by the task’s containers', async () => {
    diagnoseOnFailure(i);
    await i().until('ecs-gvisor.service active', async () => (await i().unit('ecs-gvisor.service')).active === 'active');
    // The modes' probes start after the agent's (READY does not wait for them): recorded soon after.
    const st = await i().until(
      'the network modes recorded',
      async () => {
        const s = await i().status();
        return s.runtime.evidence?.networks ? s : undefined;
      },
      60_000,
    );
    expect(st.runtime.networkModes).toEqual(['bridge', 'awsvpc', 'host']);
    await i().sh('docker load -q -i /opt/e2e/busybox.tar');
    await i().sh('docker run -d --name pause --network none busybox sleep 600');
    // What the CNI plugin does, after the pause container started.
    await i().sh(
      'pid=$(docker inspect -f "{{.State.Pid}}" pause) && ip link add eni0 type veth peer name eni1 && ip link set eni1 netns "$pid" && nsenter -t "$pid" -n ip addr add 10.213.0.2/24 dev eni1 && nsenter -t "$pid" -n ip link set eni1 up',
    );
    await i().sh(
      "docker run -d --name task-a --network container:pause busybox sh -c 'mkdir -p /tmp/w && echo from-a > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w'",
    );
    await i().sh('docker run -d --name task-b --network container:pause busybox sleep 600');
    // (No wget -T: this busybox build crashes with it.)
    const get = (url: string) =>
      i().until(
        `task-b reaching ${url}`,
        async () => (await i().exec(['docker', 'exec', 'task-b', 'wget', '-qO-', url], 10_000)).stdout.trim() || undefined,
        60_000,
      );
    expect(await get('http://127.0.0.1:8080/')).toBe('from-a');
    expect(await get('http://10.213.0.2:8080/')).toBe('from-a');
    const audit = await i().until(
      'the audit of the task',
      async () => {
        const s = await i().status();
        return (s.audit?.networks ?? []).some((n: { name: string }) => n.name === 'task-b') ? s.audit : undefined;
      },
      60_000,
    );
    const stackOf = (name: string) => audit.networks.find((n: { name: string }) => n.name === name);
    expect(stackOf('pause')).toMatchObject({ networkMode: 'none', stack: 'netstack' });
    expect(stackOf('task-b')).toMatchObject({ networkMode: expect.stringMatching(/^container:/), stack: 'passthrough' });
    expect(audit.violations).toEqual([]);
    await i().sh('docker rm -f task-a task-b pause');
  });

  it('10. bridge tasks on netstack and on passthrough: instance metadata blocked on the wire, the credentials endpoint reached', async () => {
    diagnoseOnFailure(i);
    // Instance metadata as on EC2: routed off the instance (here to a namespace of the test's, with
    // .254 and a neighbour .253 on it), not a local address.
    await i().sh(
      [
        'ip netns add imds',
        'ip link add imds0 type veth peer name imds1',
        'ip link set imds1 netns imds',
        'ip addr add 169.254.169.1/24 dev imds0',
        'ip link set imds0 up',
        'ip -n imds addr add 169.254.169.254/24 dev imds1',
        'ip -n imds addr add 169.254.169.253/24 dev imds1',
        'ip -n imds link set imds1 up',
        'ip -n imds link set lo up',
      ].join(' && '),
    );
    const serve = (where: string, host: string, port: number, text: string) =>
      i().sh(
        `${where} setsid /opt/e2e-node/node -e 'require("http").createServer((q, s) => s.end("${text}")).listen(${port}, "${host}")' > /dev/null 2>&1 < /dev/null &`,
      );
    await serve('nsenter --net=/run/netns/imds', '0.0.0.0', 80, 'metadata');
    await serve('', '127.0.0.1', 51679, 'credentials'); // where the agent serves task credentials
    const fromHost = await i().until(
      'metadata answering the instance itself',
      async () =>
        (
          await i().exec([
            '/opt/e2e-node/node',
            '-e',
            'fetch("http://169.254.169.254/").then((r) => r.text()).then((t) => process.stdout.write(t))',
          ])
        ).stdout || undefined,
      30_000,
    );
    expect(fromHost).toBe('metadata');

    const bridgeTask = async (name: string, stack: 'netstack' | 'passthrough') => {
      await i().sh(`docker run -d --name ${name} busybox sleep 600`);
      // No answer within 8 s is a drop: timeout(1) says 124 (this busybox build crashes with wget -T).
      const wget = async (url: string) => {
        const r = await i().exec(['timeout', '8', 'docker', 'exec', name, 'wget', '-qO-', url]);
        return r.code === 0 ? r.stdout.trim() : `failed (${r.code}): ${r.stderr.trim()}`;
      };
      const audit = await i().until(
        `${name} in the audit`,
        async () => {
          const a = (await i().status()).audit;
          return (a?.networks ?? []).some((n: { name: string }) => n.name === name) ? a : undefined;
        },
        60_000,
      );
      expect(audit.networks.find((n: { name: string }) => n.name === name)).toMatchObject({ networkMode: 'default', stack });
      // The path off the instance works (the neighbour answers), and metadata itself does not.
      expect(
        await i().until(
          `${name} reaching 169.254.169.253`,
          async () => ((await wget('http://169.254.169.253/')) === 'metadata' ? 'metadata' : undefined),
          30_000,
        ),
      ).toBe('metadata');
      expect(await wget('http://169.254.169.254/')).toMatch(/^failed \(124\)/);
      expect(await wget('http://169.254.170.2/v2/credentials/x')).toBe('credentials');
      await i().sh(`docker rm -f ${name}`);
    };
    await bridgeTask('bridge-netstack', 'netstack');
    // The operator chooses passthrough everywhere; the service restarts and the entry point follows.
    await i().sh(
      "sed -i 's/^ECS_GVISOR_NETWORK_POLICY=.*//' /etc/ecs/ecs-gvisor.config && echo ECS_GVISOR_NETWORK_POLICY=passthrough >> /etc/ecs/ecs-gvisor.config && systemctl restart ecs-gvisor",
    );
    await i().until(
      'ecs-gvisor.service active with passthrough',
      async () =>
        (await i().unit('ecs-gvisor.service')).active === 'active' && (await i().status()).runtime.networkPolicy === 'passthrough',
    );
    await bridgeTask('bridge-passthrough', 'passthrough');
  });
});

describe('an instance on Docker’s systemd cgroup driver (cgroup v1)', () => {
  let inst: Instance | undefined;
  const i = () => inst!;
  const SHARED_RUNSC = fileURLToPath(new URL('../../../shared/gvisor/runsc', import.meta.url));
  const SYSTEMD_DAEMON_JSON = '{"exec-opts": ["native.cgroupdriver=systemd"]}\n';

  beforeAll(async () => {
    // The operator's daemon.json asks for the systemd driver (a restart, not a reload, applies it), and
    // runsc is given --systemd-cgroup, as runsc's documentation says for that driver.
    inst = await Instance.launch(world, 'systemd-driver', {
      runscPath: '/opt/e2e/runsc',
      copies: { runsc: SHARED_RUNSC },
      settings: { ECS_GVISOR_RUNSC_ARGS: '--systemd-cgroup' },
      before: `printf '%s' '${SYSTEMD_DAEMON_JSON}' > /etc/docker/daemon.json\nsystemctl restart docker`,
    });
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('11. the sandbox would escape its task’s slice: the proof fails closed; runsc shown taking the slice path literally', async () => {
    diagnoseOnFailure(i);
    const journal = await failedClosed(i(), SYSTEMD_DAEMON_JSON);
    expect((await i().sh("docker info --format '{{.CgroupDriver}}'")).trim()).toBe('systemd');
    expect(journal).toMatch(/system\.slice:docker:[0-9a-f]{64}, not the one Docker made for its container/);

    // The evidence behind the advice of docs/network-modes.md, kept honest against the runsc under test: a task-like
    // container under an ECS task slice, run by that runsc with --systemd-cgroup, and the same under runc.
    await i().sh(
      `printf '%s' '{"exec-opts":["native.cgroupdriver=systemd"],"runtimes":{"gv":{"path":"/opt/e2e/runsc","runtimeArgs":["--systemd-cgroup"]}}}' > /etc/docker/daemon.json && systemctl reload docker`,
    );
    await i().until('Docker to know the runtime', async () => (await i().sh("docker info --format '{{json .Runtimes}}'")).includes('"gv"'));
    await i().sh('docker load -q -i /opt/e2e/busybox.tar');
    const run = async (runtime: string) => {
      const id = (
        await i().sh(`docker run -d --runtime ${runtime} --cgroup-parent ecstasks-t1.slice -m 64m busybox:latest sleep 600`)
      ).trim();
      const pid = (await i().sh(`docker inspect -f '{{.State.Pid}}' ${id}`)).trim();
      const memory = (await i().sh(`grep -E '^[0-9]+:memory:' /proc/${pid}/cgroup`)).trim().replace(/^\d+:memory:/, '');
      const limit = (await i().sh(`cat /sys/fs/cgroup/memory${memory}/memory.limit_in_bytes`)).trim();
      const cmdline = await i().sh(`tr '\\0' ' ' < /proc/${pid}/cmdline`);
      return { id, memory, limit, cmdline };
    };
    const runc = await run('runc');
    // (The instance is itself a container: its cgroups sit under the outer Docker's /docker/<id>.)
    expect(runc.memory.endsWith(`/ecstasks.slice/ecstasks-t1.slice/docker-${runc.id}.scope`)).toBe(true);
    expect(runc.limit).toBe(String(64 << 20));
    const gv = await run('gv');
    expect(gv.cmdline).toMatch(/--systemd-cgroup(=true)?\b/);
    // The container's limit holds, but in a cgroup named after the path, outside the task's slice.
    expect(gv.memory.endsWith(`/ecstasks-t1.slice:docker:${gv.id}`)).toBe(true);
    expect(gv.memory).not.toContain('/ecstasks.slice/');
    expect(gv.limit).toBe(String(64 << 20));
  });
});

describe('an instance from an AMI pipeline that installed the rpm', () => {
  let inst: Instance | undefined;
  const i = () => inst!;
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const target = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  const RPM = `${repo}dist/release/ecs-gvisor-0.1.0-1.${target}.rpm`;

  beforeAll(async () => {
    inst = await Instance.launch(world, 'rpm', { install: 'rpm', copies: { 'ecs-gvisor.rpm': RPM } });
  });
  afterAll(async () => {
    await inst?.destroy();
  });

  it('12. the rpm: enabled on install, the sandbox proven and the agent under runc; erased, the host is given back as by --uninstall', async () => {
    diagnoseOnFailure(i);
    await i().until('ecs-gvisor.service active', async () => (await i().unit('ecs-gvisor.service')).active === 'active');
    expect(await i().unit('ecs-gvisor.service')).toMatchObject({ enabled: 'enabled' });
    // (Debian's systemd names /usr/lib by its /lib link.)
    expect((await i().sh('systemctl show ecs-gvisor.service -p FragmentPath -p ExecStart')).trim()).toMatch(
      /^ExecStart=\{ path=\/usr\/bin\/ecs-gvisor ; argv\[\]=\/usr\/bin\/ecs-gvisor run ;[^\n]*\nFragmentPath=(\/usr)?\/lib\/systemd\/system\/ecs-gvisor\.service$/,
    );
    await i().until('the agent under runc', async () => (await i().inspect('ecs-agent'))?.State.Running === true);
    expect((await i().inspect('ecs-agent'))!.HostConfig.Runtime).toBe('runc');
    expect((await i().sh("docker info --format '{{.DefaultRuntime}}'")).trim()).toBe('runsc');
    expect((await i().status()).runtime.verified).toBe(true);

    // Erased from an operator's session: the preuninstall scriptlet stops the service and rolls back.
    const r = await i().exec(['systemd-run', '--quiet', '--wait', '--pipe', '--collect', '--', 'rpm', '-e', 'ecs-gvisor']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await hostGivenBack(i());
    expect((await i().sh('systemctl show ecs-gvisor.service -p LoadState')).trim()).toBe('LoadState=not-found');
    expect(
      (await i().sh('ls /usr/bin/ecs-gvisor /usr/lib/systemd/system/ecs-gvisor.service 2>&1 || true')).split('\n').filter(Boolean),
    ).toEqual([
      "ls: cannot access '/usr/bin/ecs-gvisor': No such file or directory",
      "ls: cannot access '/usr/lib/systemd/system/ecs-gvisor.service': No such file or directory",
    ]);
  });
});
