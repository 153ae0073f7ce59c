/**
 * What the watch knows, shared by its monitors: their observations, the proof's one record, the
 * registration ECS has confirmed, and the snapshot written to watch.json for `status`.
 */
import { regionOf } from '../aws/aws-caller.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AgentMetadata, Clock } from '../ports.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import type { SandboxEvidence } from '../runtime/sandbox-proof.js';
import type { ContainerNetwork, Violation } from './audit.js';
import type { SandboxEnd, TaskEnforcement } from './enforcement.js';
import type { Observations, Verdict } from './health.js';

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

  constructor(
    private readonly deps: { clock: Clock; log: Logger },
    private readonly opts: { auditAction: 'report' | 'stop'; network: boolean; region?: string },
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
