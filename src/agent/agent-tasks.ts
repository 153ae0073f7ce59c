/**
 * What the agent itself says of the task a container belongs to, asked on the instance instead of ECS
 * (DescribeTasks, from the account's shared read budget): the agent created the container for that task,
 * and holds the task-level limits ECS sent it.
 *
 * - Whose container: introspection's `/v1/tasks?dockerid=<id>` names the task and lists its containers'
 *   Docker IDs. The agent answers only for containers it created; a container made by anyone else, with
 *   whatever labels, is not found.
 * - The limits asked: the task metadata endpoint (`/v4/<endpoint id>/task`, the agent's on 127.0.0.1:51679
 *   in the host's network) gives `Limits` {CPU in vCPU, Memory in MiB}. The endpoint ID comes from the
 *   container's environment, which anyone creating a container could copy; so the answer counts only when
 *   it names the same task and lists this container's Docker ID.
 * Both are believed only from a listener that is the agent container's own (introspectionListenerProblem).
 */
import { EcsGvisorError, HttpError } from '../errors.js';
import type { EcsTaskView, HttpPort } from '../ports.js';

/** Where the agent serves task metadata on the host (ecs-init's iptables send 169.254.170.2:80 here). */
export const TMDS_URL = 'http://127.0.0.1:51679';

export interface AgentTaskDeps {
  http: HttpPort;
  introspectionUrl: string;
  tmdsUrl: string;
  /** Why a loopback port's listener is not the agent's (undefined: it is); undefined itself: not checked. */
  listenerProblem?: (url: string) => Promise<string | undefined>;
}

export class AgentTasks {
  constructor(private readonly deps: AgentTaskDeps) {}

  /**
   * The task of container `c` as the agent has it: a view like DescribeTasks' (this container its one
   * Docker ID); null: the agent did not create it; undefined: the agent cannot be asked here (not
   * listening, not the agent's listener, no metadata endpoint), so ECS is asked instead.
   */
  async view(c: { id: string; metadataEndpointId?: string }, containerInstanceArn: string): Promise<EcsTaskView | null | undefined> {
    if (!c.metadataEndpointId) return undefined;
    const { introspectionUrl, tmdsUrl } = this.deps;
    const intro = await this.json(introspectionUrl, `/v1/tasks?dockerid=${encodeURIComponent(c.id)}`);
    if (intro === undefined) return undefined;
    if (intro === null) return null;
    const t = intro as { Arn?: unknown; Containers?: Array<{ DockerId?: unknown }> };
    if (typeof t.Arn !== 'string' || !Array.isArray(t.Containers) || !t.Containers.some((x) => x.DockerId === c.id)) return null;
    const md = await this.json(tmdsUrl, `/v4/${c.metadataEndpointId}/task`);
    if (!md) return undefined;
    const m = md as { TaskARN?: unknown; Containers?: Array<{ DockerId?: unknown }>; Limits?: { CPU?: unknown; Memory?: unknown } };
    // An endpoint ID copied from another container's environment leads to another task, or not to this container.
    if (m.TaskARN !== t.Arn || !Array.isArray(m.Containers) || !m.Containers.some((x) => x.DockerId === c.id)) return null;
    const cpu = typeof m.Limits?.CPU === 'number' && m.Limits.CPU > 0 ? String(Math.round(m.Limits.CPU * 1024)) : undefined;
    const memory = typeof m.Limits?.Memory === 'number' && m.Limits.Memory > 0 ? String(m.Limits.Memory) : undefined;
    return { arn: t.Arn, containerInstanceArn, ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}), runtimeIds: [c.id] };
  }

  /** The JSON at `base + path`; null when the agent says it has no such thing (404, 400); undefined when it cannot be asked. */
  private async json(base: string, path: string): Promise<unknown> {
    const problem = await this.deps.listenerProblem?.(base);
    if (problem) return undefined;
    const url = `${base.replace(/\/+$/, '')}${path}`;
    let body: Uint8Array;
    try {
      body = await this.deps.http.get(url, { timeoutMs: 3_000, maxBytes: 1024 * 1024 });
    } catch (err) {
      if (err instanceof HttpError && err.kind === 'status' && (err.status === 404 || err.status === 400)) return null;
      if (err instanceof HttpError && err.kind === 'refused') return undefined;
      throw new EcsGvisorError('HTTP_FAILED', `The agent's ${url} failed: ${(err as Error).message}.`, { cause: err });
    }
    try {
      const doc = JSON.parse(Buffer.from(body).toString('utf8')) as unknown;
      return doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? doc : null;
    } catch {
      throw new EcsGvisorError('HTTP_FAILED', `The agent's ${url} answered something that is not JSON.`);
    }
  }
}
