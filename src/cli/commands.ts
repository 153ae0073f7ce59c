/**
 * What the commands do beyond running the steps: `status` (read everything, build one report), `plan`
 * (each step's plan, as data and as text), `check-config`'s look at the host, `rollback` (the steps
 * undone in reverse), withdrawing the proof from ECS before a rollback, serving and writing metrics, and
 * checking inputs before any step changes the host.
 */

import { startMetricsServer } from '../adapters/metrics-http.js';
import { removeMetricsTextfile, writeMetricsTextfile } from '../adapters/metrics-textfile.js';
import { ecsInitSwitches } from '../agent/agent-spec.js';
import { loadEcsConfigs } from '../agent/ecs-config.js';
import { type AwsCaller, regionOf } from '../aws/aws-caller.js';
import type { Config } from '../config.js';
import { EcsGvisorError, ExitCode, exitCodeOf, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, DockerPort, FilesPort } from '../ports.js';
import { METRICS_STATE, WATCH_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import type { MetricsRecord } from '../status/status-report.js';
import { hostPort } from '../status/status-text.js';
import { desiredAttributes, NETWORK_ATTRIBUTES, RUNSC_ATTRIBUTE, SANDBOX_ATTRIBUTE } from '../watch/attributes.js';
import type { WatchMetrics } from '../watch/metrics.js';
import type { WatchSnapshot } from '../watch/watch-loop.js';
import type { Step } from './args.js';
import type { App } from './composition.js';
import { OWN_UNIT, takeDownOwnUnit } from './own-unit.js';

/**
 * Read every input the steps will need before any of them changes the host, so a bad one (an
 * unreadable ecs.config) fails with nothing written rather than halfway through.
 */
export async function checkInputs(
  d: { files: FilesPort; docker: Pick<DockerPort, 'info'> },
  cfg: Config,
  steps: readonly Step[],
): Promise<void> {
  if (steps.includes('network') || steps.includes('agent')) {
    const configs = await loadEcsConfigs(d.files, cfg.ECS_INSTANCE_CONFIG, cfg.ECS_CONFIG);
    ecsInitSwitches(configs.user.vars, cfg.ECS_CONFIG); // refuses what ecs-gvisor cannot do, before any step
  }
  if (steps.includes('runtime') && cfg.RUNSC_ARGS.some(systemdCgroupFlag)) {
    // runsc's systemd cgroup mode takes a slice:prefix:name path, which only Docker's systemd driver
    // gives it: under cgroupfs no sandbox starts ("invalid systemd path"). Docker unavailable: the
    // runtime step says so itself.
    const driver = await d.docker.info().then(
      (i) => i.cgroupDriver,
      () => undefined,
    );
    if (driver === 'cgroupfs')
      throw new EcsGvisorError(
        'CONFIG_INVALID',
        `ECS_GVISOR_RUNSC_ARGS has --systemd-cgroup, but Docker uses the cgroupfs cgroup driver, under which runsc starts no sandbox with it; remove the flag (or switch Docker to the systemd driver). Nothing was changed.`,
      );
  }
}

/** runsc's --systemd-cgroup (bare or =true). */
function systemdCgroupFlag(arg: string): boolean {
  return arg === '--systemd-cgroup' || arg === '--systemd-cgroup=true';
}

/**
 * Before the runtime is rolled back: tell the scheduler this instance is no longer proven (the
 * attributes outlive us on the container instance). Returns whether there was anything to withdraw.
 */
export async function withdrawProof(d: { state: StateStore; aws: AwsCaller; clock: Clock }, cfg: Config): Promise<boolean> {
  const w = await d.state.read<WatchSnapshot>(WATCH_STATE);
  const r = w?.registration;
  // Only a registration ECS confirmed as this instance's: never touch another instance's record.
  if (
    !cfg.PUBLISH_ATTRIBUTES ||
    !r?.cluster ||
    !r.containerInstanceArn ||
    r.identity !== 'confirmed' ||
    w?.attributes.published[SANDBOX_ATTRIBUTE] !== 'verified'
  )
    return false;
  const { cluster, containerInstanceArn: arn } = r;
  const region = regionOf(arn, cfg.AWS_REGION);
  await d.aws.ecs(region, 'PutAttributes', (ecs) => ecs.putAttributes(cluster, arn, desiredAttributes(false, undefined)));
  await d.aws.ecs(region, 'DeleteAttributes', (ecs) =>
    ecs.deleteAttributes(cluster, arn, [RUNSC_ATTRIBUTE, ...Object.values(NETWORK_ATTRIBUTES)]),
  );
  await d.state.write(WATCH_STATE, {
    ...w,
    attributes: { published: desiredAttributes(false, undefined), at: new Date(d.clock.now()).toISOString() },
  });
  return true;
}

/** How often the node_exporter textfile is written (the collector reads it at its own scrapes). */
export const TEXTFILE_INTERVAL_MS = 15_000;

/**
 * Serve metrics when ECS_GVISOR_METRICS_PORT is set, and write them to ECS_GVISOR_METRICS_TEXTFILE when
 * that is; returns a closer. A port someone else holds, or a textfile that cannot be written, is logged
 * and recorded for status, never fatal: the watch matters more than its figures.
 */
export async function startMetrics(
  d: { metrics: WatchMetrics; state: StateStore; clock: Clock; log: Logger },
  cfg: Config,
): Promise<(() => Promise<void>) | undefined> {
  const { METRICS_PORT: port, METRICS_ADDRESS: address, METRICS_TEXTFILE: textfile } = cfg;
  if (port === undefined && textfile === undefined) return undefined;
  const render = () => d.metrics.render();
  const record: Omit<MetricsRecord, 'at'> = { port, address, serving: false, textfile };
  const save = () => d.state.write(METRICS_STATE, { ...record, at: new Date(d.clock.now()).toISOString() } satisfies MetricsRecord);
  const closers: Array<() => Promise<void>> = [];
  if (port !== undefined) {
    try {
      const server = await startMetricsServer(render, port, address);
      d.log.info({ url: `http://${hostPort(address, server.port)}/metrics` }, 'serving metrics');
      record.serving = true;
      closers.push(server.close);
    } catch (err) {
      record.problem = `cannot listen on ${hostPort(address, port)} (${messageOf(err)})`;
      d.log.warn({ port, address, err: messageOf(err) }, `metrics are off: ${record.problem}; watching without them`);
    }
  }
  if (textfile !== undefined) {
    const write = async () => {
      const problem = await render()
        .then(({ text }) => writeMetricsTextfile(textfile, text))
        .then(
          () => undefined,
          (err: unknown) => messageOf(err),
        );
      // Logged and recorded when it changes, not every 15 s.
      if (problem === record.textfileProblem && record.textfileWriting !== undefined) return;
      record.textfileWriting = problem === undefined;
      record.textfileProblem = problem;
      if (problem) d.log.warn({ textfile, err: problem }, 'the metrics textfile cannot be written; trying again');
      else d.log.info({ textfile }, 'writing the metrics textfile');
      await save().catch(() => undefined);
    };
    await write();
    const timer = setInterval(() => void write(), TEXTFILE_INTERVAL_MS);
    closers.push(async () => {
      clearInterval(timer);
      await removeMetricsTextfile(textfile);
    });
  }
  await save();
  return async () => {
    for (const close of closers) await close();
  };
}

export { readStatus, type StatusSources } from '../status/read-status.js';

export async function rollback(app: App, steps: Step[], log: Logger): Promise<number> {
  const own = await takeDownOwnUnit(app.services);
  if (own.length)
    log.info(
      { unit: OWN_UNIT, actions: own },
      `${OWN_UNIT} stopped and disabled first, so its watch does not put back what rollback removes (systemctl enable --now ${OWN_UNIT} to return)`,
    );
  const release = await app.lock.acquire('rollback', app.lockWaitMs);
  try {
    return await undo(app, steps, log);
  } finally {
    await release();
  }
}

async function undo(app: App, steps: Step[], log: Logger): Promise<number> {
  // Reverse order: the agent goes before the runtime it was started beside.
  if (steps.includes('agent')) {
    const { removed } = await app.agent.rollback();
    log.info({ removed }, removed ? 'agent container removed' : 'agent: no container of ours to remove');
  }
  if (steps.includes('network')) {
    const { removed } = await app.network.rollback();
    log.info({ removed }, 'network rules of ours removed');
  }
  if (steps.includes('runtime')) {
    // First, while the sandbox still stands: the scheduler must stop placing untrusted tasks here.
    try {
      if (await app.withdrawProof()) log.info('container instance attribute ecs-gvisor.sandbox set to unverified');
    } catch (err) {
      log.warn(
        { err: messageOf(err) },
        'could not mark the container instance unverified in ECS; remove its ecs-gvisor.sandbox attribute by hand',
      );
    }
    const { restored, keptFor } = await app.runtime.rollback();
    log.info(
      { restored, keptFor: keptFor.length ? keptFor : undefined },
      !restored
        ? 'runtime: no backup, nothing of ours to roll back'
        : keptFor.length
          ? 'runtime rolled back; its entry kept for the containers created with it'
          : 'runtime rolled back',
    );
  }
  if (steps.includes('ecs-init')) {
    // Last: with runc the default again, ecs-init may recreate its agent.
    const actions = await app.ecsInit.rollback();
    log.info({ actions }, actions.length ? 'ecs-init enabled and started again' : 'ecs-init: nothing to restore');
  }
  return ExitCode.ok;
}

/** What `plan` found, step by step (`--json` prints it as it is); `unreadable`: the steps it could not read, and why. */
export interface PlanReport {
  ecsInit?: Awaited<ReturnType<App['ecsInit']['plan']>>;
  runtime?: Awaited<ReturnType<App['runtime']['plan']>>;
  network?: Awaited<ReturnType<App['network']['plan']>>;
  agent?: Awaited<ReturnType<App['agent']['plan']>>;
  unreadable: Array<{ step: Step; problem: string }>;
}

/**
 * Each step's plan. A step whose source is unavailable (the runtime and the agent without Docker) is
 * named with why, and the others are still shown: ecs-init and the network need no Docker. A refused input
 * (a malformed daemon.json) still stops the plan with its own exit code, as it stops bootstrap.
 */
export async function plan(app: App, steps: Step[]): Promise<PlanReport> {
  const report: PlanReport = { unreadable: [] };
  const read = async <T>(step: Step, fn: () => Promise<T>): Promise<T | undefined> => {
    if (!steps.includes(step)) return undefined;
    try {
      return await fn();
    } catch (err) {
      if (exitCodeOf(err) !== ExitCode.unavailable) throw err;
      report.unreadable.push({ step, problem: messageOf(err) });
      return undefined;
    }
  };
  report.ecsInit = await read('ecs-init', () => app.ecsInit.plan());
  report.runtime = await read('runtime', () => app.runtime.plan());
  report.network = await read('network', () => app.network.plan());
  report.agent = await read('agent', () => app.agent.plan());
  return report;
}

/** The plan as people read it. */
export function renderPlan(r: PlanReport): string {
  const lines: string[] = [];
  if (r.ecsInit) {
    const p = r.ecsInit;
    const state = p.state ? `${p.state.load}, ${p.state.active}, ${p.state.fileState || 'no unit file'}` : 'no systemd';
    lines.push(
      'ecs-init:',
      `  unit: ${state}`,
      `  actions: ${p.actions.length ? p.actions.map((a) => `systemctl ${a}`).join(', ') : 'none'}`,
    );
  }
  if (r.runtime) {
    const p = r.runtime;
    lines.push('runtime:');
    lines.push(`  runsc: ${p.runsc.path} ${p.runsc.version ? `(version ${p.runsc.version})` : `(problem: ${p.runsc.problem})`}`);
    if (p.daemonJson.changed) {
      lines.push(`  daemon.json: ${p.daemonJson.file} would change:`);
      for (const c of p.daemonJson.changes) lines.push(`    ${c}`);
      lines.push(...p.daemonJson.diff.split('\n').map((l) => `    ${l}`));
    } else {
      lines.push(`  daemon.json: ${p.daemonJson.file} unchanged (already converged)`);
    }
    lines.push(`  entry point: ${p.entry.path} (network policy ${p.entry.policy})${p.entry.changed ? ' would be written' : ' unchanged'}`);
    lines.push(
      `  docker: default runtime now "${p.live.defaultRuntime}"; ${p.live.converged ? 'no reload needed' : `reload by ${p.live.reloadBy}`}`,
    );
    lines.push(
      `  probe: ${p.probe.image} image${p.probe.build ? ' (to be built)' : ''}, then a probe container proves the sandbox and its memory limit`,
    );
  }
  if (r.network) {
    const p = r.network;
    lines.push('network:');
    lines.push(`  route_localnet: ${p.routeLocalnet.now ?? '?'}${p.routeLocalnet.change ? ' -> 1' : ' (already 1)'}`);
    for (const x of p.rules)
      lines.push(`  ${x.present ? 'present' : 'add    '}  -t ${x.table} ${x.insert ? '-I' : '-A'} ${x.chain} ${x.args.join(' ')}`);
  }
  if (r.agent) {
    const p = r.agent;
    lines.push('agent:');
    lines.push(
      `  image: ${p.image.ref} (${{ use: 'present', load: 'to be loaded from the ecs-init cache', pull: 'to be pulled' }[p.image.action]})`,
    );
    const what = {
      create: 'to be created',
      keep: 'running with the desired spec: left alone',
      start: 'stopped with the desired spec: to be started',
      recreate: 'spec changed: to be recreated',
      'replace-foreign': 'not created by ecs-gvisor (ecs-init?): to be replaced',
    }[p.container.action];
    lines.push(`  container: ecs-agent ${p.container.id ? `${p.container.id.slice(0, 12)} ` : ''}${what}`);
    for (const w of p.warnings) lines.push(`  warning: ${w}`);
    if (p.container.diff) lines.push(...p.container.diff.split('\n').map((l) => `    ${l}`));
  }
  for (const u of r.unreadable) lines.push(`${u.step}: could not be read: ${u.problem}`);
  return `${lines.join('\n')}\n`;
}

/** What `check-config` reports of the host. */
export interface HostFacts {
  docker?: { version: string; cgroupVersion: string; cgroupDriver: string; defaultRuntime: string; runtimes: string[] };
  runsc?: { path: string; version?: string };
}

/**
 * The host as the configuration will meet it (`check-config`): Docker's version, cgroup driver and
 * runtimes, runsc, the agent's ecs.config; every problem bootstrap would stop on, found without changing
 * anything.
 */
export async function checkHost(
  d: { files: FilesPort; docker: Pick<DockerPort, 'info'>; detectRunsc: () => Promise<{ version: string }> },
  cfg: Config,
): Promise<{ facts: HostFacts; problems: string[] }> {
  const facts: HostFacts = {};
  const problems: string[] = [];
  try {
    const i = await d.docker.info();
    facts.docker = {
      version: i.serverVersion,
      cgroupVersion: i.cgroupVersion,
      cgroupDriver: i.cgroupDriver,
      defaultRuntime: i.defaultRuntime,
      runtimes: Object.keys(i.runtimes).sort(),
    };
    if (![cfg.RUNTIME_NAME, 'runc'].includes(i.defaultRuntime) && !cfg.REPLACE_DEFAULT_RUNTIME)
      problems.push(
        `Docker's default runtime is "${i.defaultRuntime}": bootstrap replaces it only with ECS_GVISOR_REPLACE_DEFAULT_RUNTIME=true.`,
      );
  } catch (err) {
    problems.push(messageOf(err));
  }
  try {
    facts.runsc = { path: cfg.RUNSC_PATH, version: (await d.detectRunsc()).version };
  } catch (err) {
    facts.runsc = { path: cfg.RUNSC_PATH };
    if (!cfg.RUNSC_SOURCE) problems.push(`${messageOf(err)} Set ECS_GVISOR_RUNSC_SOURCE to have bootstrap install it.`);
  }
  try {
    await checkInputs(d, cfg, ['ecs-init', 'runtime', 'network', 'agent']);
  } catch (err) {
    problems.push(messageOf(err));
  }
  return { facts, problems };
}
