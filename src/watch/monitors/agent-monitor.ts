/**
 * The agent container (Docker) and its registration (introspection). A new registration is believed
 * only from the agent container's own listener; the reactor then has ECS asked about it.
 */
import { AGENT_NAME } from '../../agent/agent-spec.js';
import type { AgentSupervisor } from '../../agent/supervisor.js';
import { EcsGvisorError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { AgentMetadata, DockerPort } from '../../ports.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';
import { SUPERVISOR_STALL_MS } from '../watchdog.js';
import { MINUTES } from './context.js';

export interface AgentMonitorDeps {
  docker: Pick<DockerPort, 'inspectContainer'>;
  supervisor: Pick<AgentSupervisor, 'snapshot'>;
  log: Logger;
  /** The agent's introspection /v1/metadata; undefined while nothing listens. */
  introspection: () => Promise<AgentMetadata | undefined>;
  /**
   * Why whatever answers on the introspection port is not the agent container (undefined: it is).
   * Undefined itself when the URL is not on this host's loopback (nothing to check here).
   */
  introspectionOwner?: (agentPid: number) => Promise<string | undefined>;
}

export class AgentMonitor implements Monitor {
  readonly name = 'agent';
  /** Docker's and introspection's deadlines, and a restart by the supervisor (its own stall limit). */
  readonly deadlineMs = SUPERVISOR_STALL_MS + 5 * MINUTES;
  /** The last reason the introspection answer was refused (logged once per reason). */
  private listenerProblem?: string;

  constructor(
    private readonly deps: AgentMonitorDeps,
    private readonly state: Pick<WatchState, 'obs' | 'recordError'>,
    private readonly opts: { introspectMs: number },
  ) {}

  nextInMs(): number {
    return this.opts.introspectMs;
  }

  async run(): Promise<Observation> {
    const { docker, supervisor, log } = this.deps;
    const { state } = this;
    const c = await docker.inspectContainer(AGENT_NAME);
    const sup = supervisor.snapshot;
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
    return {
      kind: 'agent',
      container: c && {
        id: c.id,
        runtime: c.runtime,
        status: c.status,
        running: c.running,
        health: c.health,
        pid: c.pid || undefined,
        startedAt: c.startedAt || undefined,
      },
      supervisor: {
        held: sup.held,
        stopped: sup.stopped,
        lastExit: sup.lastExit && { code: sup.lastExit.code, decision: sup.lastExit.decision, at: sup.lastExit.at },
      },
      metadata: meta,
      registered: meta !== undefined && meta.containerInstanceArn !== before,
    };
  }
}
