/**
 * Auto Scaling lifecycle from the instance: the launch gate (CONTINUE once the sandbox is proven and the
 * agent registered and connected, ABANDON when bootstrap fails closed or the wait runs out), warm pools
 * (no agent while `Warmed:*`), and termination and spot notices (drain, wait for the tasks, complete).
 * Everything comes from IMDSv2 and the instance's own calls: no Lambda. Decisions are lifecycle-plan.ts's;
 * this runner asks IMDS, applies effects through the Auto Scaling and ECS ports, and keeps the record in
 * `lifecycle.json` for `status` and for a restarted `run`.
 */

import { type AwsCaller, regionOf } from '../aws/aws-caller.js';
import { GROUP_TAG_PATH, groupTagOf, instanceRegion, SPOT_ACTION_PATH, TARGET_STATE_PATH, targetStateOf } from '../aws/imds-values.js';
import { EcsGvisorError, ExitCode, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AgentMetadata, Clock, ContainerInstanceView, ImdsPort, LifecycleActionRef } from '../ports.js';
import { redact } from '../redact.js';
import { LIFECYCLE_STATE } from '../state-files.js';
import type { StateStore } from '../state-store.js';
import {
  afterEffect,
  awaitsEcs,
  type Effect,
  type EffectOutcome,
  type LifecyclePolicy,
  type LifecycleRecord,
  type LifecycleView,
  newLaunch,
  planLifecycle,
} from './lifecycle-plan.js';

export interface LifecycleDeps {
  imds: ImdsPort;
  /** Auto Scaling, EC2 and ECS calls, and this instance's ID. */
  aws: AwsCaller;
  clock: Clock;
  log: Logger;
  state: StateStore;
  /** A line for the instance's console, which EC2 keeps after the instance is gone. */
  console: (line: string) => Promise<boolean>;
}

export interface LifecycleOptions extends LifecyclePolicy {
  /** Region for Auto Scaling and EC2; default: IMDS placement/region. */
  region?: string;
  /** The Auto Scaling group; default: the instance's aws:autoscaling:groupName tag. */
  group?: string;
  pollMs: number;
}

/** What the watch knows, for one round. */
export interface WatchView {
  verified: boolean;
  /** The agent container runs (whatever introspection says). */
  agentRunning?: boolean;
  metadata?: AgentMetadata;
  ecs?: ContainerInstanceView | 'missing';
  /** When `ecs` was taken. */
  ecsAt?: number;
}

export interface TickResult {
  /** Keep the agent down (warm pool) or let it run. */
  agent?: { want: 'hold' | 'run'; reason: string };
  urgentEcs: boolean;
}

/** What abandonLaunch did: nothing pending, left pending (a failure that may pass), abandoned, or could not. */
export type LaunchAbandon = 'none' | 'kept' | 'abandoned' | 'failed';

/** A failure that may pass by itself (Docker or the network unavailable, the host lock held): systemd tries again. */
export function isTransient(err: unknown): boolean {
  return err instanceof EcsGvisorError && err.exitCode === ExitCode.unavailable;
}

interface Identity {
  instanceId: string;
  region: string;
  group?: string;
}

export class Lifecycle {
  private rec: LifecycleRecord = {};
  private identity?: Identity;
  private loaded = false;
  private lastSaved = '';

  constructor(
    private readonly deps: LifecycleDeps,
    private readonly opts: LifecycleOptions,
  ) {}

  get record(): Readonly<LifecycleRecord> {
    return this.rec;
  }

  get pollMs(): number {
    return this.opts.pollMs;
  }

  /** One round: ask IMDS, decide, act. IMDS failures throw (the caller records them and tries again). */
  async tick(stage: LifecycleView['stage'], w: WatchView, signal?: AbortSignal): Promise<TickResult> {
    const { imds, clock, log } = this.deps;
    const id = await this.identify();
    const [target, spotText] = await Promise.all([
      imds.get(TARGET_STATE_PATH),
      this.opts.spotDrain ? imds.get(SPOT_ACTION_PATH) : undefined,
    ]);
    const ecs = w.ecs === 'missing' ? 'missing' : w.ecs && { ...w.ecs, at: w.ecsAt ?? 0 };
    const plan = planLifecycle(
      this.rec,
      {
        now: clock.now(),
        stage,
        target: targetStateOf(target),
        spot: spotText ? parseSpotNotice(spotText) : undefined,
        verified: w.verified,
        registered: w.metadata !== undefined,
        agentRunning: w.agentRunning,
        ecs,
        inGroup: id.group !== undefined,
      },
      this.opts,
    );
    this.rec = plan.record;
    for (const n of plan.notes) log[n.level](n.fields ?? {}, n.msg);
    let agent: TickResult['agent'];
    for (const e of plan.effects) {
      if (e.kind === 'agent') {
        agent = e;
        continue;
      }
      const out = e.kind === 'drain' ? await this.drain(w.metadata, id.instanceId, signal) : await this.hookCall(id, e, signal);
      this.rec = afterEffect(this.rec, e, out, clock.now(), this.opts);
    }
    await this.save();
    return { agent, urgentEcs: stage === 'watching' && awaitsEcs(this.rec) };
  }

