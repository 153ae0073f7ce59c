/**
 * What the watch knows, shared by its monitors: their observations, the proof's one record, the
 * registration ECS has confirmed, and the snapshot written to watch.json for `status`.
 */

import type { AcsLocal } from '../agent/acs-evidence.js';
import { regionOf } from '../aws/aws-caller.js';
import type { AcsConfirmation } from '../aws/budget.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AgentMetadata, Clock } from '../ports.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import type { SandboxEvidence } from '../runtime/sandbox-proof.js';
import type { ContainerNetwork, Violation } from './audit.js';
import type { SandboxEnd, TaskEnforcement } from './enforcement.js';
import type { Observations, Verdict } from './health.js';
import type { WatchMetrics } from './metrics.js';
import type { Facts, Observation } from './reactor.js';

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
    /**
     * The agent's ACS connection by the instance's own evidence (its log, the kernel), since when, and
     * why; `unknown` while the log says nothing of it (ECS is then polled as the budget's steady rate).
     */
    acs?: { state: AcsLocal; since: string; why: string };
    checkedAt?: string;
    lastCall?: { outcome: string; at: string };
    callsLastHour: number;
  };
  verdict: Verdict;
  healing: { wrongSince?: string; restartsInWindow: number; markedUnhealthy: boolean };
  audit: {
    checkedAt?: string;
    checked: number;
    violations: Violation[];
    action: 'report' | 'stop';
    stopped: string[];
    networks?: ContainerNetwork[];
    /** Each sandboxed task: its cgroup, limits asked and enforced, the task's cgroup, hygiene. */
    tasks?: TaskEnforcement[];
    /** Task sandboxes a limit ended, the latest last (up to ENDS_KEPT). */
    ended?: SandboxEnd[];
  };
  /**
   * What ECS holds of ours as far as we know, when we last published; `stale` while it differs from
   * what we know (a flapping verdict's hold, ECS not taking it, the budget), since the first time.
   */
  attributes: { published: Record<string, string>; at?: string; stale?: { since: string; want: Record<string, string>; reason: string } };
  /** Our iptables rules and route_localnet, when `run` applied them: as last checked, and how often put back. */
  network?: { rules: number; missing: number; repairs: number; checkedAt?: string; repairedAt?: string };
  /** The latest first; `count`: the same error again in a row, said once. */
  lastErrors: Array<{ at: string; component: string; code: string; message: string; count?: number }>;
}

/** The proof as the watch holds it: status, metrics and attributes are derived from it. */
export interface Verification {
  ok: boolean;
  at?: number;
  version?: string;
  lapsed?: string;
  networks?: SandboxEvidence['networks'];
}

export class WatchState {
  obs: Observations = {};
  readonly snap: WatchSnapshot;
  verified: Verification;
  /** When obs.ecs was taken. */
  ecsAt?: number;
  /** What ECS said of the registered ARN's EC2 instance. */
  identity?: { arn: string; ok: boolean };
  /** The lifecycle awaits ECS's answer (a launch gate, a drain): ECS is polled at the alert interval. */
  ecsUrgent = false;
  /** The local evidence of the agent's ACS connection, and ECS's answers since it changed. */
  acs?: AcsConfirmation;

