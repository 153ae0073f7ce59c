/**
 * Composition: the real adapters wired into the steps, the supervisor, the lifecycle and the watch.
 * Wiring only — what a command does is in commands.ts, how configuration becomes options in options.ts.
 */
import { lookup } from 'node:dns/promises';
import { AwsAutoScaling, AwsEc2, AwsEcs } from '../adapters/aws.js';
import { writeConsoleLine } from '../adapters/console.js';
import { DockerodeDocker } from '../adapters/dockerode-docker.js';
import { ExecCommands } from '../adapters/exec-commands.js';
import { FetchHttp } from '../adapters/fetch-http.js';
import { FlockHostLock } from '../adapters/host-lock.js';
import { ImdsV2 } from '../adapters/imds-v2.js';
import { LinuxHost } from '../adapters/linux-host.js';
import { LogTail } from '../adapters/log-tail.js';
import { NodeFiles } from '../adapters/node-files.js';
import { NodeHttp } from '../adapters/node-http.js';
import { SystemClock } from '../adapters/system-clock.js';
import { Systemctl } from '../adapters/systemctl.js';
import { SystemdNotify } from '../adapters/systemd-notify.js';
import { AgentStep } from '../agent/agent-step.js';
import { AgentTasks, TMDS_URL } from '../agent/agent-tasks.js';
import { AgentIntrospection, introspectionListenerProblem, loopbackPort } from '../agent/introspection.js';
import { AgentSupervisor } from '../agent/supervisor.js';
import { AwsCaller } from '../aws/aws-caller.js';
import { instanceRegion } from '../aws/imds-values.js';
import type { Config } from '../config.js';
import { EcsInitStep } from '../ecs-init/ecs-init-step.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import { Lifecycle } from '../lifecycle/lifecycle.js';
import type { Logger } from '../logger.js';
import { NetworkStep } from '../network/network-step.js';
import type { AutoScalingPort, Clock, Ec2Port, EcsPort, HostLockPort, ReleaseLock, ServiceManagerPort } from '../ports.js';
import type { RetryOptions } from '../retry.js';
import { BackupStore } from '../runtime/backup-store.js';
import { DockerReloader } from '../runtime/docker-reloader.js';
import { isProbeArch } from '../runtime/probe-image.js';
import { cachedRunscDetector, runscRecordIn } from '../runtime/runsc.js';
import { RunscInstaller } from '../runtime/runsc-install.js';
import { type RuntimeState, RuntimeStep } from '../runtime/runtime-step.js';
import { SandboxProver } from '../runtime/sandbox-proof.js';
import { StateStore } from '../state-store.js';
import type { StatusReport } from '../status/status-report.js';
import { WatchMetrics } from '../watch/metrics.js';
import { WatchLoop } from '../watch/watch-loop.js';
import type { Step } from './args.js';
import { checkHost, checkInputs, type HostFacts, readStatus, startMetrics, withdrawProof } from './commands.js';
import { failClosed } from './fail-closed.js';
import {
  AWS_RETRY,
  agentOptions,
  agentSettleMs,
  lifecycleEnabled,
  lifecycleOptions,
  lockWaitMs,
  MAX_BUDGET_WAIT_MS,
  proverOptions,
  reloaderOptions,
  runtimeOptions,
  type ServiceEnv,
  TARGET_STATE_WAIT_MS,
  watchOptions,
} from './options.js';

export type { ServiceEnv } from './options.js';

export interface App {
  /** Read every input the steps will need before any of them changes the host (commands.ts). */
  checkInputs(steps: readonly Step[]): Promise<void>;
  /** The host as the configuration will meet it, changing nothing (`check-config`; commands.ts). */
  checkHost(): Promise<{ facts: HostFacts; problems: string[] }>;
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
  /** `run`'s own lock, held for its life: one run per host (HOST_LOCKED naming the other when taken). */
  claimRun(): Promise<ReleaseLock>;
  lockWaitMs: number;
  /** How long the agent `bootstrap` started must keep running (exit 4 when it does not). */
  agentSettleMs: number;
  /** How long `run` waits for IMDS's target lifecycle state before starting the agent anyway. */
  targetStateWaitMs: number;
  /** The watch behind `run`, once bootstrap has verified the runtime; it keeps the network rules when `steps` applied them. */
  watch(runtime: RuntimeState | undefined, steps?: readonly Step[]): WatchLoop;
  metrics: WatchMetrics;
  /** Before the runtime is rolled back: mark the container instance unproven in ECS (commands.ts). */
  withdrawProof(): Promise<boolean>;
  /**
   * A start ended without a proof: take the instance out of service (fail-closed.ts). `run` adds the
   * launch hook and SetInstanceHealth. Returns what to throw.
   */
  failClosed(cause: unknown, o: { run: boolean }): Promise<unknown>;
  /** Serve metrics when ECS_GVISOR_METRICS_PORT is set; returns a closer (commands.ts). */
  startMetrics(): Promise<(() => Promise<void>) | undefined>;
  status(): Promise<StatusReport>;
}

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
  /** Monitor deadlines by name, replacing their own (tests: a hung monitor within seconds). */
  deadlinesMs?: Record<string, number>;
}

