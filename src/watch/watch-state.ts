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
import type { TaskEnforcement } from './enforcement.js';
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
  };
  attributes: { published: Record<string, string>; at?: string };
  /** Our iptables rules and route_localnet, when `run` applied them: as last checked, and how often put back. */
  network?: { rules: number; missing: number; repairs: number; checkedAt?: string; repairedAt?: string };
  lastErrors: Array<{ at: string; component: string; code: string; message: string }>;
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

  /** The region of AWS calls about the registration: the configured one, else its ARN's. */
  region(): string {
    return regionOf(this.obs.metadata?.containerInstanceArn ?? '', this.opts.region);
  }

  lapse(reason: string): void {
    this.verified = { ...this.verified, ok: false, lapsed: reason };
  }

  recordError(component: string, err: unknown): void {
    const code = err instanceof EcsGvisorError ? err.code : 'INTERNAL';
    this.deps.log.warn({ component, code, err: messageOf(err) }, `${component} failed`);
    this.snap.lastErrors = [{ at: this.now(), component, code, message: messageOf(err) }, ...this.snap.lastErrors].slice(0, 10);
  }
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
