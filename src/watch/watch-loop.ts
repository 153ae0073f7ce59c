/**
 * The watch behind `run`: monitors (Docker events through the supervisor, introspection, ECS, drift, the
 * sandbox audit, the systemd watchdog) feed one loop, which decides and acts one thing at a time. Time
 * comes from the injected clock, so tests drive a simulated day. The loop's view is written atomically to
 * `watch.json` for `status`, published to systemd (READY/STATUS/WATCHDOG) and to Prometheus.
 */
import { AGENT_NAME } from '../agent/agent-spec.js';
import type { AgentStep } from '../agent/agent-step.js';
import type { AgentSupervisor } from '../agent/supervisor.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type {
  HostLockPort,
  AgentMetadata,
  AutoScalingPort,
  Clock,
  ContainerEvent,
  ContainerInstanceView,
  DockerPort,
  HostPort,
  ImdsPort,
  NotifyPort,
} from '../ports.js';
import { probeNames, type SandboxEvidence } from '../runtime/sandbox-proof.js';
import { ourAgentId } from '../agent/agent-step.js';
import type { RuntimeState, RuntimeStep } from '../runtime/runtime-step.js';
import type { NetworkStep } from '../network/network-step.js';
import type { StateStore } from '../state-store.js';
import { INSTANCE_ID_PATH, instanceIdOf } from '../lifecycle/imds-values.js';
import type { Lifecycle } from '../lifecycle/lifecycle.js';
import { desiredAttributes, isEmptyPlan, planAttributes } from './attributes.js';
import { audit, type ContainerNetwork, type Violation } from './audit.js';
import { firstPollMs, nextPollMs, type EcsBudget } from './budget.js';
import type { EcsCaller } from './ecs-caller.js';
import { outcomeOf, regionOf } from './ecs-caller.js';
import { classify, HealingLadder, type HealingOptions, type Observations, type Verdict } from './health.js';
import type { WatchMetrics } from './metrics.js';

export const WATCH_STATE = 'watch.json';

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
  ecs: EcsCaller;
  autoScaling: (region: string) => AutoScalingPort;
  imds: ImdsPort;
  notify: NotifyPort;
  metrics: WatchMetrics;
  /** Auto Scaling lifecycle (launch gate, warm pools, drains), when configured. */
  lifecycle?: Lifecycle;
  random?: () => number;
}

/** Far past the longest legitimate change: a 30 s stop, a 15 s backoff and each Docker call's 60 s deadline. */
export const SUPERVISOR_STALL_MS = 10 * 60_000;

export interface WatchOptions {
  runtimeName: string;
  /** Region for AWS calls; default: the region in the container instance ARN. */
  region?: string;
  budget: EcsBudget;
  introspectMs: number;
  driftMs: number;
  auditMs: number;
  auditAction: 'report' | 'stop';
  healing: HealingOptions;
  publishAttributes: boolean;
  /** Half of systemd's WatchdogSec (WATCHDOG_USEC), when a watchdog is armed. */
  watchdogMs?: number;
  /** The supervisor stuck in one change this long counts as hung: systemd's watchdog is no longer fed. */
  supervisorStallMs?: number;
  /** watch.json is rewritten at least this often, so `status` can tell a live loop from a dead one. */
  heartbeatMs: number;
}

export interface WatchSnapshot {
  pid: number;
  startedAt: string;
  updatedAt: string;
  summary: string;
  healthy: boolean;
  runtime: { verified: boolean; verifiedAt?: string; runscVersion?: string; lapsed?: string };
  agent: {
    id?: string;
    runtime?: string;
    state?: string;
    running: boolean;
    health?: string;
    restarts: number;
    held?: string;
    stopped?: string;
    lastExit?: { code: number; decision: string; at: string };
  };
  registration: {
    cluster?: string;
    containerInstanceArn?: string;
    /** Whether ECS says that ARN is this EC2 instance (IMDS's instance ID): nothing is done for it until it does. */
    identity?: 'confirmed' | 'mismatch';
    ec2InstanceId?: string;
    agentVersion?: string;
    registeredAt?: string;
    status?: string;
    agentConnected?: boolean;
    healthStatus?: string;
    runningTasksCount?: number;
    missing?: boolean;
    checkedAt?: string;
    lastCall?: { outcome: string; at: string };
    callsLastHour: number;
  };
  verdict: Verdict;
  healing: { wrongSince?: string; restartsInWindow: number; markedUnhealthy: boolean };
  audit: { checkedAt?: string; checked: number; violations: Violation[]; action: 'report' | 'stop'; stopped: string[]; networks?: ContainerNetwork[] };
  attributes: { published: Record<string, string>; at?: string };
  /** Our iptables rules and route_localnet, when `run` applied them: as last checked, and how often put back. */
  network?: { rules: number; missing: number; repairs: number; checkedAt?: string; repairedAt?: string };
  lastErrors: Array<{ at: string; component: string; code: string; message: string }>;
}

