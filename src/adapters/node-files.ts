import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { FilesPort, ReadOptions } from '../ports.js';

/** Local filesystem. Writes are atomic: readers see the old file or the new one, never a mix. */
export class NodeFiles implements FilesPort {
  /**
   * Regular files only, opened non-blocking (a FIFO in a config file's place never hangs us) and read
   * no further than the limit (a huge file or /proc entry is refused, not read whole first).
   */
  async read(path: string, opts: ReadOptions = {}): Promise<Uint8Array | undefined> {
    const max = opts.maxBytes ?? DEFAULT_MAX_READ;
    let fh: Awaited<ReturnType<typeof fs.open>>;
    try {
      fh = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK | (opts.noFollow ? constants.O_NOFOLLOW : 0));
    } catch (err) {
      if (isCode(err, 'ENOENT')) return undefined;
      if (opts.noFollow && isCode(err, 'ELOOP')) throw new Error('it is a symbolic link, which is not followed here');
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`it is ${fileKind(st)}, not a regular file`);
      if (st.size > max) throw new Error(`it holds ${st.size} bytes, more than the ${max} read here`);
      // /proc and /sys files report size 0: read in chunks, never past the limit.
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const buf = Buffer.allocUnsafe(Math.min(64 * 1024, max + 1 - total));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        total += bytesRead;
        if (total > max) throw new Error(`it holds more than the ${max} bytes read here`);
      }
      return Buffer.concat(chunks, total);
    } finally {
      await fh.close();
    }
  }

  async readText(path: string, opts: ReadOptions = {}): Promise<string | undefined> {
    const bytes = await this.read(path, { maxBytes: DEFAULT_MAX_TEXT, ...opts });
    return bytes && Buffer.from(bytes).toString('utf8');
  }

  async writeAtomic(path: string, data: string | Uint8Array, mode: number, opts: { noFollow?: boolean } = {}): Promise<void> {
    const target = opts.noFollow ? path : await this.realpath(path);
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

  async privateDir(path: string, mode: number): Promise<void> {
    await fs.mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await fs.mkdir(path, { mode }).catch((err: unknown) => {
      if (!isCode(err, 'EEXIST')) throw err;
    });
    const st = await fs.lstat(path);
    if (st.isSymbolicLink()) throw new Error(`${path} is a symbolic link; it must be a directory of its own`);
    if (!st.isDirectory()) throw new Error(`${path} is ${fileKind(st)}, not a directory`);
    const uid = process.geteuid?.() ?? 0;
    if (st.uid !== uid) throw new Error(`${path} is owned by uid ${st.uid}, not ${uid}`);
    if (st.mode & 0o022)
      throw new Error(`${path} is writable by ${st.mode & 0o002 ? 'others' : 'its group'} (mode ${(st.mode & 0o777).toString(8)})`);
    if ((st.mode & 0o777) !== mode) await fs.chmod(path, mode);
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

/** Configuration and state are small; a binary (runsc) is read with its own limit. */
const DEFAULT_MAX_READ = 128 * 1024 * 1024;
const DEFAULT_MAX_TEXT = 4 * 1024 * 1024;

function fileKind(st: import('node:fs').Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'a special file';
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
