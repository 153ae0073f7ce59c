/**
 * ecs-gvisor configuration: `KEY=VALUE` lines in /etc/ecs/ecs-gvisor.config (ECS_GVISOR_CONFIG overrides
 * the path), overridden by process environment variables of the same names. Parsed once, validated with
 * zod, frozen. This module is pure: the caller reads the file and passes the environment.
 */
import { isIP } from 'node:net';
// A namespace import lets the bundler drop what is unused (the named `z` export pulls in every locale).
import * as z from 'zod';
import { DEFAULT_DOCKER_HOST, PREFIX } from './config-defaults.js';
import { EcsGvisorError } from './errors.js';
import { SH_SAFE } from './runtime/runtime-entry.js';

// Each schema here parses once per process: compiling zod's fast path for it costs more than it saves.
z.config({ jitless: true });

export const DEFAULT_CONFIG_PATH = '/etc/ecs/ecs-gvisor.config';
export { PREFIX };
/** The probe image ecs-gvisor builds itself when missing (no registry needed); see runtime/probe-image.ts. */
export const BUILTIN_PROBE_IMAGE = 'ecs-gvisor/probe:1';
/** Workload hygiene findings the audit reports for each task (ECS_GVISOR_HYGIENE_VIOLATIONS makes some violations). */
export const HYGIENE_ITEMS = ['root', 'writable-host-mounts', 'privileged', 'capabilities'] as const;
export type HygieneItem = (typeof HYGIENE_ITEMS)[number];

const absolutePath = z.string().regex(/^\//, 'must be an absolute path');
const bool = z
  .string()
  .regex(/^(true|false|1|0|yes|no)$/i, 'must be true or false')
  .transform((v) => /^(true|1|yes)$/i.test(v));
const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(max, `must be at most ${max}`));
/** 0 allowed: a count of retries or restarts. */
const wholeNumber = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().max(max, `must be at most ${max}`));
/** Auto Scaling's pattern for lifecycle hook names. */
const hookName = z.string().regex(/^[A-Za-z0-9\-_/]{1,255}$/, 'must be a lifecycle hook name (letters, digits, "-", "_", "/")');
const httpUrl = z.string().regex(/^https?:\/\/[^\s/]+/, 'must be an http:// or https:// URL');
/** Docker's image reference grammar: [registry[:port]/]name[:tag][@digest], so Docker never refuses it later. */
const IMAGE_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IMAGE_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const IMAGE_REFERENCE = new RegExp(
  `^(?:${IMAGE_LABEL}(?:\\.${IMAGE_LABEL})*(?::[0-9]+)?/)?${IMAGE_COMPONENT}(?:/${IMAGE_COMPONENT})*` +
    '(?::\\w[\\w.-]{0,127})?(?:@(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}))?$',
);
const imageReference = z
  .string()
  .max(255, 'must be an image reference of at most 255 characters')
  .regex(IMAGE_REFERENCE, 'must be an image reference (name[:tag][@sha256:<64 hex digits>])');

