/** Wiring: real adapters into the steps. */
import { AwsAutoScaling, AwsEc2, AwsEcs } from '../adapters/aws.js';
import { DockerodeDocker } from '../adapters/dockerode-docker.js';
import { ImdsV2 } from '../adapters/imds-v2.js';
import { writeConsoleLine } from '../adapters/console.js';
import { FlockHostLock } from '../adapters/host-lock.js';
import { startMetricsServer } from '../adapters/metrics-http.js';
import { SystemdNotify } from '../adapters/systemd-notify.js';
import { AGENT_NAME, ecsInitSwitches } from '../agent/agent-spec.js';
import { loadEcsConfigs } from '../agent/ecs-config.js';
import { AgentStep } from '../agent/agent-step.js';
import { AgentSupervisor, SUPERVISOR_STATE, type SupervisorState } from '../agent/supervisor.js';
import { EcsInitStep } from '../ecs-init/ecs-init-step.js';
import { NetworkStep } from '../network/network-step.js';
import { ExecCommands } from '../adapters/exec-commands.js';
import { FetchHttp } from '../adapters/fetch-http.js';
import { LinuxHost } from '../adapters/linux-host.js';
import { NodeFiles } from '../adapters/node-files.js';
import { SystemClock } from '../adapters/system-clock.js';
import { Systemctl } from '../adapters/systemctl.js';
import type { Config } from '../config.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import { BackupStore } from '../runtime/backup-store.js';
import { DockerReloader } from '../runtime/docker-reloader.js';
import { isProbeArch } from '../runtime/probe-image.js';
import { cachedRunscDetector } from '../runtime/runsc.js';
import { RunscInstaller } from '../runtime/runsc-install.js';
import { runtimeEntryPath } from '../runtime/runtime-entry.js';
import { RUNTIME_STATE, RuntimeStep, type RuntimeState } from '../runtime/runtime-step.js';
import { SandboxProver } from '../runtime/sandbox-proof.js';
import { StateStore } from '../state-store.js';
import type { Step } from './args.js';
import { VERSION } from '../version.js';
import type { AutoScalingPort, Clock, Ec2Port, EcsPort, HostLockPort, ServiceManagerPort } from '../ports.js';
import { heartbeatIntervalMs, type LifecycleRecord } from '../lifecycle/lifecycle-plan.js';
import { Lifecycle, LIFECYCLE_STATE } from '../lifecycle/lifecycle.js';
import { desiredAttributes, NETWORK_ATTRIBUTES, provenEcsModes, RUNSC_ATTRIBUTE, SANDBOX_ATTRIBUTE } from '../watch/attributes.js';
import { EcsCaller, regionOf, type RetryOptions } from '../watch/ecs-caller.js';
import { AgentIntrospection, introspectionListenerProblem, loopbackPort } from '../watch/introspection.js';
import { WatchMetrics } from '../watch/metrics.js';
import { WATCH_STATE, WatchLoop, type WatchSnapshot } from '../watch/watch-loop.js';

/** What systemd tells a service through its environment (read by main, the one reader of process.env). */
export interface ServiceEnv {
  notifySocket?: string;
  /** systemd's watchdog period, when armed for this process. */
  watchdogUsec?: number;
}

/** ECS calls: retried with jittered backoff inside the budget. */
export const ECS_RETRY = { retries: 3, minMs: 2_000, maxMs: 30_000 };
/** watch.json is rewritten at least this often; older than three of these means `run` is not running. */
export const HEARTBEAT_MS = 30_000;
/** A new instance may answer 404 for its target lifecycle state for a while; then the agent starts anyway. */
export const TARGET_STATE_WAIT_MS = 120_000;

