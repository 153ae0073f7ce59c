/**
 * Prove the sandbox from evidence on the host: a probe container created with no runtime named (so
 * Docker's default applies) must run as a gVisor sandbox process, and the memory limit given to it must
 * be set on the cgroup that process lives in (the article this replaces ends on gVisor ignoring limits).
 */

import { randomBytes } from 'node:crypto';
import { cgroupDir, isContainerCgroup, LIMIT_FILES, locate, parseProcCgroup } from '../cgroups.js';
import { BUILTIN_PROBE_IMAGE } from '../config.js';
import { EcsGvisorError, messageOf, sentence } from '../errors.js';
import { Later } from '../later.js';
import type { Logger } from '../logger.js';
import type { Clock, DockerPort, FilesPort, HostPort } from '../ports.js';
import type { StateStore } from '../state-store.js';
import { PROBE_CMD, type ProbeArch, probeRootfs } from './probe-image.js';
import { modesAllowed, NETWORK_MODES, type NetworkMode, type NetworkPolicy, stackFor } from './runtime-entry.js';

/** How long a removed probe's sandbox, gofer and shim get to exit on their own before they are killed. */
const PROBE_EXIT_GRACE_MS = 3_000;

export const PROBE_LABEL = 'ecs-gvisor.probe';
/**
 * The names of the probes this host's ecs-gvisor created and has not removed yet, each recorded before
 * its container is created (so a kill in between leaves nothing unrecorded), random so that nobody can
 * take one first. The label is for people: a task definition can set any Docker label, so only a name
 * recorded here makes a container our probe.
 */
export const PROBES_STATE = 'probes.json';
export const PROBE_MEMORY_BYTES = 64 * 1024 * 1024;

/** A probe of this proof: its name (recorded before it exists), and its container once Docker made one. */
interface Probe {
  name: string;
  id?: string;
}

export interface SandboxEvidence {
  runtime: string;
  image: string;
  /** The sandbox process on the host and its command line (first 200 characters). */
  pid: number;
  cmdline: string;
  memoryLimitBytes: number;
  cgroupLimitFile: string;
  /**
   * The memory the cgroup is charged for the sandbox (memory.usage_in_bytes on v1, memory.current on
   * v2) as the proof read it: the limit acts on the sandbox's own memory, not only sits in a file.
   */
  memoryChargedBytes?: number;
  provenAt: string;
  /**
   * Each network mode: proven (a sandbox on the stack the policy gives it) or why not. `own`: a namespace
   * of its own (bridge, none, the awsvpc pause container); `joined`: another container's (awsvpc task
   * containers); `host`: the host's. A mode the policy refuses is not proven, with that as the reason.
   * Absent while they are still being proven (after READY under `run`).
   */
  networks?: Networks;
}

/** The network a sandbox has: gVisor's own stack, the kernel's (passthrough), or none (`--network=none`: loopback only). */
export type SandboxStack = 'netstack' | 'passthrough' | 'no-network';

export type NetworkProof = { proven: true; stack: 'netstack' | 'passthrough' } | { proven: false; reason: string };

/** Each network mode's proof. */
export type Networks = Record<NetworkMode, NetworkProof>;

/**
 * Which network a sandbox runs, from the last --network flag on its command line: `host` is passthrough,
 * `none` leaves a container only loopback (no ECS network mode works in it), anything else netstack.
 */
export function sandboxStack(argv: readonly string[]): SandboxStack {
  const net = argv.filter((a) => a.startsWith('--network=')).pop();
  return net === '--network=host' ? 'passthrough' : net === '--network=none' ? 'no-network' : 'netstack';
}

/**
 * Whether a host process's argv[0] names a gVisor sandbox (older runsc: runsc-sandbox; newer:
 * gvisor_sentry). Only argv[0]: any other argument is the container's to choose. Names can be
 * chosen too, so the proof also checks what the process executes and whose child it is.
 */
export function isSandboxCmdline(argv: readonly string[]): boolean {
  return /(^|\/)(runsc-sandbox|gvisor_sentry)$/.test(argv[0] ?? '');
}

/** A running sandbox's own footprint is tens of MiB; less than this charged means its memory is counted elsewhere. */
export const MIN_CHARGED_BYTES = 1024 * 1024;

/** The file beside a limit file that says how much memory the cgroup is charged now. */
export function memoryChargeFile(limitFile: string): string {
  return limitFile.replace(/memory\.(limit_in_bytes|max)$/, (_m, f: string) => (f === 'max' ? 'memory.current' : 'memory.usage_in_bytes'));
}

