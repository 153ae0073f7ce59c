/**
 * `status`'s reading: state files, Docker, the host and runsc, in parallel. Its own module, with the few
 * adapters it needs (statusSources), so `status` loads none of the steps, the watch or the AWS clients.
 */
import { DockerodeDocker } from '../adapters/dockerode-docker.js';
import type { EarlyDockerInfo } from '../adapters/early-docker-info.js';
import { ExecCommands } from '../adapters/exec-commands.js';
import { LinuxHost } from '../adapters/linux-host.js';
import { NodeFiles } from '../adapters/node-files.js';
import { SystemClock } from '../adapters/system-clock.js';
import { AGENT_NAME } from '../agent/agent-spec.js';
import { loadEcsConfigs } from '../agent/ecs-config.js';
import type { SupervisorState } from '../agent/supervisor.js';
import { HEARTBEAT_MS, lifecycleEnabled, spotDrain } from '../cli/options.js';
import type { Config } from '../config.js';
import { messageOf } from '../errors.js';
import type { LifecycleRecord } from '../lifecycle/lifecycle-plan.js';
import type { Clock, DockerPort, FilesPort, HostPort } from '../ports.js';
import { cachedRunscDetector, type RunscVersion, runscRecordIn } from '../runtime/runsc.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import { LIFECYCLE_STATE, METRICS_STATE, RUNTIME_STATE, SUPERVISOR_STATE, WATCH_STATE } from '../state-files.js';
import { StateStore } from '../state-store.js';
import { VERSION } from '../version.js';
import type { WatchSnapshot } from '../watch/watch-state.js';
import { buildStatus, type MetricsRecord, type StatusReport } from './status-report.js';

/** The longest `status` waits for each Docker call (they run side by side). */
export const STATUS_DOCKER_DEADLINE_MS = 4_000;

/** What `status` reads, built from the configuration (and /info, if the entry already asked for it). */
export function statusSources(cfg: Config, earlyInfo?: EarlyDockerInfo): StatusSources {
  const files = new NodeFiles();
  const state = new StateStore(files, cfg.STATE_DIR);
  return {
    state,
    // A person or a health check waits for status: a Docker that accepts and never answers costs seconds.
    docker: new DockerodeDocker(cfg.DOCKER_HOST, { earlyInfo, deadlineMs: STATUS_DOCKER_DEADLINE_MS }),
    host: new LinuxHost(),
    files,
    clock: new SystemClock(),
    // What run last asked of the binary, while it is the same file; status itself writes nothing.
    detectRunsc: cachedRunscDetector(files, new ExecCommands(), cfg.RUNSC_PATH, runscRecordIn(state, false)),
  };
}

export interface StatusSources {
  state: StateStore;
  docker: DockerPort;
  host: HostPort;
  files: FilesPort;
  clock: Clock;
  detectRunsc: () => Promise<RunscVersion>;
}

/** Everything `status` reports, read in parallel; nothing it reads can make it fail. */
export async function readStatus(d: StatusSources, cfg: Config): Promise<StatusReport> {
  const settle = <T, R>(p: Promise<T>, ok: (v: T) => R) => p.then(ok, (err: unknown) => ({ problem: messageOf(err) }));
  const [runtimeState, runsc, docker, watch, supervisor, container, lifecycle, metrics] = await Promise.all([
    d.state.read<RuntimeState>(RUNTIME_STATE),
    settle(d.detectRunsc(), (v) => ({ version: v.version })),
    settle(d.docker.info(), (info) => ({ info })),
    d.state.read<WatchSnapshot>(WATCH_STATE),
    d.state.read<SupervisorState>(SUPERVISOR_STATE),
    d.docker.inspectContainer(AGENT_NAME).catch(() => undefined),
    d.state.read<LifecycleRecord>(LIFECYCLE_STATE),
    d.state.read<MetricsRecord>(METRICS_STATE),
    // Only to learn the secrets to mask (before anything is printed): older state may still quote them.
    loadEcsConfigs(d.files, cfg.ECS_INSTANCE_CONFIG, cfg.ECS_CONFIG).catch(() => undefined),
  ]);
  const watchLive =
    watch !== undefined &&
    d.clock.now() - Date.parse(watch.updatedAt) < 3 * HEARTBEAT_MS &&
    (await d.host.cmdline(watch.pid).catch(() => undefined)) !== undefined;
  return buildStatus({
    version: VERSION,
    config: {
      runtimeName: cfg.RUNTIME_NAME,
      runscPath: cfg.RUNSC_PATH,
      networkPolicy: cfg.NETWORK_POLICY,
      lifecycle: {
        enabled: lifecycleEnabled(cfg),
        launchHook: cfg.LAUNCH_HOOK,
        terminateHook: cfg.TERMINATE_HOOK,
        spotDrain: spotDrain(cfg),
      },
      metricsPort: cfg.METRICS_PORT,
      metricsAddress: cfg.METRICS_ADDRESS,
      metricsTextfile: cfg.METRICS_TEXTFILE,
    },
    runtimeState,
    runsc,
    docker,
    watch,
    watchLive,
    supervisor,
    container,
    lifecycle,
    metrics,
  });
}
