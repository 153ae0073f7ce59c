/**
 * Files in memory, for the fast tests: a map of paths to text (and directories), written atomically by
 * construction. It implements the narrow ports the steps and the state store declare, not the whole
 * FilesPort; the real adapter is proven on disk by the integration tests.
 */
import type { AgentFiles } from '../../src/agent/agent-step.js';
import type { RuntimeFiles } from '../../src/runtime/runtime-step.js';
import type { StateFiles } from '../../src/state-store.js';

export class MemoryFiles implements AgentFiles, StateFiles, RuntimeFiles {
  readonly files = new Map<string, { text: string; mode: number }>();
  readonly dirs = new Set<string>(['/']);

  constructor(initial: Record<string, string> = {}) {
    for (const [path, text] of Object.entries(initial)) this.put(path, text);
  }

  put(path: string, text: string, mode = 0o644): void {
    this.files.set(path, { text, mode });
  }

  text(path: string): string | undefined {
    return this.files.get(path)?.text;
  }

  async readText(path: string) {
    return this.files.get(path)?.text;
  }

  async read(path: string) {
    const f = this.files.get(path);
    return f === undefined ? undefined : new TextEncoder().encode(f.text);
  }

  async realpath(path: string) {
    return path;
  }

  async kind(path: string) {
    return this.files.has(path) ? ('file' as const) : this.dirs.has(path) ? ('dir' as const) : undefined;
  }

  async writeAtomic(path: string, data: string | Uint8Array, mode: number) {
    this.put(path, typeof data === 'string' ? data : Buffer.from(data).toString('utf8'), mode);
  }

  async overwrite(path: string, data: string) {
    this.put(path, data, this.files.get(path)?.mode ?? 0o644);
  }

  async remove(path: string) {
    this.files.delete(path);
  }

  async mkdirp(path: string) {
    this.dirs.add(path);
  }

  async privateDir(path: string) {
    this.dirs.add(path);
  }
}