/**
 * Whether the cgroup is charged for the sandbox's memory: at least its own footprint, at most the limit.
 * A limit on a cgroup that is not charged for the sandbox would never stop it.
 */
export function chargeProblem(chargedText: string | undefined, limit: number, file: string): string | undefined {
  const charged = Number(chargedText?.trim());
  if (chargedText === undefined || !Number.isFinite(charged))
    return `${file} cannot be read, so the limit cannot be seen acting on the sandbox`;
  if (charged < MIN_CHARGED_BYTES)
    return `${file} charges the sandbox's cgroup only ${charged} bytes: its memory is counted elsewhere, out of the limit's reach`;
  if (charged > limit) return `${file} charges ${charged} bytes, over the ${limit}-byte limit: the limit is not acting`;
  return undefined;
}

/** The file holding the memory limit of the cgroup in /proc/<pid>/cgroup (v1 memory controller, else v2). */
export function memoryLimitFile(procCgroup: string, cgroupRoot: string): string | undefined {
  const at = locate(parseProcCgroup(procCgroup), 'memory');
  return at && `${cgroupDir(at, at.path, cgroupRoot)}/${LIMIT_FILES[at.version].memory[0]}`;
}

/**
 * The sandbox must be in the cgroup Docker made for its container (cgroupfs `…/<id>`, systemd
 * `…/docker-<id>.scope`). A cgroup of runsc's own making elsewhere can hold the container's limits
 * while escaping the task's: on cgroup v1 runsc takes Docker's systemd-driver path `slice:docker:<id>`
 * literally, as a directory of that name under the shim's cgroup, with or without --systemd-cgroup.
 */
export function cgroupPlacementProblem(procCgroup: string, containerId: string): string | undefined {
  const at = locate(parseProcCgroup(procCgroup), 'memory');
  if (!at || isContainerCgroup(at.path, containerId)) return undefined;
  return `the sandbox is in cgroup ${at.path}, not the one Docker made for its container: a task's cgroup would not contain it (with Docker's systemd cgroup driver, runsc needs cgroup v2 and --systemd-cgroup)`;
}

/** What the proof asks of Docker, the files and the host (its own narrow ports). */
export type ProverDocker = Pick<
  DockerPort,
  'createContainer' | 'imageExists' | 'importImage' | 'inspectContainer' | 'listContainers' | 'removeContainer' | 'startContainer'
>;
export type ProverFiles = Pick<FilesPort, 'identity' | 'readText'>;
export type ProverHost = Pick<HostPort, 'cmdline' | 'exe' | 'parentOf' | 'processesMentioning' | 'signal'>;

export class SandboxProver {
  constructor(
    private readonly deps: { docker: ProverDocker; files: ProverFiles; host: ProverHost; clock: Clock; log: Logger; state: StateStore },
    private readonly opts: { image: string; timeoutMs: number; arch: ProbeArch; runscPath: string; cgroupRoot?: string },
  ) {}

  get image(): string {
    return this.opts.image;
  }

  get builtinImage(): boolean {
    return this.opts.image === BUILTIN_PROBE_IMAGE;
  }

  /** Build the built-in probe image when missing; an operator's image must already be there. */
  async ensureImage(): Promise<void> {
    if (await this.deps.docker.imageExists(this.opts.image)) return;
    if (!this.builtinImage) {
      throw new EcsGvisorError(
        'SANDBOX_UNPROVEN',
        `ECS_GVISOR_PROBE_IMAGE=${this.opts.image} is not present in Docker; load it first or unset the key to use the built-in probe.`,
      );
    }
    this.deps.log.info({ image: this.opts.image }, 'building the built-in probe image');
    await this.deps.docker.importImage(probeRootfs(this.opts.arch), this.opts.image, PROBE_CMD);
  }

  /**
   * What a successful prove() left for later, started by settled() or the next proof: its network modes
   * (with modesLater), then the removal of its probes.
   */
  private rest: Later<boolean, Networks | undefined> = Later.done(undefined);

  /**
   * Finishes what the last proof left: proves its network modes if it left them (resolving to them;
   * else undefined), removes its probes, and resolves once no probe of ours is being removed. A proven
   * proof leaves its probes to this, so what must follow it (the agent's start) need not share the
   * machine with sandboxes going up or down. Never rejects: a mode that fails is a reason, a probe that
   * cannot be removed a warning. `skipModes`: the probes are removed without proving the modes left
   * (what follows the proof failed, so nothing will read them); it resolves to undefined then.
   */
  settled(opts: { skipModes?: boolean } = {}): Promise<Networks | undefined> {
    return this.rest.get(opts.skipModes === true);
  }

