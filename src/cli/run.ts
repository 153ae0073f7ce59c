/** `bootstrap` and `run`: converge the steps in order, then (for `run`) supervise and watch. */
import { isWarm } from '../lifecycle/lifecycle-plan.js';
import type { Logger } from '../logger.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import type { Step } from './args.js';
import type { App } from './composition.js';

/**
 * Converge the steps in order; returns the runtime state this run proved (undefined without the step).
 * `agentHold`, when given, is asked just before the agent step: a reason means "keep the agent down".
 * `agentSettleMs`: the agent must still run that long after its start (`bootstrap`'s definition of
 * converged; exit 4 when it does not).
 */
export async function bootstrap(
  app: App,
  steps: readonly Step[],
  log: Logger,
  agentHold?: () => Promise<string | undefined>,
  agentSettleMs = 0,
  probes: 'removed' | 'removing' = 'removed',
): Promise<RuntimeState | undefined> {
  // Two bootstraps at once (or one beside a rollback) would undo each other's changes mid-proof.
  const release = await app.lock.acquire('bootstrap', app.lockWaitMs);
  try {
    return await converge(app, steps, log, agentHold, agentSettleMs);
  } finally {
    // The proof's probes go while the steps after it run. `run` lets them go on after it is ready (they
    // are recorded: the audit knows them, and a killed run's are removed by the next); otherwise nothing
    // is left behind on return.
    if (probes === 'removed') await app.runtime.settled();
    await release();
  }
}

async function converge(
  app: App,
  steps: readonly Step[],
  log: Logger,
  agentHold: (() => Promise<string | undefined>) | undefined,
  agentSettleMs: number,
): Promise<RuntimeState | undefined> {
  await app.checkInputs(steps);
  // ecs-init is stopped first, so it cannot recreate the agent under runsc once that is the default.
  // Then the runtime and the network rules run side by side, and ecs-init's unit-file changes (for the
  // next boot) once Docker is reloaded: each makes systemd reload, which holds up systemctl meanwhile.
  // All of them settle before the first failure (in step order) is thrown; the agent starts only once
  // all succeeded. If a step fails, ecs-init stays stopped: failing closed means no agent, hence no
  // tasks, here.
  const ecsInitStopped = signal();
  const dockerReloaded = signal();
  const ecsInit = steps.includes('ecs-init')
    ? app.ecsInit.apply({ stopped: ecsInitStopped.fire, filesAfter: dockerReloaded.fired }).then((actions) => {
        log.info({ actions }, actions.length ? 'ecs-init stopped and disabled' : 'ecs-init already out of the way');
      })
    : undefined;
  // Its stop failing ends bootstrap here, before anything else changed.
  if (ecsInit) await Promise.race([ecsInitStopped.fired, ecsInit]);
  const runtime = steps.includes('runtime')
    ? // Throws (after rolling back) when the sandbox is not proven: the agent below never starts then.
      app.runtime.apply({ probesLater: true, reloaded: dockerReloaded.fire }).then((state) => {
        log.info(
          { runtime: state.name, runscVersion: state.runscVersion, verifiedAt: state.verifiedAt },
          `${state.name} is Docker's default runtime and the sandbox is proven`,
        );
        return state;
      })
    : undefined;
  // A runtime step that failed before its reload leaves nothing for ecs-init to wait for.
  void (runtime ?? Promise.resolve()).finally(dockerReloaded.fire).catch(() => {});
  const network = steps.includes('network')
    ? app.network.apply().then((r) => {
        log.info(r, 'host network rules in place');
      })
    : undefined;
  const settled = await Promise.allSettled([ecsInit, runtime, network]);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  const proven = await runtime;
  if (steps.includes('agent')) {
    const hold = await agentHold?.();
    if (hold) {
      await app.supervisor.hold(hold, 'lifecycle');
    } else {
      if (!proven?.verified) {
        log.warn('starting the agent without proving the sandbox in this run (--only agent): tasks may run outside gVisor');
      }
      const r = await app.agent.apply();
      // Only `bootstrap` waits: under `run` the supervisor restarts an agent that exits.
      // A replacement has settled already (before the agent it replaced was removed).
      if (agentSettleMs > 0 && r.action !== 'recreate' && r.action !== 'replace-foreign')
        await app.agent.settle(r.id, agentSettleMs, (ms) => app.clock.sleep(ms));
      log.info({ id: r.id, action: r.action, runtime: r.runtime }, 'the ECS agent runs under runc');
    }
  }
  return proven;
}

/**
 * `run`: bootstrap, then watch until `signal` aborts. With lifecycle hooks configured, a pending launch
 * action is heartbeated during bootstrap, a warm-pool instance keeps its agent down, and a failed
 * bootstrap abandons the launch (fail closed: the group replaces the instance).
 */
export async function serve(app: App, steps: readonly Step[], log: Logger, signal: AbortSignal): Promise<void> {
  const lc = app.lifecycle;
  const guard = lc?.guardBootstrap(signal);
  let runtime: RuntimeState | undefined;
  try {
    runtime = await bootstrap(
      app,
      steps,
      log,
      guard &&
        (async () => {
          const target = await guard.target(app.targetStateWaitMs);
          if (target === undefined)
            log.warn('instance metadata has no target lifecycle state yet: starting the agent (the watch keeps asking)');
          return isWarm(target) ? `the instance is in a warm pool (${target}): the agent starts when it goes InService` : undefined;
        }),
      0,
      'removing',
    );
  } catch (err) {
    await guard?.stop();
    await lc?.abandonLaunch(err);
    await app.runtime.settled();
    throw err;
  }
  await guard?.stop();
  const probesGone = app.runtime.settled();
  const closeMetrics = await app.startMetrics();
  try {
    log.info('bootstrap verified; supervising the agent and watching until SIGTERM');
    await app.watch(runtime, steps).run(signal);
  } finally {
    await closeMetrics?.();
    await probesGone;
  }
  log.info('stopping; the agent container keeps running');
}

/** A one-time event: fire() resolves fired. */
function signal(): { fire: () => void; fired: Promise<void> } {
  let fire: () => void = () => {};
  const fired = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { fire, fired };
}
