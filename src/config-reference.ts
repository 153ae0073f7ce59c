/**
 * What each configuration key is for, by group: the one source of docs/configuration.md (scripts/docs.mjs
 * writes it; a unit test fails when the two differ) and of `ecs-gvisor --help`'s list of keys. Defaults
 * come from the schema itself (config.ts), so neither can drift from what the code does; `unset` says
 * what an optional key means when it is not set.
 */

import type { ConfigKey } from './config.js';
import { PREFIX } from './config-defaults.js';

export const CONFIG_GROUPS = {
  docker: 'Docker and the runtime',
  agent: 'The ECS agent and ecs-init',
  host: 'The host',
  ecs: 'ECS and the watch',
  audit: 'The sandbox audit',
  healing: 'Healing',
  lifecycle: 'Auto Scaling lifecycle hooks',
} as const;

export interface KeyDoc {
  group: keyof typeof CONFIG_GROUPS;
  /** One line: what it does, what values it takes. Markdown. */
  meaning: string;
  /** For a key with no default: what not setting it means. */
  unset?: string;
}

export const CONFIG_REFERENCE: Record<ConfigKey, KeyDoc> = {
  DOCKER_HOST: { group: 'docker', meaning: 'Docker API (`unix:///path` or `tcp://host:port`)' },
  DAEMON_JSON: { group: 'docker', meaning: 'the file to merge into (must be the one dockerd reads)' },
  DOCKER_PIDFILE: { group: 'docker', meaning: "dockerd's PID, for `SIGHUP` when docker.service is not under systemd" },
  DOCKER_UNIT: { group: 'docker', meaning: "Docker's systemd unit, reloaded when it runs that dockerd" },
  RUNTIME_NAME: { group: 'docker', meaning: 'runtime name in daemon.json (not `runc` or `io.containerd.*`)' },
  RUNSC_PATH: {
    group: 'docker',
    meaning:
      'runsc binary (letters, digits and `_./:@%+=,-` only: the runtime entry point names it unquoted, so anything else is refused here, exit 2)',
  },
  RUNSC_ARGS: { group: 'docker', meaning: 'space-separated `runtimeArgs`, each starting with `--`' },
  RUNSC_SOURCE: { group: 'docker', meaning: 'install runsc from this URL or absolute path (binary or tarball)', unset: '(none)' },
  RUNSC_SHA512: {
    group: 'docker',
    meaning: 'pinned SHA-512 of the source (required for `http://`); else `<source>.sha512` is used',
    unset: '(none)',
  },
  PROBE_IMAGE: {
    group: 'docker',
    meaning:
      'image that proves the sandbox; the default is built on the host. An image reference as Docker reads it (`[registry[:port]/]name[:tag][@sha256:<64 hex>]`), checked here (exit 2)',
  },
  PROBE_TIMEOUT_SECONDS: { group: 'docker', meaning: 'how long the probe may take to show a sandbox' },
  RELOAD_TIMEOUT_SECONDS: { group: 'docker', meaning: 'how long dockerd may take to apply a reload' },
  REPLACE_DEFAULT_RUNTIME: { group: 'docker', meaning: 'replace a `default-runtime` other than runc that daemon.json already sets' },
  NETWORK_POLICY: {
    group: 'docker',
    meaning:
      "gVisor's network stack per container: `auto` (netstack for a namespace of its own, passthrough for a joined one or the host's), `passthrough`, `sandbox` ([Network modes](network-modes.md))",
  },
  AGENT_IMAGE: { group: 'agent', meaning: 'agent image (an image reference, as above)' },
  ECS_CONFIG: { group: 'agent', meaning: "the agent's config file" },
  ECS_INSTANCE_CONFIG: { group: 'agent', meaning: 'the instance config ecs-init reads first' },
  AGENT_CACHE_DIR: { group: 'agent', meaning: "ecs-init's image cache (`ecs-agent.tar`, `state`, `desired-image`)" },
  AGENT_PULL_RETRIES: { group: 'agent', meaning: 'retries of an agent image pull (0–20)' },
  AGENT_SETTLE_SECONDS: {
    group: 'agent',
    meaning: '`bootstrap` converged only when the agent still runs this long after its start (0–300; 0: no wait)',
  },
  ECS_INIT_UNIT: { group: 'agent', meaning: "ecs-init's systemd unit" },
  MASK_ECS_INIT: { group: 'agent', meaning: "mask ecs-init's unit as well as stopping and disabling it" },
  INTROSPECTION_URL: { group: 'agent', meaning: "the agent's introspection API" },
  AGENT_LOG_FILE: { group: 'agent', meaning: "the agent's log on the host, read for its ACS connection (root's, written by no one else)" },
  STATE_DIR: { group: 'host', meaning: 'backups and state' },
  LOCK_TIMEOUT_SECONDS: {
    group: 'host',
    meaning:
      "how long `bootstrap`, `run`'s bootstrap and `rollback` wait for another ecs-gvisor command to release the host lock (then exit 4)",
  },
  BLOCK_TASK_IMDS: { group: 'host', meaning: 'keep bridge-mode tasks from instance metadata' },
  IPTABLES: { group: 'host', meaning: 'the iptables program' },
  IMDS_URL: { group: 'host', meaning: 'instance metadata base URL (lifecycle; tests point it at 127.0.0.1)' },
  LOG_LEVEL: { group: 'host', meaning: '`trace` … `fatal`, or `silent`' },
  AWS_REGION: {
    group: 'ecs',
    meaning: "region for AWS calls; default: the container instance ARN's (ECS), IMDS `placement/region` (lifecycle)",
    unset: "(the ARN's)",
  },
  ECS_CALLS_PER_HOUR: {
    group: 'ecs',
    meaning: "`DescribeContainerInstances` calls per hour while the agent's ACS connection cannot be seen on the instance",
  },
  ECS_MAX_CALLS_PER_HOUR: { group: 'ecs', meaning: 'ceiling on all ECS calls in any rolling hour (≥ the above)' },
  ECS_ALERT_POLL_SECONDS: { group: 'ecs', meaning: 'poll interval while something is wrong' },
  ECS_HEARTBEAT_MINUTES: {
    group: 'ecs',
    meaning: 'with that connection seen on the instance, ECS is asked this often (±25 %), besides at registration and to confirm a loss',
  },
  ECS_FIRST_POLL_SPREAD_SECONDS: {
    group: 'ecs',
    meaning:
      "a new registration's first poll comes within this many seconds (0–3600); 600 keeps a 2,000-instance scale-out under 5 reads/s, new instances then taking untrusted tasks 5 min later on average",
  },
  ACS_GRACE_SECONDS: {
    group: 'ecs',
    meaning: "how long the instance's evidence of a lost ACS connection must last before ECS is asked (1–3600)",
  },
  INTROSPECTION_SECONDS: { group: 'ecs', meaning: 'how often introspection and the agent container are looked at' },
  DRIFT_CHECK_SECONDS: { group: 'ecs', meaning: "how often daemon.json, Docker's default, runsc and the agent spec are checked" },
  PUBLISH_ATTRIBUTES: { group: 'ecs', meaning: 'publish `ecs-gvisor.sandbox` / `ecs-gvisor.runsc-version` on the container instance' },
  METRICS_PORT: { group: 'ecs', meaning: 'serve Prometheus metrics on `METRICS_ADDRESS:PORT` at `/metrics`', unset: '(off)' },
  METRICS_ADDRESS: {
    group: 'ecs',
    meaning: 'the address the metrics port listens on; anything but loopback needs a firewall that admits only your collector',
  },
  METRICS_TEXTFILE: {
    group: 'ecs',
    meaning:
      "also write the metrics every 15 s to this `*.prom` file for node_exporter's textfile collector (atomically; its directory must be root's and writable by no one else)",
    unset: '(off)',
  },
  AUDIT_INTERVAL_SECONDS: { group: 'audit', meaning: 'how often every running container is audited (also on each start)' },
  AUDIT_ACTION: { group: 'audit', meaning: '`report` or `stop` containers running outside gVisor' },
  HYGIENE_VIOLATIONS: {
    group: 'audit',
    meaning:
      'hygiene findings that are violations: any of `root`, `writable-host-mounts`, `privileged`, `capabilities` (comma list); the rest are reported',
  },
  UNHEALTHY_SECONDS: { group: 'healing', meaning: 'how long the agent may be wrong before it is restarted' },
  HEAL_MAX_RESTARTS: { group: 'healing', meaning: 'restarts within the window before escalating (0–100)' },
  HEAL_WINDOW_SECONDS: { group: 'healing', meaning: 'the window for the above' },
  SET_INSTANCE_HEALTH: { group: 'healing', meaning: 'escalate to Auto Scaling `SetInstanceHealth Unhealthy`' },
  LAUNCH_HOOK: { group: 'lifecycle', meaning: 'launch lifecycle hook to complete (launch gate, warm pools)', unset: '(none)' },
  TERMINATE_HOOK: { group: 'lifecycle', meaning: 'terminate lifecycle hook to complete after draining', unset: '(none)' },
  ASG_NAME: {
    group: 'lifecycle',
    meaning: 'the Auto Scaling group; default: its `aws:autoscaling:groupName` tag',
    unset: "(the instance's tag)",
  },
  LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: {
    group: 'lifecycle',
    meaning: "the hooks' `HeartbeatTimeout` (30–7200); heartbeats every third of it",
  },
  LAUNCH_TIMEOUT_SECONDS: { group: 'lifecycle', meaning: 'not verified and registered by then → `ABANDON`' },
  DRAIN_TIMEOUT_SECONDS: { group: 'lifecycle', meaning: 'a drain longer than this completes the terminate hook anyway' },
  SPOT_DRAIN: {
    group: 'lifecycle',
    meaning: 'drain at once on a spot interruption notice; `true` alone turns the lifecycle watch on',
    unset: '(on with a hook)',
  },
  LIFECYCLE_POLL_SECONDS: { group: 'lifecycle', meaning: 'how often IMDS is asked for the target lifecycle state (and spot notices)' },
};