  /** Remove probes a killed earlier run may have left: those it recorded, never a container by its label. */
  async removeStale(): Promise<number> {
    await this.settled();
    const recorded = await probeNames(this.deps.state);
    const labelled = await this.deps.docker.listContainers({ label: PROBE_LABEL, all: true });
    const stale = labelled.filter((c) => recorded.has(c.name));
    for (const c of labelled.filter((x) => !recorded.has(x.name))) {
      this.deps.log.warn(
        { container: c.name, id: c.id.slice(0, 12) },
        `a container carries the ${PROBE_LABEL} label but is not a probe of ours: left alone`,
      );
    }
    await Promise.all(stale.map((c) => this.deps.docker.removeContainer(c.id)));
    // Every name recorded then is gone now: removed here, or never created (killed before Docker answered).
    if (recorded.size)
      await this.record((names) => {
        for (const n of recorded) names.delete(n);
      });
    return stale.length;
  }

  /** Our probe names, changed one at a time (probes are created side by side). */
  private recording: Promise<unknown> = Promise.resolve();
  private record(change: (names: Set<string>) => void): Promise<void> {
    const next = this.recording.then(async () => {
      const names = await probeNames(this.deps.state);
      change(names);
      await (names.size ? this.deps.state.write(PROBES_STATE, { names: [...names] }) : this.deps.state.remove(PROBES_STATE));
    });
    this.recording = next.catch(() => undefined);
    return next;
  }

  /**
   * Throws SANDBOX_UNPROVEN with the reason. The proof is the first probe, alone: a namespace of its own,
   * with its memory limit. Then each network mode the policy allows gets a probe of its own (the host's
   * namespace, and one joining the first probe's), and what they show is recorded per mode: a mode that
   * fails is reported, not fatal. `modesLater`: prove returns once the sandbox is proven, without
   * `networks`, and the modes wait for settled() (`run` starts the agent first). The probes are removed
   * in every case: at once when the proof fails, else by settled().
   */
  async prove(runtimeName: string, policy: NetworkPolicy = 'sandbox', opts: { modesLater?: boolean } = {}): Promise<SandboxEvidence> {
    await this.settled();
    await this.ensureImage();
    const created: Probe[] = [];
    const removal = async () => {
      const gone = await Promise.all(created.map(async (p) => (p.id === undefined || (await this.remove(p.id)) ? p.name : undefined)));
      // One write for all: a name stays recorded only while its container may still exist.
      await this.record((names) => {
        for (const n of gone) if (n !== undefined) names.delete(n);
      });
    };
    let own: { id: string; stack: SandboxStack };
    let evidence: SandboxEvidence;
    try {
      const id = await this.probe({ NetworkMode: 'none', Memory: PROBE_MEMORY_BYTES, MemorySwap: PROBE_MEMORY_BYTES }, created, true);
      const { pid, argv } = await this.sandboxOf(id, runtimeName);
      evidence = await this.checkLimit(pid, argv, runtimeName, id);
      own = { id, stack: sandboxStack(argv) };
    } catch (err) {
      await removal(); // before the rollback that follows
      throw err;
    }
    // Proven: the probes stay recorded until removed (the audit knows them; those of a run killed before
    // removing them are removed by the next).
    const finish = async (networks: Promise<Networks> | undefined) => {
      const n = await networks;
      await removal().catch((err: unknown) => this.deps.log.warn({ err: messageOf(err) }, 'could not remove the probes'));
      return n;
    };
    if (opts.modesLater) {
      this.rest = new Later((skipModes: boolean) => finish(skipModes ? undefined : this.proveModes(runtimeName, policy, own, created)));
      return evidence;
    }
    const networks = await this.proveModes(runtimeName, policy, own, created);
    this.rest = new Later(() => finish(undefined));
    return { ...evidence, networks };
  }

  /** A probe per network mode the policy allows beside the proven one; `created` collects them for removal. */
  private async proveModes(
    runtimeName: string,
    policy: NetworkPolicy,
    own: { id: string; stack: SandboxStack },
    created: Probe[],
  ): Promise<Networks> {
    const allowed = modesAllowed(policy);
    const probe = (mode: NetworkMode, NetworkMode: string) =>
      allowed.includes(mode)
        ? this.probe({ NetworkMode }, created).then((id) => this.modeProof(id, runtimeName, policy, mode), failed)
        : undefined;
    const proofs = {
      own: Promise.resolve(this.expectStack(policy, 'own', own.stack)),
      joined: probe('joined', `container:${own.id}`),
      host: probe('host', 'host'),
    };
    const networks = {} as Networks;
    for (const m of NETWORK_MODES) {
      networks[m] = (await proofs[m]) ?? { proven: false, reason: `refused by ECS_GVISOR_NETWORK_POLICY=${policy}` };
    }
    for (const [m, p] of Object.entries(networks)) {
      if (!p.proven && allowed.includes(m as NetworkMode))
        this.deps.log.warn({ mode: m, reason: p.reason }, 'a network mode the policy allows is not proven');
    }
    return networks;
  }

