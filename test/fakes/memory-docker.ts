/**
 * Docker in memory, for the fast tests of a step's decisions: containers and images as plain records,
 * changed the way dockerd changes them (names unique, a start gives a PID, a stop an exit code). It
 * implements the narrow ports the steps declare (AgentDocker, …), not the whole DockerPort; the real
 * adapter is proven against a real dockerd by the integration tests.
 */
import { createHash } from 'node:crypto';
import type { AgentDocker } from '../../src/agent/agent-step.js';
import { EcsGvisorError } from '../../src/errors.js';
import type { ContainerSpec, ContainerState, DockerInfo } from '../../src/ports.js';
import type { RuntimeDocker } from '../../src/runtime/runtime-step.js';

interface Image {
  id: string;
  /** A container of this image exits with this code as soon as it starts (a broken agent image). */
  exitsWith?: number;
}

export class MemoryDocker implements AgentDocker, RuntimeDocker {
  readonly containers = new Map<string, ContainerState & { spec?: ContainerSpec; log: string[] }>();
  readonly images = new Map<string, Image>();
  /** Every call that changed something, in order: `create ecs-agent`, `start <id12>`, … */
  readonly changes: string[] = [];
  /** What dockerd runs with now (as its last start or reload read daemon.json). */
  live: DockerInfo = {
    serverVersion: '25.0.8',
    defaultRuntime: 'runc',
    runtimes: { runc: { path: 'runc' } },
    cgroupVersion: '2',
    cgroupDriver: 'systemd',
  };
  /** Docker refuses the next create with this message (a spec it cannot take). */
  refuseCreate?: string;
  private seq = 0;
  private nextPid = 1000;

  /** An image under `ref` (its ID derived from `ref` and `variant`: a re-tag gives a new ID). */
  addImage(ref: string, o: { variant?: string; exitsWith?: number } = {}): string {
    const id = `sha256:${createHash('sha256')
      .update(`${ref} ${o.variant ?? ''}`)
      .digest('hex')}`;
    this.images.set(ref, { id, exitsWith: o.exitsWith });
    return id;
  }

  /** A container made outside the step (ecs-init's agent, a task), running unless told otherwise. */
  addContainer(c: Partial<ContainerState> & { name: string }): ContainerState {
    const id = c.id ?? this.newId();
    const state = {
      id,
      runtime: '',
      status: 'running',
      running: true,
      pid: this.nextPid++,
      startedAt: '2026-12-07T00:00:00.000Z',
      finishedAt: '',
      exitCode: 0,
      labels: {},
      log: [],
      ...c,
    };
    this.containers.set(id, state);
    return state;
  }

  byName(name: string) {
    return [...this.containers.values()].find((c) => c.name === name);
  }

  private find(ref: string) {
    return this.containers.get(ref) ?? this.byName(ref);
  }

  private newId(): string {
    return createHash('sha256')
      .update(`container ${++this.seq}`)
      .digest('hex');
  }

  private need(ref: string) {
    const c = this.find(ref);
    if (!c) throw new EcsGvisorError('DOCKER_API', `No such container: ${ref}`);
    return c;
  }

  /** dockerd reading daemon.json (a start or a SIGHUP): its default runtime and its runtimes. */
  readDaemonJson(text: string | undefined): void {
    const doc = (text ? JSON.parse(text) : {}) as {
      'default-runtime'?: string;
      runtimes?: Record<string, { path: string; runtimeArgs?: string[] }>;
    };
    this.live = {
      ...this.live,
      defaultRuntime: doc['default-runtime'] ?? 'runc',
      runtimes: { runc: { path: 'runc' }, ...(doc.runtimes ?? {}) },
    };
    this.changes.push(`reload (default ${this.live.defaultRuntime})`);
  }

  async info() {
    return structuredClone(this.live);
  }

  async listContainers(filter: { all?: boolean }) {
    const all = await Promise.all([...this.containers.keys()].map((id) => this.inspectContainer(id)));
    return all.filter((c): c is ContainerState => c !== undefined && (filter.all === true || c.running));
  }

  async removeImage(ref: string) {
    if (this.images.delete(ref)) this.changes.push(`remove image ${ref}`);
  }

  async imageId(ref: string) {
    return this.images.get(ref)?.id;
  }

  async imageExists(ref: string) {
    return this.images.has(ref);
  }

  async loadImage(tarballPath: string) {
    this.changes.push(`load ${tarballPath}`);
  }

  async pullImage(ref: string) {
    this.changes.push(`pull ${ref}`);
    this.addImage(ref);
  }

  async inspectContainer(ref: string) {
    const c = this.find(ref);
    if (!c) return undefined;
    const { spec: _spec, log: _log, ...state } = c;
    return structuredClone(state);
  }

  async createContainer(spec: ContainerSpec) {
    if (this.refuseCreate) {
      const why = this.refuseCreate;
      this.refuseCreate = undefined;
      throw new EcsGvisorError('DOCKER_API', why);
    }
    const name = spec.name ?? `container-${this.seq + 1}`;
    if (this.byName(name)) throw new EcsGvisorError('DOCKER_API', `Conflict. The container name "/${spec.name}" is already in use`);
    const image = this.images.get(spec.Image);
    if (!image) throw new EcsGvisorError('DOCKER_API', `No such image: ${spec.Image}`);
    const id = this.newId();
    const host = (spec.HostConfig ?? {}) as { Runtime?: string };
    this.containers.set(id, {
      id,
      name,
      // Docker's default runtime at creation when none is named.
      runtime: host.Runtime ?? 'runsc',
      status: 'created',
      running: false,
      pid: 0,
      startedAt: '',
      finishedAt: '',
      exitCode: 0,
      imageId: image.id,
      labels: { ...(spec.Labels ?? {}) },
      spec,
      log: [],
    });
    this.changes.push(`create ${name}`);
    return id;
  }

  async startContainer(ref: string) {
    const c = this.need(ref);
    this.changes.push(`start ${c.name}`);
    if (c.running) return;
    const exits = [...this.images.values()].find((i) => i.id === c.imageId)?.exitsWith;
    Object.assign(c, {
      running: exits === undefined,
      status: exits === undefined ? 'running' : 'exited',
      pid: exits === undefined ? this.nextPid++ : 0,
    });
    if (exits !== undefined) {
      c.exitCode = exits;
      c.log.push(`fatal: exiting with ${exits}`);
    }
  }

  async stopContainer(ref: string) {
    const c = this.find(ref);
    if (!c?.running) return;
    this.changes.push(`stop ${c.name}`);
    Object.assign(c, { running: false, status: 'exited', pid: 0, exitCode: 0 });
  }

  async removeContainer(ref: string) {
    const c = this.find(ref);
    if (!c) return;
    this.changes.push(`remove ${c.name}`);
    this.containers.delete(c.id);
  }

  async renameContainer(ref: string, name: string) {
    const c = this.need(ref);
    if (this.byName(name)) throw new EcsGvisorError('DOCKER_API', `Conflict. The container name "/${name}" is already in use`);
    this.changes.push(`rename ${c.name} ${name}`);
    c.name = name;
  }

  async containerLogs(ref: string, tail: number) {
    return this.need(ref).log.slice(-tail).join('\n');
  }
}
