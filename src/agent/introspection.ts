/** The agent's introspection API: `/v1/metadata` answers once the agent has registered. */
import { EcsGvisorError, HttpError } from '../errors.js';
import type { AgentMetadata, HostPort, HttpPort } from '../ports.js';

export class AgentIntrospection {
  constructor(
    private readonly http: HttpPort,
    private readonly baseUrl: string,
    private readonly timeoutMs = 3_000,
  ) {}

  /** undefined while nothing listens: before registration that is normal, not an error. */
  async metadata(): Promise<AgentMetadata | undefined> {
    const url = `${this.baseUrl.replace(/\/+$/, '')}/v1/metadata`;
    let body: Uint8Array;
    try {
      body = await this.http.get(url, { timeoutMs: this.timeoutMs, maxBytes: 64 * 1024 });
    } catch (err) {
      if (err instanceof HttpError && err.kind === 'refused') return undefined;
      throw new EcsGvisorError('HTTP_FAILED', `The agent's introspection API ${url} failed: ${(err as Error).message}.`, { cause: err });
    }
    return parseMetadata(url, Buffer.from(body).toString('utf8'));
  }
}

export function parseMetadata(url: string, text: string): AgentMetadata | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new EcsGvisorError('HTTP_FAILED', `The agent's introspection API ${url} answered something that is not JSON.`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new EcsGvisorError(
      'HTTP_FAILED',
      `The agent's introspection API ${url} answered JSON that is not an object (${JSON.stringify(doc)?.slice(0, 60)}).`,
    );
  }
  const d = doc as { Cluster?: unknown; ContainerInstanceArn?: unknown; Version?: unknown };
  // Before registration completes the agent may answer with an empty ARN.
  if (typeof d.ContainerInstanceArn !== 'string' || d.ContainerInstanceArn === '') return undefined;
  if (!/^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:container-instance\/\S+$/.test(d.ContainerInstanceArn)) {
    throw new EcsGvisorError(
      'HTTP_FAILED',
      `The agent's introspection API ${url} reports ContainerInstanceArn "${d.ContainerInstanceArn.slice(0, 200)}", which is not a container instance ARN.`,
    );
  }
  return {
    cluster: typeof d.Cluster === 'string' ? d.Cluster : '',
    containerInstanceArn: d.ContainerInstanceArn,
    version: typeof d.Version === 'string' ? d.Version : undefined,
  };
}

/**
 * Why the process answering on the introspection port is not the agent (undefined: it is). Any local
 * user can bind a loopback port first, and the agent's port is free while it restarts: an answer counts
 * only if every listener on the port is the agent container's init (`agentPid`) or one of its
 * descendants. Works because the agent uses the host's network namespace, as ecs-init runs it.
 */
export async function introspectionListenerProblem(host: HostPort, port: number, agentPid: number): Promise<string | undefined> {
  const pids = await host.listeners(port);
  if (!pids.length) return `nothing listens on 127.0.0.1:${port} in this network namespace`;
  for (const pid of pids) {
    let p: number | undefined = pid;
    for (let depth = 0; p !== undefined && p > 1 && p !== agentPid && depth < 64; depth++) p = await host.parentOf(p);
    if (p !== agentPid) {
      const argv = (await host.cmdline(pid).catch(() => undefined))?.join(' ').slice(0, 120) ?? '?';
      return `port ${port} is held by pid ${pid} (${argv}), which is not a process of the agent container (its init is pid ${agentPid})`;
    }
  }
  return undefined;
}

/** The loopback port of an introspection URL (the only kind whose listener can be checked here). */
export function loopbackPort(url: string): number | undefined {
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return undefined;
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
}