  /**
   * Bootstrap failed. Fail closed: ABANDON the pending launch action (the group replaces the instance)
   * unless the failure may pass (Docker or the network unavailable) and the launch timeout has not run
   * out; then systemd's restart tries again and the action keeps waiting.
   */
  async abandonLaunch(err: unknown): Promise<LaunchAbandon> {
    const { clock, log } = this.deps;
    if (!this.opts.launchHook) return 'none';
    let id: Identity;
    try {
      id = await this.identify();
    } catch (e) {
      log.error(
        { err: messageOf(e) },
        'bootstrap failed and the launch lifecycle action cannot be abandoned (instance identity unknown); the hook’s timeout decides',
      );
      return 'failed';
    }
    if (!id.group) return 'none';
    const now = clock.now();
    this.rec.launch ??= newLaunch(this.opts.launchHook, this.rec.targetState ?? 'unknown', now);
    const l = this.rec.launch;
    if (l.phase !== 'waiting') return 'none';
    if (isTransient(err) && now - Date.parse(l.since) < this.opts.launchTimeoutMs) {
      log.warn(
        { err: messageOf(err), waitedSeconds: Math.round((now - Date.parse(l.since)) / 1000) },
        'bootstrap failed; the launch lifecycle action stays pending while systemd tries again (abandoned after ECS_GVISOR_LAUNCH_TIMEOUT_SECONDS)',
      );
      await this.save();
      return 'kept';
    }
    const e: Effect = { kind: 'complete', role: 'launch', hook: l.hook, result: 'ABANDON', reason: `bootstrap failed: ${messageOf(err)}` };
    const out = await this.hookCall(id, e);
    this.rec = afterEffect(this.rec, e, out, clock.now(), this.opts);
    await this.save();
    return out.kind === 'ok' ? 'abandoned' : out.kind === 'not-pending' ? 'none' : 'failed';
  }

  /**
   * During bootstrap: heartbeat a pending launch action and learn the target state, so a long runsc
   * install or image pull does not let the action time out.
   */
  guardBootstrap(signal: AbortSignal): BootstrapGuard {
    const { clock, log } = this.deps;
    const stop = new AbortController();
    const end = () => stop.abort();
    signal.addEventListener('abort', end, { once: true });
    let lastProblem = '';
    const loop = (async () => {
      while (!stop.signal.aborted) {
        try {
          await this.tick('bootstrap', { verified: false }, stop.signal);
        } catch (err) {
          if (messageOf(err) !== lastProblem)
            log.warn({ err: messageOf(err) }, 'lifecycle: instance metadata or Auto Scaling failed during bootstrap; trying again');
          lastProblem = messageOf(err);
        }
        await clock.sleep(this.opts.pollMs, stop.signal);
      }
    })();
    return {
      target: async (maxMs: number) => {
        const until = clock.now() + maxMs;
        while (this.rec.targetState === undefined && clock.now() < until && !stop.signal.aborted)
          await clock.sleep(Math.min(this.opts.pollMs, until - clock.now()), stop.signal);
        return this.rec.targetState;
      },
      stop: async () => {
        stop.abort();
        signal.removeEventListener('abort', end);
        await loop;
      },
    };
  }

  private async identify(): Promise<Identity> {
    if (this.identity) return this.identity;
    const { imds, aws, log } = this.deps;
    const instanceId = await aws.instanceId();
    const region = await instanceRegion(imds, this.opts.region);
    // The tag through IMDS needs no API call (when instance metadata tags are on); EC2 otherwise.
    let group = this.opts.group ?? groupTagOf(await imds.get(GROUP_TAG_PATH));
    if (!group) {
      group = await aws.ec2(region, 'DescribeTags', (ec2) => ec2.autoScalingGroupOf(instanceId));
    }
    if (!group)
      log.warn(
        { instanceId },
        'the instance is in no Auto Scaling group: lifecycle hooks do not apply (termination and spot drains still do)',
      );
    this.identity = { instanceId, region, group: group || undefined };
    await this.load(this.identity);
    return this.identity;
  }

