/**
 * The sandbox audit: every running container but ours must run under the gVisor runtime, its sandbox in
 * the cgroup Docker made for it with the limits it was asked for (enforcement.ts); workload hygiene is
 * reported, and is a violation where ECS_GVISOR_HYGIENE_VIOLATIONS says so. It reports the pass; the
 * watch logs each violation once and counts it, and the reactor withdraws `verified` from the attributes
 * and stops violators when configured.
 */
import { ourAgentId } from '../../agent/agent-step.js';
import type { HygieneItem } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Clock, ContainerState, DockerPort, HostPort, OomKill } from '../../ports.js';
import { probeNames } from '../../runtime/sandbox-proof.js';
import type { StateStore } from '../../state-store.js';
import { audit, type Violation } from '../audit.js';
import { claimOf, type EcsTaskDirectory, plausibleTaskArn, TASK_ARN_LABEL, type TaskClaim } from '../ecs-tasks.js';
import { cgroupFilesFor, judgeTask, type SandboxEnd, sandboxEnd, type TaskEnforcement } from '../enforcement.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';
import { MINUTES } from './context.js';

/** A container inspected this long ago is inspected again, events or not. */
const INSPECT_MAX_AGE_MS = 10 * MINUTES;
/** Ends kept in the status, the latest last. */
export const ENDS_KEPT = 20;

/** What the audit asks of Docker and of the host (its own narrow ports). */
export type AuditDocker = Pick<DockerPort, 'info' | 'inspectContainer' | 'runningIds'>;
export type AuditHost = Pick<HostPort, 'childrenOf' | 'cmdline' | 'kernelText' | 'oomKills' | 'parentOf'>;

export class AuditMonitor implements Monitor {
  readonly name = 'audit';
  /** Gofer PIDs by container ID and sandbox PID. */
  private readonly gofers = new Map<string, number[]>();
  /** Each running container as last inspected; forgotten on any Docker event about it. */
  private readonly inspected = new Map<string, { state: ContainerState; at: number }>();
  private remap?: boolean;
  /** Containers that died since the last pass: why each ended is read then. */
  private readonly died = new Set<string>();
  /** `<id> <kind>` of what was already said once about a running task (a tight pids limit). */
  private readonly said = new Set<string>();
  /** Listing, /proc reads, and stopping violators (10 s each, under Docker's deadline). */
  readonly deadlineMs = 15 * MINUTES;

  constructor(
    private readonly deps: {
      docker: AuditDocker;
      host: AuditHost;
      clock: Clock;
      log: Logger;
      store: StateStore;
      tasks: EcsTaskDirectory;
    },
    private readonly state: Pick<WatchState, 'snap' | 'now' | 'region' | 'recordError'>,
    private readonly opts: { auditMs: number; runtimeName: string; hygiene: readonly HygieneItem[] },
  ) {}

  nextInMs(): number {
    return this.opts.auditMs;
  }

  async run(signal: AbortSignal): Promise<Observation> {
    const { host } = this.deps;
    const { state } = this;
    const [running, usernsRemap] = await Promise.all([this.runningContainers(), this.usernsRemap()]);
    const cmdlines = new Map<number, readonly string[] | undefined>();
    await Promise.all(
      running.filter((c) => c.pid > 0).map(async (c) => cmdlines.set(c.pid, await host.cmdline(c.pid).catch(() => undefined))),
    );
    const [probes, agentId] = await Promise.all([probeNames(this.deps.store), ourAgentId(this.deps.store)]);
    const ours = new Set([...running.filter((c) => probes.has(c.name)).map((c) => c.id), ...(agentId ? [agentId] : [])]);
    const result = audit(running, cmdlines, this.opts.runtimeName, ours);
    // Each task: in its own cgroup under the task's, with the limits asked for; and its hygiene.
    const audited = running.filter((c) => c.running && c.pid > 0 && !ours.has(c.id));
    const live = new Set(audited.map((c) => `${c.id} ${c.pid}`));
    for (const key of this.gofers.keys()) if (!live.has(key)) this.gofers.delete(key);
    const claims = await this.taskClaims(audited, signal);
    const tasks = await Promise.all(audited.map((c) => this.enforcement(c, usernsRemap, claims.get(c.id))));
    const ended = await this.ends(ours);
    this.tellTight(tasks);
    const violations: Violation[] = [...result.violations];
    for (const [i, t] of tasks.entries()) {
      const base = { id: t.id, name: t.name, runtime: audited[i]!.runtime || '(default at creation)' };
      for (const p of t.problems) violations.push({ ...base, reason: `not enforced: ${p}` });
      for (const h of t.hygieneViolations)
        violations.push({ ...base, reason: `hygiene: ${hygieneText(h, t)} (ECS_GVISOR_HYGIENE_VIOLATIONS)` });
    }
    return {
      kind: 'audit',
      audit: { checkedAt: state.now(), checked: result.checked, violations, networks: result.networks, tasks, ended },
      wasViolated: state.snap.audit.violations.length > 0,
      stop: [...new Set(violations.map((v) => v.id))],
    };
  }

