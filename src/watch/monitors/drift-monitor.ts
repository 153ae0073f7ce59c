/**
 * Drift: what we applied, checked against the host: daemon.json, the runtime entry point, Docker's
 * default runtime or runsc changed; the agent container off its spec; our network rules gone. It only
 * observes; the reactor decides the repair, which drift-repair.ts carries out under the host lock.
 */
import type { AgentPlan, AgentStep } from '../../agent/agent-step.js';
import type { AgentSupervisor } from '../../agent/supervisor.js';
import type { NetRule } from '../../network/network-rules.js';
import type { NetworkStep } from '../../network/network-step.js';
import type { RuntimePlan, RuntimeStep } from '../../runtime/runtime-step.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';
import { MINUTES } from './context.js';

export interface DriftMonitorDeps {
  runtime: Pick<RuntimeStep, 'plan'>;
  agent: Pick<AgentStep, 'plan'>;
  supervisor: Pick<AgentSupervisor, 'snapshot'>;
  /** The host's network rules, when `run` applied them (the network step). */
  network?: Pick<NetworkStep, 'plan'>;
}

/** What differs from what we applied. */
export interface Drift {
  plan: RuntimePlan;
  /** The runtime drifted (daemon.json, the entry point, Docker's default, runsc). */
  drifted: boolean;
  /** What drifted first, in words (the lapse's reason). */
  what: string;
  /** The agent's plan, when its container is off its spec. */
  agentPlan?: AgentPlan;
  netDrift: boolean;
  /** Our network rules, as last checked (with the missing ones). */
  rules?: { total: number; missing: Array<NetRule & { present: boolean }> };
  /** The sandbox hold of the agent (the last repair failed): a repair is due even without drift. */
  held?: string;
  any: boolean;
}

export class DriftMonitor implements Monitor {
  readonly name = 'drift';
  /** The reads only: Docker, the files, iptables-save. The repair is the loop's, with its own deadline. */
  readonly deadlineMs = 5 * MINUTES;

  constructor(
    private readonly deps: DriftMonitorDeps,
    private readonly state: Pick<WatchState, 'verified'>,
    private readonly opts: { driftMs: number },
  ) {}

  nextInMs(): number {
    return this.opts.driftMs;
  }

  async run(): Promise<Observation> {
    return { kind: 'drift', drift: await detectDrift(this.deps, this.state) };
  }
}

/** What differs from what we applied: the runtime (daemon.json, entry point, Docker's default, runsc), the agent, the network rules. */
export async function detectDrift(deps: DriftMonitorDeps, state: Pick<WatchState, 'verified'>): Promise<Drift> {
  const { runtime, supervisor, agent, network } = deps;
  const held = supervisor.snapshot.holds?.sandbox;
  const plan = await runtime.plan();
  const runscChanged =
    plan.runsc.problem !== undefined || (state.verified.version !== undefined && plan.runsc.version !== state.verified.version);
  const drifted = plan.daemonJson.changed || plan.entry.changed || !plan.live.converged || runscChanged;
  const agentPlan = drifted || held || !state.verified.ok || supervisor.snapshot.stopped ? undefined : await agent.plan();
  const agentDrift = agentPlan?.container.action === 'recreate' || agentPlan?.container.action === 'replace-foreign';
  const net = await network?.plan();
  const missing = net ? net.rules.filter((r) => !r.present) : [];
  const netDrift = net !== undefined && (net.routeLocalnet.change || missing.length > 0);
  const what = plan.daemonJson.changed
    ? `${plan.daemonJson.file} changed`
    : plan.entry.changed
      ? `the runtime entry point ${plan.entry.path} changed`
      : !plan.live.converged
        ? `Docker’s default runtime is "${plan.live.defaultRuntime}"`
        : 'runsc changed';
  return {
    plan,
    drifted,
    what,
    agentPlan: agentDrift ? agentPlan : undefined,
    netDrift,
    rules: net ? { total: net.rules.length, missing } : undefined,
    held,
    any: drifted || held !== undefined || agentDrift || netDrift,
  };
}
