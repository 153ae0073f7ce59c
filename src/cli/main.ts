/**
 * The CLI entry and composition root: the only place that reads process.env, builds adapters and
 * maps errors to exit codes. Everything below it gets its dependencies through constructors.
 */
import { NodeFiles } from '../adapters/node-files.js';
import { configPath, parseConfig, type Config } from '../config.js';
import { EcsGvisorError, ExitCode, exitCodeOf, messageOf } from '../errors.js';
import { fstatSync } from 'node:fs';
import { createLogger, stdoutIsJournal, type Logger } from '../logger.js';
import { redact } from '../redact.js';
import { VERSION } from '../version.js';
import type { App, ServiceEnv, StatusReport } from './app.js';
import { HELP, parseArgs, type Step } from './args.js';
import { OWN_UNIT, takeDownOwnUnit } from './own-unit.js';


export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Io = process,
  signal?: AbortSignal,
): Promise<number> {
  const fail = (err: unknown): number => {
    io.stderr.write(redact(`ecs-gvisor: ${messageOf(err)}\n`));
    return exitCodeOf(err);
  };

  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (err) {
    return fail(err);
  }
  if (parsed.kind === 'help') {
    io.stdout.write(HELP);
    return ExitCode.ok;
  }
  if (parsed.kind === 'version') {
    io.stdout.write(`ecs-gvisor ${VERSION}\n`);
    return ExitCode.ok;
  }

  let cfg: Config;
  try {
    const files = new NodeFiles();
    const path = configPath(env);
    cfg = parseConfig({ fileText: await files.readText(path), filePath: path, env });
  } catch (err) {
    return fail(err instanceof EcsGvisorError ? err : new EcsGvisorError('CONFIG_INVALID', `Cannot read the configuration: ${messageOf(err)}.`));
  }

  const { command, steps } = parsed;
  // Commands whose answer is stdout log to stderr; the service commands log to stdout for journald.
  const answerOnStdout = command === 'plan' || command === 'status';
  // Their stderr is for people: only warnings and worse unless a lower level was asked for explicitly.
  const level = answerOnStdout && !env.ECS_GVISOR_LOG_LEVEL ? 'warn' : cfg.LOG_LEVEL;
  const journald = !answerOnStdout && io.stdout === process.stdout && stdoutIsJournal(env.JOURNAL_STREAM, fdStat(1));
  const log = createLogger(level, answerOnStdout ? io.stderr : io.stdout, journald);
  // Logged whole: no ecs-gvisor key holds a secret (ecs.config, which does, is never logged).
  log.info({ command, steps, version: VERSION, config: cfg }, 'ecs-gvisor starting');

  try {
    // Loaded here, not at the top: --help, --version and a refused argument or configuration answer
    // without evaluating the adapters and their dependencies.
    const [{ buildApp }, { bootstrap, serve }] = await Promise.all([import('./app.js'), import('./run.js')]);
    const app = buildApp(cfg, log, serviceEnv(env));
    switch (command) {
      case 'bootstrap':
        await bootstrap(app, steps, log, undefined, cfg.AGENT_SETTLE_SECONDS * 1000);
        return ExitCode.ok;
      case 'run':
        await serve(app, steps, log, signal ?? stopSignal());
        return ExitCode.ok;
      case 'plan':
        io.stdout.write(redact(await plan(app, steps)));
        return ExitCode.ok;
      case 'rollback':
        return await rollback(app, steps, log);
      case 'status':
        return await status(app, parsed.json, io);
    }
  } catch (err) {
    if (!answerOnStdout) log.error({ code: (err as EcsGvisorError).code ?? 'INTERNAL', err: messageOf(err) }, 'failed');
    return fail(err);
  }
  return ExitCode.internal;
}

function fdStat(fd: number): { dev: number; ino: number } | undefined {
  try {
    return fstatSync(fd);
  } catch {
    return undefined;
  }
}

/** systemd's notify socket and watchdog, when it started us as a notify service. */
function serviceEnv(env: Readonly<Record<string, string | undefined>>): ServiceEnv {
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === process.pid;
  return {
    notifySocket: env.NOTIFY_SOCKET || undefined,
    watchdogUsec: forUs && Number.isFinite(usec) && usec > 0 ? usec : undefined,
  };
}

