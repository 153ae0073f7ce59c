import { type DestinationStream, type Logger as PinoLogger, pino } from 'pino';
import { MASK, redact } from './redact.js';

export type Logger = PinoLogger;

/** Keys whose values never reach a log line (ecs.config secrets and the like). */
export const REDACT_PATHS = ['*.ECS_ENGINE_AUTH_DATA', 'env.*', 'secret', '*.secret', 'password', 'token'];

/** syslog priorities journald files each pino level under (crit, err, warning, info, debug). */
const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** `<N>` before a JSON line: journald's stream protocol takes it as the line's priority and strips it. */
export function withPriority(line: string): string {
  const level = /^\{"level":"(\w+)"/.exec(line)?.[1];
  return `<${PRIORITY[level ?? ''] ?? 6}>${line}`;
}

/** Whether stdout is journald's stream (systemd sets JOURNAL_STREAM to its device and inode). */
export function stdoutIsJournal(journalStream: string | undefined, stdout: { dev: number; ino: number } | undefined): boolean {
  return journalStream !== undefined && stdout !== undefined && journalStream === `${stdout.dev}:${stdout.ino}`;
}

/**
 * The one root logger: JSON lines for journald, components as children (`log.child({component})`).
 * The destination is chosen by the caller: stdout for the service, stderr when stdout is a command's answer.
 * `journald`: each line gets its priority prefix, so `journalctl -p warning` shows the warnings.
 */
export function createLogger(level: string, destination: DestinationStream | NodeJS.WritableStream, journald = false): Logger {
  return pino(
    {
      level,
      base: { service: 'ecs-gvisor' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: MASK },
      // The whole line, last: a secret quoted inside an error message is masked too.
      hooks: { streamWrite: journald ? (s) => withPriority(redact(s)) : redact },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as DestinationStream,
  );
}
