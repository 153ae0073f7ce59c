/**
 * Typed errors. Every failure the operator can see carries a stable code; the CLI maps codes to the
 * documented exit codes (docs/operations.md "Exit codes"). Messages are one sentence naming the file, key or value
 * at fault.
 */

export const ExitCode = {
  ok: 0,
  internal: 1,
  /** Bad command line or bad ecs-gvisor configuration. Nothing was changed. */
  usage: 2,
  /** A host file we must edit (daemon.json, ecs.config) is malformed or conflicts. Nothing was changed. */
  hostInput: 3,
  /** Docker, runsc, systemctl or the network is unavailable or broken. Nothing was changed. */
  unavailable: 4,
  /** The sandbox could not be proven; our changes were rolled back (fail closed). */
  unproven: 5,
  /** Undoing a change failed: the host needs an operator (see the message and the state dir). */
  rollbackFailed: 6,
  /** The command or step is not implemented in this version. */
  notImplemented: 7,
  /** `status` only: it reported, and the instance is not healthy (the report says why). */
  unhealthy: 8,
  /**
   * A start failed without a proof and taking the instance out of service was incomplete: 16 plus the
   * sum of FENCE_BITS for what could not be done (17–31).
   */
  notFenced: 16,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const exitByCode = {
  USAGE: ExitCode.usage,
  CONFIG_INVALID: ExitCode.usage,
  DAEMON_JSON_INVALID: ExitCode.hostInput,
  DAEMON_JSON_CONFLICT: ExitCode.hostInput,
  DOCKERD_FLAG_CONFLICT: ExitCode.hostInput,
  ECS_CONFIG_INVALID: ExitCode.hostInput,
  /** The state dir is a link, someone else's or writable by others. */
  STATE_DIR_UNSAFE: ExitCode.hostInput,
  /** The agent's log is someone else's or writable by others: its word on ACS is not believed. */
  AGENT_LOG_UNSAFE: ExitCode.hostInput,
  METRICS_TEXTFILE_UNSAFE: ExitCode.hostInput,
  HOST_WRITE_FAILED: ExitCode.unavailable,
  DOCKER_UNAVAILABLE: ExitCode.unavailable,
  DOCKER_API: ExitCode.unavailable,
  RELOAD_FAILED: ExitCode.unavailable,
  SYSTEMCTL_FAILED: ExitCode.unavailable,
  IPTABLES_FAILED: ExitCode.unavailable,
  RUNSC_UNAVAILABLE: ExitCode.unavailable,
  AGENT_IMAGE_UNAVAILABLE: ExitCode.unavailable,
  AGENT_EXITED: ExitCode.unavailable,
  /** Docker refused the agent container built from ecs.config; the running agent was kept. */
  AGENT_SPEC_REFUSED: ExitCode.hostInput,
  RUNSC_INSTALL_FAILED: ExitCode.unavailable,
  /** Another ecs-gvisor command held the host lock for longer than we may wait. */
  HOST_LOCKED: ExitCode.unavailable,
  RUNSC_CHECKSUM_MISMATCH: ExitCode.hostInput,
  AWS_API: ExitCode.unavailable,
  IMDS_FAILED: ExitCode.unavailable,
  HTTP_FAILED: ExitCode.unavailable,
  SANDBOX_UNPROVEN: ExitCode.unproven,
  NOT_FENCED: ExitCode.notFenced,
  ROLLBACK_FAILED: ExitCode.rollbackFailed,
  NOT_IMPLEMENTED: ExitCode.notImplemented,
  INTERNAL: ExitCode.internal,
} as const satisfies Record<string, ExitCode>;

export type ErrorCode = keyof typeof exitByCode;

export class EcsGvisorError extends Error {
  readonly code: ErrorCode;
  /** Extra structured facts for logs and status (never secrets). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EcsGvisorError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }

  get exitCode(): number {
    return exitByCode[this.code];
  }
}

/** What failing closed does, each a bit of exit code 16 + bits when it could not be done. */
export const FENCE_BITS = { withdraw: 1, agent: 2, abandon: 4, unhealthy: 8 } as const;
export type FenceAction = keyof typeof FENCE_BITS;

/** A failed start whose fail-closed actions did not all succeed: the exit code says which did not. */
export class NotFencedError extends EcsGvisorError {
  constructor(
    message: string,
    readonly notDone: readonly FenceAction[],
    cause: unknown,
  ) {
    super('NOT_FENCED', message, { cause, details: { notDone } });
  }

  override get exitCode(): number {
    return ExitCode.notFenced + this.notDone.reduce((n, a) => n + FENCE_BITS[a], 0);
  }
}

export function exitCodeOf(err: unknown): number {
  return err instanceof EcsGvisorError ? err.exitCode : ExitCode.internal;
}

/** `text` as one sentence: its trailing full stops and spaces become one full stop (never ".."). */
export function sentence(text: string): string {
  return `${text.replace(/[.\s]+$/, '')}.`;
}

/** The one-line message of any thrown value. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** How an AWS call failed, from the exception's class and HTTP status (never its message). */
export type AwsOutcome = 'throttled' | 'server-error' | 'client-error' | 'network' | 'timeout';

/** An HTTP request that failed: refused (nothing listening), timeout, a status, or another network error. */
export class HttpError extends Error {
  constructor(
    readonly kind: 'refused' | 'timeout' | 'status' | 'network' | 'too-large',
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HttpError';
  }
}
