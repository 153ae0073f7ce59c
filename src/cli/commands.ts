/**
 * What the commands do beyond running the steps: `status` (read everything, build one report), `plan`
 * (each step's plan as text), `rollback` (the steps undone in reverse), withdrawing the proof from ECS
 * before a rollback, serving metrics, and checking inputs before any step changes the host.
 */

import { startMetricsServer } from '../adapters/metrics-http.js';
import { ecsInitSwitches } from '../agent/agent-spec.js';
import { loadEcsConfigs } from '../agent/ecs-config.js';
import { type AwsCaller, regionOf } from '../aws/aws-caller.js';
import type { Config } from '../config.js';
import { EcsGvisorError, ExitCode, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, DockerPort, FilesPort } from '../ports.js';
import { METRICS_STATE, WATCH_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import type { MetricsRecord } from '../status/status-report.js';
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

/**
 * Serve metrics when ECS_GVISOR_METRICS_PORT is set; returns a closer. A port someone else holds is
 * logged and recorded for status, never fatal: the watch matters more than its figures.
 */
export async function startMetrics(
  d: { metrics: WatchMetrics; state: StateStore; clock: Clock; log: Logger },
  cfg: Config,
): Promise<(() => Promise<void>) | undefined> {
  if (cfg.METRICS_PORT === undefined) return undefined;
  const port = cfg.METRICS_PORT;
  const record = (r: Omit<MetricsRecord, 'port' | 'at'>) =>
    d.state.write(METRICS_STATE, { port, ...r, at: new Date(d.clock.now()).toISOString() } satisfies MetricsRecord);
  try {
    const server = await startMetricsServer(() => d.metrics.render(), port);
    d.log.info({ url: `http://127.0.0.1:${server.port}/metrics` }, 'serving metrics');
    await record({ serving: true });
    return server.close;
  } catch (err) {
    const problem = `cannot listen on 127.0.0.1:${port} (${messageOf(err)})`;
    d.log.warn({ port, err: messageOf(err) }, `metrics are off: ${problem}; watching without them`);
    await record({ serving: false, problem });
    return undefined;
  }
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

export async function plan(app: App, steps: Step[]): Promise<string> {
  const lines: string[] = [];
  if (steps.includes('ecs-init')) {
    const p = await app.ecsInit.plan();
    const state = p.state ? `${p.state.load}, ${p.state.active}, ${p.state.fileState || 'no unit file'}` : 'no systemd';
    lines.push(
      'ecs-init:',
      `  unit: ${state}`,
      `  actions: ${p.actions.length ? p.actions.map((a) => `systemctl ${a}`).join(', ') : 'none'}`,
    );
  }
  if (steps.includes('runtime')) {
    const p = await app.runtime.plan();
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
  if (steps.includes('network')) {
    const p = await app.network.plan();
    lines.push('network:');
    lines.push(`  route_localnet: ${p.routeLocalnet.now ?? '?'}${p.routeLocalnet.change ? ' -> 1' : ' (already 1)'}`);
    for (const r of p.rules)
      lines.push(`  ${r.present ? 'present' : 'add    '}  -t ${r.table} ${r.insert ? '-I' : '-A'} ${r.chain} ${r.args.join(' ')}`);
  }
  if (steps.includes('agent')) {
    const p = await app.agent.plan();
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
  return `${lines.join('\n')}\n`;
}
