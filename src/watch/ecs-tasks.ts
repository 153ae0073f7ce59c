/**
 * Task-level limits. The ECS agent gives each task a cgroup of its own (`/ecs/<task id>` on cgroup v1,
 * `ecstasks-<task id>.slice` on v2) holding the task definition's task-level memory and CPU, and makes it
 * the cgroup parent of the task's containers. Which task a container belongs to is said by a Docker label
 * anyone who can run a container can set, so the label only says which task to ask ECS about: the claim
 * counts once ECS lists the container's Docker ID among that task's containers, on this container instance.
 */
import { type AwsCaller, BudgetSpent } from '../aws/aws-caller.js';
import type { Limits } from '../cgroups.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, ContainerState, EcsTaskView } from '../ports.js';

export const TASK_ARN_LABEL = 'com.amazonaws.ecs.task-arn';

/** At most one DescribeTasks call this often: 12 an hour of the ECS budget, at the very most. */
export const TASK_LOOKUP_MS = 5 * 60_000;

/** DescribeTasks takes at most this many ARNs. */
const MAX_ARNS_PER_CALL = 100;

/** What is known of the task a container claims to be part of. */
export type TaskClaim =
  | { state: 'confirmed'; arn: string; taskId: string; asked: Limits }
  | { state: 'unconfirmed' | 'unknown'; arn: string; reason: string };

/** `arn:aws:ecs:<region>:<account>:task/<cluster>/<id>` (the long ARN format ECS has used since 2018). */
const TASK_ARN = /^arn:(aws[a-z-]*):ecs:([a-z0-9-]+):(\d{12}):task\/([A-Za-z0-9_-]{1,255})\/([A-Za-z0-9]{1,64})$/;

/**
 * Whether a task ARN could be one of this container instance's: same partition, region and account, and
 * the cluster it registered in. Anything else is not worth an ECS call (a forged label costs nothing).
 */
export function plausibleTaskArn(taskArn: string, containerInstanceArn: string, cluster: string): boolean {
  const t = TASK_ARN.exec(taskArn);
  const ci = /^arn:(aws[a-z-]*):ecs:([a-z0-9-]+):(\d{12}):container-instance\//.exec(containerInstanceArn);
  if (!t || !ci) return false;
  const clusterName = cluster.slice(cluster.lastIndexOf('/') + 1);
  return t[1] === ci[1] && t[2] === ci[2] && t[3] === ci[3] && t[4] === clusterName;
}

export const taskIdOf = (taskArn: string): string => taskArn.slice(taskArn.lastIndexOf('/') + 1);

/**
 * The task-level limits ECS asks the agent to put on the task's cgroup: memory in MiB, CPU in units of
 * 1/1024 vCPU as a CFS quota (the agent's period is 100 ms unless ECS_CGROUP_CPU_PERIOD says otherwise;
 * quota per period is what counts). Absent or 0: the task has none (the agent then sets CPU shares only).
 */
export function taskLimits(view: Pick<EcsTaskView, 'cpu' | 'memory'>): Limits {
  const out: Limits = {};
  const mib = Number(view.memory);
  if (Number.isFinite(mib) && mib > 0) out.memoryBytes = mib * 1024 * 1024;
  const units = Number(view.cpu);
  if (Number.isFinite(units) && units > 0) {
    out.cpuPeriodUs = 100_000;
    out.cpuQuotaUs = Math.round((units / 1024) * 100_000);
  }
  return out;
}

/** Whether a cgroup path is the task's own: cgroupfs `…/ecs/<task id>`, systemd `…/ecstasks-<task id>.slice`. */
export function isTaskCgroup(path: string, taskId: string): boolean {
  return path.endsWith(`/ecs/${taskId}`) || path.slice(path.lastIndexOf('/') + 1) === `ecstasks-${taskId}.slice`;
}

/**
 * What a container's task label amounts to, given what `who` (ECS, or the agent on this instance) said
 * of that task (undefined: not asked yet; null: it does not know it). Undefined when the container claims
 * no task.
 */
export function claimOf(
  c: Pick<ContainerState, 'id' | 'labels'>,
  view: EcsTaskView | null | undefined,
  ours: { containerInstanceArn?: string; cluster?: string },
  notAsked = 'ECS not asked yet',
  who: 'ECS' | 'the agent' = 'ECS',
): TaskClaim | undefined {
  const arn = c.labels[TASK_ARN_LABEL];
  if (!arn) return undefined;
  if (!ours.containerInstanceArn || !ours.cluster)
    return { state: 'unknown', arn, reason: 'ECS not asked: the registration is not confirmed yet' };
  if (!plausibleTaskArn(arn, ours.containerInstanceArn, ours.cluster))
    return { state: 'unconfirmed', arn, reason: `not a task ARN of cluster ${ours.cluster} in this account and region` };
  if (view === undefined) return { state: 'unknown', arn, reason: notAsked };
  if (view === null)
    return {
      state: 'unconfirmed',
      arn,
      reason: who === 'ECS' ? 'ECS does not know this task' : 'the agent did not create this container for that task',
    };
  if (view.containerInstanceArn !== ours.containerInstanceArn)
    return { state: 'unconfirmed', arn, reason: `ECS runs this task on ${view.containerInstanceArn ?? 'no container instance'}, not here` };
  if (!view.runtimeIds.includes(c.id)) return { state: 'unconfirmed', arn, reason: `${who} does not list this container among the task’s` };
  return { state: 'confirmed', arn, taskId: taskIdOf(arn), asked: taskLimits(view) };
}

