/**
 * The real Amazon ECS agent (1.101.2, from the project's shared test material beside the repository): its
 * root filesystem imported as `amazon/amazon-ecs-agent:latest`, and the ecs.config and instance metadata
 * it needs to start and register against the fake ECS on 127.0.0.1. It differs from the stand-in where it
 * matters: it exits 0 on SIGTERM (what dockerd sends when it stops), and it re-registers with the same
 * container-instance ARN while /var/lib/ecs/data/agent.db survives.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import type { FakeImds } from './fake-aws.js';

export const REAL_AGENT_IMAGE = 'amazon/amazon-ecs-agent:latest';
export const REAL_AGENT_TARBALL = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../../shared/ecs-agent/amazon-ecs-agent-v1.101.2-rootfs.tar.gz',
);
export const INSTANCE_ID = 'i-0a1b2c3d4e5f60718';
/** Where the agent keeps its state on the host (ecs-init's bind of /data). */
export const AGENT_DATA = '/var/lib/ecs/data';

/** Import the real agent's image into a dockerd (once per engine; `ref` re-tags it). */
export async function importRealAgent(socket: string, ref = REAL_AGENT_IMAGE): Promise<string> {
  mountAgentCgroups();
  if (!existsSync(REAL_AGENT_TARBALL)) throw new Error(`the real ECS agent image is missing: ${REAL_AGENT_TARBALL}`);
  const docker = new Docker({ socketPath: socket });
  const [repo, tag] = ref.split(':');
  const stream = await docker.importImage(REAL_AGENT_TARBALL, { repo, tag, changes: ['ENTRYPOINT ["/agent"]'] } as object);
  await new Promise<void>((res, rej) =>
    docker.modem.followProgress(stream as NodeJS.ReadableStream, (err: unknown) => (err ? rej(err) : res())),
  );
  return String((await docker.getImage(ref).inspect()).Id);
}

/**
 * Mount the cgroup v1 controllers the kernel has that this host leaves unmounted (net_cls, net_prio,
 * perf_event, hugetlb), as an Amazon Linux AMI mounts them all: the agent creates its `/ecs` cgroup in
 * every controller /proc/cgroups lists, and without them turns task-level limits off. Idempotent; on
 * cgroup v2 there is nothing to do.
 */
export function mountAgentCgroups(): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  if (!/ \/sys\/fs\/cgroup\/memory cgroup /.test(mounts)) return;
  const enabled = readFileSync('/proc/cgroups', 'utf8')
    .split('\n')
    .filter((l) => /\s1$/.test(l))
    .map((l) => l.split('\t')[0]!);
  const groups: Array<[string, string]> = [
    ['net_cls', 'net_cls,net_prio'],
    ['net_prio', 'net_cls,net_prio'],
    ['perf_event', 'perf_event'],
    ['hugetlb', 'hugetlb'],
  ];
  for (const [dir, opts] of groups) {
    if (!opts.split(',').every((c) => enabled.includes(c))) continue;
    if (!existsSync(`/sys/fs/cgroup/${dir}`)) continue;
    const at = realpathSync(`/sys/fs/cgroup/${dir}`); // net_cls and net_prio: links to net_cls,net_prio
    if (mounts.includes(` ${at} cgroup `)) continue;
    execFileSync('mount', ['-t', 'cgroup', '-o', opts, 'cgroup', at]);
  }
}

/** What the agent needs in ecs.config to register with the fakes (its own endpoint overrides). */
export function realAgentConfig(o: { cluster: string; ecsUrl: string; imdsUrl: string }): string {
  return [`ECS_CLUSTER=${o.cluster}`, ...realAgentSettings(o), ''].join('\n');
}

/** The ecs.config lines beyond the cluster. */
export function realAgentSettings(o: { ecsUrl: string; imdsUrl: string }): string[] {
  return [
    `ECS_BACKEND_HOST=${o.ecsUrl}`,
    `AWS_EC2_METADATA_SERVICE_ENDPOINT=${o.imdsUrl}`,
    'AWS_ACCESS_KEY_ID=AKIDTESTAGENT',
    'AWS_SECRET_ACCESS_KEY=test-secret-not-real',
    'AWS_DEFAULT_REGION=us-east-1',
    // No CNI plugins in this build (its README), and no task ENIs here.
    'ECS_ENABLE_TASK_ENI=false',
    'ECS_LOGLEVEL=info',
    // There is no registry here: a task's image is the one already loaded.
    'ECS_IMAGE_PULL_BEHAVIOR=prefer-cached',
  ];
}

const MAC = '0e:00:00:00:00:01';

/** Instance metadata the agent reads: the identity document it registers with, and the usual paths. */
export function seedRealAgentImds(imds: FakeImds, instanceId = INSTANCE_ID): void {
  for (const [path, value] of Object.entries(realAgentImds(instanceId))) imds.paths.set(path, value);
}

export function realAgentImds(instanceId: string): Record<string, string> {
  const doc = {
    accountId: '111122223333',
    architecture: 'x86_64',
    availabilityZone: 'us-east-1a',
    imageId: 'ami-0123456789abcdef0',
    instanceId,
    instanceType: 'm5.large',
    privateIp: '10.0.0.10',
    region: 'us-east-1',
    version: '2017-09-30',
  };
  return {
    '/latest/dynamic/instance-identity/document': JSON.stringify(doc),
    '/latest/dynamic/instance-identity/signature': 'c2lnbmF0dXJl',
    '/latest/meta-data/instance-id': instanceId,
    '/latest/meta-data/placement/region': 'us-east-1',
    '/latest/meta-data/placement/availability-zone': 'us-east-1a',
    '/latest/meta-data/instance-type': 'm5.large',
    '/latest/meta-data/local-ipv4': '10.0.0.10',
    // The agent looks up its VPC and subnet through the primary interface at start (a critical error without).
    '/latest/meta-data/mac': MAC,
    [`/latest/meta-data/network/interfaces/macs/${MAC}/vpc-id`]: 'vpc-0123456789abcdef0',
    [`/latest/meta-data/network/interfaces/macs/${MAC}/subnet-id`]: 'subnet-0123456789abcdef0',
    [`/latest/meta-data/network/interfaces/macs/${MAC}/vpc-ipv4-cidr-blocks`]: '10.0.0.0/16',
  };
}

/** Forget the agent's registration (a fresh instance). */
export function forgetAgentState(): void {
  rmSync(`${AGENT_DATA}/agent.db`, { force: true });
  rmSync(`${AGENT_DATA}/ecs_agent_data.json`, { force: true });
}

/** The agent's introspection answer on the host's loopback, or undefined while it does not answer. */
export async function agentMetadata(): Promise<{ Cluster: string; ContainerInstanceArn?: string; Version: string } | undefined> {
  try {
    const res = await fetch('http://127.0.0.1:51678/v1/metadata', { signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as { Cluster: string; ContainerInstanceArn?: string; Version: string }) : undefined;
  } catch {
    return undefined;
  }
}
