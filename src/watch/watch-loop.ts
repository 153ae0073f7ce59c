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
import type { EcsBudget } from '../aws/budget.js';
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
import { EcsTaskDirectory, TASK_LOOKUP_MS } from './ecs-tasks.js';
import { Healer } from './healer.js';
import type { HealingOptions } from './health.js';
import type { WatchMetrics } from './metrics.js';
import { AgentMonitor } from './monitors/agent-monitor.js';
import { AuditMonitor } from './monitors/audit-monitor.js';
import { MINUTES, type WatchContext } from './monitors/context.js';
import { DriftMonitor } from './monitors/drift-monitor.js';
import { EcsMonitor } from './monitors/ecs-monitor.js';
import { LifecycleMonitor } from './monitors/lifecycle-monitor.js';
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

type InboxEvent = ContainerEvent | { action: 'docker-back' } | { action: 'proven'; state: RuntimeState };

export class WatchLoop {
  private readonly inbox: InboxEvent[] = [];
  private wake?: () => void;
  private readonly sched: Scheduler;
  private readonly st: WatchState;
  private readonly monitors = new Map<string, Monitor>();
  private readonly audit: AuditMonitor;
  private readonly attributes: AttributePublisher;
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
    this.sched = new Scheduler(clock);
    this.st = new WatchState(
      { clock, log },
      { auditAction: opts.auditAction, network: deps.network !== undefined, region: opts.region },
      runtime,
    );
    this.attributes = new AttributePublisher(
      { aws, log, state: this.st, sched: this.sched },
      { publish: opts.publishAttributes, alertPollMs: opts.budget.alertPollMs },
    );
    const ctx: WatchContext = {
      state: this.st,
      sched: this.sched,
      attributes: this.attributes,
      healer: new Healer({ aws, supervisor, clock, log, state: this.st, sched: this.sched }, opts.healing),
    };
    const ecs = new EcsMonitor({ aws, metrics, log, random }, ctx, { budget: opts.budget });
    const tasks = new EcsTaskDirectory({ aws, clock, log }, { minIntervalMs: TASK_LOOKUP_MS });
    this.audit = new AuditMonitor({ docker: deps.docker, host: deps.host, clock, log, metrics, store: deps.state, tasks }, ctx, {
      auditMs: opts.auditMs,
      runtimeName: opts.runtimeName,
      action: opts.auditAction,
      hygiene: opts.hygiene ?? [],
    });
    const monitors: Monitor[] = [
      new AgentMonitor(
        {
          docker: deps.docker,
          supervisor,
          metrics,
          log,
          introspection: deps.introspection,
          introspectionOwner: deps.introspectionOwner,
          random,
        },
        ctx,
        { introspectMs: opts.introspectMs, budget: opts.budget },
      ),
      ecs,
      new DriftMonitor(
        { runtime: deps.runtime, agent: deps.agent, supervisor, network: deps.network, lock: deps.lock, metrics, log },
        ctx,
        { driftMs: opts.driftMs },
      ),
      this.audit,
      ...(deps.lifecycle
        ? [new LifecycleMonitor({ lifecycle: deps.lifecycle, supervisor, ecs }, ctx, { alertPollMs: opts.budget.alertPollMs })]
        : []),
      // Pending publishes only: a withdrawal ECS has not taken yet, `verified` after its hold.
      this.attributes,
      // Only wakes the loop, so the snapshot is rewritten for status.
      { name: 'heartbeat', deadlineMs: PUBLISH_DEADLINE_MS, run: async () => {}, nextInMs: () => opts.heartbeatMs },
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
    // Lifecycle after introspect: its first round should know whether the agent registered.
    for (const name of ['introspect', 'drift', 'audit', 'heartbeat', 'lifecycle']) if (this.monitors.has(name)) this.sched.soon(name, 0);
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
        this.drainInbox();
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
    try {
      await this.sched.within(m.name, this.opts.deadlinesMs?.[m.name] ?? m.deadlineMs, () => m.run(signal));
    } catch (err) {
      if (!signal.aborted) this.st.recordError(m.name, err);
    } finally {
      // A round that asked for itself again (an event, another monitor) keeps that time.
      const next = m.nextInMs();
      if (!this.sched.isPlanned(m.name) && next !== undefined) this.sched.after(m.name, next);
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

  private drainInbox(): void {
    const { sched } = this;
    while (this.inbox.length > 0) {
      const ev = this.inbox.shift()!;
      if ('state' in ev) {
        const v = this.st.verified;
        const at = ev.state.verifiedAt;
        if (v.ok && at !== undefined && v.at === Date.parse(at)) {
          v.networks = ev.state.evidence?.networks;
          sched.soon('attributes', 0); // the verification changed outside a monitor
        }
        continue;
      }
      if (ev.action === 'docker-back') {
        // dockerd restarted: settings may have changed with it; check everything soon.
        this.audit.forget();
        sched.soon('drift', 0);
        sched.soon('audit', 0);
        sched.soon('introspect', 0);
        continue;
      }
      const e = ev as ContainerEvent;
      this.audit.forget(e.id, e.action);
      if (e.name === AGENT_NAME) {
        if (e.action.startsWith('health_status')) sched.soon('introspect', 0);
        if (e.action === 'start' || e.action === 'die') sched.soon('introspect', 1_000);
      } else if (e.action === 'start' || e.action === 'die') {
        // A new container: audit it now, not at the next round; one gone: its violation with it.
        sched.soon('audit', 500);
      }
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
