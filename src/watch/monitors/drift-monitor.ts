/**
 * Drift: what we applied, checked against the host. daemon.json, the runtime entry point, Docker's
 * default runtime or runsc changed → re-applied and proven again (the attributes lapse meanwhile); the
 * agent container off its spec → recreated; our network rules gone → added again. Repairs wait for the
 * host lock, so they never run beside an operator's bootstrap or rollback.
 */
import type { AgentStep } from '../../agent/agent-step.js';
import type { AgentSupervisor } from '../../agent/supervisor.js';
import { messageOf } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { NetworkStep } from '../../network/network-step.js';
import type { HostLockPort } from '../../ports.js';
import type { RuntimeStep } from '../../runtime/runtime-step.js';
import type { WatchMetrics } from '../metrics.js';
import type { Monitor } from '../scheduler.js';
import { MINUTES, type WatchContext } from './context.js';

export interface DriftMonitorDeps {
  runtime: RuntimeStep;
  agent: AgentStep;
  supervisor: AgentSupervisor;
  /** The host's network rules, when `run` applied them (the network step). */
  network?: NetworkStep;
  /** The host lock: a repair waits for the next check while an operator's bootstrap or rollback holds it. */
  lock?: HostLockPort;
  metrics: WatchMetrics;
  log: Logger;
}

type Drift = Awaited<ReturnType<DriftMonitor['drift']>>;

export class DriftMonitor implements Monitor {
  readonly name = 'drift';
  /**
   * A repair may download and unpack runsc again (5 + 2 min), reload Docker, prove the sandbox and
   * pull the agent image: far longer than systemd's watchdog period, and legitimate.
   */
  readonly deadlineMs = 30 * MINUTES;

  constructor(
    private readonly deps: DriftMonitorDeps,
    private readonly ctx: WatchContext,
    private readonly opts: { driftMs: number },
  ) {}

  nextInMs(): number {
    return this.opts.driftMs;
  }

  async run(): Promise<void> {
    const { log, supervisor, lock } = this.deps;
    if (!(await this.drift()).any) return;
    // What we see may be an operator's bootstrap or rollback halfway through: never repair beside it.
    const release = lock ? await lock.tryAcquire('drift repair') : async () => {};
    if (!release) {
      log.info('another ecs-gvisor command holds the host lock: the repair waits for the next drift check');
      return;
    }
    try {
      // Read again under the lock: the holder may have changed everything (or put it right).
      await this.repair(await this.drift(), supervisor.snapshot.holds?.sandbox);
    } finally {
      await release();
    }
  }

  /** What differs from what we applied: the runtime (daemon.json, entry point, Docker's default, runsc), the agent, the network rules. */
  private async drift() {
    const { runtime, supervisor, agent, network } = this.deps;
    const { state } = this.ctx;
    const held = supervisor.snapshot.holds?.sandbox;
    const plan = await runtime.plan();
    const runscChanged =
      plan.runsc.problem !== undefined || (state.verified.version !== undefined && plan.runsc.version !== state.verified.version);
    const drifted = plan.daemonJson.changed || plan.entry.changed || !plan.live.converged || runscChanged;
    const agentPlan = drifted || held || !state.verified.ok || supervisor.snapshot.stopped ? undefined : await agent.plan();
    const agentDrift = agentPlan?.container.action === 'recreate' || agentPlan?.container.action === 'replace-foreign';
    const net = await network?.plan();
    const missing = net ? net.rules.filter((r) => !r.present) : [];
    if (net && state.snap.network)
      Object.assign(state.snap.network, { rules: net.rules.length, missing: missing.length, checkedAt: state.now() });
    const netDrift = net !== undefined && (net.routeLocalnet.change || missing.length > 0);
    return {
      plan,
      drifted,
      agentPlan: agentDrift ? agentPlan : undefined,
      netDrift,
      missing,
      any: drifted || held !== undefined || agentDrift || netDrift,
    };
  }

  private async repair({ plan, drifted, agentPlan, netDrift, missing }: Drift, held: string | undefined): Promise<void> {
    const { runtime, log, supervisor, agent, metrics, network } = this.deps;
    const { state, attributes } = this.ctx;
    if (netDrift && network && state.snap.network) {
      // Someone flushed a chain (iptables -F) or reset route_localnet: bridge tasks would reach IMDS again.
      log.warn(
        { missing: missing.map((r) => `${r.family === 6 ? 'ip6tables' : 'iptables'} -t ${r.table} ${r.chain}: ${r.why}`) },
        'network drift: our rules are gone; adding them again',
      );
      const r = await network.apply();
      metrics.repairs.inc({ kind: 'network' });
      Object.assign(state.snap.network, { missing: 0, repairs: state.snap.network.repairs + 1, repairedAt: state.now() });
      log.warn(r, 'network rules repaired');
    }
    if (drifted || held) {
      if (drifted) {
        log.warn(
          {
            file: plan.daemonJson.file,
            changes: plan.daemonJson.changes,
            diff: plan.daemonJson.diff || undefined,
            liveDefaultRuntime: plan.live.defaultRuntime,
            runsc: plan.runsc,
          },
          'runtime drift: daemon.json, Docker’s default runtime or runsc changed under us; re-applying and proving again',
        );
        const what = plan.daemonJson.changed
          ? `${plan.daemonJson.file} changed`
          : plan.entry.changed
            ? `the runtime entry point ${plan.entry.path} changed`
            : !plan.live.converged
              ? `Docker’s default runtime is "${plan.live.defaultRuntime}"`
              : 'runsc changed';
        state.lapse(`drift: ${what}`);
        await attributes.republish();
      }
      try {
        const s = await runtime.apply();
        state.verified = { ok: true, at: Date.parse(s.verifiedAt!), version: s.runscVersion, networks: s.evidence?.networks };
        if (drifted) metrics.repairs.inc({ kind: 'runtime' });
        log.warn({ verifiedAt: s.verifiedAt }, 'runtime repaired and the sandbox proven again');
        await attributes.republish();
        if (held) await supervisor.release();
      } catch (err) {
        state.lapse(`not proven: ${messageOf(err)}`);
        await supervisor.hold(`the sandbox is not proven: ${messageOf(err)}`);
        throw err;
      }
      return;
    }
    if (!agentPlan) return;
    log.warn(
      { action: agentPlan.container.action, diff: agentPlan.container.diff || undefined },
      'agent drift: the container no longer matches its spec; recreating it',
    );
    await supervisor.exclusive(() => agent.apply());
    metrics.repairs.inc({ kind: 'agent' });
  }
}
