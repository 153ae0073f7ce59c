/**
 * Keeps the agent running for `run`, reacting to Docker events rather than polling. ecs-gvisor is the one
 * owner of agent restarts: the container has no Docker restart policy, so the two never fight. A dockerd
 * restart ends the event stream; the supervisor waits for Docker to come back and converges again
 * (ecs-init exits 255 there and relies on systemd).
 *
 * When exit 0 ("done") and exit 5 ("terminal") keep the agent down: until Docker restarts. The real agent
 * exits 0 on the SIGTERM dockerd sends it when dockerd stops, so an exit 0 is often Docker's doing, not
 * the agent's wish; and ecs.service is `PartOf=docker.service`, so with ecs-init every Docker restart
 * starts the agent again whatever its last exit was. Here, too: a stop that holds for the life of one
 * dockerd, and is forgotten when the event stream ends and Docker answers again. It reads every container's events once and hands the
 * ones that are not the agent's to the watch (the sandbox audit). Every change to the agent container,
 * its own and the watch's (health restarts, drift), runs under one mutex.
 */
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Clock, ContainerEvent, DockerPort, FilesPort } from '../ports.js';
import { SUPERVISOR_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import { AGENT_NAME, MANAGED_LABEL } from './agent-spec.js';
import type { AgentStep } from './agent-step.js';
import { Mutex } from './mutex.js';
import { AGENT_BACKOFF, Backoff, type BackoffOptions, decideExit, desiredImageTarball, type ExitDecision } from './restart-policy.js';

/** Who holds the agent stopped: the drift check (sandbox not proven) or the lifecycle (warm pool). */
export type HoldKind = 'sandbox' | 'lifecycle';

export interface SupervisorState {
  restarts: number;
  /** Set once the agent asked not to be restarted (0) or failed terminally (5); cleared when Docker restarts. */
  stopped?: 'done' | 'terminal';
  /** Why the agent is held stopped by ecs-gvisor (all holds' reasons); absent when not held. */
  held?: string;
  /** Each hold by kind: the sandbox is not proven, or the instance waits in a warm pool. */
  holds?: Partial<Record<HoldKind, string>>;
  lastExit?: { code: number; decision: ExitDecision['kind']; at: string; ranMs: number; lastLines?: string[]; loaded?: string };
}

/** Errors of a configuration Docker or the agent refuses, as opposed to Docker being unavailable. */
const REFUSALS: ReadonlySet<string> = new Set(['ECS_CONFIG_INVALID', 'AGENT_SPEC_REFUSED', 'AGENT_EXITED']);

/** What the supervisor asks of Docker (its own narrow port). */
export type SupervisorDocker = Pick<
  DockerPort,
  'containerEvents' | 'containerLogs' | 'info' | 'inspectContainer' | 'loadImage' | 'removeContainer' | 'stopContainer'
>;

export class AgentSupervisor {
  private readonly backoff: Backoff;
  private st: SupervisorState = { restarts: 0 };
  private readonly mutex: Mutex;
  /** A stop we asked for ourselves: its die event is not a crash. */
  private expectedStop?: { id: string; at: number };

  constructor(
    private readonly deps: {
      docker: SupervisorDocker;
      agent: AgentStep;
      files: FilesPort;
      state: StateStore;
      clock: Clock;
      log: Logger;
      random?: () => number;
    },
    private readonly opts: { cacheDir: string; backoff?: BackoffOptions; dockerRetryMs?: number },
  ) {
    this.backoff = new Backoff(opts.backoff ?? AGENT_BACKOFF, deps.random);
    this.mutex = new Mutex(() => deps.clock.now());
  }

  /**
   * How long the change to the agent now under way has taken (0 when none is). Every Docker call in it
   * has a deadline, so one that runs far longer is stuck: the watch then stops feeding systemd's watchdog.
   */
  busyMs(): number {
    return this.mutex.busyMs();
  }

  get snapshot(): Readonly<SupervisorState> {
    return this.st;
  }

  /**
   * Supervise until `signal` aborts. `onEvent` gets every other container's events, and the agent's too
   * after they were handled (and `docker-back` when Docker returned after an outage).
   */
  async run(signal: AbortSignal, onEvent: (ev: ContainerEvent | { action: 'docker-back' }) => void = () => undefined): Promise<void> {
    const log = this.deps.log;
    let outage = false;
    await this.save(); // this run's count from zero: an earlier run's restarts are not this one's
    while (!signal.aborted) {
      try {
        const events = await this.deps.docker.containerEvents(undefined, signal);
        try {
          if (outage) await this.mutex.run(() => this.dockerRestarted());
          await this.converge(); // after subscribing, so an exit in between is not missed
          if (outage) onEvent({ action: 'docker-back' });
          outage = false;
          for await (const ev of events) {
            if (ev.name === AGENT_NAME) {
              if (ev.action === 'die') await this.onDie(ev.id, ev.exitCode ?? -1, signal);
              else if (ev.action === 'oom') log.warn({ id: ev.id }, 'the agent ran out of memory');
              else if (ev.action === 'destroy' && !this.st.stopped && !this.st.held) {
                log.warn({ id: ev.id }, 'the agent container was removed; creating it again');
                await this.converge();
              }
            }
            onEvent(ev);
            if (signal.aborted) break;
          }
        } finally {
          events.close(); // also when converging failed before the stream was read
        }
        if (!signal.aborted) log.warn('Docker’s event stream ended (dockerd stopped?); waiting for Docker');
      } catch (err) {
        if (signal.aborted) break;
        log.warn({ err: messageOf(err) }, 'lost Docker; waiting for it to come back');
      }
      outage = true;
      await this.waitForDocker(signal);
    }
  }

  /**
   * Docker came back after its event stream ended: a stop the agent asked for held only for that dockerd.
   * An exit whose die event went with the stream (dockerd closing while it stopped the agent) is recorded
   * from what Docker kept of it, so status still says how the agent ended.
   */
  private async dockerRestarted(): Promise<void> {
    const c = await this.deps.docker.inspectContainer(AGENT_NAME);
    const finished = c && !c.running && c.labels[MANAGED_LABEL] === 'true' ? Date.parse(c.finishedAt) : Number.NaN;
    const missed = Number.isFinite(finished) && finished > (this.st.lastExit ? Date.parse(this.st.lastExit.at) : 0);
    if (missed) {
      const ranMs = Math.max(0, finished - Date.parse(c!.startedAt));
      this.st.lastExit = { code: c!.exitCode, decision: decideExit(c!.exitCode).kind, at: new Date(finished).toISOString(), ranMs };
    }
    const was = this.st.stopped;
    this.st.stopped = undefined;
    if (was) {
      this.deps.log.warn(
        { lastExit: this.st.lastExit?.code, was },
        was === 'done'
          ? 'Docker restarted: starting the agent again (its exit 0 came with Docker stopping it, or held only until a Docker restart, as with ecs-init)'
          : 'Docker restarted: trying the agent again after its terminal exit, as ecs-init would',
      );
    } else if (missed) {
      this.deps.log.info({ code: this.st.lastExit!.code }, 'Docker restarted: the agent exited with it; starting it again');
    }
    if (was || missed) await this.save();
  }

  /** Run a change to the agent container exclusively (the watch's drift repairs use this). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(fn);
  }

  /** Stop the agent and keep it stopped (no tasks may be placed here) until every hold is released. */
  async hold(reason: string, kind: HoldKind = 'sandbox'): Promise<void> {
    await this.mutex.run(async () => {
      const first = !this.st.holds?.[kind];
      this.setHold(kind, reason);
      if (first) {
        if (kind === 'sandbox')
          this.deps.log.error(
            { reason },
            'holding the agent stopped: no tasks may start on this instance until the sandbox is proven again',
          );
        else this.deps.log.info({ reason }, 'holding the agent stopped');
      }
      await this.stopAgent();
      await this.save();
    });
  }

  async release(kind: HoldKind = 'sandbox'): Promise<void> {
    await this.mutex.run(async () => {
      if (!this.st.holds?.[kind]) return;
      this.setHold(kind, undefined);
      this.deps.log.info(
        { released: kind, stillHeld: this.st.held },
        kind === 'sandbox' ? 'the sandbox is proven again: starting the agent' : 'hold released: starting the agent',
      );
      await this.convergeNow();
      await this.save();
    });
  }

  private setHold(kind: HoldKind, reason: string | undefined): void {
    const holds = { ...this.st.holds, [kind]: reason };
    if (reason === undefined) delete holds[kind];
    const reasons = Object.values(holds);
    this.st.holds = reasons.length ? holds : undefined;
    this.st.held = reasons.length ? reasons.join('; ') : undefined;
  }

  /** Restart the agent container for a reason of the watch's (unhealthy, disconnected). */
  async restartAgent(reason: string): Promise<void> {
    await this.mutex.run(async () => {
      if (this.st.held || this.st.stopped) return;
      await this.stopAgent();
      this.st.restarts++;
      this.deps.log.warn({ reason }, 'restarting the agent');
      await this.convergeNow();
      await this.save();
    });
  }

  /** Stop a running agent ourselves: its die event is then not taken for a crash. */
  private async stopAgent(): Promise<void> {
    const c = await this.deps.docker.inspectContainer(AGENT_NAME);
    if (!c?.running) return;
    this.expectedStop = { id: c.id, at: this.deps.clock.now() };
    await this.deps.docker.stopContainer(c.id, 30);
  }

  /** Bring the agent back to the desired state unless it asked to stay down or is held. */
  private converge(): Promise<void> {
    return this.mutex.run(() => this.convergeNow());
  }

  private async convergeNow(): Promise<void> {
    if (this.st.stopped || this.st.held) return;
    let r: Awaited<ReturnType<AgentStep['apply']>>;
    try {
      r = await this.deps.agent.apply();
    } catch (err) {
      // A configuration Docker or the agent refuses is not Docker lost: the agent that runs stays, and the
      // next change (an edit of ecs.config, a drift check) tries again. Said once; Docker's errors go on up.
      if (!(err instanceof EcsGvisorError && REFUSALS.has(err.code))) throw err;
      const why = messageOf(err);
      if (this.refusal !== why) this.deps.log.error({ err: why }, 'the agent container cannot be converged; the running agent is kept');
      this.refusal = why;
      return;
    }
    this.refusal = undefined;
    if (r.action !== 'keep') this.deps.log.info({ id: r.id, action: r.action }, 'agent converged');
  }

  /** The refusal said last (said once). */
  private refusal?: string;

  private onDie(id: string, code: number, signal: AbortSignal): Promise<void> {
    return this.mutex.run(async () => {
      const exp = this.expectedStop;
      if (exp?.id === id && this.deps.clock.now() - exp.at < 120_000) {
        this.expectedStop = undefined;
        return; // our own stop (hold or a health restart)
      }
      if (this.st.held) return;
      await this.handleDie(id, code, signal);
    });
  }

  private async handleDie(id: string, code: number, signal: AbortSignal): Promise<void> {
    const { docker, log, clock } = this.deps;
    const c = await docker.inspectContainer(id);
    const ranMs = c ? Math.max(0, Date.parse(c.finishedAt) - Date.parse(c.startedAt)) : 0;
    const decision = decideExit(code);
    const lastExit: SupervisorState['lastExit'] = { code, decision: decision.kind, at: new Date(clock.now()).toISOString(), ranMs };
    switch (decision.kind) {
      case 'done':
        this.st.stopped = 'done';
        log.info(
          { code },
          'the agent exited 0: not restarting it until Docker restarts (if Docker is stopping now, it starts again once Docker is back)',
        );
        break;
      case 'terminal': {
        this.st.stopped = 'terminal';
        const lines = (await docker.containerLogs(id, 200).catch(() => '')).split('\n').filter(Boolean);
        lastExit.lastLines = lines;
        log.error(
          { code, lastLines: lines },
          'the agent failed terminally (exit 5: bad configuration or refused registration); not restarting it',
        );
        break;
      }
      case 'update': {
        const desired = await this.deps.files.readText(`${this.opts.cacheDir}/desired-image`);
        const tarball = desiredImageTarball(this.opts.cacheDir, desired);
        if (tarball && (await this.deps.files.kind(tarball)) === 'file') {
          await docker.loadImage(tarball).then(
            () => (lastExit.loaded = tarball),
            (err: unknown) => log.error({ tarball, err: messageOf(err) }, 'could not load the desired agent image; restarting the old one'),
          );
        } else {
          log.error({ tarball }, 'the agent asked for an update but the desired image is not in the cache');
        }
        // A new container, so the freshly loaded image is the one that runs.
        await docker.removeContainer(id);
        this.st.restarts++;
        log.info({ loaded: lastExit.loaded }, 'agent update: restarting at once');
        await this.convergeNow();
        break;
      }
      case 'restart': {
        const delay = this.backoff.next(ranMs);
        log.warn({ code, ranMs, delayMs: delay }, 'the agent exited; restarting it after a backoff');
        await this.deps.clock.sleep(delay, signal);
        if (signal.aborted) break;
        this.st.restarts++;
        await this.convergeNow();
        break;
      }
    }
    this.st.lastExit = lastExit;
    await this.save();
  }

  private save(): Promise<void> {
    return this.deps.state.write(SUPERVISOR_STATE, this.st).catch(() => undefined);
  }

  private async waitForDocker(signal: AbortSignal): Promise<void> {
    const step = this.opts.dockerRetryMs ?? 1000;
    for (let wait = step; !signal.aborted; wait = Math.min(wait * 2, 15_000)) {
      try {
        await this.deps.docker.info();
        this.deps.log.info('Docker is back; converging the agent again');
        return;
      } catch {
        await this.deps.clock.sleep(wait, signal);
      }
    }
  }
}
