import { promises as fs } from 'node:fs';
import type { HostPort } from '../ports.js';
import { isCode } from './node-files.js';

/** Facts about processes on this host from /proc, and signals. */
export class LinuxHost implements HostPort {
  constructor(private readonly procRoot = '/proc', private readonly systemdDir = '/run/systemd/system') {}

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
