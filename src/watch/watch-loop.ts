/**
 * The watch behind `run`: monitors (the agent and its registration, ECS, drift, the sandbox audit, the
 * Auto Scaling lifecycle), each behind the Monitor interface with a deadline, scheduled by one loop that
 * runs them one at a time; Docker events from the supervisor bring them forward. systemd's watchdog is
 * fed on its own timer while no monitor has overrun. Time comes from the injected clock, so tests drive
 * a simulated day. The loop's view is written atomically to `watch.json` for `status`, published to
 * systemd (READY/STATUS) and to Prometheus.
 */
import { AGENT_NAME } from '../agent/agent-spec.js';
import type { AgentStep } from '../agent/agent-step.js';
import type { AgentSupervisor } from '../agent/supervisor.js';
import type { AwsCaller } from '../aws/aws-caller.js';
import { type EcsBudget, firstPollMs } from '../aws/budget.js';
import type { HygieneItem } from '../config.js';
import { messageOf } from '../errors.js';
import type { Lifecycle } from '../lifecycle/lifecycle.js';
import type { Logger } from '../logger.js';
import type { NetworkStep } from '../network/network-step.js';
import type { AgentMetadata, Clock, ContainerEvent, DockerPort, HostLockPort, HostPort, NotifyPort } from '../ports.js';
import type { RuntimeState, RuntimeStep } from '../runtime/runtime-step.js';
import { WATCH_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import { watchSummary } from '../status/summary.js';
import { AttributePublisher } from './attribute-publisher.js';
import { DriftRepair } from './drift-repair.js';
import { type AgentTaskSource, EcsTaskDirectory, TASK_LOOKUP_MS } from './ecs-tasks.js';
import type { HealingOptions } from './health.js';
import type { WatchMetrics } from './metrics.js';
import { AcsMonitor, type AcsMonitorDeps } from './monitors/acs-monitor.js';
import { AgentMonitor } from './monitors/agent-monitor.js';
import { AuditMonitor } from './monitors/audit-monitor.js';
import { MINUTES } from './monitors/context.js';
import { DriftMonitor, detectDrift } from './monitors/drift-monitor.js';
import { EcsMonitor } from './monitors/ecs-monitor.js';
import { LifecycleMonitor } from './monitors/lifecycle-monitor.js';
import { type Action, type Observation, Reactor } from './reactor.js';
import { type Monitor, Scheduler } from './scheduler.js';
import { type WatchSnapshot, WatchState } from './watch-state.js';
import { SUPERVISOR_STALL_MS, Watchdog } from './watchdog.js';

export type { WatchSnapshot } from './watch-state.js';
export { SUPERVISOR_STALL_MS } from './watchdog.js';

export interface WatchDeps {
  docker: DockerPort;
  host: HostPort;
  clock: Clock;
  log: Logger;
  state: StateStore;
  supervisor: AgentSupervisor;
  runtime: RuntimeStep;
  agent: AgentStep;
  /** The host's network rules, when `run` applied them (the network step): drift puts them back. */
  network?: NetworkStep;
  /** The agent's introspection /v1/metadata; undefined while nothing listens. */
  introspection: () => Promise<AgentMetadata | undefined>;
  /**
   * Why whatever answers on the introspection port is not the agent container (undefined: it is).
   * Undefined itself when the URL is not on this host's loopback (nothing to check here).
   */
  introspectionOwner?: (agentPid: number) => Promise<string | undefined>;
  /** The host lock: a repair waits for the next check while an operator's bootstrap or rollback holds it. */
  lock?: HostLockPort;
  /** Every AWS call (ECS inside its budget, Auto Scaling), and this instance's ID. */
  aws: AwsCaller;
  notify: NotifyPort;
  metrics: WatchMetrics;
  /** Auto Scaling lifecycle (launch gate, warm pools, drains), when configured. */
  lifecycle?: Lifecycle;
  /** The agent's log and the kernel, for its ACS connection (without: ECS is polled at the steady rate). */
  acs?: AcsMonitorDeps;
  /** The agent's word on the task of a container, given how to find the agent container's init PID (without: ECS). */
  agentTasks?: (agentPid: () => number | undefined) => AgentTaskSource;
  random?: () => number;
}

export interface WatchOptions {
  runtimeName: string;
  /** Region for AWS calls; default: the region in the container instance ARN. */
  region?: string;
  budget: EcsBudget;
  introspectMs: number;
  driftMs: number;
  auditMs: number;
  auditAction: 'report' | 'stop';
  /** Hygiene findings that are violations (ECS_GVISOR_HYGIENE_VIOLATIONS). */
  hygiene?: readonly HygieneItem[];
  healing: HealingOptions;
  publishAttributes: boolean;
  /** Half of systemd's WatchdogSec (WATCHDOG_USEC), when a watchdog is armed. */
  watchdogMs?: number;
  /** The supervisor stuck in one change this long counts as hung: systemd's watchdog is no longer fed. */
  supervisorStallMs?: number;
  /** watch.json is rewritten at least this often, so `status` can tell a live loop from a dead one. */
  heartbeatMs: number;
  /** Deadlines by monitor name, replacing the monitors' own (tests). */
  deadlinesMs?: Record<string, number>;
}

/** Publishing the snapshot: a state file write and a notify message. */
const PUBLISH_DEADLINE_MS = 2 * MINUTES;
/** An action's deadline: AWS calls with their retries and budget waits, a change to the agent by the supervisor. */
const ACT_MS = SUPERVISOR_STALL_MS + 10 * MINUTES;
const ACTION_DEADLINE_MS: Partial<Record<Action['kind'], number>> = {
  poll: MINUTES,
  /** A repair may download and unpack runsc again (5 + 2 min), reload Docker, prove the sandbox and pull the agent image. */
  repair: 30 * MINUTES,
  /** Stopping violators, 10 s each under Docker's deadline. */
  'stop-containers': 15 * MINUTES,
};
/** Whose failure an action's is, in status's last errors. */
function actorOf(a: Action): string {
  switch (a.kind) {
    case 'restart-agent':
      return 'agent';
    case 'mark-unhealthy':
      return 'healing';
    case 'republish':
      return 'attributes';
    case 'sync-attributes':
      return 'ecs';
    case 'hold-agent':
    case 'release-agent':
      return a.by === 'lifecycle' ? 'lifecycle' : 'drift';
    case 'stop-containers':
      return 'audit';
    case 'repair':
      return 'drift';
    default:
      return 'watch';
  }
}

type InboxEvent = ContainerEvent | { action: 'docker-back' } | { action: 'proven'; state: RuntimeState };

export class WatchLoop {
  private readonly inbox: InboxEvent[] = [];
  private wake?: () => void;
  private readonly sched: Scheduler;
  private readonly st: WatchState;
  private readonly monitors = new Map<string, Monitor>();
  private readonly audit: AuditMonitor;
  private readonly attributes: AttributePublisher;
  private readonly reactor: Reactor;
  private readonly repairs: DriftRepair;
  private readonly random: () => number;
  private restartsCounted = 0;
  private lastStatus?: string;
  private lastWritten?: { json: string; at: number };

  constructor(
    private readonly deps: WatchDeps,
    private readonly opts: WatchOptions,
    runtime: RuntimeState | undefined,
  ) {
    const { clock, log, aws, supervisor, metrics } = deps;
    const random = deps.random ?? Math.random;
    this.random = random;
    this.sched = new Scheduler(clock);
    this.st = new WatchState(
      { clock, log, metrics },
      { auditAction: opts.auditAction, network: deps.network !== undefined, region: opts.region, acsGraceMs: opts.budget.acsGraceMs },
      runtime,
    );
    this.reactor = new Reactor(opts.healing);
    this.attributes = new AttributePublisher(
      { aws, log, state: this.st, sched: this.sched },
      { publish: opts.publishAttributes, alertPollMs: opts.budget.alertPollMs },
    );
    const driftDeps = { runtime: deps.runtime, agent: deps.agent, supervisor, network: deps.network };
    this.repairs = new DriftRepair({ ...driftDeps, lock: deps.lock, metrics, log, detect: () => detectDrift(driftDeps, this.st) });
    const agentTasks = deps.agentTasks?.(() => this.st.obs.agent?.pid);
    const tasks = new EcsTaskDirectory({ aws, clock, log, agent: agentTasks }, { minIntervalMs: TASK_LOOKUP_MS });
    this.audit = new AuditMonitor({ docker: deps.docker, host: deps.host, clock, log, store: deps.state, tasks }, this.st, {
      auditMs: opts.auditMs,
      runtimeName: opts.runtimeName,
      hygiene: opts.hygiene ?? [],
    });
    const monitors: Monitor[] = [
      new AgentMonitor(
        { docker: deps.docker, supervisor, log, introspection: deps.introspection, introspectionOwner: deps.introspectionOwner },
        this.st,
        { introspectMs: opts.introspectMs },
      ),
      ...(deps.acs ? [new AcsMonitor(deps.acs, this.st, { everyMs: opts.introspectMs })] : []),
      new EcsMonitor({ aws, random }, this.st, { budget: opts.budget }),
      new DriftMonitor(driftDeps, this.st, { driftMs: opts.driftMs }),
      this.audit,
      ...(deps.lifecycle ? [new LifecycleMonitor({ lifecycle: deps.lifecycle, supervisor }, this.st)] : []),
      // Pending publishes only: a withdrawal ECS has not taken yet, `verified` after its hold.
      this.attributes,
      // Only wakes the loop, so the snapshot is rewritten for status.
      { name: 'heartbeat', deadlineMs: PUBLISH_DEADLINE_MS, run: async () => undefined, nextInMs: () => opts.heartbeatMs },
    ];
    for (const m of monitors) this.monitors.set(m.name, m);
  }

  get snapshot(): Readonly<WatchSnapshot> {
    return this.st.snap;
  }

  /**
   * Supervise and watch until `signal` aborts. Call after bootstrap verified the sandbox. `ready` is
   * called once systemd has READY (systemd-notify returns when systemd has read it).
   */
  async run(signal: AbortSignal, ready?: () => void): Promise<void> {
    const { supervisor, notify, log } = this.deps;
    // Lifecycle after the agent's round: its first should know whether the agent registered.
    for (const name of ['agent', 'acs', 'drift', 'audit', 'heartbeat', 'lifecycle']) if (this.monitors.has(name)) this.sched.soon(name, 0);
    const supervising = supervisor.run(signal, (ev) => this.push(ev));
    await this.notify({ READY: '1', STATUS: 'bootstrap verified; watching' });
    ready?.();
    log.info(
      {
        intervals: { introspectMs: this.opts.introspectMs, driftMs: this.opts.driftMs, auditMs: this.opts.auditMs },
        budget: this.opts.budget,
      },
      'watching',
    );
    const watchdog = this.opts.watchdogMs
      ? new Watchdog(
          { notify: (f) => this.notify(f), supervisor, sched: this.sched, clock: this.deps.clock, log },
          { periodMs: this.opts.watchdogMs, supervisorStallMs: this.opts.supervisorStallMs ?? SUPERVISOR_STALL_MS },
        ).run(signal)
      : undefined;
    try {
      while (!signal.aborted) {
        await this.drainInbox(signal);
        for (const name of this.sched.takeDue()) {
          if (signal.aborted) break;
          await this.runMonitor(this.monitors.get(name)!, signal);
        }
        await this.sched.within('publish', PUBLISH_DEADLINE_MS, () => this.publish());
        await this.idle(signal);
      }
    } finally {
      await supervising;
      await watchdog;
      await notify.notify({ STOPPING: '1' }).catch(() => undefined);
    }
  }

  private async runMonitor(m: Monitor, signal: AbortSignal): Promise<void> {
    let seen: Observation | undefined;
    try {
      seen = await this.sched.within(m.name, this.opts.deadlinesMs?.[m.name] ?? m.deadlineMs, () => m.run(signal));
    } catch (err) {
      if (!signal.aborted) this.st.recordError(m.name, err);
    }
    if (seen && !signal.aborted) await this.observe(seen, signal);
    // A round that asked for itself again (an event, the reactor) keeps that time.
    const next = m.nextInMs();
    if (!this.sched.isPlanned(m.name) && next !== undefined) this.sched.after(m.name, next);
  }

  /** What was observed: recorded, then the reactor's actions carried out. */
  private async observe(o: Observation, signal: AbortSignal): Promise<void> {
    this.st.record(o);
    const r = this.reactor.react(o, this.st.facts(this.opts.budget.alertPollMs, this.opts.budget.acsGraceMs), this.deps.clock.now());
    if (r.healing) {
      const l = r.healing.ladder;
      this.st.snap.verdict = r.healing.verdict;
      this.st.snap.healing = {
        wrongSince: l.wrongSince === undefined ? undefined : new Date(l.wrongSince).toISOString(),
        restartsInWindow: l.restarts.length,
        markedUnhealthy: l.markedUnhealthy,
      };
    }
    for (const a of r.actions) {
      if (signal.aborted) return;
      try {
        await this.sched.within(`act:${a.kind}`, ACTION_DEADLINE_MS[a.kind] ?? ACT_MS, () => this.act(a, signal));
      } catch (err) {
        if (!signal.aborted) this.st.recordError(actorOf(a), err);
      }
    }
  }

  /** One of the reactor's actions. */
  private async act(a: Action, signal: AbortSignal): Promise<void> {
    const { supervisor, log, aws, docker } = this.deps;
    const { st, sched } = this;
    switch (a.kind) {
      case 'poll':
        return sched.soon(a.monitor, a.inMs);
      case 'first-ecs-poll':
        return sched.after('ecs', firstPollMs(this.opts.budget, this.random));
      case 'restart-agent':
        log.warn(
          { reason: a.reason, attempt: a.attempt, maxRestarts: this.opts.healing.maxRestarts },
          'the agent is unhealthy: restarting it',
        );
        return supervisor.restartAgent(a.reason);
      case 'forget-registration-answer':
        st.obs.metadata = undefined; // it registers again
        return;
      case 'mark-unhealthy': {
        log.error(
          { reason: a.reason },
          'the agent cannot be healed here: marking the instance Unhealthy in Auto Scaling so it is replaced',
        );
        const instanceId = await aws.instanceId();
        await aws.autoScaling(st.region(), 'SetInstanceHealth', (as) => as.setInstanceHealth(instanceId, 'Unhealthy', true), signal);
        log.error({ instanceId }, 'instance marked Unhealthy in Auto Scaling');
        return;
      }
      case 'healing-exhausted':
        log.error(
          { reason: a.reason },
          'the agent is still unhealthy after the allowed restarts; ECS_GVISOR_SET_INSTANCE_HEALTH is off, so an operator must look',
        );
        return;
      case 'republish':
        return this.attributes.republish();
      case 'sync-attributes':
        return this.attributes.sync(a.current, signal);
      case 'hold-agent':
        return supervisor.hold(a.reason, a.by);
      case 'release-agent':
        return supervisor.release(a.by);
      case 'stop-containers':
        for (const id of a.ids) {
          await docker.stopContainer(id, 10);
          st.snap.audit.stopped.push(id);
          const v = st.snap.audit.violations.find((x) => x.id === id);
          log.warn({ container: v?.name, id: id.slice(0, 12) }, 'sandbox audit: stopped (ECS_GVISOR_AUDIT_ACTION=stop)');
        }
        return;
      case 'repair':
        return this.repairs.repair((o) => this.observe(o, signal));
      case 'lapse':
        return st.lapse(a.reason);
      case 'audit-forget':
        return this.audit.forget(a.id, a.died ? 'die' : undefined);
      case 'ecs-urgent':
        st.ecsUrgent = a.urgent;
        return;
    }
  }

  /**
   * The proof the watch started with, completed: its network modes (proven after READY). Ignored when
   * the watch has proven the sandbox again since.
   */
  proven(state: RuntimeState): void {
    this.push({ action: 'proven', state });
  }

  private push(ev: InboxEvent): void {
    this.inbox.push(ev);
    this.wake?.();
  }

  /** Sleep until the next monitor is due, an event arrives, or we are stopped. */
  private async idle(signal: AbortSignal): Promise<void> {
    if (this.inbox.length > 0 || signal.aborted) return;
    const ms = Math.min(60_000, this.sched.nextDueInMs());
    const woken = new AbortController();
    const stop = () => woken.abort();
    this.wake = stop;
    signal.addEventListener('abort', stop, { once: true });
    try {
      await this.deps.clock.sleep(ms, woken.signal);
    } finally {
      if (this.wake === stop) this.wake = undefined;
      signal.removeEventListener('abort', stop);
    }
  }

  /** Docker's events and the proof's completion, through the reactor (which monitors to bring forward). */
  private async drainInbox(signal: AbortSignal): Promise<void> {
    while (this.inbox.length > 0) {
      const ev = this.inbox.shift()!;
      if ('state' in ev) {
        const v = this.st.verified;
        const at = ev.state.verifiedAt;
        // Ignored when the watch has proven the sandbox again since.
        if (!(v.ok && at !== undefined && v.at === Date.parse(at))) continue;
        v.networks = ev.state.evidence?.networks;
        await this.observe({ kind: 'event', event: { action: 'proven' }, agentName: AGENT_NAME }, signal);
        continue;
      }
      await this.observe({ kind: 'event', event: ev, agentName: AGENT_NAME }, signal);
    }
  }

  private async publish(): Promise<void> {
    const { clock, metrics, supervisor, state, log } = this.deps;
    const s = this.st.snap;
    const v = this.st.verified;
    const now = clock.now();
    const restarts = supervisor.snapshot.restarts;
    if (restarts > this.restartsCounted) metrics.restarts.inc(restarts - this.restartsCounted);
    this.restartsCounted = restarts;
    s.agent.restarts = restarts;
    s.runtime = {
      verified: v.ok,
      verifiedAt: v.at === undefined ? undefined : new Date(v.at).toISOString(),
      runscVersion: v.version,
      lapsed: v.ok ? undefined : v.lapsed,
    };
    // Verified means a task placed here now runs in gVisor: not while a container runs outside it.
    metrics.sandboxVerified.set(v.ok && s.audit.violations.length === 0 ? 1 : 0);
    metrics.markVerified(v.ok ? v.at : undefined);
    Object.assign(s, watchSummary(s, this.deps.lifecycle?.record));
    const body = JSON.stringify({ ...s, updatedAt: undefined });
    if (!this.lastWritten || this.lastWritten.json !== body || now - this.lastWritten.at >= this.opts.heartbeatMs) {
      s.updatedAt = new Date(now).toISOString();
      try {
        await state.write(WATCH_STATE, s);
        this.lastWritten = { json: body, at: now };
      } catch (err) {
        log.warn({ err: messageOf(err) }, 'cannot write the watch state for status');
      }
    }
    if (s.summary !== this.lastStatus) {
      this.lastStatus = s.summary;
      await this.notify({ STATUS: s.summary });
    }
  }

  private async notify(fields: Record<string, string>): Promise<void> {
    try {
      await this.deps.notify.notify(fields);
    } catch (err) {
      this.deps.log.warn({ err: messageOf(err) }, 'systemd notification failed');
    }
  }
}
