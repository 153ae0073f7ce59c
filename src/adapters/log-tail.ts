/**
 * Reads what a log file gained since the last read, across its rotation: the agent renames
 * `ecs-agent.log` to `ecs-agent.log.<date-hour>` every hour and starts a new one, so when the name is
 * another file (another inode) the rest of the old one is found by its inode among the rotated files
 * and read first. A truncated file is read from its start. Only whole lines are returned.
 *
 * The file is believed only when root owns it and its directory and neither is writable by group or
 * others: any other writer could make the agent say what it likes.
 */
import { constants, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { EcsGvisorError } from '../errors.js';

/** The most read at once; a backlog past it (the first read of a long log) is read from its last part. */
const MAX_READ = 4 * 1024 * 1024;

export interface LogTailPort {
  /** The whole lines added since the last call ('' when none; the file's last part on the first). */
  read(): Promise<string>;
}

export class LogTail implements LogTailPort {
  private cursor?: { ino: number; offset: number };
  /** A line not finished yet when last read. */
  private partial = '';

  constructor(private readonly path: string) {}

  async read(): Promise<string> {
    const dirProblem = untrusted(await fs.stat(dirname(this.path)).catch(() => undefined), 'directory');
    if (dirProblem) throw refused(dirname(this.path), dirProblem);
    let out = '';
    const st = await fs.stat(this.path).catch(() => undefined);
    if (this.cursor && st?.ino !== this.cursor.ino) {
      // Rotated (or removed): the rest of the file we were reading, under its new name.
      const old = await this.rotated(this.cursor.ino);
      if (old) out += await this.readFrom(old, this.cursor.offset, this.cursor.ino);
      this.cursor = undefined;
      this.partial = '';
    }
    if (!st) return this.lines(out);
    const offset = this.cursor && st.size >= this.cursor.offset ? this.cursor.offset : 0;
    if (this.cursor && st.size < this.cursor.offset) this.partial = ''; // truncated
    out += await this.readFrom(this.path, offset, st.ino);
    return this.lines(out);
  }

  private lines(text: string): string {
    const all = this.partial + text;
    const end = all.lastIndexOf('\n');
    this.partial = all.slice(end + 1).slice(-MAX_READ);
    return end < 0 ? '' : all.slice(0, end + 1);
  }

  /** Read `path` from `offset` (or its last MAX_READ bytes), checking it is still the file `ino`. */
  private async readFrom(path: string, offset: number, ino: number): Promise<string> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
    try {
      const st = await fh.stat();
      const problem = st.isFile() ? untrusted(st, 'file') : 'is not a regular file';
      if (problem) throw refused(path, problem);
      if (st.ino !== ino) return ''; // replaced between the two looks: read it next time
      const from = Math.max(offset, st.size - MAX_READ);
      const buf = Buffer.alloc(Math.max(0, st.size - from));
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      this.cursor = { ino: st.ino, offset: from + bytesRead };
      if (from > offset) this.partial = ''; // skipped ahead: the kept fragment does not join what follows
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  /** The rotated file (`<name>.<suffix>` beside it) that is inode `ino`. */
  private async rotated(ino: number): Promise<string | undefined> {
    const dir = dirname(this.path);
    const prefix = `${basename(this.path)}.`;
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith(prefix)) continue;
      const st = await fs.lstat(join(dir, name)).catch(() => undefined);
      if (st?.isFile() && st.ino === ino) return join(dir, name);
    }
    return undefined;
  }
}

function untrusted(st: { uid: number; mode: number } | undefined, what: string): string | undefined {
  if (!st) return undefined;
  if (st.uid !== 0) return `${what} is owned by uid ${st.uid}, not root`;
  if (st.mode & 0o022) return `${what} is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`;
  return undefined;
}

function refused(path: string, problem: string): EcsGvisorError {
  return new EcsGvisorError('AGENT_LOG_UNSAFE', `The agent's log ${path} is not believed: its ${problem}.`);
}
