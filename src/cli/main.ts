/**
 * The CLI entry: the only place that reads process.env; parses arguments and configuration, makes the
 * logger, hands the command to composition.ts's app and maps errors to exit codes.
 */

import { fstatSync } from 'node:fs';
import type { EarlyDockerInfo } from '../adapters/early-docker-info.js';
import { NodeFiles } from '../adapters/node-files.js';
import { type Config, type ConfigCheck, checkConfig, configDefaults, configPath } from '../config.js';
import { EcsGvisorError, ExitCode, exitCodeOf, messageOf } from '../errors.js';
import { createLogger, stdoutIsJournal } from '../logger.js';
import { redact } from '../redact.js';
import type { StatusReport } from '../status/status-report.js';
import { renderStatusText } from '../status/status-text.js';
import { VERSION } from '../version.js';
import { answerOf, parseArgs } from './args.js';
import type { HostFacts } from './commands.js';
import type { ServiceEnv } from './options.js';

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Io = process,
  signal?: AbortSignal,
  /** What the entry already asked of Docker for this command (entry/early-asks.ts). */
  early?: EarlyDockerInfo,
): Promise<number> {
  const fail = (err: unknown): number => {
    io.stderr.write(redact(`ecs-gvisor: ${messageOf(err)}\n`));
    return exitCodeOf(err);
  };

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(argv);
  } catch (err) {
    return fail(err);
  }
  if (parsed.kind === 'usage') {
    // No command: what there is to run, on stderr (a script that forgot its argument fails, exit 2).
    io.stderr.write(answerOf(parsed) ?? '');
    return ExitCode.usage;
  }
  if (parsed.kind !== 'command') {
    let text = answerOf(parsed) ?? '';
    if (parsed.kind === 'help' && !parsed.command) {
      const { keysHelp } = await import('../config-reference.js');
      text += keysHelp(configDefaults());
    }
    io.stdout.write(text);
    return ExitCode.ok;
  }

  const path = configPath(env);
  let checked: ConfigCheck;
  try {
    checked = checkConfig({ fileText: await new NodeFiles().readText(path), filePath: path, env });
  } catch (err) {
    return fail(
      err instanceof EcsGvisorError ? err : new EcsGvisorError('CONFIG_INVALID', `Cannot read the configuration: ${messageOf(err)}.`),
    );
  }
  if (parsed.command === 'check-config') return checkConfigCommand(checked, parsed.json, io);
  // Said, not fatal: a variable meant for another version or a typo must not stop the service.
  for (const w of checked.unknownEnv) io.stderr.write(`ecs-gvisor: warning: ${w}\n`);
  if (!checked.config) return fail(new EcsGvisorError('CONFIG_INVALID', checked.problems[0]!));
  const cfg: Config = checked.config;

  const { command, steps } = parsed;
  // Commands whose answer is stdout log to stderr; the service commands log to stdout for journald.
  const answerOnStdout = command === 'plan' || command === 'status';
  // Their stderr is for people: only warnings and worse unless a lower level was asked for explicitly.
  const level = answerOnStdout && !env.ECS_GVISOR_LOG_LEVEL ? 'warn' : cfg.LOG_LEVEL;
  if (answerOnStdout && io.stdout === process.stdout) quietWhenReaderGone(process.stdout);
  const journald = !answerOnStdout && io.stdout === process.stdout && stdoutIsJournal(env.JOURNAL_STREAM, fdStat(1));
  const log = createLogger(level, answerOnStdout ? io.stderr : io.stdout, journald);
  // Logged whole: no ecs-gvisor key holds a secret (ecs.config, which does, is never logged).
  log.info({ command, steps, version: VERSION, config: cfg }, 'ecs-gvisor starting');

  try {
    // Loaded here, not at the top: --help, --version and a refused argument or configuration answer
    // without evaluating the adapters and their dependencies; `status` loads only what it reads.
    if (command === 'status') {
      const { readStatus, statusSources } = await import('../status/read-status.js');
      return await status(() => readStatus(statusSources(cfg, early), cfg), parsed.json, io);
    }
    const [{ buildApp }, { bootstrap, serve }, { plan, renderPlan, rollback }] = await Promise.all([
      import('./composition.js'),
      import('./run.js'),
      import('./commands.js'),
    ]);
    const service = serviceEnv(env);
    // systemd's notify socket is ours alone: a child that inherited it (a failing systemctl) would speak
    // to systemd for us (seen: ERRNO=112 before READY=1). systemd-notify is handed it explicitly.
    if (env === process.env) for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete process.env[k];
    const app = buildApp(cfg, log, service);
    switch (command) {
      case 'bootstrap':
        await bootstrap(app, steps, log, { agentSettleMs: app.agentSettleMs });
        return ExitCode.ok;
      case 'run':
        await serve(app, steps, log, signal ?? stopSignal());
        return ExitCode.ok;
      case 'plan': {
        const report = await plan(app, steps);
        const text = parsed.json ? `${JSON.stringify(report, null, 2)}\n` : renderPlan(report);
        // What could not be read (Docker down) is named in the answer and, as any failure is, on stderr;
        // the exit code says the plan is partial.
        for (const problem of new Set(report.unreadable.map((u) => u.problem))) io.stderr.write(`ecs-gvisor: ${redact(problem)}\n`);
        return await answer(io, redact(text), report.unreadable.length ? ExitCode.unavailable : ExitCode.ok);
      }
      case 'rollback':
        return await rollback(app, steps, log);
    }
  } catch (err) {
    if (!answerOnStdout) log.error({ code: (err as EcsGvisorError).code ?? 'INTERNAL', err: messageOf(err) }, 'failed');
    return fail(err);
  }
  return ExitCode.internal;
}

