import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { EcsGvisorError } from '../errors.js';
import type { ContainerEvent, ContainerSpec, ContainerState, DockerInfo, DockerPort } from '../ports.js';

/** Docker Engine API through dockerode. Errors are classified by HTTP status, never by message text. */
export class DockerodeDocker implements DockerPort {
  private readonly docker: Docker;

  constructor(private readonly host: string, timeoutMs = 120_000) {
    this.docker = new Docker({ ...connectionOptions(host), timeout: timeoutMs });
  }

  async info(): Promise<DockerInfo> {
    const i = await this.call('get info', () => this.docker.info());
    return {
      serverVersion: String(i.ServerVersion ?? ''),
      defaultRuntime: String(i.DefaultRuntime ?? ''),
      runtimes: (i.Runtimes ?? {}) as DockerInfo['runtimes'],
      cgroupVersion: String(i.CgroupVersion ?? '1'),
      cgroupDriver: String(i.CgroupDriver ?? ''),
    };
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw this.wrap(`inspect image ${ref}`, err);
    }
  }

  async importImage(rootfsTar: Uint8Array, ref: string, cmd: readonly string[]): Promise<void> {
    const [repo, tag] = splitRef(ref);
    const stream = await this.call(`import image ${ref}`, () =>
      this.docker.importImage(Readable.from([Buffer.from(rootfsTar)]) as unknown as string, {
        repo,
        tag,
        changes: [`CMD ${JSON.stringify(cmd)}`],
      } as unknown as object),
    );
    await this.follow(stream as NodeJS.ReadableStream, `import image ${ref}`);
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: true });
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.wrap(`remove image ${ref}`, err);
    }
  }

  async loadImage(tarballPath: string): Promise<void> {
    const stream = await this.call(`load ${tarballPath}`, () => this.docker.loadImage(createReadStream(tarballPath) as unknown as string, { quiet: true }));
    await this.follow(stream as NodeJS.ReadableStream, `load ${tarballPath}`);
  }

  async pullImage(ref: string): Promise<void> {
    const stream = await this.call(`pull ${ref}`, () => this.docker.pull(ref));
    await this.follow(stream as NodeJS.ReadableStream, `pull ${ref}`);
  }

  async containerLogs(id: string, tail: number): Promise<string> {
    const buf = (await this.call(`read the logs of ${id.slice(0, 12)}`, () =>
      this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail, follow: false }),
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
    const c = await this.call(`create container from ${spec.Image}`, () => this.docker.createContainer(spec as Docker.ContainerCreateOptions));
    return c.id;
  }

  async startContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (statusOf(err) === 304) return; // already started
      throw this.wrap(`start container ${id.slice(0, 12)}`, err);
    }
  }

  async inspectContainer(id: string): Promise<ContainerState | undefined> {
    try {
      return toState(await this.docker.getContainer(id).inspect());
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.wrap(`inspect container ${id.slice(0, 12)}`, err);
    }
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      if (status === 409) return; // removal already in progress
      throw this.wrap(`remove container ${id.slice(0, 12)}`, err);
    }
  }

  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: timeoutSeconds });
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return; // already stopped, or gone
      throw this.wrap(`stop container ${id.slice(0, 12)}`, err);
    }
  }

  async listContainers(filter: { label?: string; all?: boolean }): Promise<ContainerState[]> {
    const list = await this.call('list containers', () =>
      this.docker.listContainers({ all: filter.all ?? false, filters: filter.label ? { label: [filter.label] } : {} }),
    );
    const states = await Promise.all(list.map((c) => this.inspectContainer(c.Id)));
    return states.filter((s): s is ContainerState => s !== undefined);
  }

  async containerEvents(name: string | undefined, signal: AbortSignal): Promise<AsyncIterable<ContainerEvent>> {
    const stream = (await this.call('watch container events', () =>
      this.docker.getEvents({ filters: name ? { type: ['container'], container: [name] } : { type: ['container'] } }),
    )) as unknown as NodeJS.ReadableStream & { destroy(): void };
    const stop = () => stream.destroy();
    signal.addEventListener('abort', stop, { once: true });
    return (async function* () {
      let buf = '';
      try {
        for await (const chunk of stream) {
          buf += chunk.toString();
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (!line) continue;
            const e = JSON.parse(line) as { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
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
        signal.removeEventListener('abort', stop);
        stream.destroy();
      }
    })();
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(what, err);
    }
  }

  private wrap(what: string, err: unknown): EcsGvisorError {
    const status = statusOf(err);
    if (status === undefined) {
      return new EcsGvisorError('DOCKER_UNAVAILABLE', `Docker at ${this.host} cannot be reached to ${what} (${errText(err)}).`, { cause: err });
    }
    return new EcsGvisorError('DOCKER_API', `Docker refused to ${what} (HTTP ${status}: ${errText(err)}).`, {
      cause: err,
      details: { statusCode: status },
    });
  }
}

function connectionOptions(host: string): Docker.DockerOptions {
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port), protocol: u.protocol === 'https:' ? 'https' : 'http' };
}

function splitRef(ref: string): [string, string] {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
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
    labels: i.Config.Labels ?? {},
    health: (i.State as { Health?: { Status?: string } }).Health?.Status,
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
