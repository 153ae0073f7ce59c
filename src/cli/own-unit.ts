/**
 * ecs-gvisor's own unit, as `rollback` sees it. A running `run` would repair what rollback undoes (the
 * drift check puts runsc back, the supervisor recreates the agent), and an enabled unit would bootstrap
 * again at the next boot. So rollback stops and disables it first (seen on the simulated instance).
 */
import { planEcsInitStop } from '../ecs-init/ecs-init-step.js';
import type { ServiceManagerPort, UnitAction } from '../ports.js';

export const OWN_UNIT = 'ecs-gvisor.service';

/** Stop and disable our unit where systemd has it; the actions taken (none without systemd or the unit). */
export async function takeDownOwnUnit(services: ServiceManagerPort, unit = OWN_UNIT): Promise<UnitAction[]> {
  // The same as taking ecs-init out of the way, without the mask: `systemctl enable --now` brings it back.
  const actions = planEcsInitStop(await services.unitState(unit), false);
  for (const a of actions) await services.act(a, unit);
  return actions;
}
