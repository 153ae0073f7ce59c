/**
 * Puts back what drifted, when the reactor says so: our network rules, the runtime (re-applied and proven
 * again), the agent's container. Under the host lock, so a repair never runs beside an operator's
 * bootstrap or rollback; what it found and did goes back to the reactor as observations.
 */
import type { AgentStep } from '../agent/agent-step.js';
import type { AgentSupervisor } from '../agent/supervisor.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { NetworkStep } from '../network/network-step.js';
import type { HostLockPort } from '../ports.js';
import type { RuntimeStep } from '../runtime/runtime-step.js';
import type { WatchMetrics } from './metrics.js';
import type { Drift } from './monitors/drift-monitor.js';
import type { Observation } from './reactor.js';

export interface DriftRepairDeps {
  runtime: Pick<RuntimeStep, 'apply'>;
  agent: Pick<AgentStep, 'apply'>;
  supervisor: Pick<AgentSupervisor, 'exclusive' | 'snapshot'>;
  network?: Pick<NetworkStep, 'apply'>;
  /** The host lock: a repair waits for the next check while an operator's bootstrap or rollback holds it. */
  lock?: HostLockPort;
  metrics: WatchMetrics;
  log: Logger;
  /** What drifted, read again under the lock. */
  detect: () => Promise<Drift>;
}

export class DriftRepair {
  constructor(private readonly deps: DriftRepairDeps) {}

  /**
   * Read again under the lock (the holder may have changed everything, or put it right) and repair.
   * `report` hands each observation to the reactor and carries out what it says, before the repair goes on.
   */
  async repair(report: (obs: Observation) => Promise<void>): Promise<void> {
    const { log, lock } = this.deps;
    // What we saw may be an operator's bootstrap or rollback halfway through: never repair beside it.
    const release = lock ? await lock.tryAcquire('drift repair') : async () => {};
    if (!release) {
      log.info('another ecs-gvisor command holds the host lock: the repair waits for the next drift check');
      return;
    }
    try {
      const d = await this.deps.detect();
      if (!d.any) return;
      await this.network(d, report);
      if (d.drifted || d.held) await this.runtime(d, report);
      else if (d.agentPlan) await this.agent(d);
    } finally {
      await release();
    }
  }

  private async network(d: Drift, report: (obs: Observation) => Promise<void>): Promise<void> {
    const { network, log, metrics } = this.deps;
    if (!d.netDrift || !network) return;
    // Someone flushed a chain (iptables -F) or reset route_localnet: bridge tasks would reach IMDS again.
    log.warn(
      { missing: (d.rules?.missing ?? []).map((r) => `${r.family === 6 ? 'ip6tables' : 'iptables'} -t ${r.table} ${r.chain}: ${r.why}`) },
      'network drift: our rules are gone; adding them again',
    );
    const r = await network.apply();
    metrics.repairs.inc({ kind: 'network' });
    log.warn(r, 'network rules repaired');
    await report({ kind: 'repaired', network: true, drifted: false, sandboxHeld: false });
  }

  private async runtime(d: Drift, report: (obs: Observation) => Promise<void>): Promise<void> {
    const { runtime, log, metrics } = this.deps;
    if (d.drifted) {
      const { plan } = d;
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
      await report({ kind: 'repairing', drift: d });
    }
    try {
      const s = await runtime.apply();
      if (d.drifted) metrics.repairs.inc({ kind: 'runtime' });
      log.warn({ verifiedAt: s.verifiedAt }, 'runtime repaired and the sandbox proven again');
      await report({ kind: 'repaired', runtime: { ok: true, state: s }, drifted: d.drifted, sandboxHeld: d.held !== undefined });
    } catch (err) {
      await report({
        kind: 'repaired',
        runtime: { ok: false, reason: messageOf(err) },
        drifted: d.drifted,
        sandboxHeld: d.held !== undefined,
      });
      throw err;
    }
  }

  private async agent(d: Drift): Promise<void> {
    const { agent, supervisor, log, metrics } = this.deps;
    const p = d.agentPlan!;
    log.warn(
      { action: p.container.action, diff: p.container.diff || undefined },
      'agent drift: the container no longer matches its spec; recreating it',
    );
    await supervisor.exclusive(() => agent.apply());
    metrics.repairs.inc({ kind: 'agent' });
  }
}