/** Keys, defaults and validation. Values arrive as strings (from the file or the environment). */
const schema = z.object({
  DOCKER_HOST: z
    .string()
    .regex(/^(unix:\/\/\/.+|tcp:\/\/[^\s/]+:[0-9]+|https?:\/\/[^\s/]+:[0-9]+)$/, 'must be unix:///path or tcp://host:port')
    .default(DEFAULT_DOCKER_HOST),
  DAEMON_JSON: absolutePath.default('/etc/docker/daemon.json'),
  DOCKER_PIDFILE: absolutePath.default('/var/run/docker.pid'),
  DOCKER_UNIT: z
    .string()
    .regex(/^[A-Za-z0-9@_.:-]+$/, 'must be a systemd unit name')
    .default('docker.service'),
  RUNTIME_NAME: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be a runtime name of letters, digits, ".", "_" or "-"')
    .refine((v) => v !== 'runc' && !v.startsWith('io.containerd.'), 'must not name one of Docker’s built-in runtimes')
    .default('runsc'),
  RUNSC_PATH: absolutePath
    .regex(SH_SAFE, 'has characters the runtime entry point cannot use (letters, digits and _./:@%+=,- only)')
    .default('/usr/local/bin/runsc'),
  RUNSC_ARGS: z
    .string()
    .refine(
      (v) =>
        v.trim() === '' ||
        v
          .trim()
          .split(/\s+/)
          .every((a) => a.startsWith('--')),
      'must be flags that each start with "--"',
    )
    .default(''),
  /** Optional: install runsc from this http(s) URL or absolute path (a runsc binary or a release tarball). */
  RUNSC_SOURCE: z
    .string()
    .regex(/^(https?:\/\/[^\s]+|\/[^\s]*)$/, 'must be an http(s) URL or an absolute path')
    .optional(),
  /**
   * Pinned SHA-512 of RUNSC_SOURCE: required for http:// (whoever answers plain HTTP would also choose
   * the checksum); for https:// and local paths `<source>.sha512` is used when it is unset.
   */
  RUNSC_SHA512: z
    .string()
    .regex(/^[0-9a-fA-F]{128}$/, 'must be 128 hexadecimal digits')
    .transform((v) => v.toLowerCase())
    .optional(),
  PROBE_IMAGE: imageReference.default(BUILTIN_PROBE_IMAGE),
  PROBE_TIMEOUT_SECONDS: positiveInt(600).default(60),
  RELOAD_TIMEOUT_SECONDS: positiveInt(600).default(20),
  /** Replace a default-runtime other than runc that the operator set in daemon.json. */
  REPLACE_DEFAULT_RUNTIME: bool.default(false),
  /** gVisor's network stack per container: auto (netstack unless it joins another's or the host's namespace), passthrough, sandbox. */
  NETWORK_POLICY: z.enum(['auto', 'passthrough', 'sandbox'], { message: 'must be auto, passthrough or sandbox' }).default('auto'),
  STATE_DIR: absolutePath.default('/var/lib/ecs-gvisor'),
  ECS_CONFIG: absolutePath.default('/etc/ecs/ecs.config'),
  /** The instance config ecs-init reads before ECS_CONFIG (Amazon's per-instance settings). */
  ECS_INSTANCE_CONFIG: absolutePath.default('/var/lib/ecs/ecs.config'),
  /** ecs-init's agent image cache: ecs-agent.tar and its state file. */
  AGENT_CACHE_DIR: absolutePath.default('/var/cache/ecs'),
  AGENT_PULL_RETRIES: wholeNumber(20).default(4),
  /** `bootstrap` converged only once the agent it started is still running this long later (0: don't wait). */
  AGENT_SETTLE_SECONDS: wholeNumber(300).default(5),
  /** How long bootstrap and rollback wait for another ecs-gvisor command to give the host lock back. */
  LOCK_TIMEOUT_SECONDS: positiveInt(3600).default(600),
  /** Keep bridge-mode task containers from instance metadata (169.254.169.254). */
  BLOCK_TASK_IMDS: bool.default(true),
  IPTABLES: z
    .string()
    .regex(/^[^\s]+$/, 'must be a program name or path')
    .default('iptables'),
  /** Mask ecs-init's unit as well as stopping and disabling it (nothing can start it again). */
  MASK_ECS_INIT: bool.default(true),
  ECS_INIT_UNIT: z
    .string()
    .regex(/^[A-Za-z0-9@_.:-]+$/, 'must be a systemd unit name')
    .default('ecs.service'),
  AGENT_IMAGE: imageReference.default('amazon/amazon-ecs-agent:latest'),
  IMDS_URL: httpUrl.default('http://169.254.169.254'),
  /** The agent's introspection API (it listens on the host's loopback once registered). */
  INTROSPECTION_URL: httpUrl.default('http://127.0.0.1:51678'),
  /** Region for ECS and Auto Scaling calls; default: the one in the container instance ARN. */
  AWS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-[0-9]+$/, 'must be an AWS region such as us-east-1')
    .optional(),
  /** Steady-state DescribeContainerInstances calls per hour (the fleet shares 20 per second). */
  ECS_CALLS_PER_HOUR: positiveInt(3600).default(12),
  /** Ceiling on every ECS call of this instance in any rolling hour (retries and attributes included). */
  ECS_MAX_CALLS_PER_HOUR: positiveInt(3600).default(60),
  /** Poll interval while something is wrong (bounded by the ceiling above). */
  ECS_ALERT_POLL_SECONDS: positiveInt(3600).default(60),
  /**
   * While the agent's ACS connection is seen on the instance (its log and the kernel), ECS is asked only
   * this often (±25 %), besides at registration and when that evidence changes.
   */
  ECS_HEARTBEAT_MINUTES: positiveInt(10_080).default(720),
  /**
   * The first poll of a registration comes within this many seconds (uniformly spread). Longer spreads a
   * fleet's scale-out over the shared read budget, at the cost of new instances taking untrusted tasks later.
   */
  ECS_FIRST_POLL_SPREAD_SECONDS: wholeNumber(3600).default(10),
  /** How long the instance's own evidence of a lost ACS connection must last before ECS is asked to confirm it. */
  ACS_GRACE_SECONDS: positiveInt(3600).default(30),
  /** The agent's log on the host (ecs-init mounts /var/log/ecs as its /log): read for its ACS connection. */
  AGENT_LOG_FILE: absolutePath.default('/var/log/ecs/ecs-agent.log'),
  INTROSPECTION_SECONDS: positiveInt(3600).default(15),
  DRIFT_CHECK_SECONDS: positiveInt(86_400).default(60),
  AUDIT_INTERVAL_SECONDS: positiveInt(86_400).default(60),
  /** What the sandbox audit does with a container running outside gVisor. */
  AUDIT_ACTION: z.enum(['report', 'stop'], { message: 'must be report or stop' }).default('report'),
  /** The workload hygiene findings that count as violations (the rest are only reported). */
  HYGIENE_VIOLATIONS: z
    .string()
    .refine(
      (v) => v.split(',').every((i) => i.trim() === '' || (HYGIENE_ITEMS as readonly string[]).includes(i.trim())),
      `must be a comma-separated list of ${HYGIENE_ITEMS.join(', ')}`,
    )
    .transform((v) =>
      Object.freeze(
        v
          .split(',')
          .map((i) => i.trim())
          .filter(Boolean) as HygieneItem[],
      ),
    )
    .default([]),
  /** How long the agent may be unregistered, disconnected or impaired before it is restarted. */
  UNHEALTHY_SECONDS: positiveInt(86_400).default(300),
  HEAL_MAX_RESTARTS: wholeNumber(100).default(3),
  HEAL_WINDOW_SECONDS: positiveInt(604_800).default(3600),
  /** After HEAL_MAX_RESTARTS in the window, mark the instance Unhealthy in Auto Scaling (replaced). */
  SET_INSTANCE_HEALTH: bool.default(false),
  /** Publish ecs-gvisor.sandbox / ecs-gvisor.runsc-version attributes on the container instance. */
  PUBLISH_ATTRIBUTES: bool.default(true),
  /**
   * Auto Scaling lifecycle hooks, from the instance (IMDSv2). The lifecycle watch runs when a hook is
   * named or SPOT_DRAIN=true; otherwise ecs-gvisor never asks IMDS about lifecycle.
   */
  LAUNCH_HOOK: hookName.optional(),
  TERMINATE_HOOK: hookName.optional(),
  /** The instance's Auto Scaling group; default: its aws:autoscaling:groupName tag (IMDS, then EC2). */
  ASG_NAME: z
    .string()
    .regex(/^[^\s:]{1,255}$/, 'must be an Auto Scaling group name')
    .optional(),
  /** The hooks' HeartbeatTimeout: heartbeats go out every third of it while an action waits. */
  LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: positiveInt(7200)
    .pipe(z.number().min(30, 'must be at least 30 (Auto Scaling’s minimum)'))
    .default(3600),
  /** Launch: not verified and registered after this long → ABANDON (the group replaces the instance). */
  LAUNCH_TIMEOUT_SECONDS: positiveInt(172_800).default(1800),
  /** Terminate: a drain still running after this long completes the hook anyway, and says so. */
  DRAIN_TIMEOUT_SECONDS: positiveInt(172_800).default(1800),
  /** Drain at once on a spot interruption notice (the two-minute warning); default: on with a hook. */
  SPOT_DRAIN: bool.optional(),
  /** How often IMDS is asked for the target lifecycle state and spot notices (local, no API budget). */
  LIFECYCLE_POLL_SECONDS: positiveInt(300).default(5),
  /** Serve Prometheus metrics on METRICS_ADDRESS:PORT (off when unset). */
  METRICS_PORT: positiveInt(65_535).optional(),
  /** The address the metrics port listens on: loopback unless an operator opens it to a collector. */
  METRICS_ADDRESS: z
    .string()
    .refine((v) => isIP(v) !== 0, 'must be an IP address of this host (127.0.0.1, 0.0.0.0, ::, or one of its own)')
    .default('127.0.0.1'),
  /** Also write the metrics to this file for node_exporter's textfile collector (off when unset). */
  METRICS_TEXTFILE: absolutePath.regex(/\.prom$/, "must end in .prom (node_exporter's textfile collector reads only those)").optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

type Raw = z.infer<typeof schema>;
/** A configuration key, without the ECS_GVISOR_ prefix. */
export type ConfigKey = keyof Raw;
export type Config = Readonly<
  Omit<Raw, 'RUNSC_ARGS'> & {
    RUNSC_ARGS: readonly string[];
    /** Where the configuration file was looked for, and whether it existed. */
    CONFIG_FILE: string;
    CONFIG_FILE_FOUND: boolean;
  }
>;

const KNOWN = new Set(Object.keys(schema.shape));
/** Keys that steer where the config comes from; valid in the environment, not in the file. */
const ENV_ONLY = new Set(['CONFIG']);

export interface ConfigSource {
  /** Text of the config file, or undefined when it does not exist. */
  fileText: string | undefined;
  filePath: string;
  env: Readonly<Record<string, string | undefined>>;
}

/** Every key's default (undefined: none), as the schema gives it. */
export function configDefaults(): Readonly<Partial<Record<ConfigKey, unknown>>> {
  return schema.parse({});
}

/** Where to look for the config file. */
export function configPath(env: Readonly<Record<string, string | undefined>>): string {
  return env[`${PREFIX}CONFIG`] || DEFAULT_CONFIG_PATH;
}

/** Parse and validate. Throws CONFIG_INVALID naming the file (or environment), key and value (the first problem). */
export function parseConfig(src: ConfigSource): Config {
  const r = checkConfig(src);
  if (!r.config) throw invalid(r.problems[0]!);
  return r.config;
}

export interface ConfigCheck {
  /** The configuration, when there is no problem. */
  config?: Config;
  /** Every problem, each one sentence naming the file (or environment), key and value. */
  problems: string[];
  /** ECS_GVISOR_* variables in the environment that are no key: ignored by the commands, refused by check-config. */
  unknownEnv: string[];
}

/** Every problem of the file and the environment at once (`check-config`); parseConfig stops at the first. */
export function checkConfig(src: ConfigSource): ConfigCheck {
  const values: Record<string, string> = {};
  const origin: Record<string, string> = {};
  const problems: string[] = [];

  if (src.fileText !== undefined) {
    src.fileText.split(/\r?\n/).forEach((rawLine, i) => {
      const problem = fileLine(src.filePath, rawLine, i + 1, values, origin);
      if (problem) problems.push(problem);
    });
  }

  const unknownEnv: string[] = [];
  for (const [key, value] of Object.entries(src.env)) {
    if (!key.startsWith(PREFIX) || value === undefined) continue;
    const short = key.slice(PREFIX.length);
    if (ENV_ONLY.has(short)) continue;
    if (!KNOWN.has(short)) {
      unknownEnv.push(`environment: ${key} is no ecs-gvisor setting${didYouMean(short)}; it is ignored.`);
      continue;
    }
    values[short] = value;
    origin[short] = 'environment';
  }

  // An empty value means "use the default" except where empty is itself meaningful.
  for (const [k, v] of Object.entries(values)) if (v === '' && k !== 'RUNSC_ARGS') delete values[k];

  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '');
      const where = origin[key] ?? 'configuration';
      problems.push(`${where}: ${PREFIX}${key}="${clip(values[key] ?? '')}" ${issue.message}.`);
    }
    return { problems, unknownEnv };
  }
  const cfg = parsed.data;
  if (cfg.ECS_MAX_CALLS_PER_HOUR < cfg.ECS_CALLS_PER_HOUR) {
    const key = 'ECS_MAX_CALLS_PER_HOUR';
    problems.push(
      `${origin[key] ?? origin.ECS_CALLS_PER_HOUR ?? 'configuration'}: ${PREFIX}${key}=${cfg.ECS_MAX_CALLS_PER_HOUR} must be at least ${PREFIX}ECS_CALLS_PER_HOUR=${cfg.ECS_CALLS_PER_HOUR}.`,
    );
  }
  if (cfg.RUNSC_SOURCE?.startsWith('http://') && cfg.RUNSC_SHA512 === undefined) {
    problems.push(
      `${origin.RUNSC_SOURCE}: ${PREFIX}RUNSC_SOURCE="${clip(cfg.RUNSC_SOURCE)}" is plain http:// and needs ${PREFIX}RUNSC_SHA512 (a checksum from the same server proves nothing).`,
    );
  }
  if (problems.length) return { problems, unknownEnv };
  const config = Object.freeze({
    ...cfg,
    RUNSC_ARGS: Object.freeze(cfg.RUNSC_ARGS.trim() === '' ? [] : cfg.RUNSC_ARGS.trim().split(/\s+/)),
    CONFIG_FILE: src.filePath,
    CONFIG_FILE_FOUND: src.fileText !== undefined,
  });
  return { config, problems, unknownEnv };
}