export interface StatusReport {
  version: string;
  runtime: {
    name: string;
    runscPath: string;
    runscVersion?: string;
    runscProblem?: string;
    dockerDefaultRuntime?: string;
    dockerProblem?: string;
    registered: boolean;
    isDefault: boolean;
    /** Proven by a probe, and Docker's live default is still ours. */
    verified: boolean;
    verifiedAt?: string;
    evidence?: RuntimeState['evidence'];
    lastError?: RuntimeState['lastError'];
    /** ECS_GVISOR_NETWORK_POLICY, and the ECS network modes the last proof showed working here. */
    networkPolicy: string;
    networkModes: string[];
  };
  /** Sandbox verified, agent running and (while `run` watches) registered, connected and no audit violation. */
  healthy: boolean;
  summary: string;
  /** Docker's live view of the container, with the supervisor's restarts and holds. */
  agent: WatchSnapshot['agent'] & { container: string };
  registration: Partial<WatchSnapshot['registration']>;
  verdict?: WatchSnapshot['verdict'];
  healing?: WatchSnapshot['healing'];
  audit?: WatchSnapshot['audit'];
  attributes?: WatchSnapshot['attributes'];
  /** Whether `run` is watching (its watch.json is fresh and its process alive). */
  watch: { running: boolean; pid?: number; updatedAt?: string };
  /** Auto Scaling lifecycle: off unless a hook or spot draining is configured; the record of lifecycle.json. */
  lifecycle: { enabled: boolean; launchHook?: string; terminateHook?: string; spotDrain: boolean } & LifecycleRecord;
  /** ECS_GVISOR_METRICS_PORT's endpoint, when set: whether `run` serves it, and why not. */
  metrics?: { port: number; serving: boolean; problem?: string };
  /** Our network rules as `run` last checked them, and how often it put them back. */
  network?: WatchSnapshot['network'];
  lastErrors: WatchSnapshot['lastErrors'];
}

const METRICS_STATE = 'metrics.json';
interface MetricsRecord {
  port: number;
  serving: boolean;
  problem?: string;
  at: string;
}

export interface App {
  /**
   * Read every input the steps will need before any of them changes the host, so a bad one (an
   * unreadable ecs.config) fails with nothing written rather than halfway through.
   */
  checkInputs(steps: readonly Step[]): Promise<void>;
  /** systemd, for ecs-gvisor's own unit (rollback takes it down first). */
  services: ServiceManagerPort;
  ecsInit: EcsInitStep;
  runtime: RuntimeStep;
  network: NetworkStep;
  agent: AgentStep;
  supervisor: AgentSupervisor;
  clock: Clock;
  /** Auto Scaling lifecycle hooks and drains; undefined unless configured (no IMDS traffic then). */
  lifecycle?: Lifecycle;
  /** The host-wide lock of the commands that change the host, and how long they wait for it. */
  lock: HostLockPort;
  lockWaitMs: number;
  /** How long `run` waits for IMDS's target lifecycle state before starting the agent anyway. */
  targetStateWaitMs: number;
  /** The watch behind `run`, once bootstrap has verified the runtime; it keeps the network rules when `steps` applied them. */
  watch(runtime: RuntimeState | undefined, steps?: readonly Step[]): WatchLoop;
  metrics: WatchMetrics;
  /**
   * Before the runtime is rolled back: tell the scheduler this instance is no longer proven (the
   * attributes outlive us on the container instance). Returns whether there was anything to withdraw.
   */
  withdrawProof(): Promise<boolean>;
  /**
   * Serve metrics when ECS_GVISOR_METRICS_PORT is set; returns a closer. A port someone else holds is
   * logged and recorded for status, never fatal: the watch matters more than its figures.
   */
  startMetrics(): Promise<(() => Promise<void>) | undefined>;
  status(): Promise<StatusReport>;
}

/** Seams for simulations: a clock the caller moves, faster ECS retries. */
export interface AppOverrides {
  clock?: Clock;
  ecsRetry?: RetryOptions;
  targetStateWaitMs?: number;
  /**
   * Tests whose introspection endpoint is a stand-in in the test process (not the agent container):
   * how its listener is judged. The real check is tested against the agent's own listener.
   */
  introspectionOwner?: (agentPid: number) => Promise<string | undefined>;
  /** Deadline of each request-response Docker call (tests: a wedged dockerd within seconds). */
  dockerDeadlineMs?: number;
  supervisorStallMs?: number;
  /** Where an abandoned launch's reason is written (default /dev/console). */
  consolePath?: string;
}

