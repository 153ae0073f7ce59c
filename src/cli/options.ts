/**
 * Configuration → the options each component takes: every unit conversion (seconds → ms) and default
 * that is not the configuration's own happens here, once.
 */
import type { Config } from '../config.js';
import type { LifecycleOptions } from '../lifecycle/lifecycle.js';
import { heartbeatIntervalMs } from '../lifecycle/lifecycle-plan.js';
import type { RetryOptions } from '../retry.js';
import type { ProbeArch } from '../runtime/probe-image.js';
import { runtimeEntryPath } from '../runtime/runtime-entry.js';
import type { WatchOptions } from '../watch/watch-loop.js';

/** What systemd tells a service through its environment (read by main, the one reader of process.env). */
export interface ServiceEnv {
  notifySocket?: string;
  /** systemd's watchdog period, when armed for this process. */
  watchdogUsec?: number;
}

/** AWS calls: retried with jittered backoff (ECS inside the budget). */
export const AWS_RETRY: RetryOptions = { retries: 3, minMs: 2_000, maxMs: 30_000 };
/** An ECS call waits at most this long for a slot under the hourly ceiling; past it the watch asks later. */
export const MAX_BUDGET_WAIT_MS = 60_000;
/** watch.json is rewritten at least this often; older than three of these means `run` is not running. */
export const HEARTBEAT_MS = 30_000;
/** A new instance may answer 404 for its target lifecycle state for a while; then the agent starts anyway. */
export const TARGET_STATE_WAIT_MS = 120_000;

export function lifecycleEnabled(cfg: Config): boolean {
  return cfg.LAUNCH_HOOK !== undefined || cfg.TERMINATE_HOOK !== undefined || cfg.SPOT_DRAIN === true;
}

/** A spot notice ends the instance in two minutes: drain by default whenever the lifecycle is watched. */
export function spotDrain(cfg: Config): boolean {
  return cfg.SPOT_DRAIN ?? lifecycleEnabled(cfg);
}

export function runtimeOptions(cfg: Config) {
  return {
    daemonJson: cfg.DAEMON_JSON,
    // daemon.json names the entry point, which picks the network stack per container and runs runsc.
    desired: { name: cfg.RUNTIME_NAME, path: runtimeEntryPath(cfg.STATE_DIR, cfg.RUNTIME_NAME), runtimeArgs: cfg.RUNSC_ARGS },
    entry: { runscPath: cfg.RUNSC_PATH, policy: cfg.NETWORK_POLICY },
    replaceDefaultRuntime: cfg.REPLACE_DEFAULT_RUNTIME,
  };
}

export function reloaderOptions(cfg: Config) {
  return { pidfile: cfg.DOCKER_PIDFILE, unit: cfg.DOCKER_UNIT, timeoutMs: cfg.RELOAD_TIMEOUT_SECONDS * 1000 };
}

export function proverOptions(cfg: Config, arch: ProbeArch) {
  return { image: cfg.PROBE_IMAGE, timeoutMs: cfg.PROBE_TIMEOUT_SECONDS * 1000, arch, runscPath: cfg.RUNSC_PATH };
}

/** How long bootstrap and rollback wait for another command's host lock. */
export function lockWaitMs(cfg: Config): number {
  return cfg.LOCK_TIMEOUT_SECONDS * 1000;
}

/** How long the agent `bootstrap` started must keep running. */
export function agentSettleMs(cfg: Config): number {
  return cfg.AGENT_SETTLE_SECONDS * 1000;
}

export function agentOptions(cfg: Config) {
  return {
    image: cfg.AGENT_IMAGE,
    dockerHost: cfg.DOCKER_HOST,
    ecsConfig: cfg.ECS_CONFIG,
    instanceConfig: cfg.ECS_INSTANCE_CONFIG,
    cacheDir: cfg.AGENT_CACHE_DIR,
    pullRetries: cfg.AGENT_PULL_RETRIES,
    replaceSettleMs: agentSettleMs(cfg),
  };
}

export function lifecycleOptions(cfg: Config): LifecycleOptions {
  return {
    launchHook: cfg.LAUNCH_HOOK,
    terminateHook: cfg.TERMINATE_HOOK,
    spotDrain: spotDrain(cfg),
    heartbeatMs: heartbeatIntervalMs(cfg.LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS),
    launchTimeoutMs: cfg.LAUNCH_TIMEOUT_SECONDS * 1000,
    drainTimeoutMs: cfg.DRAIN_TIMEOUT_SECONDS * 1000,
    region: cfg.AWS_REGION,
    group: cfg.ASG_NAME,
    pollMs: cfg.LIFECYCLE_POLL_SECONDS * 1000,
  };
}

export function watchOptions(cfg: Config, service: ServiceEnv, supervisorStallMs?: number): WatchOptions {
  return {
    runtimeName: cfg.RUNTIME_NAME,
    region: cfg.AWS_REGION,
    budget: {
      callsPerHour: cfg.ECS_CALLS_PER_HOUR,
      maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR,
      alertPollMs: cfg.ECS_ALERT_POLL_SECONDS * 1000,
      heartbeatMs: cfg.ECS_HEARTBEAT_MINUTES * 60_000,
      firstPollSpreadMs: cfg.ECS_FIRST_POLL_SPREAD_SECONDS * 1000,
      acsGraceMs: cfg.ACS_GRACE_SECONDS * 1000,
    },
    introspectMs: cfg.INTROSPECTION_SECONDS * 1000,
    driftMs: cfg.DRIFT_CHECK_SECONDS * 1000,
    auditMs: cfg.AUDIT_INTERVAL_SECONDS * 1000,
    auditAction: cfg.AUDIT_ACTION,
    hygiene: cfg.HYGIENE_VIOLATIONS,
    healing: {
      unhealthyMs: cfg.UNHEALTHY_SECONDS * 1000,
      maxRestarts: cfg.HEAL_MAX_RESTARTS,
      windowMs: cfg.HEAL_WINDOW_SECONDS * 1000,
      setInstanceHealth: cfg.SET_INSTANCE_HEALTH,
    },
    publishAttributes: cfg.PUBLISH_ATTRIBUTES,
    // Ping at half of systemd's WatchdogSec.
    watchdogMs: service.watchdogUsec ? Math.max(1000, Math.floor(service.watchdogUsec / 2000)) : undefined,
    supervisorStallMs,
    heartbeatMs: HEARTBEAT_MS,
  };
}
