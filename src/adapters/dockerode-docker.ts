import { createReadStream } from 'node:fs';
import { Agent, type AgentOptions } from 'node:http';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import Docker from 'dockerode';
import { EcsGvisorError } from '../errors.js';
import type { ContainerEvents, ContainerSpec, ContainerState, DockerInfo, DockerPort } from '../ports.js';
import { type EarlyDockerInfo, getDockerInfo } from './early-docker-info.js';

/**
 * Docker Engine API through dockerode. Errors are classified by HTTP status, never by message text.
 *
 * Every request-response call has a deadline: a dockerd that accepted the connection but never answers
 * (stopped, wedged, or mid-restart behind systemd's socket) must not stall the supervisor, whose mutex
 * every agent change waits on. Image load/pull progress streams only have the idle timeout; the event
 * stream has none, since a quiet engine sends nothing for hours: it ends only when dockerd closes it (it
 * stopped or died), which is what the supervisor takes for a Docker restart.
 */
export class DockerodeDocker implements DockerPort {
  private readonly docker: Docker;
  /** For the event stream: no idle timeout. */
  private readonly events: Docker;

  constructor(
    private readonly host: string,
    opts: { idleTimeoutMs?: number; deadlineMs?: number; earlyInfo?: EarlyDockerInfo } = {},
  ) {
    this.docker = new Docker({ ...connectionOptions(host), timeout: opts.idleTimeoutMs ?? 120_000 });
    this.events = new Docker(connectionOptions(host));
    this.deadlineMs = opts.deadlineMs ?? DOCKER_DEADLINE_MS;
    this.earlyInfo = opts.earlyInfo?.host === host ? opts.earlyInfo : undefined;
  }

  private readonly deadlineMs: number;
  /** /info already asked of this host (by the entry, for `status`): the first info() takes its answer. */
  private readonly earlyInfo: EarlyDockerInfo | undefined;

  async info(): Promise<DockerInfo> {
    // Asked directly on a unix socket, so the answer read is capped (docker-modem would buffer any size).
    const early = this.earlyInfo?.take() as Promise<Record<string, unknown>> | undefined;
    const i = await this.call(
      'get info',
      (abortSignal) =>
        early ??
        (getDockerInfo(this.host, abortSignal) as Promise<Record<string, unknown>> | undefined) ??
        (this.docker.info as (o: object) => Promise<Record<string, unknown>>).call(this.docker, { abortSignal }),
    );
    return {
      serverVersion: String(i.ServerVersion ?? ''),
      defaultRuntime: String(i.DefaultRuntime ?? ''),
      runtimes: (i.Runtimes ?? {}) as DockerInfo['runtimes'],
      cgroupVersion: String(i.CgroupVersion ?? '1'),
      cgroupDriver: String(i.CgroupDriver ?? ''),
      usernsRemap: ((i.SecurityOptions ?? []) as string[]).some((o) => o.includes('name=userns')),
    };
  }

  async imageExists(ref: string): Promise<boolean> {
    return this.call(
      `inspect image ${ref}`,
      async (abortSignal) => {
        await this.docker.getImage(ref).inspect({ abortSignal } as object);
        return true;
      },
      { 404: false },
    );
  }

  async imageId(ref: string): Promise<string | undefined> {
    return this.call(
      `inspect image ${ref}`,
      async (abortSignal) => String((await this.docker.getImage(ref).inspect({ abortSignal } as object)).Id),
      { 404: undefined },
    );
  }

  async importImage(rootfsTar: Uint8Array, ref: string, cmd: readonly string[]): Promise<void> {
    const [repo, tag] = splitRef(ref);
    const stream = await this.call(
      `import image ${ref}`,
      () =>
        this.docker.importImage(
          Readable.from([Buffer.from(rootfsTar)]) as unknown as string,
          {
            repo,
            tag,
            changes: [`CMD ${JSON.stringify(cmd)}`],
          } as unknown as object,
        ),
      {},
      false,
    );
    await this.follow(stream as NodeJS.ReadableStream, `import image ${ref}`);
  }

  async removeImage(ref: string): Promise<void> {
    await this.call(`remove image ${ref}`, (abortSignal) => this.docker.getImage(ref).remove({ force: true, abortSignal }), {
      404: undefined,
    });
  }

  // Loads and pulls stream progress for as long as they take: only the idle timeout applies.
  async loadImage(tarballPath: string): Promise<void> {
    const stream = await this.call(
      `load ${tarballPath}`,
      () => this.docker.loadImage(createReadStream(tarballPath) as unknown as string, { quiet: true }),
      {},
      false,
    );
    await this.follow(stream as NodeJS.ReadableStream, `load ${tarballPath}`);
  }

  async pullImage(ref: string): Promise<void> {
    const stream = await this.call(`pull ${ref}`, () => this.docker.pull(ref), {}, false);
    await this.follow(stream as NodeJS.ReadableStream, `pull ${ref}`);
  }

