/**
 * One simulated ECS instance (docs/testing.md: End to end): the instance image booted with systemd as PID 1 in a
 * container of the outer private dockerd, its own network namespace (loopback only), its own nested
 * dockerd on a volume, the test's node at /opt/e2e-node (off PATH: it runs the fakes, never the product),
 * and /opt/e2e holding its userdata, the release (this architecture's executable) and the fakes. Its first boot runs the userdata (install.sh from the release), as cloud-init would.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { onTestFailed } from 'vitest';
import { realAgentImds, realAgentSettings } from '../harness/real-agent.js';
import { until } from '../harness/watch-fixture.js';
import type { E2eWorld } from './global-setup.js';
import { E2E_PORTS, type FakesSeed, type FakesState } from './ports.js';

const run = promisify(execFile);

export const CLUSTER = 'e2e';
export const INSTANCE_ID = 'i-0e2e0e2e0e2e0e2e0';
export const GROUP = 'e2e-asg';
export const AGENT_ARN = `arn:aws:ecs:us-east-1:111122223333:container-instance/${CLUSTER}/0123456789abcdef`;

export interface InstanceOptions {
  /** runsc as the userdata installs it (--runsc-path); default Debian's /usr/bin/runsc. */
  runscPath?: string;
  /** A file placed at /opt/e2e/<name> (a broken runsc, say). */
  files?: Record<string, { text: string; mode: number }>;
  /** A host file copied to /opt/e2e/<name> (a current runsc). */
  copies?: Record<string, string>;
  /** More ECS_GVISOR_* settings for install.sh --set. */
  settings?: Record<string, string>;
  /** The scenarios' short intervals and 10 s watchdog (default), or the product's own (benchmarks). */
  fast?: boolean;
  /**
   * install.sh starts the service (default), only enables it, or is not run at all; or the release's rpm
   * (copied to /opt/e2e/ecs-gvisor.rpm) is installed, the settings appended to its config, and the
   * service started, as an AMI pipeline's image would be at boot.
   */
  install?: 'start' | 'no-start' | 'none' | 'rpm';
  /** Shell lines the userdata runs before the install. */
  before?: string;
  /** The AMI's cache holds the real ECS agent (1.101.2) instead of the stand-in; it registers with the fakes itself. */
  realAgent?: boolean;
  /** More install.sh arguments (`--node /opt/e2e-node/node`: the bundle on the test's Node, not the executable). */
  installArgs?: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Where AWS is (the fakes on the instance's loopback), and Debian's runsc on this kernel (docs/network-modes.md). */
const ENDPOINTS: Record<string, string> = {
  ECS_GVISOR_RUNSC_ARGS: '--network=none',
  ECS_GVISOR_IMDS_URL: `http://127.0.0.1:${E2E_PORTS.imds}`,
  ECS_GVISOR_AWS_REGION: 'us-east-1',
};

/** Fast intervals and the lifecycle hooks, so the scenarios take seconds. The group comes from EC2's tags. */
const FAST: Record<string, string> = {
  ECS_GVISOR_LAUNCH_HOOK: 'launch',
  ECS_GVISOR_TERMINATE_HOOK: 'terminate',
  ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: '30',
  ECS_GVISOR_LIFECYCLE_POLL_SECONDS: '1',
  ECS_GVISOR_ECS_ALERT_POLL_SECONDS: '1',
  ECS_GVISOR_ECS_FIRST_POLL_SPREAD_SECONDS: '1',
  ECS_GVISOR_ECS_CALLS_PER_HOUR: '1800',
  ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR: '3600',
  ECS_GVISOR_INTROSPECTION_SECONDS: '1',
  ECS_GVISOR_DRIFT_CHECK_SECONDS: '2',
  ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '5',
};

/** The launch template's userdata: the agent's config, where AWS is (the fakes), then install.sh. */
function userdata(o: InstanceOptions): string {
  const fast = o.fast ?? true;
  const settings = { ...ENDPOINTS, ...(fast ? FAST : {}), ...o.settings };
  const install = o.install ?? 'start';
  const sets = Object.entries(settings)
    .map(([k, v]) => `--set '${k}=${v}'`)
    .join(' ');
  const agentLines = o.realAgent
    ? realAgentSettings({ ecsUrl: `http://127.0.0.1:${E2E_PORTS.ecs}`, imdsUrl: `http://127.0.0.1:${E2E_PORTS.imds}` }).filter(
        (l) => !l.startsWith('ECS_BACKEND_HOST='),
      )
    : [];
  const ecsConfig = [
    `ECS_CLUSTER=${CLUSTER}`,
    `ECS_BACKEND_HOST=http://127.0.0.1:${E2E_PORTS.ecs}`,
    'ECS_ENGINE_AUTH_DATA={"secret":"hunter2"}',
    ...agentLines,
  ];
  return `#!/bin/bash
set -euo pipefail
mkdir -p /etc/ecs
cat > /etc/ecs/ecs.config <<'EOF'
${ecsConfig.join('\n')}
EOF
mkdir -p /etc/systemd/system/ecs-gvisor.service.d
cat > /etc/systemd/system/ecs-gvisor.service.d/e2e.conf <<'EOF'
[Service]
${fast ? '# Pings every 5 s, so a scenario sees systemd take them.\nWatchdogSec=10\n' : ''}Environment=AWS_ENDPOINT_URL_ECS=http://127.0.0.1:${E2E_PORTS.ecs}
Environment=AWS_ENDPOINT_URL_AUTO_SCALING=http://127.0.0.1:${E2E_PORTS.autoScaling}
Environment=AWS_ENDPOINT_URL_EC2=http://127.0.0.1:${E2E_PORTS.ec2}
Environment=AWS_ACCESS_KEY_ID=AKIAE2E AWS_SECRET_ACCESS_KEY=e2e AWS_EC2_METADATA_DISABLED=true
EOF
${o.before ?? ''}
${install === 'none' ? 'exit 0' : ''}
${
  install === 'rpm'
    ? `rpm -i --nodeps /opt/e2e/ecs-gvisor.rpm
printf '%s\n' ${Object.entries({ ECS_GVISOR_RUNSC_PATH: o.runscPath ?? '/usr/bin/runsc', ...settings })
        .map(([k, v]) => `'${k}=${v}'`)
        .join(' ')} >> /etc/ecs/ecs-gvisor.config
systemctl start --no-block ecs-gvisor.service
exit 0`
    : ''
}
work=$(mktemp -d)
tar -xzf /opt/e2e/release.tar.gz -C "$work"
"$work"/ecs-gvisor-*/install.sh --runsc-path ${o.runscPath ?? '/usr/bin/runsc'} ${install === 'no-start' ? '--no-start' : ''} ${o.installArgs ?? ''} ${sets}
`;
}

const SEED: FakesSeed = {
  instanceId: INSTANCE_ID,
  group: GROUP,
  imds: {
    '/latest/meta-data/instance-id': INSTANCE_ID,
    '/latest/meta-data/placement/region': 'us-east-1',
    // During Pending:Wait, IMDS already names the state the instance is headed for.
    '/latest/meta-data/autoscaling/target-lifecycle-state': 'InService',
  },
  pend: ['launch'],
};

/**
 * The files every instance gets at /opt/e2e (its userdata, the release, the fakes and their seed, the test's
 * extra files) and the AMI's agent image cache in `cache/`, in a fresh directory.
 */
export function preparePayload(world: E2eWorld, name: string, o: InstanceOptions): string {
  const dir = mkdtempSync(`/tmp/egv-e2e-${name}-`);
  for (const f of ['fakes.mjs', 'release.tar.gz', 'busybox.tar']) copyFileSync(`${world.dir}/${f}`, `${dir}/${f}`);
  writeFileSync(`${dir}/userdata.sh`, userdata(o));
  writeFileSync(
    `${dir}/fakes.json`,
    JSON.stringify(o.realAgent ? { ...SEED, imds: { ...SEED.imds, ...realAgentImds(INSTANCE_ID) } } : SEED),
  );
  for (const [f, { text, mode }] of Object.entries(o.files ?? {})) writeFileSync(`${dir}/${f}`, text, { mode });
  for (const [f, from] of Object.entries(o.copies ?? {})) copyFileSync(from, `${dir}/${f}`);
  // The AMI's agent image cache (ecs-init's /var/cache/ecs: the tarball and state 1 = cached).
  mkdirSync(`${dir}/cache`);
  copyFileSync(`${world.dir}/${o.realAgent ? 'real-ecs-agent.tar' : 'ecs-agent.tar'}`, `${dir}/cache/ecs-agent.tar`);
  writeFileSync(`${dir}/cache/state`, '1');
  return dir;
}

/** Print what an operator would look at when a scenario fails. */
export function diagnoseOnFailure(i: () => InstanceBase | undefined): void {
  onTestFailed(async () => {
    const inst = i();
    if (inst) process.stderr.write(`\n${inst.name}:\n${await inst.diagnose()}\n`);
  });
}

/** What a scenario does on any simulated instance, through `exec`: the container's or the machine's. */
export abstract class InstanceBase {
  abstract readonly name: string;

  /** A command on the instance, as root; never throws. */
  abstract exec(argv: string[], timeoutMs?: number): Promise<ExecResult>;

  /** Stop the instance and remove what it left. */
  abstract destroy(): Promise<void>;

  /** A shell line on the instance; its stdout, or an error naming what it printed. */
  async sh(script: string): Promise<string> {
    const r = await this.exec(['sh', '-c', script]);
    if (r.code !== 0) throw new Error(`on ${this.name}: \`${script}\` exited ${r.code}: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  /** Until systemd has finished booting (the initial transaction). */
  async booted(ms = 120_000): Promise<void> {
    await this.until(
      'systemd to finish booting',
      async () => {
        const s = (await this.exec(['systemctl', 'is-system-running'])).stdout.trim();
        return s === 'running' || s === 'degraded';
      },
      ms,
    );
  }

  /** The fakes' control port: GET /state, or a change (POST). */
  async fakes(method = 'GET', path = '/state', body?: unknown): Promise<FakesState> {
    const argv = ['/opt/e2e-node/node', '/opt/e2e/fakes.mjs', 'ctl', method, path, ...(body === undefined ? [] : [JSON.stringify(body)])];
    const r = await this.exec(argv);
    if (r.code !== 0) throw new Error(`fakes ${method} ${path}: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout) as FakesState;
  }

  /** `ecs-gvisor status --json`, as an operator runs it. */
  async status(): Promise<Record<string, any>> {
    const r = await this.exec(['ecs-gvisor', 'status', '--json']);
    return JSON.parse(r.stdout) as Record<string, any>;
  }

  async unit(name: string): Promise<{ active: string; enabled: string; pid: number }> {
    const show = await this.exec(['systemctl', 'show', name, '-p', 'ActiveState,UnitFileState,MainPID']);
    const p = Object.fromEntries(
      show.stdout
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    return { active: p.ActiveState ?? '', enabled: p.UnitFileState ?? '', pid: Number(p.MainPID ?? 0) };
  }

  /** `docker inspect` inside the instance (its nested dockerd). */
  async inspect(container: string): Promise<Record<string, any> | undefined> {
    const r = await this.exec(['docker', 'inspect', container]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Array<Record<string, any>>)[0] : undefined;
  }

  /** The fixture's `until`, with what an operator would look at when it times out. */
  async until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 120_000): Promise<T> {
    try {
      return await until(what, fn, ms, 500); // each look is a docker exec or two
    } catch (err) {
      throw new Error(`${this.name}: ${(err as Error).message} (${ms / 1000} s)\n${await this.diagnose()}`);
    }
  }

  /** What an operator would look at first: the units' journals and status. */
  async diagnose(): Promise<string> {
    const journal = async (n: number, ...units: string[]) => {
      const r = await this.exec(['journalctl', '--no-pager', '-o', 'short-precise', '-n', String(n), ...units.flatMap((u) => ['-u', u])]);
      return `--- journal of ${units.join(', ')} (last ${n} lines)\n${r.stdout}${r.stderr}`;
    };
    const status = await this.exec(['ecs-gvisor', 'status']);
    return [
      await journal(60, 'ecs-gvisor'),
      await journal(30, 'cloud-final', 'ecs', 'e2e-fakes'),
      await journal(10, 'docker'),
      `--- ecs-gvisor status\n${status.stdout}${status.stderr}`,
    ].join('\n');
  }
}

export class Instance extends InstanceBase {
  private constructor(
    readonly name: string,
    private readonly world: E2eWorld,
    readonly dir: string,
  ) {
    super();
  }

  /** Create and boot a fresh instance: its first boot runs the userdata. */
  static async launch(world: E2eWorld, name: string, o: InstanceOptions = {}): Promise<Instance> {
    const dir = preparePayload(world, name, o);
    const i = new Instance(`egv-e2e-${name}`, world, dir);
    await i.outer(['rm', '-f', '-v', i.name]).catch(() => undefined);
    await i.outer([
      'create',
      '--name',
      i.name,
      '--hostname',
      'ip-127-0-0-1',
      '--runtime',
      'runc',
      '--cap-add',
      'ALL',
      '--cap-drop',
      'SYS_RESOURCE',
      '--cgroupns=host',
      '-v',
      '/sys/fs/cgroup:/sys/fs/cgroup',
      '--security-opt',
      'seccomp=unconfined',
      '--security-opt',
      'apparmor=unconfined',
      // /proc/sys writable as on a host (route_localnet is per network namespace: the instance's own);
      // the image masks systemd-sysctl so boot never writes the outer kernel's settings.
      '--security-opt',
      'systempaths=unconfined',
      '--tmpfs',
      '/run:exec',
      '--tmpfs',
      '/tmp:exec', // as on a host; Docker's default is noexec
      '--network',
      'none',
      '--stop-signal',
      'SIGRTMIN+3',
      '--stop-timeout',
      '60',
      '-v',
      `${i.name}-docker:/var/lib/docker`,
      '-v',
      // The test's own Node, for the fakes only: off PATH, so nothing of the product can use it.
      `${process.execPath}:/opt/e2e-node/node:ro`,
      '-v',
      `${dir}:/opt/e2e:ro`,
      world.image,
      '/sbin/init',
    ]);
    await i.outer(['cp', `${dir}/cache/.`, `${i.name}:/var/cache/ecs/`]);
    await i.outer(['start', i.name]);
    await i.booted();
    return i;
  }

  /** The outer engine's CLI. */
  private async outer(args: string[]): Promise<string> {
    return (await run('docker', ['-H', this.world.dockerHost, ...args], { maxBuffer: 64 << 20 })).stdout;
  }

  /** A command on the instance, as root; never throws. */
  async exec(argv: string[], timeoutMs = 120_000): Promise<ExecResult> {
    try {
      const r = await run('docker', ['-H', this.world.dockerHost, 'exec', this.name, ...argv], { maxBuffer: 64 << 20, timeout: timeoutMs });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  /** A clean reboot: systemd shuts down (the stop signal), the container starts again on the same disk. */
  async reboot(): Promise<void> {
    await this.outer(['stop', this.name]);
    await this.outer(['start', this.name]);
    await this.booted();
  }

  async destroy(): Promise<void> {
    await this.outer(['rm', '-f', '-v', this.name]).catch(() => undefined);
    await this.outer(['volume', 'rm', '-f', `${this.name}-docker`]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