  constructor(
    private readonly deps: { clock: Clock; log: Logger; metrics: WatchMetrics },
    private readonly opts: { auditAction: 'report' | 'stop'; network: boolean; region?: string; acsGraceMs: number },
    runtime: RuntimeState | undefined,
  ) {
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
      network: opts.network ? { rules: 0, missing: 0, repairs: 0 } : undefined,
      lastErrors: [],
    };
  }

  /** The clock's time, in ms and as ISO text. */
  ms(): number {
    return this.deps.clock.now();
  }

  now(): string {
    return iso(this.ms());
  }

  /** The registration introspection reported, once ECS has confirmed it is this instance's. */
  confirmedMetadata(): AgentMetadata | undefined {
    const m = this.obs.metadata;
    return m && this.identity?.ok && this.identity.arn === m.containerInstanceArn ? m : undefined;
  }

  /**
   * The region of AWS calls about the registration: the configured one, else its ARN's (introspection's,
   * or while the agent restarts and introspection has not answered yet, the one last recorded).
   */
  region(): string {
    return regionOf(this.obs.metadata?.containerInstanceArn ?? this.snap.registration.containerInstanceArn ?? '', this.opts.region);
  }

  /**
   * What a monitor observed (or a repair did), written into what the watch knows: the snapshot `status`
   * reads, the observations the verdict is drawn from, the metrics. The one writer of them all.
   */
  record(o: Observation): void {
    switch (o.kind) {
      case 'agent':
        this.recordAgent(o);
        return;
      case 'ecs':
        this.recordEcs(o);
        return;
      case 'acs':
        this.recordAcs(o);
        return;
      case 'audit':
        this.recordAudit(o);
        return;
      case 'drift': {
        const r = o.drift.rules;
        if (r && this.snap.network) Object.assign(this.snap.network, { rules: r.total, missing: r.missing.length, checkedAt: this.now() });
        return;
      }
      case 'repaired': {
        if (o.network && this.snap.network)
          Object.assign(this.snap.network, { missing: 0, repairs: this.snap.network.repairs + 1, repairedAt: this.now() });
        const rt = o.runtime;
        if (rt?.ok)
          this.verified = {
            ok: true,
            at: Date.parse(rt.state.verifiedAt!),
            version: rt.state.runscVersion,
            networks: rt.state.evidence?.networks,
          };
        return;
      }
      case 'lifecycle': {
        // We set DRAINING ourselves: say so now rather than ACTIVE until the next poll.
        const view = this.obs.ecs;
        if (o.drainingByUs && view && view !== 'missing' && view.status === 'ACTIVE') {
          this.obs.ecs = { ...view, status: 'DRAINING' };
          this.snap.registration.status = 'DRAINING';
        }
        return;
      }
      default:
        return;
    }
  }

  private recordAgent(o: Extract<Observation, { kind: 'agent' }>): void {
    const c = o.container;
    this.obs.agent = c ? { running: c.running, health: c.health, pid: c.pid, startedAt: c.startedAt } : undefined;
    Object.assign(this.snap.agent, {
      id: c?.id,
      runtime: c?.runtime,
      state: c?.status,
      running: c?.running ?? false,
      health: c?.health,
      ...o.supervisor,
    });
    this.deps.metrics.agentUp.set(c?.running ? 1 : 0);
    const meta = o.metadata;
    this.obs.metadata = meta;
    if (!meta || !o.registered) return;
    this.deps.log.info(
      { cluster: meta.cluster, containerInstanceArn: meta.containerInstanceArn, agentVersion: meta.version },
      'the agent registered',
    );
    Object.assign(this.snap.registration, {
      cluster: meta.cluster,
      containerInstanceArn: meta.containerInstanceArn,
      identity: undefined,
      ec2InstanceId: undefined,
      agentVersion: meta.version,
      registeredAt: this.now(),
    });
    this.obs.ecs = undefined;
    this.snap.attributes = { published: {} };
  }

  private recordEcs(o: Extract<Observation, { kind: 'ecs' }>): void {
    const r = this.snap.registration;
    r.lastCall = o.lastCall;
    r.callsLastHour = o.callsLastHour;
    if (!o.answer) return;
    const { view, thisInstance } = o.answer;
    // An ARN that ECS says is another EC2 instance is not our registration, whatever introspection said.
    const mine = view ? this.confirmIdentity(o.arn, view.ec2InstanceId, thisInstance) : false;
    r.identity = view ? (mine ? 'confirmed' : 'mismatch') : undefined;
    r.ec2InstanceId = view?.ec2InstanceId;
    this.obs.ecs = view && mine ? view : 'missing';
    this.ecsAt = this.ms();
    Object.assign(r, {
      status: view?.status,
      agentConnected: view?.agentConnected,
      healthStatus: view?.healthStatus,
      runningTasksCount: view?.runningTasksCount,
      missing: view ? undefined : true,
      checkedAt: this.now(),
    });
    this.deps.metrics.agentConnected.set(view?.agentConnected && mine ? 1 : 0);
    if (this.acs) this.acs = { ...this.acs, asks: this.acs.asks + 1, ecsConnected: view && mine ? view.agentConnected : undefined };
  }

  private recordAcs(o: Extract<Observation, { kind: 'acs' }>): void {
    const before = this.acs;
    if (before?.state !== o.state) {
      // An answer from within the grace period before the change counts as ECS asked about it (the
      // first poll of a registration, made as the restarted agent began to reconnect).
      const view = this.obs.ecs;
      const fresh = this.ecsAt !== undefined && o.since - this.ecsAt <= this.opts.acsGraceMs;
      this.acs = fresh
        ? { state: o.state, since: o.since, asks: 1, ecsConnected: view && view !== 'missing' ? view.agentConnected : undefined }
        : { state: o.state, since: o.since, asks: 0 };
      if (before) this.deps.log.info({ acs: o.state, why: o.why }, 'the agent’s ACS connection, as seen on this instance');
    }
    this.snap.registration.acs = { state: o.state, since: iso(o.since), why: o.why };
    // Connected again since ECS last said otherwise: believed without asking (it only stops healing).
    const view = this.obs.ecs;
    if (o.state === 'connected' && view && view !== 'missing' && !view.agentConnected && (this.ecsAt ?? 0) <= o.since) {
      this.obs.ecs = { ...view, agentConnected: true };
      this.snap.registration.agentConnected = true;
      this.deps.metrics.agentConnected.set(1);
    }
  }

  /** Whether ECS says `arn` is this EC2 instance; a mismatch is logged once, with both IDs. */
  private confirmIdentity(arn: string, ecsSays: string | undefined, own: string | undefined): boolean {
    const ok = ecsSays !== undefined && ecsSays === own;
    if (!ok && !(this.identity?.arn === arn && !this.identity.ok)) {
      this.deps.log.error(
        { containerInstanceArn: arn, ecsSaysEc2Instance: ecsSays ?? '(none)', thisEc2Instance: own },
        'ECS says the container instance introspection named is another EC2 instance: no attributes, drain or lifecycle action for it',
      );
      this.recordError(
        'ecs',
        new EcsGvisorError('AWS_API', `ECS says ${arn} is EC2 instance ${ecsSays ?? '(none)'}, not this instance ${own}.`),
      );
    }
    this.identity = { arn, ok };
    return ok;
  }

  private recordAudit(o: Extract<Observation, { kind: 'audit' }>): void {
    const a = o.audit;
    const known = new Set(this.snap.audit.violations.map((v) => `${v.id} ${v.reason}`));
    for (const v of a.violations.filter((x) => !known.has(`${x.id} ${x.reason}`))) {
      const what = v.reason.startsWith('not enforced')
        ? 'sandbox audit: a task’s limits are not enforced'
        : v.reason.startsWith('hygiene')
          ? 'sandbox audit: a task breaks the hygiene policy'
          : 'sandbox audit: a container runs outside gVisor';
      this.deps.log.error(
        { container: v.name, id: v.id.slice(0, 12), runtime: v.runtime, reason: v.reason, action: this.opts.auditAction },
        what,
      );
    }
    const ended = new Set((this.snap.audit.ended ?? []).map((e) => e.id));
    for (const e of a.ended ?? []) if (!ended.has(e.id)) this.deps.metrics.limitKills.inc({ limit: e.limit });
    this.snap.audit = { ...a, action: this.opts.auditAction, stopped: [] };
    const m = this.deps.metrics;
    m.auditViolations.set(a.violations.length);
    m.auditedContainers.set(a.checked);
    m.tightPidsLimits.set((a.tasks ?? []).filter((t) => t.pids?.tight).length);
  }

  /** What the reactor needs of the watch's knowledge. */
  facts(alertPollMs: number, acsGraceMs: number): Facts {
    return {
      health: this.obs,
      confirmed: this.confirmedMetadata() !== undefined,
      ecsUrgent: this.ecsUrgent,
      alertPollMs,
      auditAction: this.opts.auditAction,
      acs: this.acs,
      acsGraceMs,
    };
  }

  lapse(reason: string): void {
    this.verified = { ...this.verified, ok: false, lapsed: reason };
  }

  /**
   * An error of a monitor's round, for status and the log. The same error again (a configuration that
   * stays wrong, checked every round) is said once: its entry's time and count move, the log stays quiet.
   * (Secrets Docker or AWS quote back are masked where the text leaves: the log, watch.json.)
   */
  recordError(component: string, err: unknown): void {
    const code = err instanceof EcsGvisorError ? err.code : 'INTERNAL';
    const message = messageOf(err);
    const i = this.snap.lastErrors.findIndex((e) => e.component === component);
    const last = i < 0 ? undefined : this.snap.lastErrors[i];
    if (last?.code === code && last.message === message) {
      this.snap.lastErrors.splice(i, 1);
      this.snap.lastErrors.unshift({ ...last, at: this.now(), count: (last.count ?? 1) + 1 });
      return;
    }
    this.deps.log.warn({ component, code, err: message }, `${component} failed`);
    this.snap.lastErrors = [{ at: this.now(), component, code, message }, ...this.snap.lastErrors].slice(0, 10);
  }
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