/** One line of the file into `values`; its problem, if it has one. */
function fileLine(
  file: string,
  rawLine: string,
  n: number,
  values: Record<string, string>,
  origin: Record<string, string>,
): string | undefined {
  const line = rawLine.trim();
  if (line === '' || line.startsWith('#')) return undefined;
  const where = `${file} line ${n}`;
  // systemd reads this file too (EnvironmentFile=): only the grammar both read alike is accepted.
  if (line.startsWith(';')) return `${where}: "${clip(line)}" is a ";" comment, which systemd skips and ecs-gvisor does not; use "#".`;
  if (/\\$/.test(line))
    return `${where}: "${clip(line)}" ends in a backslash, which systemd joins with the next line and ecs-gvisor does not.`;
  const eq = line.indexOf('=');
  if (eq <= 0) return `${where}: "${clip(line)}" is not a KEY=VALUE line.`;
  const key = line.slice(0, eq).trim();
  const value = line.slice(eq + 1).trim();
  const short = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : undefined;
  if (short === undefined || !KNOWN.has(short))
    return `${where}: unknown key ${key}${didYouMean(short ?? key)} (keys start with ${PREFIX}; see docs/configuration.md).`;
  if (/["'\\]/.test(value))
    return `${where}: ${key}=${clip(value)} has quotes or a backslash, which systemd removes and ecs-gvisor keeps; write the value bare (spaces are fine).`;
  values[short] = value;
  origin[short] = file;
  return undefined;
}

/** ` (did you mean ECS_GVISOR_X?)` for the closest key within a few edits, or nothing. */
function didYouMean(short: string): string {
  let best: { key: string; d: number } | undefined;
  for (const k of KNOWN) {
    const d = editDistance(short, k);
    if (d <= Math.max(2, Math.floor(k.length / 5)) && (!best || d < best.d)) best = { key: k, d };
  }
  return best ? ` (did you mean ${PREFIX}${best.key}?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function invalid(message: string): EcsGvisorError {
  return new EcsGvisorError('CONFIG_INVALID', message);
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