  /** Create and start one probe under Docker's default runtime; `created` collects it for removal. */
  private async probe(hostConfig: Record<string, unknown>, created: Probe[], mustStart = false): Promise<string> {
    const probe: Probe = { name: `ecs-gvisor-probe-${randomBytes(8).toString('hex')}` };
    created.push(probe);
    await this.record((names) => names.add(probe.name));
    const id = await this.deps.docker.createContainer({
      name: probe.name,
      Image: this.opts.image,
      Cmd: [...PROBE_CMD],
      Labels: { [PROBE_LABEL]: '1' },
      ...(hostConfig.NetworkMode === 'none' ? { NetworkDisabled: true } : {}),
      // No Runtime here: the point is that Docker's default applies.
      HostConfig: { ...hostConfig, LogConfig: { Type: 'none', Config: {} } },
    });
    probe.id = id;
    try {
      await this.deps.docker.startContainer(id);
    } catch (err) {
      if (mustStart) throw unproven(`the probe container did not start under the default runtime: ${messageOf(err)}`, err);
      throw err;
    }
    return id;
  }

  /** One network mode's probe: a sandbox, on the stack the policy gives that mode. */
  private async modeProof(id: string, runtimeName: string, policy: NetworkPolicy, mode: NetworkMode): Promise<NetworkProof> {
    try {
      const { argv } = await this.sandboxOf(id, runtimeName);
      return this.expectStack(policy, mode, sandboxStack(argv));
    } catch (err) {
      return failed(err);
    }
  }

  private expectStack(policy: NetworkPolicy, mode: NetworkMode, stack: SandboxStack): NetworkProof {
    const want = stackFor(policy, mode);
    if (stack === 'no-network')
      return { proven: false, reason: 'the sandbox runs with --network=none (ECS_GVISOR_RUNSC_ARGS): a container there has only loopback' };
    return stack === want
      ? { proven: true, stack }
      : { proven: false, reason: `the sandbox runs ${stack}, not ${want} as ECS_GVISOR_NETWORK_POLICY=${policy} says` };
  }

  /**
   * Remove the probe, then reap what Docker does not: when runsc fails to start a sandbox (e.g. its
   * network setup fails), its runsc-sandbox, runsc-gofer and the containerd shim outlive the removed
   * container. Left alone, every failed proof would leak three processes.
   */
  private async remove(id: string): Promise<boolean> {
    const removed = await this.deps.docker.removeContainer(id).then(
      () => true,
      (err: unknown) => {
        this.deps.log.warn({ err: messageOf(err), id }, 'could not remove probe');
        return false;
      },
    );
    const killed = new Set<number>();
    const start = this.deps.clock.now();
    for (;;) {
      const left = await this.deps.host.processesMentioning(id);
      if (left.length === 0) break;
      if (this.deps.clock.now() >= start + 10_000) {
        this.deps.log.warn({ id, pids: left.map((p) => p.pid) }, 'processes of the removed probe are still running');
        break;
      }
      // A removed sandbox's processes take a moment to go on a slow host (seen under emulation): only
      // those still there after PROBE_EXIT_GRACE_MS were left behind.
      if (removed && this.deps.clock.now() < start + PROBE_EXIT_GRACE_MS) {
        await this.deps.clock.sleep(100);
        continue;
      }
      // Kill the sandbox, gofer and shim; let the `delete` clean-ups containerd starts in reply finish.
      for (const { pid, argv } of left) {
        if (killed.has(pid) || argv.includes('delete')) continue;
        this.deps.host.signal(pid, 'SIGKILL');
        killed.add(pid);
      }
      await this.deps.clock.sleep(100);
    }
    if (killed.size > 0) this.deps.log.warn({ id, pids: [...killed] }, 'killed sandbox processes the removed probe left behind');
    return removed;
  }