  /**
   * Docker (or a container) changed: inspect again next pass. The watch calls this for every container
   * event (start, die, update, rename, …) and, with no ID, when dockerd comes back.
   */
  forget(id?: string, action?: string): void {
    if (id !== undefined && action === 'die') this.died.add(id);
    if (id === undefined) {
      this.inspected.clear();
      this.remap = undefined; // a restarted dockerd may run with other options
    } else this.inspected.delete(id);
  }

  /**
   * The task sandboxes that a limit ended since the last pass, added to those already known. Each died
   * container is inspected (Docker's word, not its event's attributes, which carry the task's labels).
   */
  private async ends(ours: ReadonlySet<string>): Promise<SandboxEnd[]> {
    const { state } = this;
    const known = state.snap.audit.ended ?? [];
    const ids = [...this.died];
    this.died.clear();
    const last = new Map((state.snap.audit.tasks ?? []).map((t) => [t.id, t]));
    const found: SandboxEnd[] = [];
    let kills: Promise<OomKill[]> | undefined;
    for (const id of ids) {
      if (ours.has(id) || known.some((e) => e.id === id)) continue;
      const c = await this.deps.docker.inspectContainer(id);
      if (!c || c.running || c.runtime !== this.opts.runtimeName) continue;
      // The kernel's log is read only for a SIGKILL Docker did not call an OOM kill, once a pass.
      if (c.exitCode === 137 && !c.oomKilled) kills ??= this.deps.host.oomKills().catch(() => []);
      const end = sandboxEnd(c, last.get(id), c.exitCode === 137 && kills ? await kills : []);
      if (!end) continue;
      found.push(end);
      this.deps.log.warn(
        { container: end.name, id: id.slice(0, 12), exitCode: end.exitCode, reason: end.reason },
        'sandbox audit: a limit ended a task’s sandbox',
      );
    }
    return [...known, ...found].slice(-ENDS_KEPT);
  }

  /** A task whose pids limit is within reach of its sandbox's own use: said once while it runs so. */
  private tellTight(tasks: readonly TaskEnforcement[]): void {
    const tight = tasks.filter((t) => t.pids?.tight);
    const now = new Set(tight.map((t) => `${t.id} pids`));
    for (const k of this.said) if (!now.has(k)) this.said.delete(k);
    for (const t of tight) {
      if (this.said.has(`${t.id} pids`)) continue;
      this.said.add(`${t.id} pids`);
      this.deps.log.warn(
        { container: t.name, id: t.id.slice(0, 12), pids: t.pids!.current, limit: t.pids!.limit },
        'sandbox audit: a task’s pids limit is within reach of its sandbox’s own use (at the limit gVisor ends the whole sandbox)',
      );
    }
  }

  /** Whether dockerd remaps container root (userns-remap): asked once, and again after dockerd comes back. */
  private async usernsRemap(): Promise<boolean> {
    this.remap ??= (await this.deps.docker.info()).usernsRemap === true;
    return this.remap;
  }

  /**
   * The running containers: one list request, and an inspect for each container not seen since its
   * last event (inspects are most of a pass's cost). Every inspect is redone after INSPECT_MAX_AGE_MS all
   * the same, in case an event was lost while the stream reconnected.
   */
  private async runningContainers(): Promise<ContainerState[]> {
    const { docker, clock } = this.deps;
    const ids = await docker.runningIds();
    const now = clock.now();
    for (const id of this.inspected.keys()) if (!ids.includes(id)) this.inspected.delete(id);
    const states = await Promise.all(
      ids.map(async (id) => {
        const known = this.inspected.get(id);
        if (known && now - known.at < INSPECT_MAX_AGE_MS) return known.state;
        const state = await docker.inspectContainer(id);
        if (state?.running) this.inspected.set(id, { state, at: now });
        return state;
      }),
    );
    return states.filter((c): c is ContainerState => c?.running === true);
  }

