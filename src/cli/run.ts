/** `bootstrap` and `run`: converge the steps in order, then (for `run`) supervise and watch. */

import { EcsGvisorError, messageOf, sentence } from '../errors.js';
import { isWarm } from '../lifecycle/lifecycle-plan.js';
import type { Logger } from '../logger.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import type { Step } from './args.js';
import type { App } from './composition.js';

export interface Bootstrapped {
  /**
   * The runtime state this run proved (undefined without the runtime step); with deferFinish, its
   * network modes come with finish().
   */
  runtime: RuntimeState | undefined;
  /**
   * Starts what can wait until the instance is ready, resolves once it is done and releases the host lock
   * bootstrap held: the network modes' probes (a mode is reported, never a condition of the agent's
   * start), ecs-init's unit-file changes (they matter at the next boot, and each makes systemd reload),
   * and the removal of the proof's probes. All of these compete with the agent's start for the CPU.
   * Resolves to the runtime state with its network modes when it proved them; rejects with the first
   * failure. A second call returns the same promise.
   */
  finish(): Promise<RuntimeState | undefined>;
}

export interface BootstrapOptions {
  /** Asked just before the agent step: a reason means "keep the agent down". */
  agentHold?: () => Promise<string | undefined>;
  /** The agent must still run that long after its start (`bootstrap`'s definition of converged; exit 4 when it does not). */
  agentSettleMs?: number;
  /** Leave finish() to the caller (`run`: after READY); otherwise it is done before bootstrap returns. */
  deferFinish?: boolean;
  /**
   * The runtime step was asked for and did not prove the sandbox: take the instance out of service and
   * return what to throw (default: app.failClosed as `bootstrap` does it). Runs under the host lock.
   */
  unproven?: (err: unknown) => Promise<unknown>;
}

/** Converge the steps; a failure is thrown once everything it started has settled. */
export async function bootstrap(app: App, steps: readonly Step[], log: Logger, o: BootstrapOptions = {}): Promise<Bootstrapped> {
  // Two bootstraps at once (or one beside a rollback) would undo each other's changes mid-proof; the
  // lock is held until finish() is done, as that changes ecs-init's unit files.
  const release = await app.lock.acquire('bootstrap', app.lockWaitMs);
  let converged: Converged;
  const progress = { checked: false, proven: false, networkApplied: false };
  try {
    converged = await converge(app, steps, log, o.agentHold, o.agentSettleMs ?? 0, progress);
  } catch (err) {
    try {
      // Whatever failed once the inputs were read, a runtime not proven in this run must not leave the
      // instance taking tasks. (A refused input changed nothing: the last start's state stands.)
      if (!steps.includes('runtime') || !progress.checked || progress.proven) throw err;
      // The rules stay: tasks still running (the agent stops, they do not) must not reach instance metadata.
      const cause = progress.networkApplied
        ? withSentence(err, 'The network rules of ecs-gvisor stay in place (they keep running tasks from instance metadata).')
        : err;
      throw await (o.unproven ?? ((e) => app.failClosed(e, { run: false })))(cause);
    } finally {
      await release();
    }
  }
  let finishing: Promise<RuntimeState | undefined> | undefined;
  const finish = () => {
    finishing ??= converged.finish().finally(release);
    return finishing;
  };
  if (!o.deferFinish) return { runtime: (await finish()) ?? converged.proven, finish };
  return { runtime: converged.proven, finish };
}

interface Converged {
  proven: RuntimeState | undefined;
  finish(): Promise<RuntimeState | undefined>;
}