type Task = 'introspect' | 'ecs' | 'drift' | 'audit' | 'lifecycle' | 'watchdog' | 'heartbeat';

export class WatchLoop {
  private readonly due = new Map<Task, number>();
  private readonly inbox: Array<ContainerEvent | { action: 'docker-back' }> = [];
  private wake?: () => void;
  private readonly ladder: HealingLadder;
  private readonly random: () => number;
  private obs: Observations = {};
  private throttledStreak = 0;
  /** When obs.ecs was taken. */
  private ecsAt?: number;
  /** The lifecycle awaits ECS's view (launch gate, drain): poll at the alert interval. */
  private lifecycleUrgent = false;
  private restartsCounted = 0;
  private lastStatus?: string;
  private lastWritten?: { json: string; at: number };
  private readonly snap: WatchSnapshot;
  /** The one record of the proof; status, metrics and attributes are derived from it. */
  private verified: { ok: boolean; at?: number; version?: string; lapsed?: string; networks?: SandboxEvidence['networks'] };
  /** This instance's ID (IMDS), once asked. */
  private ownInstanceId?: string;
  /** What ECS said of the registered ARN's EC2 instance. */
  private identity?: { arn: string; ok: boolean };
  /** The last reason the introspection answer was refused (logged once per reason). */
  private listenerProblem?: string;

  constructor(private readonly deps: WatchDeps, private readonly opts: WatchOptions, runtime: RuntimeState | undefined) {
    this.ladder = new HealingLadder(opts.healing);
    this.random = deps.random ?? Math.random;
    const now = deps.clock.now();
    this.verified = {
      ok: runtime?.verified === true,
      at: runtime?.verifiedAt ? Date.parse(runtime.verifiedAt) : undefined,
      version: runtime?.runscVersion,
      networks: runtime?.evidence?.networks,
    };
    this.snap = {
      pid: process.pid,
      startedAt: iso(now),
      updatedAt: iso(now),
      summary: '',
      healthy: false,
      runtime: { verified: this.verified.ok },
      agent: { running: false, restarts: 0 },
      registration: { callsLastHour: 0 },
      verdict: { kind: 'down', reason: 'starting' },
      healing: { restartsInWindow: 0, markedUnhealthy: false },
      audit: { checked: 0, violations: [], action: opts.auditAction, stopped: [] },
      attributes: { published: {} },
      network: deps.network ? { rules: 0, missing: 0, repairs: 0 } : undefined,
      lastErrors: [],
    };
  }

  get snapshot(): Readonly<WatchSnapshot> {
    return this.snap;
  }

