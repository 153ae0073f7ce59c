import { EcsGvisorError } from '../errors.js';
import type { CommandResult, CommandsPort, FilesPort } from '../ports.js';
import { RUNSC_VERSION_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';

export interface RunscVersion {
  /** e.g. `release-20240807.0` or Debian's `0.0~20221219.0`. */
  version: string;
  spec: string | undefined;
}

/** Parse `runsc --version`: "runsc version <ver>" then "spec: <ver>". */
export function parseRunscVersion(stdout: string): RunscVersion | undefined {
  const v = /^runsc version (\S+)/m.exec(stdout);
  if (!v) return undefined;
  const spec = /^spec: (\S+)/m.exec(stdout);
  return { version: v[1]!, spec: spec?.[1] };
}

/** Find runsc at the configured path and ask its version. Throws RUNSC_UNAVAILABLE with the reason. */
export async function detectRunsc(files: FilesPort, commands: CommandsPort, path: string): Promise<RunscVersion> {
  if (!(await files.exists(path))) {
    throw new EcsGvisorError(
      'RUNSC_UNAVAILABLE',
      `ECS_GVISOR_RUNSC_PATH=${path} does not exist; install runsc there or set ECS_GVISOR_RUNSC_SOURCE to install it.`,
    );
  }
  let r: CommandResult;
  try {
    r = await commands.run(path, ['--version'], { timeoutMs: 15_000 });
  } catch (err) {
    throw new EcsGvisorError('RUNSC_UNAVAILABLE', `ECS_GVISOR_RUNSC_PATH=${path} cannot be run (${(err as Error).message}).`, {
      cause: err,
    });
  }
  const parsed = r.code === 0 ? parseRunscVersion(r.stdout) : undefined;
  if (!parsed) {
    const said = (r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 200) || 'no output';
    throw new EcsGvisorError(
      'RUNSC_UNAVAILABLE',
      `ECS_GVISOR_RUNSC_PATH=${path} is not a working runsc: "${path} --version" exited ${r.code} (${said}).`,
    );
  }
  return parsed;
}

/** The last version asked of the binary at `path`, kept beside the binary's identity (runsc-version.json). */
export interface RunscRecord {
  path: string;
  identity: string;
  version: RunscVersion;
}

/** Where the detector keeps its answer between processes: `write` absent for a reader (`status`). */
export interface RunscRecordStore {
  read(): Promise<unknown>;
  write?(r: RunscRecord): Promise<void>;
}

/** The record in the state directory (root's alone); `status` reads it and writes nothing. */
export function runscRecordIn(state: Pick<StateStore, 'read' | 'write'>, writes: boolean): RunscRecordStore {
  const read = () => state.read(RUNSC_VERSION_STATE);
  return writes ? { read, write: (r) => state.write(RUNSC_VERSION_STATE, r) } : { read };
}

function isRecord(r: unknown, path: string, identity: string): r is RunscRecord {
  const x = r as Partial<RunscRecord> | undefined;
  return x?.path === path && x.identity === identity && typeof x.version?.version === 'string';
}

/**
 * detectRunsc, run again only when the binary changed (replaced, rewritten or touched): the drift check
 * asks every minute, and `runsc --version` was most of an idle `run`'s CPU. With a record store, the
 * answer is also kept for the next process (`status` asks on every run; a Go binary's start is 25-40 ms
 * of two busy cores on an instance).
 */
export function cachedRunscDetector(
  files: FilesPort,
  commands: CommandsPort,
  path: string,
  record?: RunscRecordStore,
): () => Promise<RunscVersion> {
  let last: { identity: string; version: RunscVersion } | undefined;
  return async () => {
    const identity = await files.identity(path).catch(() => undefined);
    if (identity !== undefined && last?.identity === identity) return last.version;
    if (identity !== undefined) {
      const kept = await record?.read().catch(() => undefined);
      if (isRecord(kept, path, identity)) {
        last = { identity, version: kept.version };
        return kept.version;
      }
    }
    const version = await detectRunsc(files, commands, path);
    last = identity === undefined ? undefined : { identity, version };
    if (last) await record?.write?.({ path, ...last }).catch(() => undefined);
    return version;
  };
}