async function converge(
  app: App,
  steps: readonly Step[],
  log: Logger,
  agentHold: (() => Promise<string | undefined>) | undefined,
  agentSettleMs: number,
  progress: { checked: boolean; proven: boolean; networkApplied: boolean },
): Promise<Converged> {
  await app.checkInputs(steps);
  progress.checked = true;
  // ecs-init is stopped before anything changes, so it cannot recreate the agent under runsc once that is
  // the default (and its stop, which removes its iptables rules, cannot remove ours). The runtime's reads
  // do not wait for that; its changes and the network rules do, then run side by side. The network
  // modes' probes and ecs-init's unit-file changes wait for finish(). All of them settle before the first
  // failure (in step order) is thrown; the agent starts only once all succeeded. If a step fails,
  // ecs-init stays stopped (and is disabled for the next boot): failing closed means no agent, hence no
  // tasks, here.
  const ecsInitStopped = Promise.withResolvers<void>();
  const filesGo = Promise.withResolvers<void>();
  const ecsInit = steps.includes('ecs-init')
    ? app.ecsInit.apply({ stopped: ecsInitStopped.resolve, filesAfter: filesGo.promise }).then((actions) => {
        log.info({ actions }, actions.length ? 'ecs-init stopped and disabled' : 'ecs-init already out of the way');
      })
    : undefined;
  // Resolves once ecs-init no longer runs; rejects when its stop failed.
  const stopped = ecsInit ? Promise.race([ecsInitStopped.promise, ecsInit]) : Promise.resolve();
  const runtime = steps.includes('runtime')
    ? // Throws (after rolling back) when the sandbox is not proven: the agent below never starts then.
      app.runtime.apply({ modesLater: true, changesAfter: stopped, beforeUndo: () => app.agent.stop() }).then((state) => {
        progress.proven = true;
        log.info(
          { runtime: state.name, runscVersion: state.runscVersion, verifiedAt: state.verifiedAt },
          `${state.name} is Docker's default runtime and the sandbox is proven`,
        );
        return state;
      })
    : undefined;
  const network = steps.includes('network')
    ? stopped
        .then(() => app.network.apply())
        .then((r) => {
          progress.networkApplied = true;
          log.info(r, 'host network rules in place');
        })
    : undefined;
  // After a failure the modes are not proven (nothing will read them): only the probes are removed.
  const finish = async (failed = false) => {
    filesGo.resolve();
    const [files, modes] = await Promise.allSettled([ecsInit, app.runtime.settled({ skipModes: failed })]);
    if (files.status === 'rejected') throw files.reason;
    if (modes.status === 'rejected') throw modes.reason;
    return modes.value;
  };
  try {
    const settled = await Promise.allSettled([stopped, runtime, network]);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    const proven = await runtime;
    if (steps.includes('agent')) await startAgent(app, log, proven, agentHold, agentSettleMs);
    return { proven, finish };
  } catch (err) {
    await finish(true).catch(() => {});
    throw err;
  }
}

async function startAgent(
  app: App,
  log: Logger,
  proven: RuntimeState | undefined,
  agentHold: (() => Promise<string | undefined>) | undefined,
  agentSettleMs: number,
): Promise<void> {
  const hold = await agentHold?.();
  if (hold) {
    await app.supervisor.hold(hold, 'lifecycle');
    return;
  }
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

/**
 * `run`: bootstrap, then watch until `signal` aborts. With lifecycle hooks configured, a pending launch
 * action is heartbeated during bootstrap, a warm-pool instance keeps its agent down, and a failed
 * bootstrap abandons the launch (fail closed: the group replaces the instance). What bootstrap leaves
 * for after READY is done then; its failure ends the watch with that error (systemd starts us again, and
 * the next bootstrap does it again).
 */
export async function serve(app: App, steps: readonly Step[], log: Logger, signal: AbortSignal): Promise<void> {
  // Two watches would act on one instance (one rewrote the other's lifecycle record): the second refuses.
  const releaseRun = await app.claimRun();
  try {
    await watchHost(app, steps, log, signal);
  } finally {
    await releaseRun();
  }
}

async function watchHost(app: App, steps: readonly Step[], log: Logger, signal: AbortSignal): Promise<void> {
  const lc = app.lifecycle;
  const guard = lc?.guardBootstrap(signal);
  let boot: Bootstrapped;
  let fenced = false;
  try {
    boot = await bootstrap(app, steps, log, {
      agentHold:
        guard &&
        (async () => {
          const target = await guard.target(app.targetStateWaitMs);
          if (target === undefined)
            log.warn('instance metadata has no target lifecycle state yet: starting the agent (the watch keeps asking)');
          return isWarm(target) ? `the instance is in a warm pool (${target}): the agent starts when it goes InService` : undefined;
        }),
      deferFinish: true,
      unproven: async (err) => {
        fenced = true;
        await guard?.stop();
        return app.failClosed(err, { run: true });
      },
    });
  } catch (err) {
    await guard?.stop();
    if (!fenced) await lc?.abandonLaunch(err);
    throw err;
  }
  await guard?.stop();
  const failed = new AbortController();
  let failure: unknown;
  const watch = app.watch(boot.runtime, steps);
  // Called at READY and again on the way out; boot.finish() runs once. The network modes it proves go to
  // the watch (status, the ECS attributes).
  const finish = () =>
    boot.finish().then(
      (proven) => {
        if (proven) watch.proven(proven);
      },
      (err: unknown) => {
        failure = err;
        failed.abort();
      },
    );
  try {
    const closeMetrics = await app.startMetrics();
    try {
      log.info('bootstrap verified; supervising the agent and watching until SIGTERM');
      await watch.run(AbortSignal.any([signal, failed.signal]), finish);
    } finally {
      await closeMetrics?.();
    }
  } finally {
    await finish();
  }
  if (failure) {
    log.error({ err: messageOf(failure) }, 'finishing bootstrap after ready failed; stopping');
    throw failure;
  }
  log.info('stopping; the agent container keeps running');
}

/** The same error with one more sentence to its message (a typed error keeps its code and details). */
function withSentence(err: unknown, text: string): unknown {
  if (!(err instanceof EcsGvisorError)) return err;
  return new EcsGvisorError(err.code, `${sentence(err.message)} ${text}`, { cause: err.cause, details: { ...err.details } });
}
