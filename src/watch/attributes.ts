/**
 * The proof, published to the scheduler: ECS attributes on the container instance, so task definitions can
 * require `memberOf(attribute:ecs-gvisor.sandbox == verified)`. Pure planning against the attributes the
 * last DescribeContainerInstances returned, so a deleted or edited attribute is put back without an
 * extra call.
 */

import type { NetworkMode } from '../runtime/runtime-entry.js';
import type { NetworkProof } from '../runtime/sandbox-proof.js';

export const SANDBOX_ATTRIBUTE = 'ecs-gvisor.sandbox';
export const RUNSC_ATTRIBUTE = 'ecs-gvisor.runsc-version';
/**
 * One attribute per ECS network mode whose containers are proven to start in gVisor here, so a task
 * definition can require its own: bridge needs a namespace of its own proven, host the host's, awsvpc both
 * (its pause container has its own, its task containers join it).
 */
export const NETWORK_ATTRIBUTES = {
  bridge: 'ecs-gvisor.network.bridge',
  awsvpc: 'ecs-gvisor.network.awsvpc',
  host: 'ecs-gvisor.network.host',
} as const;
const OURS = [SANDBOX_ATTRIBUTE, RUNSC_ATTRIBUTE, ...Object.values(NETWORK_ATTRIBUTES)];

/** The ECS network modes that work here, from the proof of each namespace kind. */
export function provenEcsModes(networks: Partial<Record<NetworkMode, NetworkProof>> | undefined): Array<keyof typeof NETWORK_ATTRIBUTES> {
  const ok = (m: NetworkMode) => networks?.[m]?.proven === true;
  return [
    ...(ok('own') ? (['bridge'] as const) : []),
    ...(ok('own') && ok('joined') ? (['awsvpc'] as const) : []),
    ...(ok('host') ? (['host'] as const) : []),
  ];
}

/** ECS attribute values: up to 128 letters, digits, and `-_.@/: ` (Debian's `0.0~20221219` has a `~`). */
export function attributeValue(v: string): string {
  return v.replace(/[^A-Za-z0-9_.@/: -]/g, '_').slice(0, 128) || 'unknown';
}

/**
 * `verified` only while the proof stands and no container runs outside gVisor: a violation the audit
 * only reports still makes the instance no place for untrusted tasks, so the attribute says `violated`.
 */
export function desiredAttributes(
  verified: boolean,
  runscVersion: string | undefined,
  violations = 0,
  networks?: Partial<Record<NetworkMode, NetworkProof>>,
): Record<string, string> {
  if (!verified) return { [SANDBOX_ATTRIBUTE]: 'unverified' };
  const modes = Object.fromEntries(provenEcsModes(networks).map((m) => [NETWORK_ATTRIBUTES[m], 'verified']));
  return {
    [SANDBOX_ATTRIBUTE]: violations > 0 ? 'violated' : 'verified',
    [RUNSC_ATTRIBUTE]: attributeValue(runscVersion ?? 'unknown'),
    ...modes,
  };
}

/** Ours among a container instance's attributes. */
export function ourAttributes(current: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(OURS.filter((k) => k in current).map((k) => [k, current[k]!]));
}

export interface AttributePlan {
  put: Record<string, string>;
  remove: string[];
}

/** What to put and delete so `current` carries exactly `desired` among our attributes. */
export function planAttributes(desired: Readonly<Record<string, string>>, current: Readonly<Record<string, string>>): AttributePlan {
  const put: Record<string, string> = {};
  for (const [k, v] of Object.entries(desired)) if (current[k] !== v) put[k] = v;
  const remove = OURS.filter((k) => !(k in desired) && k in current);
  return { put, remove };
}

export function isEmptyPlan(p: AttributePlan): boolean {
  return Object.keys(p.put).length === 0 && p.remove.length === 0;
}

/**
 * Whether publishing `want` over `current` tells the scheduler to stop trusting this instance (a
 * withdrawal of `verified`): such a call goes at once, with ECS calls of its own beyond the ceiling, and is
 * retried until ECS has it.
 */
export function withdraws(want: Readonly<Record<string, string>>, current: Readonly<Record<string, string>>): boolean {
  return want[SANDBOX_ATTRIBUTE] !== 'verified' && current[SANDBOX_ATTRIBUTE] !== want[SANDBOX_ATTRIBUTE];
}

const MINUTE = 60_000;

/**
 * How long `verified` waits to be published again after the latest withdrawal, by the withdrawals of
 * the last hour: the first flap comes back at once, each further one waits twice as long (30 s … 15
 * min). An instance that flaps keeps saying the safe thing and spends a handful of calls, not its
 * budget; only the latest verdict is sent when the wait is over.
 */
export function restoreHoldMs(withdrawalsLastHour: number): number {
  if (withdrawalsLastHour <= 1) return 0;
  return Math.min(15 * MINUTE, 30_000 * 2 ** (withdrawalsLastHour - 2));
}

/** The wait before retrying a withdrawal ECS did not take: 5 s doubling to 5 min. */
export function withdrawRetryMs(failures: number): number {
  return Math.min(5 * MINUTE, 5_000 * 2 ** Math.max(0, failures - 1));
}
