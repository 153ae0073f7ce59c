import type { FilesPort } from './ports.js';

/** Small JSON documents in the state dir, written atomically so `status` never reads half a file. */
export class StateStore {
  constructor(private readonly files: FilesPort, private readonly dir: string) {}

  async read<T>(name: string): Promise<T | undefined> {
    const raw = await this.files.readText(`${this.dir}/${name}`);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as T;
    } catch {
      return undefined; // a state file is a cache of facts; a bad one is as good as none
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    await this.files.mkdirp(this.dir, 0o755);
    await this.files.writeAtomic(`${this.dir}/${name}`, `${JSON.stringify(value, null, 2)}\n`, 0o644);
  }

  async remove(name: string): Promise<void> {
    await this.files.remove(`${this.dir}/${name}`);
  }
}
