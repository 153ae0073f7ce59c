/** Wiring: real adapters into the steps. */
import { DockerodeDocker } from '../adapters/dockerode-docker.js';
import { AgentStep } from '../agent/agent-step.js';
import { AgentSupervisor } from '../agent/supervisor.js';
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
import { detectRunsc } from '../runtime/runsc.js';
import { RunscInstaller } from '../runtime/runsc-install.js';
import { RUNTIME_STATE, RuntimeStep, type RuntimeState } from '../runtime/runtime-step.js';
import { SandboxProver } from '../runtime/sandbox-proof.js';
import { StateStore } from '../state-store.js';
import { VERSION } from '../version.js';

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
  };
  agent: { implemented: false };
  registration: { implemented: false };
  lifecycle: { implemented: false };
}

export interface App {
  ecsInit: EcsInitStep;
  runtime: RuntimeStep;
  network: NetworkStep;
  agent: AgentStep;
  supervisor: AgentSupervisor;
  status(): Promise<StatusReport>;
}

export function buildApp(cfg: Config, log: Logger): App {
  const files = new NodeFiles();
  const commands = new ExecCommands();
  const host = new LinuxHost();
  const clock = new SystemClock();
  const docker = new DockerodeDocker(cfg.DOCKER_HOST);
  const state = new StateStore(files, cfg.STATE_DIR);
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
  const runsc = async () => {
    await installer.ensure();
    return detectRunsc(files, commands, cfg.RUNSC_PATH);
  };
  const runtime = new RuntimeStep(
    {
      docker,
      files,
      clock,
      log: rlog,
      state,
      runsc,
      backups: new BackupStore(files, cfg.STATE_DIR),
      reloader: new DockerReloader(
        { docker, files, host, services, clock, log: rlog },
        { pidfile: cfg.DOCKER_PIDFILE, unit: cfg.DOCKER_UNIT, timeoutMs: cfg.RELOAD_TIMEOUT_SECONDS * 1000 },
      ),
      prover: new SandboxProver(
        { docker, files, host, clock, log: log.child({ component: 'probe' }) },
        { image: cfg.PROBE_IMAGE, timeoutMs: cfg.PROBE_TIMEOUT_SECONDS * 1000, arch },
      ),
    },
    {
      daemonJson: cfg.DAEMON_JSON,
      desired: { name: cfg.RUNTIME_NAME, path: cfg.RUNSC_PATH, runtimeArgs: cfg.RUNSC_ARGS },
      replaceDefaultRuntime: cfg.REPLACE_DEFAULT_RUNTIME,
    },
  );

  const agent = new AgentStep(
    { docker, files, state, log: log.child({ component: 'agent' }) },
    {
      image: cfg.AGENT_IMAGE,
      dockerHost: cfg.DOCKER_HOST,
      ecsConfig: cfg.ECS_CONFIG,
      instanceConfig: cfg.ECS_INSTANCE_CONFIG,
      cacheDir: cfg.AGENT_CACHE_DIR,
      pullRetries: cfg.AGENT_PULL_RETRIES,
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

  return {
    ecsInit,
    runtime,
    network,
    agent,
    supervisor,
    async status() {
      const [saved, runscResult, infoResult] = await Promise.all([
        state.read<RuntimeState>(RUNTIME_STATE),
        detectRunsc(files, commands, cfg.RUNSC_PATH).then(
          (v) => ({ v }),
          (err: unknown) => ({ problem: messageOf(err) }),
        ),
        docker.info().then(
          (i) => ({ i }),
          (err: unknown) => ({ problem: messageOf(err) }),
        ),
      ]);
      const info = 'i' in infoResult ? infoResult.i : undefined;
      const registered = info ? cfg.RUNTIME_NAME in info.runtimes : false;
      const isDefault = info?.defaultRuntime === cfg.RUNTIME_NAME;
      return {
        version: VERSION,
        runtime: {
          name: cfg.RUNTIME_NAME,
          runscPath: cfg.RUNSC_PATH,
          runscVersion: 'v' in runscResult ? runscResult.v.version : undefined,
          runscProblem: 'problem' in runscResult ? runscResult.problem : undefined,
          dockerDefaultRuntime: info?.defaultRuntime,
          dockerProblem: 'problem' in infoResult ? infoResult.problem : undefined,
          registered,
          isDefault,
          verified: Boolean(saved?.verified && isDefault && registered),
          verifiedAt: saved?.verifiedAt,
          evidence: saved?.evidence,
          lastError: saved?.lastError,
        },
        agent: { implemented: false },
        registration: { implemented: false },
        lifecycle: { implemented: false },
      };
    },
  };
}