  /** The record of this instance from an earlier `run`; a record of another instance (a baked image) is dropped. */
  private async load(id: Identity): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    const saved = await this.deps.state.read<LifecycleRecord>(LIFECYCLE_STATE);
    const fresh = { instanceId: id.instanceId, group: id.group };
    // The target state is learned afresh; what was done for which target is kept.
    this.rec = saved?.instanceId === id.instanceId ? { ...saved, ...fresh, targetState: undefined } : fresh;
  }

  private async save(): Promise<void> {
    const json = JSON.stringify(this.rec);
    if (json === this.lastSaved) return;
    try {
      await this.deps.state.write(LIFECYCLE_STATE, this.rec);
      this.lastSaved = json;
    } catch (err) {
      this.deps.log.warn({ err: messageOf(err) }, 'cannot write the lifecycle state for status');
    }
  }

  private async hookCall(
    id: Identity,
    e: Extract<Effect, { kind: 'heartbeat' | 'complete' }>,
    signal?: AbortSignal,
  ): Promise<EffectOutcome> {
    const { log, aws } = this.deps;
    const ref: LifecycleActionRef = { group: id.group!, hook: e.hook, instanceId: id.instanceId };
    const operation = e.kind === 'complete' ? 'CompleteLifecycleAction' : 'RecordLifecycleActionHeartbeat';
    const fields = { hook: e.hook, group: ref.group, instanceId: ref.instanceId, role: e.role };
    try {
      await aws.autoScaling(
        id.region,
        operation,
        (as) => (e.kind === 'complete' ? as.completeLifecycleAction(ref, e.result) : as.recordLifecycleActionHeartbeat(ref)),
        signal,
      );
    } catch (err) {
      // Auto Scaling answers ValidationError when no such action waits for this instance (never
      // launched under the hook, already completed, timed out) — or when the hook or group name is wrong.
      if (err instanceof EcsGvisorError && err.details.name === 'ValidationError') {
        log.warn(
          { ...fields, err: messageOf(err) },
          `${operation}: Auto Scaling has no pending ${e.role} action for this instance (check the hook and group names if one was expected)`,
        );
        return { kind: 'not-pending', detail: messageOf(err) };
      }
      // Our own stop aborted the call (bootstrap ended, or SIGTERM): not a failure of Auto Scaling's.
      if (signal?.aborted) return { kind: 'failed' };
      log.warn({ ...fields, err: messageOf(err) }, `${operation} failed; trying again`);
      return { kind: 'failed' };
    }
    if (e.kind === 'complete') {
      const level = e.result === 'CONTINUE' ? 'info' : 'error';
      log[level]({ ...fields, result: e.result, reason: e.reason }, `${e.role} lifecycle action completed: ${e.result}`);
      // The group terminates an abandoned instance, journal and all: say why where EC2 keeps it.
      if (e.result === 'ABANDON') await this.deps.console(redact(`ecs-gvisor: ${e.role} of ${ref.instanceId} abandoned: ${e.reason}`));
    } else {
      log.info(fields, 'lifecycle action heartbeat sent');
    }
    return { kind: 'ok' };
  }

  /** DRAINING, unless the instance already is (ECS managed draining, the agent's own spot draining). */
  private async drain(meta: AgentMetadata | undefined, instanceId: string, signal?: AbortSignal): Promise<EffectOutcome> {
    const { aws, log } = this.deps;
    if (!meta) return { kind: 'failed' };
    const where = { cluster: meta.cluster, containerInstanceArn: meta.containerInstanceArn };
    try {
      const region = regionOf(meta.containerInstanceArn, this.opts.region);
      const now = await aws.ecs(
        region,
        'DescribeContainerInstances',
        (e) => e.describeContainerInstance(meta.cluster, meta.containerInstanceArn),
        signal,
      );
      if (!now) return { kind: 'ok', missing: true };
      if (now.ec2InstanceId !== instanceId) {
        // Never drain another instance's record, whatever named it.
        log.error(
          { ...where, ecsSaysEc2Instance: now.ec2InstanceId ?? '(none)', thisEc2Instance: instanceId },
          'not draining: ECS says this container instance is another EC2 instance',
        );
        return { kind: 'failed' };
      }
      if (now.status === 'DRAINING') {
        log.info(
          { ...where, runningTasks: now.runningTasksCount },
          'the container instance is already DRAINING: waiting for its tasks, not draining again',
        );
        return { kind: 'ok', drainedBy: 'already-draining', runningTasks: now.runningTasksCount };
      }
      await aws.ecs(region, 'UpdateContainerInstancesState', (e) => e.drain(meta.cluster, meta.containerInstanceArn), signal);
      log.warn({ ...where, runningTasks: now.runningTasksCount }, 'container instance set to DRAINING');
      return { kind: 'ok', drainedBy: 'ecs-gvisor', runningTasks: now.runningTasksCount };
    } catch (err) {
      log.warn({ ...where, err: messageOf(err) }, 'could not drain the container instance; trying again');
      return { kind: 'failed' };
    }
  }
}

export interface BootstrapGuard {
  /** The target lifecycle state once IMDS has one, waiting at most `maxMs` (undefined: still 404). */
  target(maxMs: number): Promise<string | undefined>;
  stop(): Promise<void>;
}

/** `{"action": "terminate", "time": "…"}`; anything at that path is a notice, even if unreadable. */
export function parseSpotNotice(text: string): { action: string; time?: string } {
  try {
    const d = JSON.parse(text) as { action?: unknown; time?: unknown };
    return { action: typeof d.action === 'string' ? d.action : 'unknown', time: typeof d.time === 'string' ? d.time : undefined };
  } catch {
    return { action: 'unknown' };
  }
}
