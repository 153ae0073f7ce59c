/**
 * The `runtime` step: runsc becomes Docker's default runtime — merged into daemon.json, applied by
 * reload, proven on a probe, rolled back when any of that fails (fail closed).
 */

import { renderDiff } from '../diff.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import { Later } from '../later.js';
import type { Logger } from '../logger.js';
import type { Clock, DockerPort, FilesPort } from '../ports.js';
import { RUNTIME_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import type { BackupStore } from './backup-store.js';
import {
  type DaemonJson,
  type DesiredRuntime,
  dockerdFlagConflict,
  keepRuntimeEntry,
  originalKeys,
  parseDaemonJson,
  planDaemonJson,
  planRemoval,
  sha256,
  transitionText,
} from './daemon-json.js';
import { type DockerdProcess, type DockerReloader, type LiveExpectation, matches } from './docker-reloader.js';
import type { RunscVersion } from './runsc.js';
import { type NetworkPolicy, renderRuntimeEntry } from './runtime-entry.js';
import type { SandboxEvidence, SandboxProver } from './sandbox-proof.js';

export const DEFAULT_DOCKERD_CONFIG = '/etc/docker/daemon.json';

/**
 * What the runtime step asks of Docker, the files, the reloader and the proof: its own narrow ports (a
 * fake for its tests needs only these).
 */
export type RuntimeDocker = Pick<DockerPort, 'info' | 'imageExists' | 'listContainers' | 'removeImage'>;
export type RuntimeFiles = Pick<FilesPort, 'read' | 'readText' | 'writeAtomic' | 'remove' | 'realpath' | 'mkdirp'>;
export type Reloader = Pick<DockerReloader, 'locate' | 'reload' | 'apply'>;
export type Prover = Pick<SandboxProver, 'builtinImage' | 'image' | 'ensureImage' | 'prove' | 'removeStale' | 'settled'>;

export interface RuntimeStepDeps {
  docker: RuntimeDocker;
  files: RuntimeFiles;
  clock: Clock;
  log: Logger;
  reloader: Reloader;
  prover: Prover;
  backups: BackupStore;
  state: StateStore;
  /** Installs runsc when a source is configured, then reports its version (apply). */
  runsc: () => Promise<RunscVersion>;
  /** Reports the installed runsc's version without installing anything (plan, and the watch's drift check). */
  detectRunsc: () => Promise<RunscVersion>;
}

export interface RuntimeStepOptions {
  daemonJson: string;
  /** Our runtime entry in daemon.json; its path is the entry point below. */
  desired: DesiredRuntime;
  /** The entry point written at desired.path: runsc behind a per-container network policy. */
  entry: { runscPath: string; policy: NetworkPolicy };
  replaceDefaultRuntime: boolean;
}

export interface RuntimePlan {
  runsc: { path: string; version?: string; problem?: string };
  daemonJson: { file: string; changed: boolean; changes: string[]; diff: string };
  /** The runtime entry point: missing or not what this configuration writes (policy, runsc path). */
  entry: { path: string; policy: NetworkPolicy; changed: boolean };
  live: { defaultRuntime: string; converged: boolean; reloadBy: string };
  probe: { image: string; build: boolean };
}

export interface RuntimeState {
  name: string;
  runscPath: string;
  runscVersion?: string;
  /** The network policy the entry point applies. */
  networkPolicy?: NetworkPolicy;
  verified: boolean;
  verifiedAt?: string;
  evidence?: SandboxEvidence;
  lastError?: { code: string; message: string; at: string };
}

export class RuntimeStep {
  constructor(
    private readonly deps: RuntimeStepDeps,
    private readonly opts: RuntimeStepOptions,
  ) {}

  private get file(): string {
    return this.opts.daemonJson;
  }

  private expectation(): LiveExpectation {
    const d = this.opts.desired;
    return { defaultRuntime: d.name, present: { [d.name]: { path: d.path, runtimeArgs: d.runtimeArgs } }, absent: [] };
  }

  /** What apply would do; changes nothing. */
  async plan(): Promise<RuntimePlan> {
    let runsc: RuntimePlan['runsc'] = { path: this.opts.desired.path };
    try {
      runsc = { ...runsc, version: (await this.deps.detectRunsc()).version };
    } catch (err) {
      runsc = { ...runsc, problem: messageOf(err) };
    }
    const info = await this.deps.docker.info();
    const doc = await this.read();
    const proc = await this.deps.reloader.locate();
    await this.checkDockerd(proc);
    const plan = planDaemonJson(doc, this.opts.desired, { replaceDefaultRuntime: this.opts.replaceDefaultRuntime });
    const converged = !plan.changed && matches(info, this.expectation());
    return {
      runsc,
      daemonJson: {
        file: this.file,
        changed: plan.changed,
        changes: plan.changes,
        diff: plan.changed ? renderDiff(this.file, doc.text, plan.next) : '',
      },
      entry: { path: this.opts.desired.path, policy: this.opts.entry.policy, changed: await this.entryChanged() },
      live: { defaultRuntime: info.defaultRuntime, converged, reloadBy: converged ? 'none needed' : describeReload(proc) },
      probe: {
        image: this.deps.prover.builtinImage ? 'built-in' : 'operator-supplied',
        build: !(await this.deps.docker.imageExists(this.deps.prover.image)),
      },
    };
  }

  /** What apply left for settled(); started by its first call. */
  private later: Later<boolean, RuntimeState | undefined> = Later.done(undefined);

  /**
   * Finishes what apply left for later: the network modes (then written to runtime.json) and the
   * removal of the probes. Resolves to the state with the modes once they are recorded (undefined when
   * apply left nothing); rejects only when runtime.json cannot be written. `skipModes`: only the probes
   * are removed (a step after the proof failed: run is about to stop), and the state stays without them.
   */
  settled(opts: { skipModes?: boolean } = {}): Promise<RuntimeState | undefined> {
    return this.later.get(opts.skipModes === true);
  }

  /**
   * Converge and prove. Throws (after rolling our change back) when the sandbox cannot be proven.
   * `modesLater`: apply returns once the sandbox is proven; the network modes' probes and the removal of
   * every probe wait for settled() (bootstrap starts the agent first, and the state it returns has no
   * `networks` yet); otherwise all is done when apply returns. `changesAfter`: what it reads comes first,
   * what it changes waits for this (ecs-init stopped); a rejection ends apply with it, nothing changed.
   * `beforeUndo`: after a failure, before Docker's default goes back to what it was (bootstrap stops the
   * agent there, so a crash during the rollback cannot leave it placing tasks on runc).
   */
  async apply(
    opts: { modesLater?: boolean; changesAfter?: Promise<unknown>; beforeUndo?: () => Promise<unknown> } = {},
  ): Promise<RuntimeState> {
    const log = this.deps.log;
    const d = this.opts.desired;
    this.later = Later.done(undefined); // what an earlier apply left is the prover's to finish now
    // The probe image does not depend on the runtime: built while runsc is checked and Docker reloaded.
    const image = this.deps.prover.ensureImage();
    image.catch(() => {}); // awaited below, inside the rollback's reach
    // Reads only, all at once: none needs another's answer.
    const [detected, info, file, located] = await Promise.allSettled([
      this.deps.runsc(),
      this.deps.docker.info(),
      this.read(),
      this.deps.reloader.locate(),
    ]);
    if (detected.status === 'rejected') {
      await this.recordFailure(detected.reason, undefined);
      throw detected.reason;
    }
    const version = detected.value;
    log.info({ runsc: d.path, version: version.version }, 'runsc found');
    const [before, doc, proc] = [settledValue(info), settledValue(file), settledValue(located)];
    await this.checkDockerd(proc);
    const plan = planDaemonJson(doc, d, { replaceDefaultRuntime: this.opts.replaceDefaultRuntime });
    const needsReload = plan.changed || !matches(before, this.expectation());
    if (needsReload && proc.pid === undefined && !proc.viaSystemd) {
      // Refuse before writing: a file we cannot apply would only take effect at some later restart.
      await this.deps.reloader.reload(proc);
    }
    await opts.changesAfter;

    try {
      // Both before daemon.json names the entry point (Docker must never point at one that is not there)
      // and before it changes (a rollback needs the backup); neither needs the other.
      await Promise.all([
        this.writeEntry(),
        plan.changed &&
          this.deps.backups.record(this.file, doc.text, before.defaultRuntime, sha256(plan.next), new Date(this.deps.clock.now())),
      ]);
      if (plan.changed) {
        await this.write(plan.next);
        log.info({ file: this.file, changes: plan.changes }, 'daemon.json updated');
      } else {
        log.info({ file: this.file }, 'daemon.json already converged');
      }
      if (needsReload) {
        await this.deps.reloader.apply(proc, this.expectation(), this.file);
        log.info({ defaultRuntime: d.name }, 'dockerd reloaded; default runtime confirmed through the API');
      }
      await image;
      const removed = await this.deps.prover.removeStale();
      if (removed > 0) log.warn({ removed }, 'removed probe containers left by an earlier run');
      const evidence = await this.deps.prover.prove(d.name, this.opts.entry.policy, { modesLater: opts.modesLater });
      log.info({ evidence }, 'sandbox proven');
      const state: RuntimeState = {
        name: d.name,
        runscPath: this.opts.entry.runscPath,
        runscVersion: version.version,
        networkPolicy: this.opts.entry.policy,
        verified: true,
        verifiedAt: evidence.provenAt,
        evidence,
      };
      await this.deps.state.write(RUNTIME_STATE, state);
      this.later = new Later(async (skipModes: boolean) => {
        const networks = await this.deps.prover.settled({ skipModes });
        if (!networks) return state;
        const full: RuntimeState = { ...state, evidence: { ...evidence, networks } };
        await this.deps.state.write(RUNTIME_STATE, full);
        log.info({ networks }, 'network modes proven');
        return full;
      });
      if (!opts.modesLater) await this.settled();
      return state;
    } catch (err) {
      throw await this.failClosed(err, proc, version, opts.beforeUndo);
    }
  }

  /**
   * Undo: daemon.json back to the original (or just our keys removed), Docker's live state as before.
   * While containers created with our runtime exist (tasks keep running through a rollback), the default
   * goes back but the runtime entry stays, so `docker exec` (ECS Exec) and restarts of those containers
   * still work; the backup is kept, and a later rollback with none of them left removes the entry.
   */
  async rollback(): Promise<{ restored: boolean; keptFor: string[] }> {
    const proc = await this.deps.reloader.locate();
    await this.deps.prover.removeStale();
    const name = this.opts.desired.name;
    const users = (await this.deps.docker.listContainers({ all: true })).filter((c) => c.runtime === name).map((c) => c.name);
    const restored = await this.restoreOriginal(proc, users);
    // The entry point goes with the runtime entry that names it; while that stays, so does it.
    if (!(restored && users.length)) await this.deps.files.remove(this.opts.desired.path);
    if (this.deps.prover.builtinImage) await this.deps.docker.removeImage(this.deps.prover.image);
    await this.deps.state.remove(RUNTIME_STATE);
    return { restored, keptFor: restored ? users : [] };
  }

  private async failClosed(
    err: unknown,
    proc: DockerdProcess,
    version: RunscVersion,
    beforeUndo: (() => Promise<unknown>) | undefined,
  ): Promise<unknown> {
    const log = this.deps.log;
    log.error({ err: messageOf(err) }, 'runtime step failed; rolling back (fail closed)');
    // Its failure is the caller's to report (it tries again once the step has failed).
    await beforeUndo?.().catch((e: unknown) => log.error({ err: messageOf(e) }, 'before rolling back: failed'));
    let restored: boolean;
    try {
      restored = await this.restoreOriginal(proc);
    } catch (undoErr) {
      const failure = new EcsGvisorError(
        'ROLLBACK_FAILED',
        `${messageOf(err)} Rolling ${this.file} back failed as well: ${messageOf(undoErr)}`,
        { cause: undoErr },
      );
      await this.recordFailure(failure, version);
      return failure;
    }
    await this.recordFailure(err, version);
    if (!(err instanceof EcsGvisorError)) return err;
    const tail = restored
      ? ` ${this.file} and Docker's default runtime were restored.`
      : ` ${this.file} held no change of ecs-gvisor's to roll back.`;
    return new EcsGvisorError(err.code, `${err.message}${tail}`, { cause: err.cause, details: { ...err.details, restored } });
  }

  /**
   * Returns false when there was no backup, i.e. nothing of ours to undo. `keepFor`: containers created
   * with our runtime; while there are any, its entry stays in the file (and the backup stays).
   */
  private async restoreOriginal(proc: DockerdProcess, keepFor: readonly string[] = []): Promise<boolean> {
    const name = this.opts.desired.name;
    const backup = await this.deps.backups.load(this.file);
    if (!backup) return false;
    const current = await this.read();
    // Our write never landed (it failed: a read-only or full disk) and Docker still runs as before: there is
    // nothing to undo, and writing a transition file would only fail the same way.
    if (current.text === backup.originalText && (await this.deps.docker.info()).defaultRuntime === backup.liveDefaultRuntime) {
      await this.deps.backups.clear();
      return false;
    }
    const untouched = current.text !== undefined && sha256(current.text) === backup.writtenSha256;
    const original = untouched
      ? backup.originalText
      : planRemoval(current, name, originalKeys(parseDaemonJson(this.file, encode(backup.originalText)), name));
    const target = keepFor.length ? keepRuntimeEntry(original, current, name) : original;
    const keeping = target !== original;
    const transition = transitionText(target, backup.liveDefaultRuntime);
    const t = JSON.parse(transition) as { 'default-runtime': string; runtimes: Record<string, unknown> };
    const keep = name in t.runtimes;
    const expect: LiveExpectation = {
      defaultRuntime: t['default-runtime'],
      present: keep ? { [name]: true } : {},
      absent: keep ? [] : [name],
    };
    if (transition !== current.text) await this.write(transition);
    await this.deps.reloader.apply(proc, expect, this.file);
    if (target === undefined) await this.deps.files.remove(this.file);
    else if (target !== transition) await this.write(target);
    if (keeping) {
      // The backup stays, now recording what we left: the next rollback finds the file as we wrote it
      // and puts the original bytes back.
      await this.deps.backups.record(
        this.file,
        backup.originalText,
        backup.liveDefaultRuntime,
        sha256(target!),
        new Date(this.deps.clock.now()),
      );
      this.deps.log.warn(
        { file: this.file, runtime: name, containers: keepFor, defaultRuntime: expect.defaultRuntime },
        `Docker's default runtime is back to ${expect.defaultRuntime}, but runtimes.${name} stays in ${this.file} while ${keepFor.length} container(s) created with it exist (${keepFor.slice(0, 10).join(', ')}${keepFor.length > 10 ? ', …' : ''}): docker exec and restarts need it. Run rollback again once they are gone to remove it.`,
      );
      return true;
    }
    await this.deps.backups.clear();
    this.deps.log.info({ file: this.file, defaultRuntime: expect.defaultRuntime }, 'daemon.json restored and Docker reloaded');
    return true;
  }

  private async checkDockerd(proc: DockerdProcess): Promise<void> {
    if (!proc.cmdline) return;
    const conflict = dockerdFlagConflict(proc.cmdline, this.opts.desired.name);
    if (conflict) {
      throw new EcsGvisorError(
        'DOCKERD_FLAG_CONFLICT',
        `${conflict} (pid ${proc.pid}), so a ${this.opts.desired.name} default-runtime in ${this.file} would keep dockerd from starting; remove that flag first. ${this.file} was left unchanged.`,
      );
    }
    const reads = dockerdConfigFile(proc.cmdline);
    const [a, b] = await Promise.all([this.deps.files.realpath(reads), this.deps.files.realpath(this.file)]);
    if (a !== b) {
      throw new EcsGvisorError(
        'DOCKERD_FLAG_CONFLICT',
        `dockerd (pid ${proc.pid}) reads ${reads}, not ECS_GVISOR_DAEMON_JSON=${this.file}; point the key at the file dockerd reads. Nothing was changed.`,
      );
    }
  }

  private async read(): Promise<DaemonJson> {
    let bytes: Uint8Array | undefined;
    try {
      bytes = await this.deps.files.read(this.file, { maxBytes: 4 * 1024 * 1024 });
    } catch (err) {
      throw new EcsGvisorError('DAEMON_JSON_INVALID', `${this.file} cannot be read (${messageOf(err)}); it was left unchanged.`, {
        cause: err,
      });
    }
    return parseDaemonJson(this.file, bytes);
  }

  private async write(text: string): Promise<void> {
    try {
      await this.deps.files.writeAtomic(this.file, text, 0o644);
    } catch (err) {
      throw new EcsGvisorError('HOST_WRITE_FAILED', `Cannot write ${this.file} (${messageOf(err)}); the file was left as it was.`, {
        cause: err,
      });
    }
  }

  private entryText(): string {
    return renderRuntimeEntry(this.opts.entry);
  }

  private async entryChanged(): Promise<boolean> {
    return (await this.deps.files.readText(this.opts.desired.path).catch(() => undefined)) !== this.entryText();
  }

  private async writeEntry(): Promise<void> {
    if (!(await this.entryChanged())) return;
    const d = this.opts.desired;
    await this.deps.files.mkdirp(dirOf(d.path), 0o755);
    await this.deps.files.writeAtomic(d.path, this.entryText(), 0o755);
    this.deps.log.info({ entry: d.path, policy: this.opts.entry.policy, runsc: this.opts.entry.runscPath }, 'runtime entry point written');
  }

  private async recordFailure(err: unknown, version: RunscVersion | undefined): Promise<void> {
    const code = err instanceof EcsGvisorError ? err.code : 'INTERNAL';
    const state: RuntimeState = {
      name: this.opts.desired.name,
      runscPath: this.opts.entry.runscPath,
      runscVersion: version?.version,
      verified: false,
      lastError: { code, message: messageOf(err), at: new Date(this.deps.clock.now()).toISOString() },
    };
    await this.deps.state.write(RUNTIME_STATE, state).catch(() => undefined);
  }
}

/** The config file dockerd reads, from its command line. */
export function dockerdConfigFile(cmdline: readonly string[]): string {
  for (let i = 0; i < cmdline.length; i++) {
    const a = cmdline[i]!;
    if (a === '--config-file' && cmdline[i + 1]) return cmdline[i + 1]!;
    if (a.startsWith('--config-file=')) return a.slice('--config-file='.length);
  }
  return DEFAULT_DOCKERD_CONFIG;
}

export function describeReload(proc: DockerdProcess): string {
  if (proc.viaSystemd) return `systemctl reload (dockerd pid ${proc.pid})`;
  if (proc.pid !== undefined) return `SIGHUP to dockerd pid ${proc.pid}`;
  return 'impossible: no dockerd found through systemd or the pidfile';
}

/** A settled read's value, or its failure thrown (in the order the caller asks). */
function settledValue<T>(r: PromiseSettledResult<T>): T {
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

function encode(text: string | undefined): Uint8Array | undefined {
  return text === undefined ? undefined : Buffer.from(text, 'utf8');
}
