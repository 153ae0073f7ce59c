/**
 * systemd's notify protocol through `systemd-notify`, because Node cannot send on an AF_UNIX datagram
 * socket without a native addon (which a single-file bundle cannot carry). `--pid` makes systemd-notify
 * send with our PID as the credentials, so the unit's default NotifyAccess=main accepts it; `--no-block`
 * skips the barrier, which only matters for senders that exit before systemd reads the message.
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
    const r = await this.commands.run(this.program, [`--pid=${this.pid}`, '--no-block', ...vars], {
      timeoutMs: 5_000,
      env: { NOTIFY_SOCKET: this.socket },
    });
    if (r.code !== 0) throw new Error(`systemd-notify exited ${r.code}: ${r.stderr.trim()}`);
  }
}