  async containerLogs(id: string, tail: number): Promise<string> {
    const buf = (await this.call(`read the logs of ${id.slice(0, 12)}`, (abortSignal) =>
      this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail, follow: false, abortSignal }),
    )) as unknown as Buffer;
    return demux(Buffer.from(buf));
  }

  /** Wait for a progress stream to end; an `error` entry in it is a failure. */
  private follow(stream: NodeJS.ReadableStream, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(stream, (err: unknown, out: Array<{ error?: string; errorDetail?: { message?: string } }>) => {
        if (err) return reject(this.wrap(what, err));
        const failed = out.find((o) => o.error)?.error;
        if (failed) reject(new EcsGvisorError('DOCKER_API', `Docker could not ${what} (${failed.trim()}).`));
        else resolve();
      });
    });
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    const c = await this.call(`create container from ${spec.Image}`, (abortSignal) =>
      this.docker.createContainer({ ...(spec as Docker.ContainerCreateOptions), abortSignal }),
    );
    return c.id;
  }

  async startContainer(id: string): Promise<void> {
    // 304: already started.
    await this.call(`start container ${id.slice(0, 12)}`, (abortSignal) => this.docker.getContainer(id).start({ abortSignal }), {
      304: undefined,
    });
  }

  async inspectContainer(id: string): Promise<ContainerState | undefined> {
    return this.call(
      `inspect container ${id.slice(0, 12)}`,
      async (abortSignal) => toState(await this.docker.getContainer(id).inspect({ abortSignal })),
      { 404: undefined },
    );
  }

  async removeContainer(id: string): Promise<void> {
    // 404: gone; 409: removal already in progress.
    await this.call(
      `remove container ${id.slice(0, 12)}`,
      (abortSignal) => this.docker.getContainer(id).remove({ force: true, v: true, abortSignal }),
      { 404: undefined, 409: undefined },
    );
  }

  async renameContainer(id: string, name: string): Promise<void> {
    await this.call(`rename container ${id.slice(0, 12)} to ${name}`, (abortSignal) =>
      this.docker.getContainer(id).rename({ name, abortSignal }),
    );
  }

  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    // Docker waits up to timeoutSeconds before it kills: the deadline starts after that. 304/404: already stopped, or gone.
    await this.call(
      `stop container ${id.slice(0, 12)}`,
      (abortSignal) => this.docker.getContainer(id).stop({ t: timeoutSeconds, abortSignal }),
      { 304: undefined, 404: undefined },
      timeoutSeconds * 1000 + this.deadlineMs,
    );
  }

  async listContainers(filter: { label?: string; all?: boolean }): Promise<ContainerState[]> {
    const list = await this.call('list containers', (abortSignal) =>
      this.docker.listContainers({ all: filter.all ?? false, filters: filter.label ? { label: [filter.label] } : {}, abortSignal }),
    );
    const states = await Promise.all(list.map((c) => this.inspectContainer(c.Id)));
    return states.filter((s): s is ContainerState => s !== undefined);
  }

  async runningIds(): Promise<string[]> {
    const list = await this.call('list containers', (abortSignal) => this.docker.listContainers({ all: false, abortSignal }));
    return list.map((c) => c.Id);
  }

  async containerEvents(name: string | undefined, signal: AbortSignal): Promise<ContainerEvents> {
    const stream = (await this.call('watch container events', (abortSignal) =>
      this.events.getEvents({ filters: name ? { type: ['container'], container: [name] } : { type: ['container'] }, abortSignal }),
    )) as unknown as NodeJS.ReadableStream & { destroy(): void };
    const close = () => {
      signal.removeEventListener('abort', close);
      stream.destroy();
    };
    signal.addEventListener('abort', close, { once: true });
    const events = (async function* () {
      let buf = '';
      try {
        for await (const chunk of stream) {
          buf += chunk.toString();
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (!line) continue;
            const e = JSON.parse(line) as {
              Action?: string;
              status?: string;
              id?: string;
              Actor?: { ID?: string; Attributes?: Record<string, string> };
            };
            const code = e.Actor?.Attributes?.exitCode;
            yield {
              action: e.Action ?? e.status ?? '',
              id: e.Actor?.ID ?? e.id ?? '',
              name: e.Actor?.Attributes?.name ?? '',
              exitCode: code === undefined ? undefined : Number(code),
            };
          }
        }
      } catch (err) {
        if (!signal.aborted) throw err; // destroyed by our own abort: a normal end
      } finally {
        close();
      }
    })();
    return { [Symbol.asyncIterator]: () => events, close };
  }

  /**
   * One API call under a deadline (`false`: none, for streams). `expected` maps HTTP statuses that are
   * not failures here (404 on a lookup, 304 on a start) to the value to return instead.
   */
  private async call<T, E = never>(
    what: string,
    fn: (abortSignal?: AbortSignal) => Promise<T>,
    expected: Partial<Record<number, E>> = {},
    deadlineMs: number | false = this.deadlineMs,
  ): Promise<T | E> {
    // Aborted only if the call has not settled by the deadline: a stream it returned lives on after.
    const ac = deadlineMs === false ? undefined : new AbortController();
    const timer = ac && setTimeout(() => ac.abort(), deadlineMs as number);
    try {
      // Raced as well: not every dockerode call hands the signal on to its request.
      return await (ac ? Promise.race([fn(ac.signal), rejectOnAbort(ac.signal)]) : fn());
    } catch (err) {
      const status = statusOf(err);
      if (status !== undefined && status in expected) return expected[status] as E;
      if (ac?.signal.aborted) {
        throw new EcsGvisorError(
          'DOCKER_UNAVAILABLE',
          `Docker at ${this.host} did not answer within ${(deadlineMs as number) / 1000} s to ${what}.`,
          { cause: err },
        );
      }
      throw this.wrap(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private wrap(what: string, err: unknown): EcsGvisorError {
    const status = statusOf(err);
    if (status === undefined) {
      return new EcsGvisorError('DOCKER_UNAVAILABLE', `Docker at ${this.host} cannot be reached to ${what} (${errText(err)}).`, {
        cause: err,
      });
    }
    return new EcsGvisorError('DOCKER_API', `Docker refused to ${what} (HTTP ${status}: ${errText(err)}).`, {
      cause: err,
      details: { statusCode: status },
    });
  }
}

/** How long a request-response call to Docker may take before it counts as Docker being unavailable. */
export const DOCKER_DEADLINE_MS = 60_000;

/**
 * Node's global agent's settings, and no server name: a socket has none to send, and said here, Node
 * does not derive one from the host for each request (its first IPv6 check of that host costs a cold
 * `status` 10 ms). docker-modem formats each request's options, agent included, for its debug log:
 * this agent formats as one word, not as every socket it holds.
 */
class SocketAgent extends Agent {
  constructor() {
    super({ keepAlive: true, scheduling: 'lifo', timeout: 5_000, servername: '' } as AgentOptions);
  }

  [inspect.custom](): string {
    return 'SocketAgent';
  }
}

function connectionOptions(host: string): Docker.DockerOptions {
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length), agent: new SocketAgent() } as Docker.DockerOptions;
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port), protocol: u.protocol === 'https:' ? 'https' : 'http' };
}

