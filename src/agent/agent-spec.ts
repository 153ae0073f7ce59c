/**
 * The amazon-ecs-agent container exactly as ecs-init would create it (read from ecs-init's
 * `docker/docker.go` and `docker/docker_config.go` at agent v1.101.2, the version the tests run), plus
 * `Runtime: runc`: with runsc as Docker's default, a container created without a runtime would land in
 * the sandbox, where the agent cannot work. Pure: host facts come in, a spec and its hash come out.
 *
 * ecs-init reads two kinds of settings. The agent's environment comes from both ecs.config files (its
 * own parser). Its own switches (privileged, PID namespace, log driver, AppArmor profile, ECS_EXTERNAL)
 * come from its process environment, which ecs.service fills from /etc/ecs/ecs.config only
 * (`EnvironmentFile=`): so those are read from that file alone, with systemd's quotes taken off.
 */
import { createHash } from 'node:crypto';
import { EcsGvisorError } from '../errors.js';
import type { ContainerSpec } from '../ports.js';

export const AGENT_NAME = 'ecs-agent';
export const MANAGED_LABEL = 'ecs-gvisor.managed';
export const HASH_LABEL = 'ecs-gvisor.spec-hash';
/** The image ID the container was created from: a re-tagged image name is a new agent. */
export const IMAGE_ID_LABEL = 'ecs-gvisor.image-id';
/** Where ecs-init mounts EBS task volumes; the agent supports them only when the directory exists. */
export const EBS_MOUNT_DIR = '/mnt/ecs/ebs';
/** ecs-init's AppArmor profile for the agent (ECS_AGENT_APPARMOR_PROFILE overrides the name). */
export const DEFAULT_APPARMOR_PROFILE = 'ecs-agent-default';

export interface AgentHostFacts {
  /** Host paths that exist (files or directories), among those the spec asks about. */
  exists: ReadonlySet<string>;
  /** Directories among them. */
  dirs: ReadonlySet<string>;
  /** /etc/os-release text, when readable. */
  osRelease: string | undefined;
  /**
   * The AppArmor profiles loaded, when AppArmor is enabled and usable (containerd's HostSupports:
   * securityfs, apparmor_parser, enabled=Y); undefined otherwise.
   */
  apparmorProfiles?: ReadonlySet<string>;
}

export interface AgentSpecInput {
  image: string;
  /** The Docker socket ecs-gvisor talks to (unix:///path), which the agent must reach too. */
  dockerHost: string;
  /** Variables from /var/lib/ecs/ecs.config then /etc/ecs/ecs.config (later wins). */
  instanceVars: ReadonlyMap<string, string>;
  userVars: ReadonlyMap<string, string>;
  /** The file userVars came from (named in errors). */
  userFile?: string;
  facts: AgentHostFacts;
  /** The ID of the image `image` names now; part of the hash, so a moved tag recreates the agent. */
  imageId?: string;
}

export interface AgentSpec {
  spec: ContainerSpec & { name: string };
  hash: string;
  warnings: string[];
}

/** Every host path whose existence the spec depends on (what the step must look up). */
export const PATHS_TO_CHECK = [
  '/etc/pki',
  '/etc/pki/tls/certs',
  '/etc/ssl',
  '/etc/ssl/certs',
  '/var/lib/ecs/deps',
  '/var/lib/ecs/deps/execute-command',
  '/usr/lib',
  '/lib',
  '/usr/lib64',
  '/lib64',
  '/sbin',
  '/etc/alternatives',
  '/usr/sbin',
  '/usr/bin/lsblk',
  '/usr/bin/nsenter',
  '/sbin/modinfo',
  '/usr/sbin/modinfo',
  '/var/lib/cloud/data/result.json',
  EBS_MOUNT_DIR,
] as const;

const RO = ':ro';

