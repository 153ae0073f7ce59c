import { EcsGvisorError } from '../errors.js';
import type { CommandResult, CommandsPort, ServiceManagerPort, UnitAction, UnitState } from '../ports.js';

/** systemd through `systemctl` with argument arrays. */
export class Systemctl implements ServiceManagerPort {
  constructor(
    private readonly commands: CommandsPort,
    private readonly bin = 'systemctl',
  ) {}

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

  async unitState(unit: string): Promise<UnitState | undefined> {
    let r: CommandResult;
    try {
      r = await this.commands.run(this.bin, ['show', '--property=LoadState,ActiveState,UnitFileState,FragmentPath', '--', unit], {
        timeoutMs: 10_000,
      });
    } catch {
      return undefined; // no systemctl on this host
    }
    if (r.code !== 0) {
      // "System has not been booted with systemd as init system": nothing to manage.
      if (/not been booted with systemd|Failed to connect to bus/i.test(r.stderr)) return undefined;
      throw new EcsGvisorError('DOCKER_UNAVAILABLE', `systemctl show ${unit} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`);
    }
    const props = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    return {
      load: props.LoadState ?? '',
      active: props.ActiveState ?? '',
      fileState: props.UnitFileState ?? '',
      fragmentPath: props.FragmentPath ?? '',
    };
  }

  async act(action: UnitAction, unit: string, opts: { reload?: boolean } = {}): Promise<void> {
    // start without waiting: ecs-init waits for Docker and cloud-init, and nothing should block on it.
    const args =
      action === 'start' ? ['start', '--no-block', '--', unit] : [action, ...(opts.reload === false ? ['--no-reload'] : []), '--', unit];
    const r = await this.commands.run(this.bin, args, { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new EcsGvisorError(
        'SYSTEMCTL_FAILED',
        `systemctl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`,
      );
    }
  }
}