  /**
   * The task each container claims (its label), as ECS confirms it: asked only about ARNs that could be
   * this registration's, and only once ECS has confirmed the registration is this instance.
   */
  private async taskClaims(containers: readonly ContainerState[], signal: AbortSignal): Promise<Map<string, TaskClaim | undefined>> {
    const { state } = this;
    const r = state.snap.registration;
    const ours = r.identity === 'confirmed' ? { containerInstanceArn: r.containerInstanceArn, cluster: r.cluster } : {};
    if (ours.containerInstanceArn && ours.cluster) {
      const wanted = containers.flatMap((c) => {
        const arn = c.labels[TASK_ARN_LABEL];
        return arn && plausibleTaskArn(arn, ours.containerInstanceArn!, ours.cluster!)
          ? [{ arn, containerId: c.id, metadataEndpointId: c.metadataEndpointId }]
          : [];
      });
      try {
        await this.deps.tasks.learn(ours.cluster, state.region(), ours.containerInstanceArn, wanted, signal);
      } catch (err) {
        state.recordError('ecs', err); // the rest of the audit goes on; the task limits wait
      }
    }
    const { tasks } = this.deps;
    const notAsked = tasks.failure ? `ECS not asked yet (DescribeTasks failed: ${tasks.failure})` : undefined;
    return new Map(
      containers.map((c) => {
        const arn = c.labels[TASK_ARN_LABEL] ?? '';
        // The agent said it did not create this container for that task: whatever ECS knows of the task.
        if (tasks.isDisowned(c.id)) return [c.id, claimOf(c, null, ours, notAsked, 'the agent')];
        return [c.id, claimOf(c, tasks.view(arn), ours, notAsked, tasks.source(arn))];
      }),
    );
  }

  /** Read what one container's enforcement is judged on: its sandbox's and gofers' cgroups, the limit files. */
  private async enforcement(c: ContainerState, usernsRemap: boolean, claim: TaskClaim | undefined): Promise<TaskEnforcement> {
    const { host } = this.deps;
    const read = (path: string) => host.kernelText(path).catch(() => undefined);
    const gofers = await this.gofersOf(c);
    const [sandbox, goferCgroups] = await Promise.all([
      read(`/proc/${c.pid}/cgroup`),
      Promise.all(gofers.map(async (pid) => ({ pid, cgroups: await read(`/proc/${pid}/cgroup`) }))),
    ]);
    const paths = cgroupFilesFor(sandbox);
    const texts = await Promise.all(paths.map(read));
    const files = Object.fromEntries(paths.map((p, i) => [p, texts[i]]));
    // A gofer that has gone (its cgroup unreadable) is looked for again next pass.
    if (goferCgroups.some((g) => g.cgroups === undefined)) this.gofers.delete(`${c.id} ${c.pid}`);
    return judgeTask(
      c,
      { sandbox, gofers: goferCgroups.filter((g) => g.cgroups !== undefined) },
      files,
      { policy: this.opts.hygiene, usernsRemap },
      claim,
    );
  }

  /**
   * The gofers runsc started beside the sandbox (children of the same shim, `runsc-gofer … gofer --bundle
   * …/<id>`), found once for each container start: the shim's threads and their children are many reads.
   */
  private async gofersOf(c: ContainerState): Promise<number[]> {
    const key = `${c.id} ${c.pid}`;
    const known = this.gofers.get(key);
    if (known) return known;
    const { host } = this.deps;
    const shim = await host.parentOf(c.pid);
    const siblings = shim ? (await host.childrenOf(shim)).filter((p) => p !== c.pid) : [];
    const found: number[] = [];
    for (const pid of siblings) {
      const argv = await host.cmdline(pid).catch(() => undefined);
      if (argv?.includes('gofer') && argv.some((a) => a.includes(c.id))) found.push(pid);
    }
    this.gofers.set(key, found);
    return found;
  }
}

function hygieneText(item: HygieneItem, t: TaskEnforcement): string {
  switch (item) {
    case 'root':
      return 'runs as root';
    case 'writable-host-mounts':
      return `host paths mounted writable: ${t.hygiene.writableHostMounts.join(', ')}`;
    case 'privileged':
      return 'privileged';
    case 'capabilities':
      return `added capabilities: ${t.hygiene.capAdd.join(', ')}`;
  }
}
