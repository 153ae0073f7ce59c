/**
 * The `ecs-init` step: stop, disable and (by default) mask ecs-init's unit, so it can never recreate
 * the agent under runsc. Rollback unmasks, enables and starts it again.
 */
import type { Logger } from '../logger.js';
import type { ServiceManagerPort, UnitAction, UnitState } from '../ports.js';

const ACTIVE = new Set(['active', 'activating', 'reloading', 'deactivating']);
const ENABLED = new Set(['enabled', 'enabled-runtime', 'linked', 'linked-runtime', 'alias']);

/**
 * A mask is a link to /dev/null in /etc/systemd/system, so systemd refuses it when the unit file itself
 * lives there (an operator's own ecs.service; the packages put theirs under /usr/lib or /lib).
 */
export function canMask(state: UnitState): boolean {
  return !state.fragmentPath?.startsWith('/etc/systemd/system/');
}

/** What to do to take ecs-init out of the way. Empty when there is nothing (left) to do. */
export function planEcsInitStop(state: UnitState | undefined, mask: boolean): UnitAction[] {
  if (!state || state.load === 'not-found') return [];
  const actions: UnitAction[] = [];
  if (ACTIVE.has(state.active)) actions.push('stop');
  if (ENABLED.has(state.fileState)) actions.push('disable');
  if (mask && canMask(state) && state.load !== 'masked' && state.fileState !== 'masked') actions.push('mask');
  return actions;
}

/** enable, disable, mask and unmask change unit files; systemctl reloads systemd after each (~0.15 s). */
const CHANGES_FILES: ReadonlySet<UnitAction> = new Set(['enable', 'disable', 'mask', 'unmask']);

/** For each action, whether systemd reloads after it: of the unit-file changes, only the last one's. */
export function reloadAfter(actions: readonly UnitAction[]): boolean[] {
  const last = actions.findLastIndex((a) => CHANGES_FILES.has(a));
  return actions.map((a, i) => !CHANGES_FILES.has(a) || i === last);
}

/** What to do to give ecs-init back its place. */
export function planEcsInitRestore(state: UnitState | undefined): UnitAction[] {
  if (!state) return [];
  const masked = state.load === 'masked' || state.fileState === 'masked';
  if (state.load === 'not-found' && !masked) return [];
  const actions: UnitAction[] = [];
  if (masked) actions.push('unmask');
  if (masked || !ENABLED.has(state.fileState)) actions.push('enable');
  if (!ACTIVE.has(state.active)) actions.push('start');
  return actions;
}

export class EcsInitStep {
  constructor(
    private readonly deps: { services: ServiceManagerPort; log: Logger },
    private readonly opts: { unit: string; mask: boolean },
  ) {}

  async plan(): Promise<{ state: UnitState | undefined; actions: UnitAction[] }> {
    const state = await this.deps.services.unitState(this.opts.unit);
    return { state, actions: planEcsInitStop(state, this.opts.mask) };
  }

  /**
   * `stopped`, when given, is called once the unit is no longer running (its stop done, or none needed);
   * the unit-file changes (which matter at the next boot) wait for `filesAfter`: systemd reloads after
   * them, which holds up every other call to systemd meanwhile (Docker's reload, READY) and takes CPU
   * from the proof.
   */
  async apply(o: { stopped?: () => void; filesAfter?: Promise<unknown> } = {}): Promise<UnitAction[]> {
    const { state, actions } = await this.plan();
    if (!state) this.deps.log.info({ unit: this.opts.unit }, 'no systemd here: no ecs-init to stop');
    else if (state.load === 'not-found') this.deps.log.info({ unit: this.opts.unit }, 'ecs-init unit not installed: nothing to stop');
    else if (this.opts.mask && !canMask(state) && state.fileState !== 'masked') {
      this.deps.log.warn(
        { unit: this.opts.unit, file: state.fragmentPath },
        'cannot mask ecs-init: its unit file is in /etc/systemd/system; stopped and disabled only (Conflicts= in ecs-gvisor.service keeps it from running beside us)',
      );
    }
    const stop = actions.filter((a) => a === 'stop');
    await this.act(stop, 'ecs-init unit changed');
    o.stopped?.();
    await o.filesAfter;
    await this.act(
      actions.filter((a) => a !== 'stop'),
      'ecs-init unit changed',
    );
    return actions;
  }

  async rollback(): Promise<UnitAction[]> {
    const actions = planEcsInitRestore(await this.deps.services.unitState(this.opts.unit));
    await this.act(actions, 'ecs-init unit restored');
    return actions;
  }

  private async act(actions: readonly UnitAction[], msg: string): Promise<void> {
    const reloads = reloadAfter(actions);
    for (const [i, action] of actions.entries()) {
      await this.deps.services.act(action, this.opts.unit, { reload: reloads[i] });
      this.deps.log.info({ unit: this.opts.unit, action }, msg);
    }
  }
}
