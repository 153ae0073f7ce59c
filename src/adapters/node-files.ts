import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { FilesPort } from '../ports.js';

/** Local filesystem. Writes are atomic: readers see the old file or the new one, never a mix. */
export class NodeFiles implements FilesPort {
  async read(path: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.readFile(path);
    } catch (err) {
      if (isCode(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async readText(path: string): Promise<string | undefined> {
    const bytes = await this.read(path);
    return bytes && Buffer.from(bytes).toString('utf8');
  }

  async writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
    const target = await this.realpath(path);
    const dir = dirname(target);
    const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    const fh = await fs.open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, mode);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode); // the umask may have narrowed the mode given to open
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    try {
      await fs.rename(tmp, target);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await syncDir(dir);
  }

  async overwrite(path: string, data: string): Promise<void> {
    await fs.writeFile(path, data, { flag: 'r+' });
  }

  async remove(path: string): Promise<void> {
    await fs.rm(path, { force: true });
    await syncDir(dirname(path)).catch(() => undefined);
  }

  async exists(path: string): Promise<boolean> {
    try {
      await fs.lstat(path);
      return true;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async identity(path: string): Promise<string | undefined> {
    try {
      const st = await fs.stat(path, { bigint: true });
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  async kind(path: string): Promise<'file' | 'dir' | 'other' | undefined> {
    try {
      const st = await fs.stat(path);
      return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  async mkdirp(path: string, mode: number): Promise<void> {
    await fs.mkdir(path, { recursive: true, mode });
  }

  async realpath(path: string): Promise<string> {
    try {
      return await fs.realpath(path);
    } catch (err) {
      if (isCode(err, 'ENOENT')) return path;
      throw err;
    }
  }

  async tempDir(prefix: string): Promise<string> {
    return fs.mkdtemp(join(tmpdir(), prefix));
  }

  async removeTree(path: string): Promise<void> {
    await fs.rm(path, { recursive: true, force: true });
  }

  async installFile(from: string, to: string, mode: number): Promise<void> {
    await this.writeAtomic(to, await fs.readFile(from), mode);
  }

  async installTree(from: string, to: string): Promise<void> {
    // Copy beside the target, then swap, so a half-copied tree is never in place.
    const staging = `${to}.${process.pid}.new`;
    const old = `${to}.${process.pid}.old`;
    await fs.rm(staging, { recursive: true, force: true });
    await fs.cp(from, staging, { recursive: true, preserveTimestamps: true });
    const had = await this.exists(to);
    if (had) await fs.rename(to, old);
    await fs.rename(staging, to);
    if (had) await fs.rm(old, { recursive: true, force: true });
    await syncDir(dirname(to));
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