async function rollback(app: App, steps: Step[], log: Logger): Promise<number> {
  const own = await takeDownOwnUnit(app.services);
  if (own.length) log.info({ unit: OWN_UNIT, actions: own }, `${OWN_UNIT} stopped and disabled first, so its watch does not put back what rollback removes (systemctl enable --now ${OWN_UNIT} to return)`);
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
      log.warn({ err: messageOf(err) }, 'could not mark the container instance unverified in ECS; remove its ecs-gvisor.sandbox attribute by hand');
    }
    const { restored, keptFor } = await app.runtime.rollback();
    log.info(
      { restored, keptFor: keptFor.length ? keptFor : undefined },
      !restored ? 'runtime: no backup, nothing of ours to roll back' : keptFor.length ? 'runtime rolled back; its entry kept for the containers created with it' : 'runtime rolled back',
    );
  }
  if (steps.includes('ecs-init')) {
    // Last: with runc the default again, ecs-init may recreate its agent.
    const actions = await app.ecsInit.rollback();
    log.info({ actions }, actions.length ? 'ecs-init enabled and started again' : 'ecs-init: nothing to restore');
  }
  return ExitCode.ok;
}

async function plan(app: App, steps: Step[]): Promise<string> {
  const lines: string[] = [];
  if (steps.includes('ecs-init')) {
    const p = await app.ecsInit.plan();
    const state = p.state ? `${p.state.load}, ${p.state.active}, ${p.state.fileState || 'no unit file'}` : 'no systemd';
    lines.push('ecs-init:', `  unit: ${state}`, `  actions: ${p.actions.length ? p.actions.map((a) => `systemctl ${a}`).join(', ') : 'none'}`);
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
    lines.push(`  docker: default runtime now "${p.live.defaultRuntime}"; ${p.live.converged ? 'no reload needed' : `reload by ${p.live.reloadBy}`}`);
    lines.push(`  probe: ${p.probe.image} image${p.probe.build ? ' (to be built)' : ''}, then a probe container proves the sandbox and its memory limit`);
  }
  if (steps.includes('network')) {
    const p = await app.network.plan();
    lines.push('network:');
    lines.push(`  route_localnet: ${p.routeLocalnet.now ?? '?'}${p.routeLocalnet.change ? ' -> 1' : ' (already 1)'}`);
    for (const r of p.rules) lines.push(`  ${r.present ? 'present' : 'add    '}  -t ${r.table} ${r.insert ? '-I' : '-A'} ${r.chain} ${r.args.join(' ')}`);
  }
  if (steps.includes('agent')) {
    const p = await app.agent.plan();
    lines.push('agent:');
    lines.push(`  image: ${p.image.ref} (${{ use: 'present', load: 'to be loaded from the ecs-init cache', pull: 'to be pulled' }[p.image.action]})`);
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

/** Exit 0 only when healthy (like `systemctl is-active`): scripts and health checks need not parse. */
async function status(app: App, json: boolean, io: Io): Promise<number> {
  const s = await app.status();
  const code = s.healthy ? ExitCode.ok : ExitCode.unhealthy;
  if (json) {
    io.stdout.write(redact(`${JSON.stringify(s, null, 2)}\n`));
    return code;
  }
  const r = s.runtime;
  const a = s.agent;
  const g = s.registration;
  const ago = (at?: string) => (at ? ` (at ${at})` : '');
  const rows: [string, string][] = [
    ['healthy', `${s.healthy ? 'yes' : 'NO'}: ${s.summary}`],
    ['runtime', r.name],
    ['runsc', `${r.runscPath} ${r.runscVersion ?? `(unavailable: ${r.runscProblem})`}`],
    ['docker default', r.dockerDefaultRuntime ?? `(unavailable: ${r.dockerProblem})`],
    ['verified', r.verified ? `yes, at ${r.verifiedAt}` : 'no'],
    ['evidence', r.evidence ? `pid ${r.evidence.pid} ${r.evidence.cmdline.split(' ')[0]}; memory limit on ${r.evidence.cgroupLimitFile}` : '-'],
    [
      'networks',
      `policy ${r.networkPolicy}; ECS modes proven: ${r.networkModes.join(', ') || 'none'}${Object.entries(r.evidence?.networks ?? {})
        .map(([m, p]) => `\n  ${m}: ${p.proven ? p.stack : `not proven (${p.reason})`}`)
        .join('')}`,
    ],
    ['agent', a.id ? `${a.container} ${a.id.slice(0, 12)} ${a.state} (runtime ${a.runtime}${a.health ? `, ${a.health}` : ''}), ${a.restarts} restart(s)` : 'no container'],
    ...(a.held ? ([['agent held', a.held]] as [string, string][]) : []),
    ...(a.stopped ? ([['agent stopped', `${a.stopped} (exit ${a.lastExit?.code})`]] as [string, string][]) : []),
    [
      'registration',
      g.containerInstanceArn
        ? `${g.cluster} ${g.containerInstanceArn}; ${g.status ?? 'ECS not asked yet'}${g.status ? `, agentConnected=${g.agentConnected}, health ${g.healthStatus ?? '-'}` : ''}${ago(g.checkedAt)}`
        : 'not registered',
    ],
    ['ecs calls', `${g.callsLastHour ?? 0} in the last hour${g.lastCall ? `; last ${g.lastCall.outcome}${ago(g.lastCall.at)}` : ''}`],
    [
      'audit',
      s.audit
        ? `${s.audit.checked} container(s), ${s.audit.violations.length} violation(s)${ago(s.audit.checkedAt)}${s.audit.violations.map((v) => `\n  ${v.name} ${v.id.slice(0, 12)}: ${v.reason}`).join('')}${(s.audit.networks ?? []).map((n) => `\n  ${n.name}: network ${n.networkMode || '-'}, ${n.stack === 'none' ? 'no sandbox' : n.stack}`).join('')}`
        : '-',
    ],
    ...(s.network
      ? ([['network rules', `${s.network.rules - s.network.missing}/${s.network.rules} in place${s.network.checkedAt ? ` (checked ${s.network.checkedAt})` : ''}; put back ${s.network.repairs} time(s)${s.network.repairedAt ? `, last at ${s.network.repairedAt}` : ''}`]] as [string, string][])
      : []),
    ['attributes', s.attributes && Object.keys(s.attributes.published).length ? Object.entries(s.attributes.published).map(([k, v]) => `${k}=${v}`).join(', ') : '-'],
    ['watch', s.watch.running ? `running (pid ${s.watch.pid}, updated ${s.watch.updatedAt})` : 'not running (start ecs-gvisor run)'],
    ['lifecycle', lifecycleRow(s.lifecycle)],
    ...(s.metrics ? ([['metrics', s.metrics.serving ? `http://127.0.0.1:${s.metrics.port}/metrics` : `off: ${s.metrics.problem ?? 'run is not serving them'}`]] as [string, string][]) : []),
    ['last error', r.lastError ? `${r.lastError.at} ${r.lastError.code}: ${r.lastError.message}` : '-'],
    ...s.lastErrors.slice(0, 3).map((e) => ['watch error', `${e.at} ${e.component} ${e.code}: ${e.message}`] as [string, string]),
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  io.stdout.write(redact(`${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`));
  return code;
}

function lifecycleRow(l: StatusReport['lifecycle']): string {
  if (!l.enabled) return 'off (no ECS_GVISOR_LAUNCH_HOOK, ECS_GVISOR_TERMINATE_HOOK or ECS_GVISOR_SPOT_DRAIN)';
  const parts = [`${l.instanceId ?? 'instance ?'} in ${l.group ?? 'no Auto Scaling group'}`, `target ${l.targetState ?? 'unknown'}`];
  const la = l.launch;
  if (la) parts.push(`launch hook ${la.hook}: ${la.phase === 'completed' ? `${la.result} at ${la.completedAt}` : la.phase}${la.heartbeats ? `, ${la.heartbeats} heartbeat(s)` : ''}${la.reason ? ` (${la.reason})` : ''}`);
  if (l.spot) parts.push(`spot notice ${l.spot.action}${l.spot.time ? ` at ${l.spot.time}` : ''}`);
  const d = l.drain;
  if (d) {
    parts.push(`${d.reason} drain ${d.phase}${d.by ? ` (${d.by})` : ''}${d.runningTasks !== undefined ? `, ${d.runningTasks} task(s)` : ''}`);
    if (d.hook) parts.push(`terminate hook ${d.hook.hook}: ${d.hook.phase === 'completed' ? `${d.hook.result} at ${d.hook.completedAt}` : d.hook.phase}`);
  }
  return parts.join('; ');
}

/** Aborted by SIGTERM (systemd stop) or SIGINT. */
function stopSignal(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => ac.abort());
  return ac.signal;
}
