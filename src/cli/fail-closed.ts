/**
 * Failing closed after a start that did not prove the sandbox, by whatever path (a proof that failed,
 * a setting the entry point refused, Docker gone mid-way): the instance stops taking tasks before
 * anything else. The agent is stopped first (with it down nothing new lands here, whatever ECS still
 * reads), then `ecs-gvisor.sandbox=verified` is withdrawn from ECS, a pending launch action abandoned and,
 * when configured, the instance marked Unhealthy. What could not be done makes the exit code 16 + the
 * sum of FENCE_BITS (docs/operations.md "Exit codes").
 */
import { EcsGvisorError, type FenceAction, messageOf, NotFencedError, sentence } from '../errors.js';
import { isTransient, type LaunchAbandon } from '../lifecycle/lifecycle.js';
import type { Logger } from '../logger.js';

/** The few things failing closed needs, each owned by the caller. */
export interface FencePorts {
  /** Stop the agent container, ours or not. */
  stopAgent(): Promise<{ stopped: boolean }>;
  /** Mark the container instance unverified in ECS when we had published it verified; false: nothing to withdraw. */
  withdrawProof(): Promise<boolean>;
  /** `run` with a launch hook: ABANDON the pending launch action (kept pending for a failure that may pass). */
  abandonLaunch?(cause: unknown): Promise<LaunchAbandon>;
  /** `run` with ECS_GVISOR_SET_INSTANCE_HEALTH: Auto Scaling SetInstanceHealth Unhealthy. */
  markUnhealthy?(): Promise<void>;
}

export interface FenceReport {
  done: string[];
  notDone: Array<{ action: FenceAction; why: string }>;
}

/** Take the instance out of service; returns what to throw: the cause, or NotFencedError naming what was not done. */
export async function failClosed(p: FencePorts, cause: unknown, log: Logger): Promise<unknown> {
  const r = await fence(p, cause);
  const fields = { cause: messageOf(cause), done: r.done, notDone: r.notDone.length ? r.notDone : undefined };
  if (!r.notDone.length) {
    log.error(fields, 'the sandbox is not proven: failing closed, this instance takes no tasks');
    return cause;
  }
  log.error(fields, 'the sandbox is not proven and failing closed was incomplete: the host needs an operator');
  const what = r.notDone.map((n) => `${WHAT[n.action]} (${n.why.replace(/[.\s]+$/, '')})`).join('; ');
  return new NotFencedError(
    `${sentence(messageOf(cause))} Taking the instance out of service was incomplete: ${what}.`,
    r.notDone.map((n) => n.action),
    cause,
  );
}

const WHAT: Record<FenceAction, string> = {
  withdraw: 'ecs-gvisor.sandbox=verified could not be withdrawn from ECS',
  agent: 'the ECS agent could not be stopped',
  abandon: 'the pending launch lifecycle action could not be abandoned',
  unhealthy: 'the instance could not be marked Unhealthy in Auto Scaling',
};

async function fence(p: FencePorts, cause: unknown): Promise<FenceReport> {
  const r: FenceReport = { done: [], notDone: [] };
  const attempt = async (action: FenceAction, run: () => Promise<string | undefined>) => {
    try {
      const did = await run();
      if (did) r.done.push(did);
    } catch (err) {
      r.notDone.push({ action, why: messageOf(err) });
    }
  };
  await attempt('agent', async () => ((await p.stopAgent()).stopped ? 'agent stopped' : undefined));
  await Promise.all([
    attempt('withdraw', async () => ((await p.withdrawProof()) ? 'ecs-gvisor.sandbox set to unverified' : undefined)),
    p.abandonLaunch &&
      attempt('abandon', async () => {
        const a = await p.abandonLaunch!(cause);
        if (a === 'failed') throw new EcsGvisorError('AWS_API', 'Auto Scaling or instance metadata did not answer');
        return a === 'abandoned' ? 'launch abandoned' : a === 'kept' ? 'launch kept pending (the failure may pass)' : undefined;
      }),
    // A failure that may pass (Docker or the network) gets systemd's restarts first, as the launch does.
    p.markUnhealthy &&
      !isTransient(cause) &&
      attempt('unhealthy', async () => {
        await p.markUnhealthy!();
        return 'marked Unhealthy';
      }),
  ]);
  return r;
}
