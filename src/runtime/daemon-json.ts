/**
 * Pure planning for Docker's daemon.json: validate what is there, merge our runtime in as a minimal
 * text edit, and plan the way back. No I/O here; the runtime step applies these plans.
 */
import { createHash } from 'node:crypto';
import { EcsGvisorError } from '../errors.js';
import { duplicateKeys, nodeAt, parseTreeStrict, removeJsonValue, setJsonValue } from './json-edit.js';

/** Docker's own default runtime names; a daemon.json default naming one of these is not an operator's choice to guard. */
export const DOCKER_DEFAULT_RUNTIMES: ReadonlySet<string> = new Set(['runc', 'io.containerd.runc.v2']);
const MAX_BYTES = 1024 * 1024;

export interface DesiredRuntime {
  name: string;
  path: string;
  runtimeArgs: readonly string[];
}

export interface DaemonJson {
  file: string;
  /** The exact text on disk; undefined when the file does not exist. */
  text: string | undefined;
  /** Parsed top level ({} when missing or blank). */
  value: Readonly<Record<string, unknown>>;
}

export interface DaemonJsonPlan {
  /** False when the file already says what we want: nothing is written. */
  changed: boolean;
  /** The full text to write (equal to the current text when unchanged). */
  next: string;
  /** Human lines describing the change, e.g. `set default-runtime: "runc" -> "runsc"`. */
  changes: string[];
}