/** A default as the reference shows it: from the schema, or what not setting the key means. */
function defaultText(key: ConfigKey, value: unknown): string {
  if (value === undefined) return CONFIG_REFERENCE[key].unset ?? '(none)';
  if (value === '') return '(empty)';
  if (Array.isArray(value)) return value.length ? `\`${value.join(',')}\`` : key === 'RUNSC_ARGS' ? '(empty)' : '(none)';
  return `\`${String(value)}\``;
}

/** `--help`'s list of keys, by group: name, default and meaning, as plain text. */
export function keysHelp(defaults: Readonly<Partial<Record<ConfigKey, unknown>>>): string {
  const plain = (s: string) => s.replace(/`/g, '').replace(/\[([^\]]+)\]\([^)]+\)/g, '$1');
  const out: string[] = [];
  for (const [group, title] of Object.entries(CONFIG_GROUPS)) {
    out.push(`\n${title}:`);
    for (const [key, doc] of Object.entries(CONFIG_REFERENCE) as Array<[ConfigKey, KeyDoc]>) {
      if (doc.group !== group) continue;
      out.push(`  ${PREFIX}${key} (default ${plain(defaultText(key, defaults[key]))})`, `      ${plain(doc.meaning)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/** docs/configuration.md, whole. */
export function configurationDoc(defaults: Readonly<Partial<Record<ConfigKey, unknown>>>): string {
  const out = [
    '# Configuration',
    '',
    '<!-- Generated from src/config-reference.ts and the schema in src/config.ts by `npm run docs`; a unit test fails when this file and they differ. -->',
    '',
    '`KEY=VALUE` lines in `/etc/ecs/ecs-gvisor.config` (or the file named by the environment variable',
    '`ECS_GVISOR_CONFIG`), overridden by environment variables of the same names. Blank lines and lines',
    'starting with `#` are skipped. The unit hands the same file to systemd (`EnvironmentFile=`), which reads',
    'quotes, backslashes and `;` comments its own way: so values are written bare (spaces are fine, no quotes',
    'or backslashes) and comments start with `#`; anything else is refused, never read two ways. The file',
    'must be a regular file of at most 4 MiB.',
    '',
    'An unknown key in the file, or an invalid value anywhere, stops every command with exit 2 and one',
    'sentence naming the file (or `environment`), the key and the value. An unknown `ECS_GVISOR_*` variable',
    'in the environment is a warning (with the key it most resembles), and a problem for',
    '`ecs-gvisor check-config`, which lists every problem of the file, the environment and the host at once.',
    '',
  ];
  for (const [group, title] of Object.entries(CONFIG_GROUPS)) {
    out.push(`## ${title}`, '', '| key | default | meaning |', '|---|---|---|');
    for (const [key, doc] of Object.entries(CONFIG_REFERENCE) as Array<[ConfigKey, KeyDoc]>) {
      if (doc.group === group) out.push(`| \`${PREFIX}${key}\` | ${defaultText(key, defaults[key])} | ${doc.meaning} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