export function buildApp(cfg: Config, log: Logger, service: ServiceEnv = {}, overrides: AppOverrides = {}): App {
  const files = new NodeFiles();
  const commands = new ExecCommands();
  const host = new LinuxHost();
  const clock = overrides.clock ?? new SystemClock();
  const docker = new DockerodeDocker(cfg.DOCKER_HOST, { deadlineMs: overrides.dockerDeadlineMs });
  const state = new StateStore(files, cfg.STATE_DIR);
  const introspectionPort = loopbackPort(cfg.INTROSPECTION_URL);
  const lock = new FlockHostLock({ state, log: log.child({ component: 'lock' }) }, { path: `${cfg.STATE_DIR}/lock` });
  const services = new Systemctl(commands);
  const rlog = log.child({ component: 'runtime' });
  const arch = process.arch;
  if (!isProbeArch(arch)) {
    throw new EcsGvisorError('CONFIG_INVALID', `The built-in probe has no build for ${arch}; set ECS_GVISOR_PROBE_IMAGE to an image with /bin/sleep.`);
  }
  const installer = new RunscInstaller(
    { files, commands, http: new FetchHttp(), state, log: log.child({ component: 'runsc-install' }) },
    { path: cfg.RUNSC_PATH, source: cfg.RUNSC_SOURCE, sha512: cfg.RUNSC_SHA512 },
  );
  const detect = cachedRunscDetector(files, commands, cfg.RUNSC_PATH);
  const runsc = async () => {
    await installer.ensure();
    return detect();
  };
  const runtime = new RuntimeStep(
    {
      docker,
      files,
      clock,
      log: rlog,
      state,
      runsc,
      detectRunsc: cfg.RUNSC_SOURCE
        ? () => detect().catch((err: unknown) => Promise.reject(new EcsGvisorError('RUNSC_UNAVAILABLE', `${messageOf(err)} bootstrap installs it from ECS_GVISOR_RUNSC_SOURCE=${cfg.RUNSC_SOURCE}.`, { cause: err })))
        : detect,
      backups: new BackupStore(files, cfg.STATE_DIR),
      reloader: new DockerReloader(
        { docker, files, host, services, clock, log: rlog },
        { pidfile: cfg.DOCKER_PIDFILE, unit: cfg.DOCKER_UNIT, timeoutMs: cfg.RELOAD_TIMEOUT_SECONDS * 1000 },
      ),
      prover: new SandboxProver(
        { docker, files, host, clock, log: log.child({ component: 'probe' }), state },
        { image: cfg.PROBE_IMAGE, timeoutMs: cfg.PROBE_TIMEOUT_SECONDS * 1000, arch, runscPath: cfg.RUNSC_PATH },
      ),
    },
    {
      daemonJson: cfg.DAEMON_JSON,
      // daemon.json names the entry point, which picks the network stack per container and runs runsc.
      desired: { name: cfg.RUNTIME_NAME, path: runtimeEntryPath(cfg.STATE_DIR, cfg.RUNTIME_NAME), runtimeArgs: cfg.RUNSC_ARGS },
      entry: { runscPath: cfg.RUNSC_PATH, policy: cfg.NETWORK_POLICY },
      replaceDefaultRuntime: cfg.REPLACE_DEFAULT_RUNTIME,
    },
  );

  const agent = new AgentStep(
    { docker, files, state, log: log.child({ component: 'agent' }), sleep: (ms) => clock.sleep(ms) },
    {
      image: cfg.AGENT_IMAGE,
      dockerHost: cfg.DOCKER_HOST,
      ecsConfig: cfg.ECS_CONFIG,
      instanceConfig: cfg.ECS_INSTANCE_CONFIG,
      cacheDir: cfg.AGENT_CACHE_DIR,
      pullRetries: cfg.AGENT_PULL_RETRIES,
      replaceSettleMs: cfg.AGENT_SETTLE_SECONDS * 1000,
    },
  );

  const ecsInit = new EcsInitStep({ services, log: log.child({ component: 'ecs-init' }) }, { unit: cfg.ECS_INIT_UNIT, mask: cfg.MASK_ECS_INIT });

  const network = new NetworkStep(
    { commands, files, state, log: log.child({ component: 'network' }) },
    { iptables: cfg.IPTABLES, ecsConfig: cfg.ECS_CONFIG, instanceConfig: cfg.ECS_INSTANCE_CONFIG, blockTaskImds: cfg.BLOCK_TASK_IMDS },
  );

  const supervisor = new AgentSupervisor(
    { docker, agent, files, state, clock, log: log.child({ component: 'supervisor' }) },
    { cacheDir: cfg.AGENT_CACHE_DIR },
  );

  const metrics = new WatchMetrics(() => clock.now());
  const cached = <T>(make: (region: string) => T) => {
    const made = new Map<string, T>();
    return (region: string): T => made.get(region) ?? made.set(region, make(region)).get(region)!;
  };
  const ecs = cached<EcsPort>((region) => new AwsEcs({ region }));
  const autoScaling = cached<AutoScalingPort>((region) => new AwsAutoScaling({ region }));
  const ec2 = cached<Ec2Port>((region) => new AwsEc2({ region }));
  const retry = overrides.ecsRetry ?? ECS_RETRY;
  // One caller for the process: the watch's polls and the lifecycle's drains share one budget.
  const ecsCaller = new EcsCaller(
    {
      ecs,
      clock,
      log: log.child({ component: 'ecs-api' }),
      onCall: (operation, outcome) => metrics.ecsCalls.inc({ operation, outcome }),
    },
    { maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR, retry },
  );
  const imds = new ImdsV2(clock, { baseUrl: cfg.IMDS_URL });
  const lifecycleOn = cfg.LAUNCH_HOOK !== undefined || cfg.TERMINATE_HOOK !== undefined || cfg.SPOT_DRAIN === true;
  // A spot notice ends the instance in two minutes: drain by default whenever the lifecycle is watched.
  const spotDrain = cfg.SPOT_DRAIN ?? lifecycleOn;
  const lifecycle = lifecycleOn
    ? new Lifecycle(
        { imds, autoScaling, ec2, ecs: ecsCaller, clock, log: log.child({ component: 'lifecycle' }), state, retry, console: (line) => writeConsoleLine(line, overrides.consolePath) },
        {
          launchHook: cfg.LAUNCH_HOOK,
          terminateHook: cfg.TERMINATE_HOOK,
          spotDrain,
          heartbeatMs: heartbeatIntervalMs(cfg.LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS),
          launchTimeoutMs: cfg.LAUNCH_TIMEOUT_SECONDS * 1000,
          drainTimeoutMs: cfg.DRAIN_TIMEOUT_SECONDS * 1000,
          region: cfg.AWS_REGION,
          group: cfg.ASG_NAME,
          pollMs: cfg.LIFECYCLE_POLL_SECONDS * 1000,
        },
      )
    : undefined;

  return {
    async checkInputs(steps) {
      if (steps.includes('network') || steps.includes('agent')) {
        const configs = await loadEcsConfigs(files, cfg.ECS_INSTANCE_CONFIG, cfg.ECS_CONFIG);
        ecsInitSwitches(configs.user.vars, cfg.ECS_CONFIG); // refuses what ecs-gvisor cannot do, before any step
      }
    },
    services,
    ecsInit,
    runtime,
    network,
    agent,
    supervisor,
    clock,
    lifecycle,
    lock,
    lockWaitMs: cfg.LOCK_TIMEOUT_SECONDS * 1000,
    targetStateWaitMs: overrides.targetStateWaitMs ?? TARGET_STATE_WAIT_MS,
    metrics,
    watch(runtimeState, steps = []) {
      const introspection = new AgentIntrospection(new FetchHttp(), cfg.INTROSPECTION_URL);
      const watchdogMs = service.watchdogUsec ? Math.max(1000, Math.floor(service.watchdogUsec / 2000)) : undefined;
      return new WatchLoop(
        {
          docker,
          host,
          clock,
          log: log.child({ component: 'watch' }),
          state,
          supervisor,
          runtime,
          agent,
          network: steps.includes('network') ? network : undefined,
          introspection: () => introspection.metadata(),
          introspectionOwner: overrides.introspectionOwner ?? (introspectionPort === undefined ? undefined : (pid) => introspectionListenerProblem(host, introspectionPort, pid)),
          lock,
          ecs: ecsCaller,
          autoScaling,
          imds,
          lifecycle,
          notify: new SystemdNotify(commands, service.notifySocket, process.pid),
          metrics,
        },
        {
          runtimeName: cfg.RUNTIME_NAME,
          region: cfg.AWS_REGION,
          budget: { callsPerHour: cfg.ECS_CALLS_PER_HOUR, maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR, alertPollMs: cfg.ECS_ALERT_POLL_SECONDS * 1000 },
          introspectMs: cfg.INTROSPECTION_SECONDS * 1000,
          driftMs: cfg.DRIFT_CHECK_SECONDS * 1000,
          auditMs: cfg.AUDIT_INTERVAL_SECONDS * 1000,
          auditAction: cfg.AUDIT_ACTION,
          healing: {
            unhealthyMs: cfg.UNHEALTHY_SECONDS * 1000,
            maxRestarts: cfg.HEAL_MAX_RESTARTS,
            windowMs: cfg.HEAL_WINDOW_SECONDS * 1000,
            setInstanceHealth: cfg.SET_INSTANCE_HEALTH,
          },
          publishAttributes: cfg.PUBLISH_ATTRIBUTES,
          watchdogMs,
          supervisorStallMs: overrides.supervisorStallMs,
          heartbeatMs: HEARTBEAT_MS,
        },
        runtimeState,
      );
    },
    async withdrawProof() {
      const w = await state.read<WatchSnapshot>(WATCH_STATE);
      const r = w?.registration;
      // Only a registration ECS confirmed as this instance's: never touch another instance's record.
      if (!cfg.PUBLISH_ATTRIBUTES || !r?.cluster || !r.containerInstanceArn || r.identity !== 'confirmed' || w?.attributes.published[SANDBOX_ATTRIBUTE] !== 'verified') return false;
      const port = ecs(regionOf(r.containerInstanceArn, cfg.AWS_REGION));
      await port.putAttributes(r.cluster, r.containerInstanceArn, desiredAttributes(false, undefined));
      await port.deleteAttributes(r.cluster, r.containerInstanceArn, [RUNSC_ATTRIBUTE, ...Object.values(NETWORK_ATTRIBUTES)]);
      await state.write(WATCH_STATE, { ...w, attributes: { published: desiredAttributes(false, undefined), at: new Date(clock.now()).toISOString() } });
      return true;
    },
    async startMetrics() {
      if (cfg.METRICS_PORT === undefined) return undefined;
      const port = cfg.METRICS_PORT;
      try {
        const server = await startMetricsServer(() => metrics.render(), port);
        log.info({ url: `http://127.0.0.1:${server.port}/metrics` }, 'serving metrics');
        await state.write(METRICS_STATE, { port, serving: true, at: new Date(clock.now()).toISOString() } satisfies MetricsRecord);
        return server.close;
      } catch (err) {
        const problem = `cannot listen on 127.0.0.1:${port} (${messageOf(err)})`;
        log.warn({ port, err: messageOf(err) }, `metrics are off: ${problem}; watching without them`);
        await state.write(METRICS_STATE, { port, serving: false, problem, at: new Date(clock.now()).toISOString() } satisfies MetricsRecord);
        return undefined;
      }
    },
    async status() {
      const [saved, runscResult, infoResult, watchSaved, supSaved, container, lifecycleSaved, metricsSaved] = await Promise.all([
        state.read<RuntimeState>(RUNTIME_STATE),
        detect().then(
          (v) => ({ v }),
          (err: unknown) => ({ problem: messageOf(err) }),
        ),
        docker.info().then(
          (i) => ({ i }),
          (err: unknown) => ({ problem: messageOf(err) }),
        ),
        state.read<WatchSnapshot>(WATCH_STATE),
        state.read<SupervisorState>(SUPERVISOR_STATE),
        docker.inspectContainer(AGENT_NAME).catch(() => undefined),
        state.read<LifecycleRecord>(LIFECYCLE_STATE),
        state.read<MetricsRecord>(METRICS_STATE),
        // Only to learn the secrets to mask (before anything is printed): older state may still quote them.
        loadEcsConfigs(files, cfg.ECS_INSTANCE_CONFIG, cfg.ECS_CONFIG).catch(() => undefined),
      ]);
      const watchLive =
        watchSaved !== undefined &&
        clock.now() - Date.parse(watchSaved.updatedAt) < 3 * HEARTBEAT_MS &&
        (await host.cmdline(watchSaved.pid).catch(() => undefined)) !== undefined;
      const info = 'i' in infoResult ? infoResult.i : undefined;
      const registered = info ? cfg.RUNTIME_NAME in info.runtimes : false;
      const isDefault = info?.defaultRuntime === cfg.RUNTIME_NAME;
      const verified = Boolean(saved?.verified && isDefault && registered);
      const w = watchLive ? watchSaved : undefined;
      // The supervisor's own file is the authority on restarts and holds; it is written as they happen.
      const sup = supSaved ?? w?.agent;
      const agentReport: StatusReport['agent'] = {
        container: AGENT_NAME,
        id: container?.id,
        runtime: container?.runtime,
        state: container?.status,
        running: container?.running ?? false,
        health: container?.health,
        restarts: sup?.restarts ?? 0,
        held: sup?.held,
        stopped: sup?.stopped,
        lastExit: sup?.lastExit && { code: sup.lastExit.code, decision: sup.lastExit.decision, at: sup.lastExit.at },
      };
      const healthy = verified && agentReport.running && (w ? w.healthy : true);
      const summary = w
        ? w.summary
        : `${verified ? 'sandbox verified' : 'sandbox NOT verified'}; agent ${agentReport.running ? 'running' : (agentReport.state ?? 'absent')}; run is not watching`;
      return {
        version: VERSION,
        healthy,
        summary,
        runtime: {
          name: cfg.RUNTIME_NAME,
          runscPath: cfg.RUNSC_PATH,
          runscVersion: 'v' in runscResult ? runscResult.v.version : undefined,
          runscProblem: 'problem' in runscResult ? runscResult.problem : undefined,
          dockerDefaultRuntime: info?.defaultRuntime,
          dockerProblem: 'problem' in infoResult ? infoResult.problem : undefined,
          registered,
          isDefault,
          verified,
          verifiedAt: saved?.verifiedAt,
          evidence: saved?.evidence,
          lastError: saved?.lastError,
          networkPolicy: cfg.NETWORK_POLICY,
          networkModes: verified ? provenEcsModes(saved?.evidence?.networks) : [],
        },
        agent: agentReport,
        // Last known even when run has stopped: the instance's registration outlives the process.
        registration: watchSaved?.registration ?? {},
        verdict: w?.verdict,
        healing: w?.healing,
        audit: w?.audit,
        attributes: watchSaved?.attributes,
        network: w?.network,
        watch: { running: watchLive, pid: watchSaved?.pid, updatedAt: watchSaved?.updatedAt },
        lifecycle: {
          enabled: lifecycleOn,
          launchHook: cfg.LAUNCH_HOOK,
          terminateHook: cfg.TERMINATE_HOOK,
          spotDrain,
          ...(lifecycleOn ? lifecycleSaved : undefined),
        },
        metrics:
          cfg.METRICS_PORT === undefined
            ? undefined
            : {
                port: cfg.METRICS_PORT,
                // Only what the watching process recorded for this port counts.
                serving: Boolean(watchLive && metricsSaved?.port === cfg.METRICS_PORT && metricsSaved.serving),
                problem: watchLive && metricsSaved?.port === cfg.METRICS_PORT ? metricsSaved.problem : undefined,
              },
        lastErrors: w?.lastErrors ?? [],
      };
    },
  };
}