  /** Supervise and watch until `signal` aborts. Call after bootstrap verified the sandbox. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, supervisor, notify, log } = this.deps;
    const now = clock.now();
    // Lifecycle after introspect: its first round should know whether the agent registered.
    for (const t of ['introspect', 'drift', 'audit', 'heartbeat'] as const) this.due.set(t, now);
    if (this.deps.lifecycle) this.due.set('lifecycle', now);
    if (this.opts.watchdogMs) this.due.set('watchdog', now);
    const supervising = supervisor.run(signal, (ev) => this.push(ev));
    await this.notify({ READY: '1', STATUS: 'bootstrap verified; watching' });
    log.info({ intervals: { introspectMs: this.opts.introspectMs, driftMs: this.opts.driftMs, auditMs: this.opts.auditMs }, budget: this.opts.budget }, 'watching');
    try {
      while (!signal.aborted) {
        await this.drainInbox();
        for (const [task, at] of [...this.due.entries()].sort((a, b) => a[1] - b[1])) {
          if (signal.aborted || at > clock.now()) continue;
          this.due.delete(task);
          await this.runTask(task, signal);
        }
        await this.publish();
        await this.idle(signal);
      }
    } finally {
      await supervising;
      await notify.notify({ STOPPING: '1' }).catch(() => undefined);
    }
  }

  private push(ev: ContainerEvent | { action: 'docker-back' }): void {
    this.inbox.push(ev);
    this.wake?.();
  }

  /** Sleep until the next task is due, an event arrives, or we are stopped. */
  private async idle(signal: AbortSignal): Promise<void> {
    if (this.inbox.length > 0 || signal.aborted) return;
    const next = Math.min(...this.due.values());
    const ms = Math.min(60_000, Math.max(0, next - this.deps.clock.now()));
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

  private async drainInbox(): Promise<void> {
    while (this.inbox.length > 0) {
      const ev = this.inbox.shift()!;
      if (ev.action === 'docker-back') {
        // dockerd restarted: settings may have changed with it; check everything soon.
        this.soon('drift', 0);
        this.soon('audit', 0);
        this.soon('introspect', 0);
        continue;
      }
      const e = ev as ContainerEvent;
      if (e.name === AGENT_NAME) {
        if (e.action.startsWith('health_status')) this.soon('introspect', 0);
        if (e.action === 'start' || e.action === 'die') this.soon('introspect', 1_000);
      } else if (e.action === 'start') {
        this.soon('audit', 500); // a new container: audit it now, not at the next round
      }
    }
  }

  /** Bring a task forward (never later than already planned). */
  private soon(task: Task, ms: number): void {
    const at = this.deps.clock.now() + ms;
    const cur = this.due.get(task);
    if (cur === undefined || at < cur) this.due.set(task, at);
  }

  private after(task: Task, ms: number): void {
    this.due.set(task, this.deps.clock.now() + ms);
  }

  private async runTask(task: Task, signal: AbortSignal): Promise<void> {
    try {
      switch (task) {
        case 'introspect':
          await this.introspect();
          break;
        case 'ecs':
          await this.pollEcs(signal);
          break;
        case 'drift':
          await this.checkDrift();
          break;
        case 'audit':
          await this.audit();
          break;
        case 'lifecycle':
          await this.lifecycle(signal);
          break;
        case 'watchdog':
          await this.feedWatchdog();
          break;
        case 'heartbeat':
          break; // only wakes the loop, so publish() rewrites watch.json for status
      }
    } catch (err) {
      if (!signal.aborted) this.recordError(task, err);
    } finally {
      if (!this.due.has(task)) this.reschedule(task);
    }
  }

  private reschedule(task: Task): void {
    const o = this.opts;
    switch (task) {
      case 'introspect':
        return this.after(task, o.introspectMs);
      case 'drift':
        return this.after(task, o.driftMs);
      case 'audit':
        return this.after(task, o.auditMs);
      case 'lifecycle':
        return this.after(task, this.deps.lifecycle?.pollMs ?? 5_000);
      case 'watchdog':
        return this.after(task, o.watchdogMs ?? 60_000);
      case 'heartbeat':
        return this.after(task, o.heartbeatMs);
      case 'ecs':
        // Only once registered; the introspect task schedules the first poll.
        if (this.obs.metadata) this.after(task, nextPollMs(o.budget, { wrong: this.ecsWrong() || this.lifecycleUrgent, throttledStreak: this.throttledStreak }, this.random));
        return;
    }
  }

  // --- monitors -------------------------------------------------------------------------------

  private async introspect(): Promise<void> {
    const c = await this.deps.docker.inspectContainer(AGENT_NAME);
    this.obs.agent = c ? { running: c.running, health: c.health } : undefined;
    const sup = this.deps.supervisor.snapshot;
    Object.assign(this.snap.agent, {
      id: c?.id,
      runtime: c?.runtime,
      state: c?.status,
      running: c?.running ?? false,
      health: c?.health,
      held: sup.held,
      stopped: sup.stopped,
      lastExit: sup.lastExit && { code: sup.lastExit.code, decision: sup.lastExit.decision, at: sup.lastExit.at },
    });
    this.deps.metrics.agentUp.set(c?.running ? 1 : 0);

    let meta: AgentMetadata | undefined;
    try {
      meta = c?.running ? await this.deps.introspection() : undefined;
    } catch (err) {
      this.recordError('introspection', err);
      meta = this.obs.metadata; // a bad answer is not "unregistered": keep what we knew
    }
    const before = this.obs.metadata?.containerInstanceArn;
    if (meta && c && meta.containerInstanceArn !== before && this.deps.introspectionOwner) {
      // A new registration: believe it only from the agent container itself.
      const problem = await this.deps.introspectionOwner(c.pid);
      if (problem) {
        if (problem !== this.listenerProblem) {
          this.deps.log.error({ claimedArn: meta.containerInstanceArn, problem }, 'the introspection answer is not the agent’s: ignored (no attributes, drain or lifecycle action for it)');
          this.recordError('introspection', new EcsGvisorError('HTTP_FAILED', `The introspection answer is not the agent's: ${problem}.`));
        }
        this.listenerProblem = problem;
        meta = undefined;
      } else {
        this.listenerProblem = undefined;
      }
    }
    this.obs.metadata = meta;
    const r = this.snap.registration;
    if (meta && meta.containerInstanceArn !== before) {
      this.deps.log.info({ cluster: meta.cluster, containerInstanceArn: meta.containerInstanceArn, agentVersion: meta.version }, 'the agent registered');
      Object.assign(r, {
        cluster: meta.cluster,
        containerInstanceArn: meta.containerInstanceArn,
        identity: undefined,
        ec2InstanceId: undefined,
        agentVersion: meta.version,
        registeredAt: iso(this.deps.clock.now()),
      });
      this.obs.ecs = undefined;
      this.snap.attributes = { published: {} };
      this.after('ecs', firstPollMs(this.opts.budget, this.random));
    }
    await this.heal();
  }

  private region(): string {
    return regionOf(this.obs.metadata?.containerInstanceArn ?? '', this.opts.region);
  }

  private ecsWrong(): boolean {
    const e = this.obs.ecs;
    return classify(this.obs).kind !== 'healthy' || e === undefined || e === 'missing' || e.status !== 'ACTIVE' || !e.agentConnected;
  }

  private async pollEcs(signal: AbortSignal): Promise<void> {
    const meta = this.obs.metadata;
    if (!meta) return;
    const region = this.region();
    const r = this.snap.registration;
    let view: ContainerInstanceView | undefined;
    try {
      view = await this.deps.ecs.call(region, 'DescribeContainerInstances', (ecs) => ecs.describeContainerInstance(meta.cluster, meta.containerInstanceArn), signal);
      this.throttledStreak = 0;
      r.lastCall = { outcome: 'ok', at: iso(this.deps.clock.now()) };
    } catch (err) {
      const outcome = outcomeOf(err) ?? 'error';
      if (outcome === 'throttled') this.throttledStreak++;
      r.lastCall = { outcome, at: iso(this.deps.clock.now()) };
      throw err;
    } finally {
      r.callsLastHour = this.deps.ecs.callsLastHour();
    }
    // An ARN that ECS says is another EC2 instance is not our registration, whatever introspection said.
    const mine = view ? await this.confirmIdentity(meta.containerInstanceArn, view) : false;
    r.identity = view ? (mine ? 'confirmed' : 'mismatch') : undefined;
    r.ec2InstanceId = view?.ec2InstanceId;
    this.obs.ecs = view && mine ? view : 'missing';
    this.ecsAt = this.deps.clock.now();
    if (this.lifecycleUrgent) this.soon('lifecycle', 0); // a launch gate or a drain waits on this answer
    Object.assign(r, {
      status: view?.status,
      agentConnected: view?.agentConnected,
      healthStatus: view?.healthStatus,
      runningTasksCount: view?.runningTasksCount,
      missing: view ? undefined : true,
      checkedAt: iso(this.deps.clock.now()),
    });
    this.deps.metrics.agentConnected.set(view?.agentConnected && mine ? 1 : 0);
    if (view && mine) await this.syncAttributes(view.attributes, signal);
    await this.heal();
  }

  /** Whether ECS says `arn` is this EC2 instance; a mismatch is logged once, with both IDs. */
  private async confirmIdentity(arn: string, view: ContainerInstanceView): Promise<boolean> {
    const own = await this.instanceId();
    const ok = view.ec2InstanceId === own;
    if (!ok && !(this.identity?.arn === arn && !this.identity.ok)) {
      this.deps.log.error(
        { containerInstanceArn: arn, ecsSaysEc2Instance: view.ec2InstanceId ?? '(none)', thisEc2Instance: own },
        'ECS says the container instance introspection named is another EC2 instance: no attributes, drain or lifecycle action for it',
      );
      this.recordError('ecs', new EcsGvisorError('AWS_API', `ECS says ${arn} is EC2 instance ${view.ec2InstanceId ?? '(none)'}, not this instance ${own}.`));
    }
    this.identity = { arn, ok };
    return ok;
  }

  /** This EC2 instance's ID, asked of IMDS once. */
  private async instanceId(): Promise<string> {
    this.ownInstanceId ??= instanceIdOf(await this.deps.imds.get(INSTANCE_ID_PATH)).trim();
    return this.ownInstanceId;
  }

  /** The registration introspection reported, once ECS has confirmed it is this instance's. */
  private confirmedMetadata(): AgentMetadata | undefined {
    const m = this.obs.metadata;
    return m && this.identity?.ok && this.identity.arn === m.containerInstanceArn ? m : undefined;
  }

  /** Make the instance's attributes say what we know about the sandbox (no call when they already do). */
  private async syncAttributes(current: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const meta = this.confirmedMetadata();
    if (!this.opts.publishAttributes || !meta) return;
    const want = desiredAttributes(this.verified.ok, this.verified.version, this.snap.audit.violations.length, this.verified.networks);
    const plan = planAttributes(want, current);
    if (isEmptyPlan(plan)) {
      this.snap.attributes.published = want;
      return;
    }
    const region = this.region();
    if (Object.keys(plan.put).length) {
      await this.deps.ecs.call(region, 'PutAttributes', (ecs) => ecs.putAttributes(meta.cluster, meta.containerInstanceArn, plan.put), signal);
    }
    if (plan.remove.length) {
      await this.deps.ecs.call(region, 'DeleteAttributes', (ecs) => ecs.deleteAttributes(meta.cluster, meta.containerInstanceArn, plan.remove), signal);
    }
    this.snap.attributes = { published: want, at: iso(this.deps.clock.now()) };
    this.deps.log.info({ attributes: want, removed: plan.remove }, 'container instance attributes published');
  }

  /** The verification changed: publish it now rather than at the next poll. */
  private async republish(): Promise<void> {
    if (!this.confirmedMetadata() || !this.opts.publishAttributes) return;
    const known = this.obs.ecs && this.obs.ecs !== 'missing' ? this.obs.ecs.attributes : {};
    // What we published last is what ECS holds unless someone changed it (the next poll repairs that).
    const current = { ...known, ...this.snap.attributes.published };
    try {
      await this.syncAttributes(current);
      if (this.obs.ecs && this.obs.ecs !== 'missing') this.obs.ecs = { ...this.obs.ecs, attributes: { ...this.obs.ecs.attributes, ...this.snap.attributes.published } };
    } catch (err) {
      this.recordError('attributes', err);
      this.soon('ecs', this.opts.budget.alertPollMs);
    }
  }

  private async heal(): Promise<void> {
    const verdict = classify(this.obs);
    this.snap.verdict = verdict;
    const now = this.deps.clock.now();
    const action = this.ladder.observe(now, verdict);
    const st = this.ladder.state;
    this.snap.healing = {
      wrongSince: st.wrongSince === undefined ? undefined : iso(st.wrongSince),
      restartsInWindow: st.restarts.length,
      markedUnhealthy: st.markedUnhealthy,
    };
    const log = this.deps.log;
    switch (action.kind) {
      case 'none':
        return;
      case 'restart-agent':
        log.warn({ reason: action.reason, attempt: action.attempt, maxRestarts: this.opts.healing.maxRestarts }, 'the agent is unhealthy: restarting it');
        await this.deps.supervisor.restartAgent(action.reason);
        this.obs.metadata = undefined; // it registers again
        this.soon('introspect', 5_000);
        return;
      case 'mark-unhealthy': {
        log.error({ reason: action.reason }, 'the agent cannot be healed here: marking the instance Unhealthy in Auto Scaling so it is replaced');
        const instanceId = await this.instanceId();
        await this.deps.autoScaling(this.region()).setInstanceHealth(instanceId, 'Unhealthy', true);
        log.error({ instanceId }, 'instance marked Unhealthy in Auto Scaling');
        return;
      }
      case 'exhausted':
        log.error({ reason: action.reason }, 'the agent is still unhealthy after the allowed restarts; ECS_GVISOR_SET_INSTANCE_HEALTH is off, so an operator must look');
        return;
    }
  }

  private async lifecycle(signal: AbortSignal): Promise<void> {
    const lc = this.deps.lifecycle!;
    // Hooks and drains act on the ECS record only once ECS has said it is this instance's.
    const meta = this.confirmedMetadata();
    const r = await lc.tick('watching', { verified: this.verified.ok, metadata: meta, ecs: meta ? this.obs.ecs : undefined, ecsAt: this.ecsAt }, signal);
    const { supervisor } = this.deps;
    const heldForLifecycle = supervisor.snapshot.holds?.lifecycle !== undefined;
    if (r.agent?.want === 'hold' && !heldForLifecycle) await supervisor.hold(r.agent.reason, 'lifecycle');
    if (r.agent?.want === 'run' && heldForLifecycle) {
      await supervisor.release('lifecycle');
      this.soon('introspect', 1_000);
    }
    if (r.urgentEcs && !this.lifecycleUrgent && this.obs.metadata) this.soon('ecs', this.opts.budget.alertPollMs);
    this.lifecycleUrgent = r.urgentEcs;
  }

  private async checkDrift(): Promise<void> {
    const { log, supervisor } = this.deps;
    if (!(await this.drift()).any) return;
    // What we see may be an operator's bootstrap or rollback halfway through: never repair beside it.
    const release = this.deps.lock ? await this.deps.lock.tryAcquire('drift repair') : async () => {};
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

  /** What differs from what we applied: the runtime (daemon.json, entry point, Docker's default, runsc) or the agent. */
  private async drift() {
    const { runtime, supervisor, agent } = this.deps;
    const held = supervisor.snapshot.holds?.sandbox;
    const plan = await runtime.plan();
    const runscChanged = plan.runsc.problem !== undefined || (this.verified.version !== undefined && plan.runsc.version !== this.verified.version);
    const drifted = plan.daemonJson.changed || plan.entry.changed || !plan.live.converged || runscChanged;
    const agentPlan = drifted || held || !this.verified.ok || supervisor.snapshot.stopped ? undefined : await agent.plan();
    const agentDrift = agentPlan?.container.action === 'recreate' || agentPlan?.container.action === 'replace-foreign';
    const net = await this.deps.network?.plan();
    const missing = net ? net.rules.filter((r) => !r.present) : [];
    if (net && this.snap.network) Object.assign(this.snap.network, { rules: net.rules.length, missing: missing.length, checkedAt: iso(this.deps.clock.now()) });
    const netDrift = net !== undefined && (net.routeLocalnet.change || missing.length > 0);
    return { plan, drifted, agentPlan: agentDrift ? agentPlan : undefined, netDrift, missing, any: drifted || held !== undefined || agentDrift || netDrift };
  }

  private async repair({ plan, drifted, agentPlan, netDrift, missing }: Awaited<ReturnType<WatchLoop['drift']>>, held: string | undefined): Promise<void> {
    const { runtime, log, supervisor, agent, metrics } = this.deps;
    if (netDrift && this.deps.network && this.snap.network) {
      // Someone flushed a chain (iptables -F) or reset route_localnet: bridge tasks would reach IMDS again.
      log.warn({ missing: missing.map((r) => `${r.family === 6 ? 'ip6tables' : 'iptables'} -t ${r.table} ${r.chain}: ${r.why}`) }, 'network drift: our rules are gone; adding them again');
      const r = await this.deps.network.apply();
      metrics.repairs.inc({ kind: 'network' });
      Object.assign(this.snap.network, { missing: 0, repairs: this.snap.network.repairs + 1, repairedAt: iso(this.deps.clock.now()) });
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
        this.lapse(
          `drift: ${plan.daemonJson.changed ? `${plan.daemonJson.file} changed` : plan.entry.changed ? `the runtime entry point ${plan.entry.path} changed` : !plan.live.converged ? `Docker’s default runtime is "${plan.live.defaultRuntime}"` : 'runsc changed'}`,
        );
        await this.republish();
      }
      try {
        const state = await runtime.apply();
        this.verified = { ok: true, at: Date.parse(state.verifiedAt!), version: state.runscVersion, networks: state.evidence?.networks };
        if (drifted) metrics.repairs.inc({ kind: 'runtime' });
        log.warn({ verifiedAt: state.verifiedAt }, 'runtime repaired and the sandbox proven again');
        await this.republish();
        if (held) await supervisor.release();
      } catch (err) {
        this.lapse(`not proven: ${messageOf(err)}`);
        await supervisor.hold(`the sandbox is not proven: ${messageOf(err)}`);
        throw err;
      }
      return;
    }
    if (!agentPlan) return;
    log.warn({ action: agentPlan.container.action, diff: agentPlan.container.diff || undefined }, 'agent drift: the container no longer matches its spec; recreating it');
    await supervisor.exclusive(() => agent.apply());
    metrics.repairs.inc({ kind: 'agent' });
  }

  private lapse(reason: string): void {
    this.verified = { ...this.verified, ok: false, lapsed: reason };
  }

  private async audit(): Promise<void> {
    const { docker, host, log, metrics } = this.deps;
    const running = await docker.listContainers({ all: false });
    const cmdlines = new Map<number, readonly string[] | undefined>();
    await Promise.all(running.filter((c) => c.pid > 0).map(async (c) => cmdlines.set(c.pid, await host.cmdline(c.pid).catch(() => undefined))));
    const [probes, agentId] = await Promise.all([probeNames(this.deps.state), ourAgentId(this.deps.state)]);
    const ours = new Set([...running.filter((c) => probes.has(c.name)).map((c) => c.id), ...(agentId ? [agentId] : [])]);
    const result = audit(running, cmdlines, this.opts.runtimeName, ours);
    const known = new Set(this.snap.audit.violations.map((v) => v.id));
    for (const v of result.violations.filter((x) => !known.has(x.id))) {
      log.error({ container: v.name, id: v.id.slice(0, 12), runtime: v.runtime, reason: v.reason, action: this.opts.auditAction }, 'sandbox audit: a container runs outside gVisor');
    }
    const stopped: string[] = [];
    if (this.opts.auditAction === 'stop') {
      for (const v of result.violations) {
        await docker.stopContainer(v.id, 10);
        stopped.push(v.id);
        log.warn({ container: v.name, id: v.id.slice(0, 12) }, 'sandbox audit: stopped (ECS_GVISOR_AUDIT_ACTION=stop)');
      }
    }
    const wasViolated = this.snap.audit.violations.length > 0;
    this.snap.audit = {
      checkedAt: iso(this.deps.clock.now()),
      checked: result.checked,
      violations: result.violations,
      action: this.opts.auditAction,
      stopped,
      networks: result.networks,
    };
    metrics.auditViolations.set(result.violations.length);
    metrics.auditedContainers.set(result.checked);
    // The scheduler must know at once: no untrusted task is placed here while a violation stands.
    if (wasViolated !== result.violations.length > 0) await this.republish();
  }

  // --- output ---------------------------------------------------------------------------------

  private recordError(component: string, err: unknown): void {
    const code = err instanceof EcsGvisorError ? err.code : 'INTERNAL';
    this.deps.log.warn({ component, code, err: messageOf(err) }, `${component} failed`);
    this.snap.lastErrors = [{ at: iso(this.deps.clock.now()), component, code, message: messageOf(err) }, ...this.snap.lastErrors].slice(0, 10);
  }

  private summarize(): void {
    const s = this.snap;
    const v = this.verified;
    s.runtime = { verified: v.ok, verifiedAt: v.at === undefined ? undefined : iso(v.at), runscVersion: v.version, lapsed: v.ok ? undefined : v.lapsed };
    this.deps.metrics.sandboxVerified.set(v.ok ? 1 : 0);
    this.deps.metrics.markVerified(v.ok ? v.at : undefined);
    const r = s.registration;
    const parts = [
      s.runtime.verified ? `sandbox verified (runsc ${s.runtime.runscVersion ?? '?'})` : `sandbox NOT verified${s.runtime.lapsed ? ` (${s.runtime.lapsed})` : ''}`,
      s.agent.held ? 'agent held stopped' : s.agent.running ? 'agent running' : `agent ${s.agent.stopped ?? s.agent.state ?? 'absent'}`,
      r.containerInstanceArn
        ? `registered in ${r.cluster}${r.status ? `, ${r.status}, ${r.agentConnected ? 'connected' : 'disconnected'}` : ''}`
        : 'not registered',
      `audit ${s.audit.violations.length} violation(s) in ${s.audit.checked}`,
    ];
    const lc = this.deps.lifecycle?.record;
    if (lc?.drain) parts.push(`${lc.drain.reason} drain ${lc.drain.phase}${lc.drain.runningTasks !== undefined ? ` (${lc.drain.runningTasks} task(s))` : ''}`);
    else if (lc?.launch) parts.push(`launch ${lc.launch.phase === 'completed' ? lc.launch.result : lc.launch.phase}${lc.targetState ? ` (${lc.targetState})` : ''}`);
    s.summary = parts.join('; ');
    s.healthy = s.runtime.verified && s.verdict.kind === 'healthy' && s.audit.violations.length === 0;
  }

  private async publish(): Promise<void> {
    const now = this.deps.clock.now();
    const restarts = this.deps.supervisor.snapshot.restarts;
    if (restarts > this.restartsCounted) this.deps.metrics.restarts.inc(restarts - this.restartsCounted);
    this.restartsCounted = restarts;
    this.snap.agent.restarts = restarts;
    this.summarize();
    const body = JSON.stringify({ ...this.snap, updatedAt: undefined });
    if (!this.lastWritten || this.lastWritten.json !== body || now - this.lastWritten.at >= this.opts.heartbeatMs) {
      this.snap.updatedAt = iso(now);
      try {
        await this.deps.state.write(WATCH_STATE, this.snap);
        this.lastWritten = { json: body, at: now };
      } catch (err) {
        this.deps.log.warn({ err: messageOf(err) }, 'cannot write the watch state for status');
      }
    }
    if (this.snap.summary !== this.lastStatus) {
      this.lastStatus = this.snap.summary;
      await this.notify({ STATUS: this.snap.summary });
    }
  }

  /**
   * Ping systemd's watchdog while both loops make progress. The watch loop pings from its own turn; the
   * supervisor runs beside it, so a change to the agent stuck far past every Docker deadline withholds
   * the ping, and systemd restarts ecs-gvisor (the agent container keeps running meanwhile).
   */
  private async feedWatchdog(): Promise<void> {
    const busy = this.deps.supervisor.busyMs();
    const limit = this.opts.supervisorStallMs ?? SUPERVISOR_STALL_MS;
    if (busy <= limit) {
      await this.notify({ WATCHDOG: '1' });
      return;
    }
    this.deps.log.error({ busyMs: busy, limitMs: limit }, 'the supervisor is stuck in one change to the agent: no longer pinging systemd’s watchdog, so systemd restarts ecs-gvisor');
  }

  private async notify(fields: Record<string, string>): Promise<void> {
    try {
      await this.deps.notify.notify(fields);
    } catch (err) {
      this.deps.log.warn({ err: messageOf(err) }, 'systemd notification failed');
    }
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