export function osFamily(osRelease: string | undefined): string {
  if (!osRelease) return 'linux';
  const value = (k: string) => {
    const line = osRelease.split('\n').find((l) => l.startsWith(`${k}=`));
    return line
      ?.slice(k.length + 1)
      .trim()
      .replace(/^["']+|["']+$/g, '');
  };
  const id = value('ID');
  const version = value('VERSION_ID');
  return id && version ? `${id}_${version}` : 'linux';
}

/** ecs-init picks /etc/pki on Amazon Linux and /etc/ssl on Debian, Ubuntu and SUSE builds. */
function certDirs(facts: AgentHostFacts): { pki?: string; certs?: string } {
  const fam = osFamily(facts.osRelease);
  const order = /^(debian|ubuntu|sles|opensuse)/.test(fam)
    ? [
        ['/etc/ssl', '/etc/ssl/certs'],
        ['/etc/pki', '/etc/pki/tls/certs'],
      ]
    : [
        ['/etc/pki', '/etc/pki/tls/certs'],
        ['/etc/ssl', '/etc/ssl/certs'],
      ];
  for (const [pki, certs] of order) {
    if (facts.dirs.has(pki!)) return { pki, certs: facts.exists.has(certs!) ? certs : undefined };
  }
  return {};
}

export function buildAgentContainerSpec(input: AgentSpecInput): AgentSpec {
  const { facts } = input;
  const warnings: string[] = [];
  const fileVars = new Map([...input.instanceVars, ...input.userVars]);
  const certs = certDirs(facts);

  // Environment, later wins: defaults, /var/lib/ecs/ecs.config, /etc/ecs/ecs.config.
  const env = new Map<string, string>([
    ['ECS_LOGFILE', '/log/ecs-agent.log'],
    ['ECS_DATADIR', '/data'],
    ['ECS_AGENT_CONFIG_FILE_PATH', '/etc/ecs/ecs.config.json'],
    ['ECS_UPDATE_DOWNLOAD_DIR', '/var/cache/ecs'],
    ['ECS_UPDATES_ENABLED', 'true'],
    ['ECS_AVAILABLE_LOGGING_DRIVERS', '["json-file","syslog","awslogs","fluentd","none"]'],
    ['ECS_ENABLE_TASK_IAM_ROLE', 'true'],
    ['ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST', 'true'],
    ['ECS_EBSTA_SUPPORTED', 'true'],
    ['ECS_AGENT_LABELS', ''],
    ['ECS_VOLUME_PLUGIN_CAPABILITIES', '["efsAuth"]'],
    ['ECS_DETAILED_OS_FAMILY', osFamily(facts.osRelease)],
    ...(certs.certs ? [['SSL_CERT_DIR', certs.certs] as [string, string]] : []),
    ['ECS_ENABLE_TASK_ENI', 'true'],
    ['ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE', 'true'],
  ]);
  for (const [k, v] of fileVars) env.set(k, v);
  // Set after the files, as ecs-init does: without the mount directory EBS task volumes cannot work.
  if (!facts.dirs.has(EBS_MOUNT_DIR)) env.set('ECS_EBSTA_SUPPORTED', 'false');

  const own = ecsInitSwitches(input.userVars, input.userFile ?? '/etc/ecs/ecs.config');

  // The agent must reach the dockerd that runs it.
  const socket = input.dockerHost.startsWith('unix://') ? input.dockerHost.slice('unix://'.length) : '/var/run/docker.sock';
  const agentDockerHost = fileVars.get('DOCKER_HOST');
  const socketDest = agentDockerHost?.startsWith('unix://') ? agentDockerHost.slice('unix://'.length) : '/var/run/docker.sock';
  const socketBind =
    socket === '/var/run/docker.sock' && socketDest === '/var/run/docker.sock' ? '/var/run:/var/run' : `${socket}:${socketDest}`;

  const has = (p: string) => facts.exists.has(p);
  const binds = [
    socketBind,
    '/var/log/ecs:/log',
    '/var/lib/ecs/data:/data',
    '/etc/ecs:/etc/ecs',
    '/var/cache/ecs:/var/cache/ecs',
    '/sys/fs/cgroup:/sys/fs/cgroup',
    '/var/lib/ecs:/var/lib/ecs',
    '/var/log/ecs/exec:/log/exec',
    ...(certs.pki ? [`${certs.pki}:${certs.pki}${RO}`] : []),
    ...(fileVars.get('ECS_ENABLE_GPU_SUPPORT') === 'true' ? ['/var/lib/ecs/gpu:/var/lib/ecs/gpu'] : []),
    '/run/docker/plugins:/run/docker/plugins:ro',
    '/etc/docker/plugins:/etc/docker/plugins:ro',
    '/usr/lib/docker/plugins:/usr/lib/docker/plugins:ro',
    ...(facts.dirs.has('/var/lib/ecs/deps') ? [`/var/lib/ecs/deps:/managed-agents${RO}`] : []),
    ...(facts.dirs.has('/var/lib/ecs/deps/execute-command')
      ? ['/var/lib/ecs/deps/execute-command/config:/managed-agents/execute-command/config']
      : []),
    `/proc:/host/proc${RO}`,
    // ecs-init binds these unconditionally; a missing source makes Docker create an empty directory on
    // the host (a directory named /usr/bin/lsblk, say), so only existing ones are bound here.
    ...['/usr/lib', '/lib', '/usr/lib64', '/lib64'].filter(has).map((p) => `${p}:${p}${RO}`),
    ...(has('/sbin') ? [`/sbin:/host/sbin${RO}`] : []),
    ...['/etc/alternatives', '/usr/sbin'].filter(has).map((p) => `${p}:${p}${RO}`),
    ...(has('/usr/bin/lsblk') ? ['/usr/bin/lsblk:/usr/bin/lsblk'] : []),
    ...(has('/usr/bin/nsenter') ? ['/usr/bin/nsenter:/usr/bin/nsenter'] : []),
    ...['/sbin/modinfo', '/usr/sbin/modinfo']
      .filter(has)
      .slice(0, 1)
      .map((p) => `${p}:${p}`),
    ...(has('/var/lib/cloud/data/result.json') ? [`/var/lib/cloud/data/result.json:/var/lib/cloud/data/result.json${RO}`] : []),
  ];

  const labels: Record<string, string> = {};
  const rawLabels = fileVars.get('ECS_AGENT_LABELS');
  if (rawLabels) {
    const parsed = parseStringMap(rawLabels);
    if (parsed) Object.assign(labels, parsed);
    else warnings.push('ECS_AGENT_LABELS is not a JSON object of strings; no labels were set (as with ecs-init)');
  }
  if (!fileVars.has('ECS_CLUSTER')) warnings.push('ECS_CLUSTER is not set; the agent registers in the cluster named "default"');

  warnings.push(...own.warnings);
  // ecs-init loads its profile at pre-start, which no longer runs; naming a profile that is not loaded
  // would keep Docker from starting the agent at all.
  if (facts.apparmorProfiles && !facts.apparmorProfiles.has(own.apparmorProfile)) {
    warnings.push(
      `the AppArmor profile ${own.apparmorProfile} ecs-init gives the agent is not loaded; the agent runs under Docker's default profile (load it with apparmor_parser, as ecs-init's pre-start does)`,
    );
  }

  const spec = {
    name: AGENT_NAME,
    Image: input.image,
    Env: [...env].map(([k, v]) => `${k}=${v}`).sort(),
    Labels: { ...labels, [MANAGED_LABEL]: 'true' } as Record<string, string>,
    HostConfig: {
      Runtime: 'runc',
      NetworkMode: 'host',
      UsernsMode: 'host',
      CapAdd: ['NET_ADMIN', 'SYS_ADMIN'],
      Init: true,
      LogConfig: own.logConfig,
      Binds: binds,
      ...(facts.apparmorProfiles?.has(own.apparmorProfile) ? { SecurityOpt: [`apparmor:${own.apparmorProfile}`] } : {}),
      ...(own.privileged ? { Privileged: true } : {}),
      ...(own.pidHost ? { PidMode: 'host' } : {}),
    } as Record<string, unknown>,
  };
  // The image ID is hashed but not a field of the spec: Docker keeps the name, as with ecs-init.
  const hash = createHash('sha256')
    .update(JSON.stringify(spec))
    .update(input.imageId ?? '')
    .digest('hex')
    .slice(0, 32);
  spec.Labels[HASH_LABEL] = hash;
  if (input.imageId) spec.Labels[IMAGE_ID_LABEL] = input.imageId;
  return { spec, hash, warnings };
}

/** A value as systemd's EnvironmentFile= gives it to ecs-init: one pair of surrounding quotes removed. */
function unquote(v: string): string {
  return /^(["']).*\1$/s.test(v) && v.length >= 2 ? v.slice(1, -1) : v;
}

/** Go's strconv.ParseBool, which ecs-init uses for ECS_AGENT_PID_NAMESPACE_HOST. */
function goTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v);
}

/** The log drivers ecs-init accepts for the agent container. */
const LOG_DRIVERS = new Set(['awslogs', 'fluentd', 'gelf', 'json-file', 'journald', 'logentries', 'syslog', 'splunk']);

/** ecs-init's own switches, from its process environment (see the header). Throws on ECS_EXTERNAL=true. */
export function ecsInitSwitches(userVars: ReadonlyMap<string, string>, file: string) {
  const get = (k: string) => {
    const v = userVars.get(k);
    return v === undefined ? undefined : unquote(v);
  };
  const warnings: string[] = [];
  if (get('ECS_EXTERNAL') === 'true') {
    throw new EcsGvisorError(
      'ECS_CONFIG_INVALID',
      `${file} sets ECS_EXTERNAL=true (ECS Anywhere), but ecs-gvisor runs the agent only on EC2 container instances; remove the key or leave this host to ecs-init.`,
    );
  }
  // Log configuration, as ecs-init's AgentDockerLogDriverConfiguration builds it.
  let driver = 'json-file';
  let options: Record<string, string> | undefined;
  const rawOpts = get('ECS_LOG_OPTS');
  if (rawOpts) {
    options = parseStringMap(rawOpts);
    if (!options) warnings.push(`${file}: ECS_LOG_OPTS is not a JSON object of strings; ignored (as with ecs-init)`);
  }
  const wanted = get('ECS_LOG_DRIVER');
  if (wanted) {
    if (LOG_DRIVERS.has(wanted)) driver = wanted;
    else {
      warnings.push(
        `${file}: ECS_LOG_DRIVER=${wanted} is not a log driver ecs-init supports; json-file with default options is used (as with ecs-init)`,
      );
      options = undefined;
    }
  }
  if (driver === 'json-file' && options === undefined) {
    options = { 'max-size': get('ECS_INIT_DOCKER_LOG_FILE_SIZE') || '16m', 'max-file': get('ECS_INIT_DOCKER_LOG_FILE_NUM') || '4' };
  }
  const profile = get('ECS_AGENT_APPARMOR_PROFILE')?.trim();
  return {
    warnings,
    logConfig: { Type: driver, Config: options ?? {} },
    apparmorProfile: profile || DEFAULT_APPARMOR_PROFILE,
    privileged: get('ECS_AGENT_RUN_PRIVILEGED') === 'true',
    pidHost: goTrue(get('ECS_AGENT_PID_NAMESPACE_HOST')),
  };
}

function parseStringMap(raw: string): Record<string, string> | undefined {
  try {
    const v = JSON.parse(raw) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    if (!Object.values(v).every((x) => typeof x === 'string')) return undefined;
    return v as Record<string, string>;
  } catch {
    return undefined;
  }
}

/** ecs-init's agent image cache: /var/cache/ecs/state says 1 (cached) or 2 (reload needed). */
export type CacheStatus = 'uncached' | 'cached' | 'reload-needed';

export function cacheStatus(stateText: string | undefined, tarballPresent: boolean): CacheStatus {
  if (!tarballPresent || !stateText || stateText.trim() === '') return 'uncached';
  const n = stateText.trim();
  if (n === '2') return 'reload-needed';
  if (n === '1') return 'cached';
  return 'uncached';
}

/** How to get the agent image, as ecs-init decides (with a registry pull where it would download from S3). */
export function planAgentImage(imagePresent: boolean, cache: CacheStatus): 'use' | 'load' | 'pull' {
  if (cache === 'reload-needed') return 'load';
  if (imagePresent) return 'use';
  return cache === 'cached' ? 'load' : 'pull';
}
