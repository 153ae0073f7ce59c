import { closeSync, constants, promises as fs, openSync, readdirSync, readFileSync, readSync } from 'node:fs';

import type { HostPort, OomKill } from '../ports.js';
import { establishedConnections, type TcpConnection, tcpSockets } from '../proc-net.js';
import { isCode } from './node-files.js';

/** Facts about processes on this host from /proc, and signals. */
export class LinuxHost implements HostPort {
  constructor(
    private readonly procRoot = '/proc',
    private readonly systemdDir = '/run/systemd/system',
    private readonly kmsg = '/dev/kmsg',
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
      // State 0A is LISTEN.
      for (const s of tcpSockets(text)) if (s.state === '0A' && s.localPort === port) inodes.add(s.inode);
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

  async connectionsOf(pid: number): Promise<TcpConnection[]> {
    const fds = await fs.readdir(`${this.procRoot}/${pid}/fd`).catch(() => [] as string[]);
    const links = await Promise.all(fds.map((fd) => fs.readlink(`${this.procRoot}/${pid}/fd/${fd}`).catch(() => '')));
    const inodes = new Set(links.filter((l) => l.startsWith('socket:[')));
    if (!inodes.size) return [];
    const tables = await Promise.all(
      ['net/tcp', 'net/tcp6'].map((t) => fs.readFile(`${this.procRoot}/${pid}/${t}`, 'utf8').catch(() => '')),
    );
    return tables.flatMap((t) => establishedConnections(t, inodes));
  }

  async exe(pid: number): Promise<string | undefined> {
    return fs.readlink(`${this.procRoot}/${pid}/exe`).catch(() => undefined);
  }

  async parentOf(pid: number): Promise<number | undefined> {
    return this.statField(pid, 4); // ppid
  }

  async startTime(pid: number): Promise<number | undefined> {
    return this.statField(pid, 22); // starttime
  }

  /**
   * Field `n` (1-based, as proc(5) numbers them) of /proc/<pid>/stat, a number. `pid (comm) state …`:
   * comm may hold spaces and parentheses, so the fields are read after the last ')', from field 3 on.
   */
  private async statField(pid: number, n: number): Promise<number | undefined> {
    const stat = await fs.readFile(`${this.procRoot}/${pid}/stat`, 'utf8').catch(() => undefined);
    const field = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[n - 3];
    return field === undefined ? undefined : Number(field);
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

  async oomKills(): Promise<OomKill[]> {
    return parseOomKills(readKernelLog(this.kmsg));
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

/** The kernel's `oom-kill:constraint=…,oom_memcg=<limit's cgroup>,task_memcg=<killed's cgroup>,…` lines (4.19 on). */
export function parseOomKills(lines: readonly string[]): OomKill[] {
  const out: OomKill[] = [];
  for (const l of lines) {
    const m = /\boom-kill:.*[:,]oom_memcg=([^,]*),task_memcg=([^,]*),/.exec(l);
    if (m) out.push({ limitCgroup: m[1]!, cgroup: m[2]! });
  }
  return out;
}

/** At most this many records are read: the ring buffer holds far fewer. */
const KMSG_MAX_RECORDS = 200_000;

/**
 * The records in the kernel's ring buffer, read from the start without waiting for more: each read of
 * /dev/kmsg is one record (`prio,seq,usec,flags;text`); EPIPE means one was overwritten meanwhile.
 */
function readKernelLog(path: string): string[] {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (isCode(err, 'ENOENT') || isCode(err, 'EACCES') || isCode(err, 'EPERM')) return [];
    throw err;
  }
  const buf = Buffer.alloc(16 * 1024);
  const out: string[] = [];
  try {
    for (let i = 0; i < KMSG_MAX_RECORDS; i++) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        if (isCode(err, 'EPIPE')) continue;
        if (isCode(err, 'EAGAIN')) break;
        throw err;
      }
      if (n === 0) break;
      const rec = buf.toString('utf8', 0, n);
      out.push(rec.slice(rec.indexOf(';') + 1).trimEnd());
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
