import { EcsGvisorError, messageOf } from './errors.js';
import type { FilesPort } from './ports.js';
import { redact } from './redact.js';

/**
 * Small JSON documents in the state dir, written atomically so `status` never reads half a file. The
 * dir is root's alone (0700; refused when a link, someone else's or writable by others), its files are
 * 0600 (they name containers, clusters and ARNs), and no symbolic link inside it is followed.
 */
/** What the state store asks of the files. */
export type StateFiles = Pick<FilesPort, 'readText' | 'writeAtomic' | 'remove' | 'privateDir'>;

export class StateStore {
  private ready?: Promise<void>;

  constructor(
    private readonly files: StateFiles,
    private readonly dir: string,
  ) {}

  /** Check (once) that the dir is safe to write to, creating it when missing. Throws STATE_DIR_UNSAFE. */
  prepare(): Promise<void> {
    this.ready ??= privateStateDir(this.files, this.dir, `The state dir ECS_GVISOR_STATE_DIR=${this.dir}`).catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  async read<T>(name: string): Promise<T | undefined> {
    const raw = await this.files.readText(`${this.dir}/${name}`, { noFollow: true }).catch(() => undefined);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as T;
    } catch {
      return undefined; // a state file is a cache of facts; a bad one is as good as none
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    await this.prepare();
    await this.files.writeAtomic(`${this.dir}/${name}`, redact(`${JSON.stringify(value, null, 2)}\n`), 0o600, { noFollow: true });
  }

  async remove(name: string): Promise<void> {
    await this.files.remove(`${this.dir}/${name}`);
  }
}

/** A directory of ecs-gvisor's state (root's alone, created 0700 when missing); STATE_DIR_UNSAFE naming `what` otherwise. */
export async function privateStateDir(files: Pick<FilesPort, 'privateDir'>, dir: string, what: string): Promise<void> {
  await files.privateDir(dir, 0o700).catch((err: unknown) => {
    throw new EcsGvisorError('STATE_DIR_UNSAFE', `${what} is not safe to use: ${messageOf(err)}; nothing was changed.`, { cause: err });
  });
}
