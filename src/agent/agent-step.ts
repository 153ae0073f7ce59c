/**
 * The `agent` step: the amazon-ecs-agent container under runc with ecs-init's spec. Recreated when its
 * spec or its image changed (ecs-init recreates it on every start, so a re-tagged image always runs);
 * a container ecs-init made is replaced by ours.
 */
import { renderDiff } from '../diff.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ContainerSpec, ContainerState, DockerPort, FilesPort } from '../ports.js';
import { retrying } from '../retry.js';
import { SUPERVISOR_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import {
  AGENT_NAME,
  type AgentSpec,
  buildAgentContainerSpec,
  cacheStatus,
  EBS_MOUNT_DIR,
  HASH_LABEL,
  IMAGE_ID_LABEL,
  MANAGED_LABEL,
  PATHS_TO_CHECK,
  planAgentImage,
} from './agent-spec.js';
import { loadEcsConfigs, redactEnv } from './ecs-config.js';

export const AGENT_STATE = 'agent.json';
/** Where a replacement is created, and where the agent it replaces waits until the new one has started. */
const NEXT_NAME = `${AGENT_NAME}-next`;
const PREVIOUS_NAME = `${AGENT_NAME}-previous`;
/** The agent's own grace to deregister cleanly, as the supervisor gives it. */
const AGENT_STOP_SECONDS = 30;

export interface AgentStepOptions {
  image: string;
  dockerHost: string;
  /** /etc/ecs/ecs.config */
  ecsConfig: string;
  /** /var/lib/ecs/ecs.config */
  instanceConfig: string;
  /** /var/cache/ecs: ecs-agent.tar, state, desired-image */
  cacheDir: string;
  pullRetries: number;
  /** A replacement must still run this long before the agent it replaces is removed (0: started is enough). */
  replaceSettleMs?: number;
}

/**
 * What the agent step asks of Docker and of the files: its own narrow ports (a fake for its tests needs
 * only these; DockerodeDocker and NodeFiles provide them).
 */
export type AgentDocker = Pick<
  DockerPort,
  | 'imageId'
  | 'imageExists'
  | 'inspectContainer'
  | 'createContainer'
  | 'startContainer'
  | 'stopContainer'
  | 'removeContainer'
  | 'renameContainer'
  | 'containerLogs'
  | 'loadImage'
  | 'pullImage'
>;
export type AgentFiles = Pick<FilesPort, 'readText' | 'kind' | 'writeAtomic' | 'mkdirp'>;

export type ContainerAction = 'create' | 'keep' | 'start' | 'recreate' | 'replace-foreign';

export interface AgentPlan {
  image: { ref: string; action: 'use' | 'load' | 'pull' };
  container: { action: ContainerAction; id?: string; diff: string };
  warnings: string[];
}

export interface AgentResult {
  id: string;
  action: ContainerAction;
  runtime: string;
  hash: string;
}

interface SavedSpec {
  hash: string;
  /** The spec with secret values redacted: what `plan` diffs against. */
  spec: unknown;
  /** The container we created: a label can be copied by anyone, its ID cannot. */
  id?: string;
  /** A replacement created under the side name, recorded before it takes the agent's name. */
  next?: string;
}

/** The ID of the agent container ecs-gvisor created, as recorded in the state dir. */
export async function ourAgentId(state: StateStore): Promise<string | undefined> {
  return (await state.read<SavedSpec>(AGENT_STATE).catch(() => undefined))?.id;
}

export class AgentStep {
  constructor(
    private readonly deps: {
      docker: AgentDocker;
      files: AgentFiles;
      state: StateStore;
      log: Logger;
      sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
    },
    private readonly opts: AgentStepOptions,
  ) {}

  /** Desired spec from the host as it is now; warnings include ecs.config remarks. */
  async desired(): Promise<AgentSpec> {
    const f = this.deps.files;
    const [configs, osRelease, imageId, apparmor] = await Promise.all([
      loadEcsConfigs(f, this.opts.instanceConfig, this.opts.ecsConfig),
      f.readText('/etc/os-release').catch(() => undefined),
      this.deps.docker.imageId(this.opts.image),
      apparmorEnabled(f),
    ]);
    const exists = new Set<string>();
    const dirs = new Set<string>();
    await Promise.all(
      PATHS_TO_CHECK.map(async (p) => {
        const kind = await f.kind(p);
        if (kind) exists.add(p);
        if (kind === 'dir') dirs.add(p);
      }),
    );
    const built = buildAgentContainerSpec({
      image: this.opts.image,
      dockerHost: this.opts.dockerHost,
      instanceVars: configs.instance.vars,
      userVars: configs.user.vars,
      userFile: this.opts.ecsConfig,
      facts: { exists, dirs, osRelease, apparmorProfiles: apparmor },
      imageId,
    });
    return { ...built, warnings: [...configs.warnings, ...built.warnings] };
  }

  /**
   * The spec Docker or the agent refused last time in this process, and why: `run` does not try it again
   * (each try stops the running agent for a replacement that fails) until ecs.config or the image changes.
   */
  private refused?: { key: string; why: string };

  /** A replacement with the spec refused last time is not tried again: the current container stays. */
  private unlessRefused(action: ContainerAction, want: AgentSpec, current: ContainerState | undefined): ContainerAction {
    if ((action !== 'recreate' && action !== 'replace-foreign') || this.refused?.key !== refusalKey(want)) return action;
    return current!.running ? 'keep' : 'start';
  }

  async plan(): Promise<AgentPlan> {
    const want = await this.desired();
    const current = await this.deps.docker.inspectContainer(AGENT_NAME);
    const saved = await this.deps.state.read<SavedSpec>(AGENT_STATE);
    const action = this.unlessRefused(containerAction(current, want, saved?.id), want, current);
    if (this.refused?.key === refusalKey(want))
      want.warnings.push(
        `the agent container built from the current configuration was refused (${this.refused.why}); the running agent stays`,
      );
    const before = action === 'create' || action === 'replace-foreign' ? undefined : saved?.spec;
    const diff =
      action === 'keep' || action === 'start'
        ? ''
        : renderDiff(`container ${AGENT_NAME}`, before === undefined ? undefined : pretty(before), pretty(redacted(want)));
    return {
      image: { ref: this.opts.image, action: planAgentImage(await this.deps.docker.imageExists(this.opts.image), await this.cache()) },
      container: { action, id: current?.id, diff },
      warnings: want.warnings,
    };
  }

  async apply(): Promise<AgentResult> {
    const log = this.deps.log;
    // ecs-init's pre-start makes the EBS mount point; the agent supports EBS task volumes only with it.
    await this.deps.files
      .mkdirp(EBS_MOUNT_DIR, 0o755)
      .catch((err: unknown) =>
        log.warn({ dir: EBS_MOUNT_DIR, err: messageOf(err) }, 'cannot create the EBS mount directory; EBS task volumes are off'),
      );
    await this.ensureImage(); // first: the image ID is part of the desired spec
    const want = await this.desired();
    for (const w of want.warnings) log.warn({ warning: w }, 'agent configuration');

    const current = await this.deps.docker.inspectContainer(AGENT_NAME);
    const saved = await this.deps.state.read<SavedSpec>(AGENT_STATE);
    const planned = containerAction(current, want, saved?.id);
    const action = this.unlessRefused(planned, want, current);
    if (action !== planned) {
      // Refused last time: the running agent (or the one there) stays; said once, when it was refused.
      if (action === 'start') await this.deps.docker.startContainer(current!.id);
      return { id: current!.id, action, runtime: current!.runtime, hash: current!.labels[HASH_LABEL] ?? '' };
    }
    let id = current?.id;
    if (action === 'replace-foreign' || action === 'recreate') {
      const reason =
        action === 'replace-foreign'
          ? 'not created by ecs-gvisor (ecs-init?)'
          : current!.imageId !== want.spec.Labels?.[IMAGE_ID_LABEL]
            ? 'the agent image changed'
            : 'spec changed';
      log.warn(
        { id: current!.id, reason, from: current!.imageId, to: want.spec.Labels?.[IMAGE_ID_LABEL] },
        'replacing the agent container',
      );
      try {
        id = await this.replace(current!, want, saved);
      } catch (err) {
        if (err instanceof EcsGvisorError && (err.code === 'AGENT_SPEC_REFUSED' || err.code === 'AGENT_EXITED'))
          this.refused = { key: refusalKey(want), why: messageOf(err) };
        throw err;
      }
      this.refused = undefined;
      await this.deps.state.write(AGENT_STATE, { hash: want.hash, spec: redacted(want), id } satisfies SavedSpec);
    } else if (action === 'create') {
      await this.removeLeftovers(saved);
      id = await this.create(want.spec, undefined);
      await this.deps.state.write(AGENT_STATE, { hash: want.hash, spec: redacted(want), id } satisfies SavedSpec);
    } else if (saved?.id !== id) {
      // Created by an earlier version that did not record it: ours by its labels and the spec hash.
      await this.deps.state.write(AGENT_STATE, { hash: want.hash, spec: redacted(want), id } satisfies SavedSpec);
    }
    if (action === 'create' || action === 'start') await this.deps.docker.startContainer(id!);
    const after = await this.deps.docker.inspectContainer(id!);
    if (after?.runtime !== 'runc') {
      throw new EcsGvisorError('DOCKER_API', `The agent container ${AGENT_NAME} has runtime "${after?.runtime}" instead of runc.`);
    }
    log.info({ id: after.id, action, runtime: after.runtime, running: after.running }, 'agent container converged');
    return { id: after.id, action, runtime: after.runtime, hash: want.hash };
  }

  /**
   * The running agent goes only once its replacement exists and has started: the new container is
   * created under a side name first (a spec Docker refuses leaves the old agent running, untouched);
   * the old one is then renamed aside and stopped (two agents must never share the host's port and
   * state), the new one takes the name and starts; if it cannot start, or exits within
   * `replaceSettleMs`, the old one is put back and started again.
   */
  private async replace(old: ContainerState, want: AgentSpec, saved: SavedSpec | undefined): Promise<string> {
    const { docker, log } = this.deps;
    await this.removeLeftovers(saved);
    const id = await this.create(want.spec, old);
    // Recorded before it takes the name: a kill from here on leaves nothing we would not know as ours.
    await this.deps.state.write(AGENT_STATE, { ...(saved ?? { hash: '', spec: undefined }), next: id } satisfies SavedSpec);
    try {
      await docker.renameContainer(old.id, PREVIOUS_NAME);
      await docker.stopContainer(old.id, AGENT_STOP_SECONDS);
      await docker.renameContainer(id, AGENT_NAME);
      await docker.startContainer(id);
      const { replaceSettleMs = 0 } = this.opts;
      if (replaceSettleMs > 0) await this.settle(id, replaceSettleMs, this.deps.sleep);
    } catch (err) {
      const exited = err instanceof EcsGvisorError && err.code === 'AGENT_EXITED';
      // Its last words, before the container that said them is gone.
      const tail = exited ? (await docker.containerLogs(id, 3).catch(() => '')).trim().split('\n').pop() : undefined;
      log.error(
        { err: messageOf(err), lastLog: tail, previous: old.id.slice(0, 12) },
        'the new agent container did not start or did not stay up; putting the previous one back',
      );
      await docker.removeContainer(id);
      await docker.renameContainer(old.id, AGENT_NAME);
      if (old.running) await docker.startContainer(old.id);
      const code = (err as EcsGvisorError).details?.exitCode;
      throw new EcsGvisorError(
        exited ? 'AGENT_EXITED' : 'DOCKER_API',
        exited
          ? `The new agent container exited with code ${code} within ${Math.ceil((this.opts.replaceSettleMs ?? 0) / 1000)} s of its start${tail ? ` (its last line: ${tail.slice(0, 200)})` : ''}; the previous agent ${old.id.slice(0, 12)} was put back.`
          : `The new agent container did not start (${messageOf(err)}); the previous agent ${old.id.slice(0, 12)} was put back.`,
        { cause: err },
      );
    }
    await docker.removeContainer(old.id);
    return id;
  }

  /** Create the agent container (under a side name while `old` still holds the name). */
  private async create(spec: ContainerSpec, old: ContainerState | undefined): Promise<string> {
    try {
      return await this.deps.docker.createContainer(old ? { ...spec, name: NEXT_NAME } : spec);
    } catch (err) {
      // Docker's refusal of the spec (an ecs.config line it cannot pass as an environment variable, say).
      if (err instanceof EcsGvisorError && err.code === 'DOCKER_API') {
        throw new EcsGvisorError(
          'AGENT_SPEC_REFUSED',
          `Docker refused the agent container built from ${this.opts.ecsConfig} (${messageOf(err)}); ${old ? `the running agent ${old.id.slice(0, 12)} was kept` : 'no agent was started'}.`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Side containers a killed replacement left behind: the replacement it recorded, and the agent it was
   * replacing. Known by the IDs in agent.json, never by name or label (anyone can use those).
   */
  private async removeLeftovers(saved: SavedSpec | undefined): Promise<void> {
    for (const [name, recorded] of [
      [NEXT_NAME, saved?.next],
      [PREVIOUS_NAME, saved?.id],
    ] as const) {
      const c = await this.deps.docker.inspectContainer(name);
      if (c && recorded && c.id === recorded) await this.deps.docker.removeContainer(c.id);
      else if (c)
        this.deps.log.warn(
          { container: name, id: c.id.slice(0, 12) },
          'a container has the name of our side containers but is not one we recorded: left alone',
        );
    }
  }

  /**
   * "Converged" for the agent: its container is still running `ms` after it was started. A spec Docker
   * accepted but the agent refuses (bad ecs.config, a refused registration: exit 5 within a second or
   * two) shows up here rather than after bootstrap has said "converged".
   */
  async settle(id: string, ms: number, sleep: (ms: number) => Promise<void>): Promise<void> {
    for (let waited = 0; ; waited += 250) {
      const c = await this.deps.docker.inspectContainer(id);
      if (!c?.running) {
        throw new EcsGvisorError(
          'AGENT_EXITED',
          c
            ? `The agent container ${AGENT_NAME} exited with code ${c.exitCode} within ${Math.ceil(ms / 1000)} s of its start; see docker logs ${AGENT_NAME}.`
            : `The agent container ${AGENT_NAME} was removed within ${Math.ceil(ms / 1000)} s of its start.`,
          { details: { exitCode: c?.exitCode } },
        );
      }
      if (waited >= ms) return;
      await sleep(Math.min(250, ms - waited));
    }
  }

  /**
   * Fail closed: stop whatever runs as the agent container, ours or not, so it places no more tasks. It
   * stays (its logs with it); the next start that proves the sandbox starts it again.
   */
  async stop(): Promise<{ stopped: boolean }> {
    const c = await this.deps.docker.inspectContainer(AGENT_NAME);
    if (!c?.running) return { stopped: false };
    await this.deps.docker.stopContainer(c.id, 30);
    return { stopped: true };
  }

  /** Remove our agent container (never one we did not create). */
  async rollback(): Promise<{ removed: boolean }> {
    const current = await this.deps.docker.inspectContainer(AGENT_NAME);
    if (!current || !isOurs(current, await ourAgentId(this.deps.state))) return { removed: false };
    await this.deps.docker.removeContainer(current.id);
    await this.deps.state.remove(AGENT_STATE);
    // Its restarts and last exit belong to the container that is gone, not to the next one.
    await this.deps.state.remove(SUPERVISOR_STATE);
    return { removed: true };
  }

  private async cache() {
    const [state, tarball] = await Promise.all([
      this.deps.files.readText(`${this.opts.cacheDir}/state`),
      this.deps.files.kind(`${this.opts.cacheDir}/ecs-agent.tar`),
    ]);
    return cacheStatus(state, tarball === 'file');
  }

  /** Image present → use; ecs-init's cache says so → docker load; else pull with retries. */
  async ensureImage(): Promise<'use' | 'load' | 'pull'> {
    const { docker, log } = this.deps;
    const ref = this.opts.image;
    const how = planAgentImage(await docker.imageExists(ref), await this.cache());
    if (how === 'load') {
      const tarball = `${this.opts.cacheDir}/ecs-agent.tar`;
      log.info({ tarball }, 'loading the agent image from the cache');
      await docker.loadImage(tarball);
      await this.deps.files.writeAtomic(`${this.opts.cacheDir}/state`, '1', 0o644); // cached: no reload until asked again
    } else if (how === 'pull') {
      log.info({ image: ref }, 'pulling the agent image');
      try {
        await retrying(() => docker.pullImage(ref), {
          retries: this.opts.pullRetries,
          minMs: 1000,
          maxMs: 30_000,
          sleep: this.deps.sleep,
          // Docker answers 404 for an image that does not exist: no point asking again.
          retryable: (err) => !(err instanceof EcsGvisorError && err.details.statusCode === 404),
          onRetry: (err, n) => log.warn({ attempt: n, err: messageOf(err) }, 'agent image pull failed'),
        });
      } catch (err) {
        throw new EcsGvisorError(
          'AGENT_IMAGE_UNAVAILABLE',
          `The agent image ${ref} is not in Docker, ${this.opts.cacheDir}/ecs-agent.tar is not cached, and pulling it failed: ${messageOf(err)}`,
          { cause: err },
        );
      }
    }
    if (!(await docker.imageExists(ref))) {
      throw new EcsGvisorError(
        'AGENT_IMAGE_UNAVAILABLE',
        `The agent image ${ref} is still not in Docker after ${how === 'load' ? 'loading the cache' : 'pulling'}.`,
      );
    }
    return how;
  }
}

/**
 * Ours: the container whose ID we recorded when we created it. Our label alone proves nothing (anyone can
 * create an ecs-agent with it); it counts only where no ID was recorded, by a version that did not.
 */
function isOurs(c: ContainerState, recordedId: string | undefined): boolean {
  return recordedId ? c.id === recordedId : c.labels[MANAGED_LABEL] === 'true';
}

/** A spec as a refusal remembers it: its hash and the image it runs. */
function refusalKey(want: AgentSpec): string {
  return `${want.hash} ${want.spec.Labels?.[IMAGE_ID_LABEL] ?? ''}`;
}

export function containerAction(
  current: ContainerState | undefined,
  want: Pick<AgentSpec, 'hash' | 'spec'>,
  recordedId?: string,
): ContainerAction {
  if (!current) return 'create';
  if (!isOurs(current, recordedId)) return 'replace-foreign';
  if (current.labels[HASH_LABEL] !== want.hash) return 'recreate';
  // What Docker says the container runs, not only our label: the name may point at a new image now.
  const wantImage = want.spec.Labels?.[IMAGE_ID_LABEL];
  if (wantImage && current.imageId && current.imageId !== wantImage) return 'recreate';
  return current.running ? 'keep' : 'start';
}

/**
 * The loaded AppArmor profiles when AppArmor is on by containerd's check, which ecs-init uses
 * (securityfs, apparmor_parser and enabled=Y); undefined when it is off.
 */
async function apparmorEnabled(files: AgentFiles): Promise<ReadonlySet<string> | undefined> {
  const [fs, parser, enabled] = await Promise.all([
    files.kind('/sys/kernel/security/apparmor'),
    files.kind('/sbin/apparmor_parser'),
    files.readText('/sys/module/apparmor/parameters/enabled').catch(() => undefined),
  ]);
  if (fs === undefined || parser === undefined || !(enabled ?? '').startsWith('Y')) return undefined;
  const listed = await files.readText('/sys/kernel/security/apparmor/profiles').catch(() => undefined);
  // One profile a line: "name (mode)".
  return new Set(
    (listed ?? '')
      .split('\n')
      .map((l) => l.replace(/ \([a-z]+\)$/, '').trim())
      .filter(Boolean),
  );
}

function redacted(a: AgentSpec): unknown {
  return { ...a.spec, Env: redactEnv(a.spec.Env ?? []) };
}

function pretty(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}