/**
 * A stream error on standard output is the writer's to report (answer()): never an uncaught error. A reader
 * that stopped early (`status | head`) closed the pipe, which is not a failure of ours.
 */
function quietWhenReaderGone(out: NodeJS.WritableStream): void {
  out.on('error', () => undefined);
}

/**
 * Write a command's answer and return its exit code once the stream has taken it. A reader gone (EPIPE)
 * drops the rest and keeps the code; any other failure (`status > /dev/full`: ENOSPC) is one sentence
 * on stderr and exit 4.
 */
function answer(io: Io, text: string, code: number): Promise<number> {
  return new Promise((resolve) => {
    io.stdout.write(text, (err?: Error | null) => {
      const errno = (err as NodeJS.ErrnoException | null | undefined)?.code;
      if (!err || errno === 'EPIPE') return resolve(code);
      io.stderr.write(`ecs-gvisor: cannot write the answer to standard output (${errno ?? err.message}).\n`);
      resolve(ExitCode.unavailable);
    });
  });
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

/**
 * `check-config`: every problem of the file and the environment (unknown ECS_GVISOR_* variables
 * included), then, with a valid configuration, of the host (Docker, runsc, ecs.config). Exit 0 or 2.
 */
async function checkConfigCommand(checked: ConfigCheck, json: boolean, io: Io): Promise<number> {
  const problems = [...checked.problems, ...checked.unknownEnv.map((w) => w.replace(/; it is ignored\.$/, '.'))];
  let host: { facts: HostFacts; problems: string[] } | undefined;
  if (checked.config) {
    const [{ buildApp }, { createLogger: quiet }] = await Promise.all([import('./composition.js'), import('../logger.js')]);
    host = await buildApp(checked.config, quiet('silent', io.stderr, false)).checkHost();
    problems.push(...host.problems);
  }
  const report = {
    ok: problems.length === 0,
    configFile: { path: checked.config?.CONFIG_FILE, found: checked.config?.CONFIG_FILE_FOUND },
    host: host?.facts,
    problems,
  };
  const text = json ? `${JSON.stringify(report, null, 2)}\n` : renderCheck(report);
  return answer(io, redact(text), report.ok ? ExitCode.ok : ExitCode.usage);
}

function renderCheck(r: { ok: boolean; configFile: { path?: string; found?: boolean }; host?: HostFacts; problems: string[] }): string {
  const lines: string[] = [];
  if (r.configFile.path)
    lines.push(`configuration: ${r.configFile.path}${r.configFile.found ? '' : ' (not found: defaults and environment only)'}`);
  const d = r.host?.docker;
  if (d)
    lines.push(
      `docker: ${d.version}, cgroup v${d.cgroupVersion} (${d.cgroupDriver} driver), default runtime ${d.defaultRuntime}, runtimes ${d.runtimes.join(', ')}`,
    );
  if (r.host?.runsc) lines.push(`runsc: ${r.host.runsc.path}${r.host.runsc.version ? ` (version ${r.host.runsc.version})` : ''}`);
  lines.push(r.ok ? 'OK: no problem found' : `${r.problems.length} problem(s):`, ...r.problems.map((p) => `  - ${p}`));
  return `${lines.join('\n')}\n`;
}

/** Exit 0 only when healthy (like `systemctl is-active`): scripts and health checks need not parse. */
async function status(read: () => Promise<StatusReport>, json: boolean, io: Io): Promise<number> {
  const s = await read();
  return answer(io, redact(json ? `${JSON.stringify(s, null, 2)}\n` : renderStatusText(s)), s.healthy ? ExitCode.ok : ExitCode.unhealthy);
}

/** Aborted by SIGTERM (systemd stop) or SIGINT. */
function stopSignal(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => ac.abort());
  return ac.signal;
}
