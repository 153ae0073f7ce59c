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
  constructor(private readonly deps: { services: ServiceManagerPort; log: Logger }, private readonly opts: { unit: string; mask: boolean }) {}

  async plan(): Promise<{ state: UnitState | undefined; actions: UnitAction[] }> {
    const state = await this.deps.services.unitState(this.opts.unit);
    return { state, actions: planEcsInitStop(state, this.opts.mask) };
  }

  async apply(): Promise<UnitAction[]> {
    const { state, actions } = await this.plan();
    if (!state) this.deps.log.info({ unit: this.opts.unit }, 'no systemd here: no ecs-init to stop');
    else if (state.load === 'not-found') this.deps.log.info({ unit: this.opts.unit }, 'ecs-init unit not installed: nothing to stop');
    else if (this.opts.mask && !canMask(state) && state.fileState !== 'masked') {
      this.deps.log.warn({ unit: this.opts.unit, file: state.fragmentPath }, 'cannot mask ecs-init: its unit file is in /etc/systemd/system; stopped and disabled only (Conflicts= in ecs-gvisor.service keeps it from running beside us)');
    }
    for (const a of actions) {
      await this.deps.services.act(a, this.opts.unit);
      this.deps.log.info({ unit: this.opts.unit, action: a }, 'ecs-init unit changed');
    }
    return actions;
  }

  async rollback(): Promise<UnitAction[]> {
    const actions = planEcsInitRestore(await this.deps.services.unitState(this.opts.unit));
    for (const a of actions) {
      await this.deps.services.act(a, this.opts.unit);
      this.deps.log.info({ unit: this.opts.unit, action: a }, 'ecs-init unit restored');
    }
    return actions;
  }
}