  /** The probe's sandbox process, once it shows; SANDBOX_UNPROVEN when it does not. */
  private async sandboxOf(id: string, runtimeName: string): Promise<{ pid: number; argv: string[] }> {
    const deadline = this.deps.clock.now() + this.opts.timeoutMs;
    for (;;) {
      const state = await this.deps.docker.inspectContainer(id);
      if (!state) throw unproven('the probe container vanished before it could be inspected');
      if (state.runtime !== runtimeName) {
        throw unproven(`the probe was created with runtime "${state.runtime}", not "${runtimeName}": Docker's default is not ours`);
      }
      if (!state.running) throw unproven(`the probe exited with code ${state.exitCode} instead of staying up`);
      const argv = state.pid > 0 ? await this.deps.host.cmdline(state.pid) : undefined;
      if (argv && isSandboxCmdline(argv)) {
        await this.checkProcess(state.pid, id);
        return { pid: state.pid, argv };
      }
      if (this.deps.clock.now() >= deadline) {
        throw unproven(
          `the probe's process ${state.pid} is "${(argv ?? []).join(' ').slice(0, 120)}", not a gVisor sandbox (runsc-sandbox)`,
        );
      }
      await this.deps.clock.sleep(100);
    }
  }

  /**
   * A name proves nothing (a runc container can call its init runsc-sandbox): the process must execute
   * the runsc we configured (or its gvisor-bin helpers), and descend from the containerd shim of this
   * very container.
   */
  private async checkProcess(pid: number, containerId: string): Promise<void> {
    const { files, host } = this.deps;
    const runsc = this.opts.runscPath;
    const exe = await files.identity(`/proc/${pid}/exe`).catch(() => undefined);
    const allowed = await Promise.all(
      [runsc, `${runsc.replace(/\/[^/]*$/, '')}/gvisor-bin/gvisor_sentry`].map((p) => files.identity(p).catch(() => undefined)),
    );
    if (!exe || !allowed.includes(exe)) {
      const target = (await host.exe(pid)) ?? '?';
      throw unproven(`the probe's process ${pid} is named like a sandbox but executes ${target}, not the configured runsc ${runsc}`);
    }
    let p: number | undefined = pid;
    for (let depth = 0; depth < 6 && p !== undefined && p > 1; depth++) {
      p = await host.parentOf(p);
      if (p !== undefined && p > 1 && (await host.cmdline(p))?.includes(containerId)) return;
    }
    throw unproven(`the probe's process ${pid} does not descend from the containerd shim of container ${containerId.slice(0, 12)}`);
  }

  private async checkLimit(pid: number, argv: string[], runtimeName: string, containerId: string): Promise<SandboxEvidence> {
    const cgroupText = await this.deps.files.readText(`/proc/${pid}/cgroup`);
    const root = this.opts.cgroupRoot ?? '/sys/fs/cgroup';
    const file = cgroupText && memoryLimitFile(cgroupText, root);
    if (!file) throw unproven(`the sandbox process ${pid} is in no memory cgroup, so Docker's limits do not reach it`);
    const problem = cgroupPlacementProblem(cgroupText, containerId);
    if (problem) throw unproven(problem);
    const limit = (await this.deps.files.readText(file))?.trim() ?? '(missing)';
    if (limit !== String(PROBE_MEMORY_BYTES)) {
      throw unproven(
        `the probe asked for a ${PROBE_MEMORY_BYTES}-byte memory limit but the sandbox's cgroup ${file} says ${limit}: limits would not be enforced`,
      );
    }
    // Not only written: the sandbox's memory is what that cgroup is charged for.
    const chargeFile = memoryChargeFile(file);
    const chargedText = await this.deps.files.readText(chargeFile);
    const charge = chargeProblem(chargedText, PROBE_MEMORY_BYTES, chargeFile);
    if (charge) throw unproven(charge);
    return {
      runtime: runtimeName,
      image: this.opts.image,
      pid,
      cmdline: argv.join(' ').slice(0, 200),
      memoryLimitBytes: PROBE_MEMORY_BYTES,
      cgroupLimitFile: file,
      memoryChargedBytes: Number(chargedText!.trim()),
      provenAt: new Date(this.deps.clock.now()).toISOString(),
    };
  }
}

/** The probe names recorded in the state dir. */
export async function probeNames(state: StateStore): Promise<Set<string>> {
  const saved = await state.read<{ names?: unknown }>(PROBES_STATE).catch(() => undefined);
  return new Set(Array.isArray(saved?.names) ? saved.names.filter((x): x is string => typeof x === 'string') : []);
}

function failed(err: unknown): NetworkProof {
  return { proven: false, reason: messageOf(err).replace(/^The sandbox is not proven: /, '') };
}

function unproven(reason: string, cause?: unknown): EcsGvisorError {
  // Docker's own text may end in a full stop already: one sentence, never "..".
  return new EcsGvisorError('SANDBOX_UNPROVEN', sentence(`The sandbox is not proven: ${reason}`), { cause });
}