export function buildApp(cfg: Config, log: Logger, service: ServiceEnv = {}, overrides: AppOverrides = {}): App {
  const files = new NodeFiles();
  const commands = new ExecCommands();
  const host = new LinuxHost();
  const clock = overrides.clock ?? new SystemClock();
  const docker = new DockerodeDocker(cfg.DOCKER_HOST, { deadlineMs: overrides.dockerDeadlineMs });
  const state = new StateStore(files, cfg.STATE_DIR);
  const lock = new FlockHostLock({ state, log: log.child({ component: 'lock' }) }, { path: `${cfg.STATE_DIR}/lock` });
  const runLock = new FlockHostLock(
    { state, log: log.child({ component: 'lock' }) },
    { path: `${cfg.STATE_DIR}/run.lock`, holder: 'run.json' },
  );
  const services = new Systemctl(commands);
  const rlog = log.child({ component: 'runtime' });
  const arch = process.arch;
  if (!isProbeArch(arch)) {
    throw new EcsGvisorError(
      'CONFIG_INVALID',
      `The built-in probe has no build for ${arch}; set ECS_GVISOR_PROBE_IMAGE to an image with /bin/sleep.`,
    );
  }
  const installer = new RunscInstaller(
    { files, commands, http: new FetchHttp(), state, log: log.child({ component: 'runsc-install' }) },
    { path: cfg.RUNSC_PATH, source: cfg.RUNSC_SOURCE, sha512: cfg.RUNSC_SHA512 },
  );
  const detect = cachedRunscDetector(files, commands, cfg.RUNSC_PATH, runscRecordIn(state, true));
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
        ? () =>
            detect().catch((err: unknown) =>
              Promise.reject(
                new EcsGvisorError(
                  'RUNSC_UNAVAILABLE',
                  `${messageOf(err)} bootstrap installs it from ECS_GVISOR_RUNSC_SOURCE=${cfg.RUNSC_SOURCE}.`,
                  { cause: err },
                ),
              ),
            )
        : detect,
      backups: new BackupStore(files, cfg.STATE_DIR),
      reloader: new DockerReloader({ docker, files, host, services, clock, log: rlog }, reloaderOptions(cfg)),
      prover: new SandboxProver({ docker, files, host, clock, log: log.child({ component: 'probe' }), state }, proverOptions(cfg, arch)),
    },
    runtimeOptions(cfg),
  );

  const agent = new AgentStep(
    { docker, files, state, log: log.child({ component: 'agent' }), sleep: (ms) => clock.sleep(ms) },
    agentOptions(cfg),
  );

  const ecsInit = new EcsInitStep(
    { services, log: log.child({ component: 'ecs-init' }) },
    { unit: cfg.ECS_INIT_UNIT, mask: cfg.MASK_ECS_INIT },
  );

  const network = new NetworkStep(
    { commands, files, state, log: log.child({ component: 'network' }) },
    { iptables: cfg.IPTABLES, ecsConfig: cfg.ECS_CONFIG, instanceConfig: cfg.ECS_INSTANCE_CONFIG, blockTaskImds: cfg.BLOCK_TASK_IMDS },
  );

  const supervisor = new AgentSupervisor(
    { docker, agent, files, state, clock, log: log.child({ component: 'supervisor' }) },
    { cacheDir: cfg.AGENT_CACHE_DIR },
  );

  const metrics = new WatchMetrics();
  const cached = <T>(make: (region: string) => T) => {
    const made = new Map<string, T>();
    return (region: string): T => made.get(region) ?? made.set(region, make(region)).get(region)!;
  };
  const ecs = cached<EcsPort>((region) => new AwsEcs({ region }));
  const autoScaling = cached<AutoScalingPort>((region) => new AwsAutoScaling({ region }));
  const ec2 = cached<Ec2Port>((region) => new AwsEc2({ region }));
  const imds = new ImdsV2(clock, { baseUrl: cfg.IMDS_URL });
  // One caller for the process: the watch's polls and the lifecycle's drains share one ECS budget.
  const aws = new AwsCaller(
    {
      ecs,
      autoScaling,
      ec2,
      imds,
      clock,
      log: log.child({ component: 'aws-api' }),
      onCall: (service, operation, outcome) => metrics.awsCalls.inc({ service, operation, outcome }),
    },
    { maxCallsPerHour: cfg.ECS_MAX_CALLS_PER_HOUR, retry: overrides.ecsRetry ?? AWS_RETRY, maxBudgetWaitMs: MAX_BUDGET_WAIT_MS },
  );
  const lifecycle = lifecycleEnabled(cfg)
    ? new Lifecycle(
        {
          imds,
          aws,
          clock,
          log: log.child({ component: 'lifecycle' }),
          state,
          console: (line) => writeConsoleLine(line, overrides.consolePath),
        },
        lifecycleOptions(cfg),
      )
    : undefined;
  const introspectionPort = loopbackPort(cfg.INTROSPECTION_URL);
  const statusSources = { state, docker, host, files, clock, detectRunsc: detect };

  return {
    checkInputs: (steps) => checkInputs({ files, docker }, cfg, steps),
    checkHost: () => checkHost({ files, docker, detectRunsc: detect }, cfg),
    services,
    ecsInit,
    runtime,
    network,
    agent,
    supervisor,
    clock,
    lifecycle,
    lock,
    claimRun: async () => {
      const release = await runLock.tryAcquire('run');
      if (release) return release;
      throw new EcsGvisorError(
        'HOST_LOCKED',
        `Another ecs-gvisor run (${(await runLock.holder()) ?? 'another process'}) already watches this host; one run per host, so this one changed nothing.`,
      );
    },
    lockWaitMs: lockWaitMs(cfg),
    agentSettleMs: agentSettleMs(cfg),
    targetStateWaitMs: overrides.targetStateWaitMs ?? TARGET_STATE_WAIT_MS,
    metrics,
    watch(runtimeState, steps = []) {
      const introspection = new AgentIntrospection(new NodeHttp(), cfg.INTROSPECTION_URL);
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
          introspectionOwner:
            overrides.introspectionOwner ??
            (introspectionPort === undefined ? undefined : (pid) => introspectionListenerProblem(host, introspectionPort, pid)),
          lock,
          aws,
          lifecycle,
          notify: new SystemdNotify(commands, service.notifySocket, process.pid),
          metrics,
          agentTasks: (agentPid) =>
            new AgentTasks({
              http: new NodeHttp(),
              introspectionUrl: cfg.INTROSPECTION_URL,
              tmdsUrl: TMDS_URL,
              // Believed only from the agent container's own listeners (a local user can bind a free port first).
              listenerProblem: async (url) => {
                const port = loopbackPort(url);
                const pid = agentPid();
                if (port === undefined) return undefined;
                if (!pid) return 'the agent container is not running';
                return (overrides.introspectionOwner ?? ((p: number) => introspectionListenerProblem(host, port, p)))(pid);
              },
            }),
          acs: {
            log: new LogTail(cfg.AGENT_LOG_FILE),
            host,
            resolve: async (name) => (await lookup(name, { all: true })).map((a) => a.address),
          },
        },
        { ...watchOptions(cfg, service, overrides.supervisorStallMs), deadlinesMs: overrides.deadlinesMs },
        runtimeState,
      );
    },
    withdrawProof: () => withdrawProof({ state, aws, clock }, cfg),
    failClosed: (cause, o) =>
      failClosed(
        {
          stopAgent: () => agent.stop(),
          withdrawProof: () => withdrawProof({ state, aws, clock }, cfg),
          abandonLaunch: o.run && lifecycle ? (err) => lifecycle.abandonLaunch(err) : undefined,
          markUnhealthy:
            o.run && cfg.SET_INSTANCE_HEALTH
              ? async () => {
                  const instanceId = await aws.instanceId();
                  const region = await instanceRegion(imds, cfg.AWS_REGION);
                  await aws.autoScaling(region, 'SetInstanceHealth', (as) => as.setInstanceHealth(instanceId, 'Unhealthy', false));
                }
              : undefined,
        },
        cause,
        log.child({ component: 'fail-closed' }),
      ),
    startMetrics: () => startMetrics({ metrics, state, clock, log }, cfg),
    status: () => readStatus(statusSources, cfg),
  };
}
