/**
 * systemd's notify protocol through `systemd-notify`, because Node cannot send on an AF_UNIX datagram
 * socket without a native addon (which a single-file bundle cannot carry). The sender is therefore a child
 * process, so the unit says NotifyAccess=all (systemd 252 still credits the message to systemd-notify's
 * own PID, and NotifyAccess=main drops it: seen on the simulated instance). No --no-block: systemd-notify
 * waits until systemd has read the message, so it is alive while systemd looks up its cgroup to
 * attribute it to our unit. `--pid` names our PID as the main PID.
 */
import type { CommandsPort, NotifyPort } from '../ports.js';

export class SystemdNotify implements NotifyPort {
  constructor(
    private readonly commands: CommandsPort,
    /** $NOTIFY_SOCKET as systemd set it; undefined when not started as a notify service. */
    private readonly socket: string | undefined,
    private readonly pid: number,
    private readonly program = 'systemd-notify',
  ) {}

  get enabled(): boolean {
    return Boolean(this.socket);
  }

  async notify(fields: Readonly<Record<string, string>>): Promise<void> {
    if (!this.socket) return;
    const vars = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`);
    const r = await this.commands.run(this.program, [`--pid=${this.pid}`, ...vars], {
      timeoutMs: 10_000,
      env: { NOTIFY_SOCKET: this.socket },
    });
    if (r.code !== 0) throw new Error(`systemd-notify exited ${r.code}: ${r.stderr.trim()}`);
  }
}