/** Parse bytes read from disk. Throws DAEMON_JSON_INVALID naming the file and the problem. */
export function parseDaemonJson(file: string, bytes: Uint8Array | undefined): DaemonJson {
  if (bytes === undefined) return { file, text: undefined, value: {} };
  const bad = (problem: string) =>
    new EcsGvisorError('DAEMON_JSON_INVALID', `${file} ${problem}; it was left unchanged.`, { details: { file } });
  if (bytes.length > MAX_BYTES) throw bad(`is ${bytes.length} bytes, more than a daemon.json can sensibly be (1 MiB)`);
  const text = Buffer.from(bytes).toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(Buffer.from(bytes))) throw bad('is not valid UTF-8');
  if (text.startsWith('\uFEFF')) throw bad('starts with a byte-order mark, which dockerd 20.10 rejects');
  if (text.includes('\0')) throw bad('contains a NUL byte');
  if (text.trim() === '') return { file, text, value: {} };

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof SyntaxError ? `: ${err.message.split('\n')[0]}` : '';
    throw bad(`is not valid JSON${detail}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw bad(`must hold a JSON object at the top level, not ${describe(value)}`);
  }
  let root: ReturnType<typeof parseTreeStrict>;
  try {
    root = parseTreeStrict(text);
  } catch {
    throw bad('is not valid JSON');
  }
  const dupTop = duplicateKeys(root);
  if (dupTop.length > 0) throw bad(`has the key "${dupTop[0]}" more than once, so which one dockerd uses is unclear`);

  const obj = value as Record<string, unknown>;
  if ('runtimes' in obj) {
    const rt = obj.runtimes;
    if (rt === null || typeof rt !== 'object' || Array.isArray(rt)) {
      throw bad(`has "runtimes" set to ${describe(rt)}; it must be an object of runtime entries`);
    }
    const dupRt = duplicateKeys(nodeAt(text, ['runtimes']));
    if (dupRt.length > 0) throw bad(`has the runtime "${dupRt[0]}" more than once under "runtimes"`);
    for (const [name, entry] of Object.entries(rt as Record<string, unknown>)) {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        throw bad(`has runtimes."${name}" set to ${describe(entry)}; a runtime entry must be an object`);
      }
    }
  }
  if ('default-runtime' in obj && typeof obj['default-runtime'] !== 'string') {
    throw bad(`has "default-runtime" set to ${describe(obj['default-runtime'])}; it must be a runtime name`);
  }
  return { file, text, value: obj };
}

export function runtimeEntry(d: DesiredRuntime): Record<string, unknown> {
  return d.runtimeArgs.length > 0 ? { path: d.path, runtimeArgs: [...d.runtimeArgs] } : { path: d.path };
}

/**
 * Plan the merge: runtimes[name] = {path, runtimeArgs?} and default-runtime = name. Throws
 * DAEMON_JSON_CONFLICT when daemon.json already makes another runtime the default and the operator did
 * not ask to replace it.
 */
export function planDaemonJson(current: DaemonJson, desired: DesiredRuntime, opts: { replaceDefaultRuntime: boolean }): DaemonJsonPlan {
  const existingDefault = current.value['default-runtime'] as string | undefined;
  if (
    existingDefault !== undefined &&
    existingDefault !== desired.name &&
    !DOCKER_DEFAULT_RUNTIMES.has(existingDefault) &&
    !opts.replaceDefaultRuntime
  ) {
    throw new EcsGvisorError(
      'DAEMON_JSON_CONFLICT',
      `${current.file} already makes "${existingDefault}" the default-runtime; set ECS_GVISOR_REPLACE_DEFAULT_RUNTIME=true to replace it with "${desired.name}"; it was left unchanged.`,
      { details: { file: current.file, key: 'default-runtime', value: existingDefault } },
    );
  }

  const entry = runtimeEntry(desired);
  const runtimes = (current.value.runtimes ?? {}) as Record<string, unknown>;
  const changes: string[] = [];
  let text = current.text === undefined || current.text.trim() === '' ? '{}\n' : current.text;

  if (!deepEqual(runtimes[desired.name], entry)) {
    changes.push(`set runtimes.${desired.name}: ${show(runtimes[desired.name])} -> ${JSON.stringify(entry)}`);
    text = setJsonValue(text, ['runtimes', desired.name], entry);
  }
  if (existingDefault !== desired.name) {
    changes.push(`set default-runtime: ${show(existingDefault)} -> ${JSON.stringify(desired.name)}`);
    text = setJsonValue(text, ['default-runtime'], desired.name);
  }
  if (changes.length === 0) return { changed: false, next: current.text ?? '', changes };
  return { changed: true, next: text, changes };
}

/** What the file held before we changed it, as much as undoing our change needs. */
export interface OriginalRuntimeKeys {
  hadRuntimes: boolean;
  /** The original runtimes[name] entry, when there was one. */
  entry: unknown;
  /** The original default-runtime, when there was one. */
  defaultRuntime: string | undefined;
}

export function originalKeys(doc: DaemonJson, name: string): OriginalRuntimeKeys {
  const rt = doc.value.runtimes as Record<string, unknown> | undefined;
  return {
    hadRuntimes: rt !== undefined,
    entry: rt?.[name],
    defaultRuntime: doc.value['default-runtime'] as string | undefined,
  };
}

/**
 * Remove exactly what the merge added from `current` (the operator may have edited the file since):
 * our runtime entry and default-runtime go back to their original values or away.
 */
export function planRemoval(current: DaemonJson, name: string, original: OriginalRuntimeKeys): string {
  let text = current.text ?? '{}\n';
  if (current.text === undefined || current.text.trim() === '') return text;
  text = original.entry === undefined ? removeJsonValue(text, ['runtimes', name]) : setJsonValue(text, ['runtimes', name], original.entry);
  text =
    original.defaultRuntime === undefined
      ? removeJsonValue(text, ['default-runtime'])
      : setJsonValue(text, ['default-runtime'], original.defaultRuntime);
  const rt = (JSON.parse(text) as Record<string, unknown>).runtimes;
  if (!original.hadRuntimes && rt !== undefined && Object.keys(rt as object).length === 0) {
    text = removeJsonValue(text, ['runtimes']);
  }
  return text;
}

/**
 * The way back while containers created with our runtime still exist: `target` (the original, or the
 * original with the operator's later edits) plus our runtime entry as it stands now. Docker runs
 * `docker exec` and `docker restart` through the runtime named at creation, so without the entry those
 * containers can neither be entered nor restarted; the default still goes back.
 */
export function keepRuntimeEntry(target: string | undefined, current: DaemonJson, name: string): string | undefined {
  const entry = (current.value.runtimes as Record<string, unknown> | undefined)?.[name];
  if (entry === undefined) return target; // the operator removed it already: nothing to keep
  const base = target === undefined || target.trim() === '' ? '{}\n' : target;
  return setJsonValue(base, ['runtimes', name], entry);
}

/**
 * dockerd's reload applies only the keys present in the file, so going back to a file without
 * default-runtime/runtimes would leave our runtime live until dockerd restarts. The transition text
 * states the old live default and an empty runtimes map explicitly; once dockerd has applied it, the
 * final text (the original) can be written back and means the same thing on the next start.
 */
export function transitionText(target: string | undefined, liveDefaultRuntime: string): string {
  let text = target === undefined || target.trim() === '' ? '{}\n' : target;
  const value = JSON.parse(text) as Record<string, unknown>;
  if (!('default-runtime' in value)) text = setJsonValue(text, ['default-runtime'], liveDefaultRuntime);
  if (!('runtimes' in value)) text = setJsonValue(text, ['runtimes'], {});
  return text;
}

/** Arguments on dockerd's own command line that make our daemon.json edit fatal for dockerd. */
export function dockerdFlagConflict(cmdline: readonly string[], name: string): string | undefined {
  for (let i = 0; i < cmdline.length; i++) {
    const arg = cmdline[i]!;
    const [flag, inline] = arg.startsWith('--') ? splitFlag(arg) : [arg, undefined];
    const value = inline ?? cmdline[i + 1];
    if (flag === '--default-runtime') return `dockerd was started with --default-runtime${value ? `=${value}` : ''}`;
    if (flag === '--add-runtime' && value?.split('=')[0] === name) {
      return `dockerd was started with --add-runtime ${value}`;
    }
  }
  return undefined;
}

function splitFlag(arg: string): [string, string | undefined] {
  const eq = arg.indexOf('=');
  return eq < 0 ? [arg, undefined] : [arg.slice(0, eq), arg.slice(eq + 1)];
}

export function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function show(v: unknown): string {
  return v === undefined ? '(absent)' : JSON.stringify(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v)})`;
  return `a ${typeof v}`;
}