function splitRef(ref: string): [string, string] {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

export function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function errText(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === 'string') return json.message.trim();
  if (err instanceof Error) return err.message;
  return String(err);
}

function toState(i: Docker.ContainerInspectInfo): ContainerState {
  const h = i.HostConfig as {
    Memory?: number;
    NanoCpus?: number;
    CpuQuota?: number;
    CpuPeriod?: number;
    PidsLimit?: number | null;
    CgroupParent?: string;
    Privileged?: boolean;
    CapAdd?: string[] | null;
    UsernsMode?: string;
  };
  return {
    id: i.Id,
    name: i.Name.replace(/^\//, ''),
    runtime: String((i.HostConfig as { Runtime?: string }).Runtime ?? ''),
    status: i.State.Status,
    running: i.State.Running,
    pid: i.State.Pid,
    startedAt: i.State.StartedAt,
    finishedAt: i.State.FinishedAt,
    exitCode: i.State.ExitCode,
    oomKilled: i.State.OOMKilled === true,
    imageId: i.Image,
    networkMode: String((i.HostConfig as { NetworkMode?: string }).NetworkMode ?? ''),
    labels: i.Config.Labels ?? {},
    metadataEndpointId: metadataEndpointIdOf(i.Config.Env),
    health: (i.State as { Health?: { Status?: string } }).Health?.Status,
    resources: {
      memory: h.Memory,
      nanoCpus: h.NanoCpus,
      cpuQuota: h.CpuQuota,
      cpuPeriod: h.CpuPeriod,
      pidsLimit: h.PidsLimit ?? undefined,
      cgroupParent: h.CgroupParent ?? '',
    },
    security: {
      user: i.Config.User ?? '',
      privileged: h.Privileged === true,
      capAdd: h.CapAdd ?? [],
      writableHostMounts: (i.Mounts ?? []).filter((m) => m.Type === 'bind' && m.RW).map((m) => m.Source),
      usernsMode: h.UsernsMode ?? '',
    },
  };
}

/** Docker multiplexes stdout/stderr of a non-TTY container in 8-byte-headed frames. */
function demux(buf: Buffer): string {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length && (buf[i] === 1 || buf[i] === 2) && buf[i + 1] === 0) {
    const len = buf.readUInt32BE(i + 4);
    out.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return i === 0 ? buf.toString('utf8') : Buffer.concat(out).toString('utf8');
}

/**
 * The agent's task metadata endpoint ID of a container, from the one variable the agent sets at creation
 * (`ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/<id>`); nothing else of the environment (which
 * holds a task's secrets) is kept.
 */
export function metadataEndpointIdOf(env: readonly string[] | null | undefined): string | undefined {
  const v = env?.find((e) => e.startsWith('ECS_CONTAINER_METADATA_URI_V4='));
  return v ? /^ECS_CONTAINER_METADATA_URI_V4=http:\/\/169\.254\.170\.2\/v4\/([A-Za-z0-9-]{1,64})$/.exec(v)?.[1] : undefined;
}
