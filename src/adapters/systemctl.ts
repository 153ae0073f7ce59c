import { EcsGvisorError } from '../errors.js';
import type { CommandsPort, ServiceManagerPort } from '../ports.js';

/** systemd through `systemctl` with argument arrays. */
export class Systemctl implements ServiceManagerPort {
  constructor(private readonly commands: CommandsPort, private readonly bin = 'systemctl') {}

  async mainPid(unit: string): Promise<number | undefined> {
    const r = await this.commands.run(this.bin, ['show', '--property=LoadState,MainPID', '--', unit], { timeoutMs: 10_000 });
    if (r.code !== 0) return undefined;
    const props = Object.fromEntries(r.stdout.split('\n').map((l) => l.split('=', 2) as [string, string]));
    if (props.LoadState !== 'loaded') return undefined;
    return Number(props.MainPID ?? 0) || 0;
  }

  async reload(unit: string): Promise<void> {
    const r = await this.commands.run(this.bin, ['reload', '--', unit], { timeoutMs: 60_000 });
    if (r.code !== 0) {
      throw new EcsGvisorError('RELOAD_FAILED', `systemctl reload ${unit} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`);
    }
  }
}
