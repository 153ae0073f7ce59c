/**
 * What instance metadata answers, checked before anything is sent on to AWS in its name: a captive
 * portal, a proxy's error page or a truncated answer is one clear error (the caller records it and asks
 * again), never an instance ID or region made of HTML.
 */
import { EcsGvisorError } from '../errors.js';

export const INSTANCE_ID_PATH = '/latest/meta-data/instance-id';
export const REGION_PATH = '/latest/meta-data/placement/region';
export const TARGET_STATE_PATH = '/latest/meta-data/autoscaling/target-lifecycle-state';
export const SPOT_ACTION_PATH = '/latest/meta-data/spot/instance-action';
export const GROUP_TAG_PATH = '/latest/meta-data/tags/instance/aws:autoscaling:groupName';

const INSTANCE_ID = /^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$/;
const REGION = /^[a-z]{2}(?:-[a-z]+)+-[0-9]+$/;
/** InService, Terminated, Warmed:Stopped, …: a word, or two joined by a colon. */
const LIFECYCLE_STATE = /^(?=.{1,64}$)[A-Za-z]+(?::[A-Za-z]+)?$/;
/** Auto Scaling group names: up to 255 printable characters. */
const GROUP_NAME = /^[\x21-\x7e][\x20-\x7e]{0,254}$/;

function refuse(path: string, value: string, what: string): EcsGvisorError {
  const shown = value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}…` : JSON.stringify(value);
  return new EcsGvisorError('IMDS_FAILED', `Instance metadata ${path} answered ${shown}, which is not ${what}.`);
}

function check(path: string, text: string | undefined, pattern: RegExp, what: string): string | undefined {
  const v = text?.trim();
  if (!v) return undefined;
  if (!pattern.test(v)) throw refuse(path, v, what);
  return v;
}

export function instanceIdOf(text: string | undefined): string {
  const v = check(INSTANCE_ID_PATH, text, INSTANCE_ID, 'an EC2 instance ID');
  if (!v) throw new EcsGvisorError('IMDS_FAILED', `Instance metadata has no ${INSTANCE_ID_PATH}.`);
  return v;
}

export const regionOfImds = (text: string | undefined) => check(REGION_PATH, text, REGION, 'an AWS region');

/** The region for Auto Scaling and EC2 calls: the configured one, else the instance's own from IMDS. */
export async function instanceRegion(
  imds: { get(path: string): Promise<string | undefined> },
  configured: string | undefined,
): Promise<string> {
  const region = configured ?? regionOfImds(await imds.get(REGION_PATH));
  if (!region)
    throw new EcsGvisorError('CONFIG_INVALID', 'No AWS region: set ECS_GVISOR_AWS_REGION (instance metadata has no placement/region).');
  return region;
}
export const targetStateOf = (text: string | undefined) =>
  check(TARGET_STATE_PATH, text, LIFECYCLE_STATE, 'an Auto Scaling lifecycle state');
export const groupTagOf = (text: string | undefined) => check(GROUP_TAG_PATH, text, GROUP_NAME, 'an Auto Scaling group name');