/** The agent's own word on a container's task (agent-tasks.ts): undefined when it cannot be asked. */
export interface AgentTaskSource {
  view(c: { id: string; metadataEndpointId?: string }, containerInstanceArn: string): Promise<EcsTaskView | null | undefined>;
}

/**
 * What is known of each task ARN a running container names. The agent on this instance is asked first
 * (it created the task's containers and holds the limits ECS sent it; no AWS call); ECS only about the
 * rest, in one DescribeTasks call (up to 100 ARNs) at most every `minIntervalMs`, so tasks cost a bounded
 * share of the hourly ECS budget however many containers come and go. A task's limits do not change: each
 * ARN is asked once, and again only while the answer does not list a container that names it (ECS learns
 * Docker IDs from the agent, a moment late; the agent is asked per container).
 */
export class EcsTaskDirectory {
  private readonly known = new Map<string, { view: EcsTaskView | null; by: 'ECS' | 'the agent' }>();
  /** Containers the agent said are not the task's they name (asked again only when they come back). */
  private readonly disowned = new Set<string>();
  private askedAt = Number.NEGATIVE_INFINITY;
  /** Why the last DescribeTasks failed (AccessDenied without the IAM permission, say); cleared by an answer. */
  failure?: string;

  constructor(
    private readonly deps: { aws: AwsCaller; clock: Clock; log: Logger; agent?: AgentTaskSource },
    private readonly opts: { minIntervalMs: number },
  ) {}

  view(arn: string): EcsTaskView | null | undefined {
    return this.known.get(arn)?.view;
  }

  /** Who gave what is known of `arn`. */
  source(arn: string): 'ECS' | 'the agent' {
    return this.known.get(arn)?.by ?? 'ECS';
  }

  /**
   * Learn about the ARNs (those `wanted` by a container ID not listed yet): the agent first, ECS about what
   * it could not answer when the interval allows; forget ARNs no running container names. A spent budget
   * waits for the next interval.
   */
  async learn(
    cluster: string,
    region: string,
    containerInstanceArn: string,
    wanted: ReadonlyArray<{ arn: string; containerId: string; metadataEndpointId?: string }>,
    signal?: AbortSignal,
  ): Promise<void> {
    const named = new Set(wanted.map((w) => w.arn));
    for (const arn of this.known.keys()) if (!named.has(arn)) this.known.delete(arn);
    const live = new Set(wanted.map((w) => w.containerId));
    for (const id of this.disowned) if (!live.has(id)) this.disowned.delete(id);
    const unknown = (w: { arn: string; containerId: string }) => {
      const k = this.known.get(w.arn);
      return !this.disowned.has(w.containerId) && (k === undefined || (k.view !== null && !k.view.runtimeIds.includes(w.containerId)));
    };
    const forEcs: Array<{ arn: string }> = [];
    for (const w of wanted.filter(unknown)) {
      const v = this.deps.agent
        ? await this.deps.agent.view({ id: w.containerId, metadataEndpointId: w.metadataEndpointId }, containerInstanceArn)
        : undefined;
      if (v === undefined) forEcs.push(w);
      else if (v === null || v.arn !== w.arn) this.disowned.add(w.containerId);
      else {
        const k = this.known.get(w.arn);
        const ids = k?.view ? [...k.view.runtimeIds, w.containerId] : [w.containerId];
        this.known.set(w.arn, { view: { ...v, runtimeIds: ids }, by: 'the agent' });
      }
    }
    const now = this.deps.clock.now();
    if (now - this.askedAt < this.opts.minIntervalMs) return;
    const ask = [...new Set(forEcs.map((w) => w.arn))].slice(0, MAX_ARNS_PER_CALL);
    if (!ask.length) return;
    this.askedAt = now;
    try {
      // Never waits for budget: the audit pass it runs in has runtimes to check; the next interval asks.
      const views = await this.deps.aws.ecs(region, 'DescribeTasks', (ecs) => ecs.describeTasks(cluster, ask), signal, 0);
      for (const arn of ask) this.known.set(arn, { view: views.find((v) => v.arn === arn) ?? null, by: 'ECS' });
      this.failure = undefined;
      this.deps.log.debug({ asked: ask.length, known: views.length }, 'ECS asked about the tasks running here');
    } catch (err) {
      if (err instanceof BudgetSpent) return; // next interval
      this.failure = messageOf(err);
      throw err;
    }
  }

  /** Whether the agent said this container is not the task's it names. */
  isDisowned(containerId: string): boolean {
    return this.disowned.has(containerId);
  }
}
