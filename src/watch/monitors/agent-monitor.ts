/**
 * The agent container (Docker) and its registration (introspection). A new registration is believed
 * only from the agent container's own listener; then ECS is asked about it (the ECS monitor).
 */
import { AGENT_NAME } from '../../agent/agent-spec.js';
import type { AgentSupervisor } from '../../agent/supervisor.js';
import { type EcsBudget, firstPollMs } from '../../aws/budget.js';
import { EcsGvisorError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { AgentMetadata, DockerPort } from '../../ports.js';
import type { WatchMetrics } from '../metrics.js';
import type { Monitor } from '../scheduler.js';
import { SUPERVISOR_STALL_MS } from '../watchdog.js';
import { MINUTES, type WatchContext } from './context.js';

export interface AgentMonitorDeps {
  docker: Pick<DockerPort, 'inspectContainer'>;
  supervisor: AgentSupervisor;
  metrics: WatchMetrics;
  log: Logger;
  /** The agent's introspection /v1/metadata; undefined while nothing listens. */
  introspection: () => Promise<AgentMetadata | undefined>;
  /**
   * Why whatever answers on the introspection port is not the agent container (undefined: it is).
   * Undefined itself when the URL is not on this host's loopback (nothing to check here).
   */
  introspectionOwner?: (agentPid: number) => Promise<string | undefined>;
  random: () => number;
}

export class AgentMonitor implements Monitor {
  readonly name = 'introspect';
  /** Docker's and introspection's deadlines, and a restart by the supervisor (its own stall limit). */
  readonly deadlineMs = SUPERVISOR_STALL_MS + 5 * MINUTES;
  /** The last reason the introspection answer was refused (logged once per reason). */
  private listenerProblem?: string;

  constructor(
    private readonly deps: AgentMonitorDeps,
    private readonly ctx: WatchContext,
    private readonly opts: { introspectMs: number; budget: EcsBudget },
  ) {}

  nextInMs(): number {
    return this.opts.introspectMs;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { docker, supervisor, metrics, log } = this.deps;
    const { state } = this.ctx;
    const c = await docker.inspectContainer(AGENT_NAME);
    state.obs.agent = c ? { running: c.running, health: c.health } : undefined;
    const sup = supervisor.snapshot;
    Object.assign(state.snap.agent, {
      id: c?.id,
      runtime: c?.runtime,
      state: c?.status,
      running: c?.running ?? false,
      health: c?.health,
      held: sup.held,
      stopped: sup.stopped,
      lastExit: sup.lastExit && { code: sup.lastExit.code, decision: sup.lastExit.decision, at: sup.lastExit.at },
    });
    metrics.agentUp.set(c?.running ? 1 : 0);

    let meta: AgentMetadata | undefined;
    try {
      meta = c?.running ? await this.deps.introspection() : undefined;
    } catch (err) {
      state.recordError('introspection', err);
      meta = state.obs.metadata; // a bad answer is not "unregistered": keep what we knew
    }
    const before = state.obs.metadata?.containerInstanceArn;
    if (meta && c && meta.containerInstanceArn !== before && this.deps.introspectionOwner) {
      // A new registration: believe it only from the agent container itself.
      const problem = await this.deps.introspectionOwner(c.pid);
      if (problem) {
        if (problem !== this.listenerProblem) {
          log.error(
            { claimedArn: meta.containerInstanceArn, problem },
            'the introspection answer is not the agent’s: ignored (no attributes, drain or lifecycle action for it)',
          );
          state.recordError('introspection', new EcsGvisorError('HTTP_FAILED', `The introspection answer is not the agent's: ${problem}.`));
        }
        this.listenerProblem = problem;
        meta = undefined;
      } else {
        this.listenerProblem = undefined;
      }
    }
    state.obs.metadata = meta;
    if (meta && meta.containerInstanceArn !== before) {
      log.info(
        { cluster: meta.cluster, containerInstanceArn: meta.containerInstanceArn, agentVersion: meta.version },
        'the agent registered',
      );
      Object.assign(state.snap.registration, {
        cluster: meta.cluster,
        containerInstanceArn: meta.containerInstanceArn,
        identity: undefined,
        ec2InstanceId: undefined,
        agentVersion: meta.version,
        registeredAt: state.now(),
      });
      state.obs.ecs = undefined;
      state.snap.attributes = { published: {} };
      this.ctx.sched.after('ecs', firstPollMs(this.opts.budget, this.deps.random));
    }
    await this.ctx.healer.heal(signal);
  }
}
