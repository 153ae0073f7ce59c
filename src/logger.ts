import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { MASK, redact } from './redact.js';

export type Logger = PinoLogger;

/** Keys whose values never reach a log line (ecs.config secrets and the like). */
export const REDACT_PATHS = ['*.ECS_ENGINE_AUTH_DATA', 'env.*', 'secret', '*.secret', 'password', 'token'];

/**
 * The one root logger: JSON lines for journald, components as children (`log.child({component})`).
 * The destination is chosen by the caller: stdout for the service, stderr when stdout is a command's answer.
 */
export function createLogger(level: string, destination: DestinationStream | NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ecs-gvisor' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: MASK },
      // The whole line, last: a secret quoted inside an error message is masked too.
      hooks: { streamWrite: redact },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as DestinationStream,
  );
}
