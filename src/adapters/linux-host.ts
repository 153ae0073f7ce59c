import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import type { HostPort } from '../ports.js';
import { isCode } from './node-files.js';

/** Facts about processes on this host from /proc, and signals. */
export class LinuxHost implements HostPort {
  constructor(
    private readonly procRoot = '/proc',
    private readonly systemdDir = '/run/systemd/system',
  ) {}

  async cmdline(pid: number): Promise<string[] | undefined> {
    try {
      const raw = await fs.readFile(`${this.procRoot}/${pid}/cmdline`, 'utf8');
      const parts = raw.split('\0');
      if (parts[parts.length - 1] === '') parts.pop();
      return parts;
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ESRCH')) return undefined;
      throw err;
    }
  }

  async listeners(port: number): Promise<number[]> {
    const inodes = new Set<string>();
    for (const table of ['net/tcp', 'net/tcp6']) {
      const text = await fs.readFile(`${this.procRoot}/${table}`, 'utf8').catch(() => '');
      for (const line of text.split('\n').slice(1)) {
        // sl local_address rem_address st … inode: state 0A is LISTEN; the port is the hex after the last ':'.
        const cols = line.trim().split(/\s+/);
        if (cols.length < 10 || cols[3] !== '0A') continue;
        if (parseInt(cols[1]!.slice(cols[1]!.lastIndexOf(':') + 1), 16) === port) inodes.add(`socket:[${cols[9]}]`);
      }
    }
    if (!inodes.size) return [];
    const owners: number[] = [];
    for (const pid of (await fs.readdir(this.procRoot)).filter((e) => /^[0-9]+$/.test(e))) {
      const fds = await fs.readdir(`${this.procRoot}/${pid}/fd`).catch(() => [] as string[]);
      for (const fd of fds) {
        const target = await fs.readlink(`${this.procRoot}/${pid}/fd/${fd}`).catch(() => '');
        if (inodes.has(target)) {
          owners.push(Number(pid));
          break;
        }
      }
    }
    return owners;
  }

  async exe(pid: number): Promise<string | undefined> {
    return fs.readlink(`${this.procRoot}/${pid}/exe`).catch(() => undefined);
  }

  async parentOf(pid: number): Promise<number | undefined> {
    const stat = await fs.readFile(`${this.procRoot}/${pid}/stat`, 'utf8').catch(() => undefined);
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'.
    const ppid = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
    return ppid === undefined ? undefined : Number(ppid);
  }

  async processesMentioning(text: string): Promise<Array<{ pid: number; argv: string[] }>> {
    const pids = (await fs.readdir(this.procRoot)).filter((e) => /^[0-9]+$/.test(e)).map(Number);
    const found: Array<{ pid: number; argv: string[] }> = [];
    for (const pid of pids) {
      if (pid === process.pid) continue;
      const argv = await this.cmdline(pid).catch(() => undefined);
      if (argv?.some((a) => a.includes(text))) found.push({ pid, argv });
    }
    return found;
  }

  // /proc and /sys files are made by the kernel on read, never block, and are a few hundred bytes: read
  // synchronously, as one system call each, where the audit reads hundreds of them a pass.
  async childrenOf(pid: number): Promise<number[]> {
    let tasks: string[];
    try {
      tasks = readdirSync(`${this.procRoot}/${pid}/task`);
    } catch {
      return [];
    }
    const kids = new Set<number>();
    for (const t of tasks) {
      const text = this.readKernel(`${this.procRoot}/${pid}/task/${t}/children`) ?? '';
      for (const k of text.split(/\s+/)) if (k) kids.add(Number(k));
    }
    return [...kids];
  }

  async kernelText(path: string): Promise<string | undefined> {
    if (!path.startsWith('/proc/') && !path.startsWith('/sys/')) throw new Error(`${path} is not a kernel file`);
    return this.readKernel(path);
  }

  private readKernel(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ESRCH')) return undefined;
      throw err;
    }
  }

  signal(pid: number, signal: NodeJS.Signals): boolean {
    try {
      process.kill(pid, signal);
      return true;
    } catch (err) {
      if (isCode(err, 'ESRCH')) return false;
      throw err;
    }
  }

  async systemdRunning(): Promise<boolean> {
    try {
      return (await fs.stat(this.systemdDir)).isDirectory();
    } catch {
      return false;
    }
  }
}
