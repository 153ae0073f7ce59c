import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { type FencePorts, failClosed } from '../../src/cli/fail-closed.js';
import { EcsGvisorError, exitCodeOf, messageOf } from '../../src/errors.js';

const log = pino({ level: 'silent' });
const unproven = new EcsGvisorError('SANDBOX_UNPROVEN', 'The sandbox could not be proven: the probe exited 1.');

/** Ports that record the order of what was asked; `fail` names the ones that throw. */
function ports(fail: string[] = []): { p: FencePorts; order: string[] } {
  const order: string[] = [];
  const step = async <T>(name: string, value: T) => {
    order.push(name);
    if (fail.includes(name)) throw new EcsGvisorError('AWS_API', `${name} refused.`);
    return value;
  };
  return {
    order,
    p: {
      stopAgent: () => step('agent', { stopped: true }),
      withdrawProof: () => step('withdraw', true),
      abandonLaunch: () => step('abandon', 'abandoned' as const),
      markUnhealthy: () => step('unhealthy', undefined),
    },
  };
}

describe('failing closed', () => {
  it('stops the agent before anything else and keeps the cause (and its exit code) when all is done', async () => {
    const { p, order } = ports();
    const out = await failClosed(p, unproven, log);
    expect(out).toBe(unproven);
    expect(exitCodeOf(out)).toBe(5);
    expect(order[0]).toBe('agent');
    expect(order.slice(1).sort()).toEqual(['abandon', 'unhealthy', 'withdraw']);
  });

  it.each([
    [['withdraw'], 17],
    [['agent'], 18],
    [['abandon'], 20],
    [['unhealthy'], 24],
    [['withdraw', 'agent', 'abandon', 'unhealthy'], 31],
  ])('what could not be done (%j) is the exit code (%i) and the message', async (fail, code) => {
    const { p } = ports(fail);
    const out = await failClosed(p, unproven, log);
    expect(exitCodeOf(out)).toBe(code);
    const msg = messageOf(out);
    // The cause first, one full stop between sentences (never ".."), then what was not done.
    expect(msg).toMatch(/^The sandbox could not be proven: the probe exited 1\. Taking the instance out of service was incomplete: .*\.$/);
    expect(msg).not.toMatch(/\.\./);
    if (fail.includes('withdraw')) expect(msg).toContain('ecs-gvisor.sandbox=verified could not be withdrawn from ECS (withdraw refused)');
  });

  it('a launch left pending or nothing to withdraw is not a failure; a failure that may pass does not mark the instance Unhealthy', async () => {
    const { p, order } = ports();
    const transient = new EcsGvisorError('DOCKER_UNAVAILABLE', 'Docker is not answering.');
    const out = await failClosed(
      { ...p, withdrawProof: async () => false, abandonLaunch: async () => 'kept', stopAgent: async () => ({ stopped: false }) },
      transient,
      log,
    );
    expect(out).toBe(transient);
    expect(order).not.toContain('unhealthy');
  });

  it('an abandon that could not reach Auto Scaling counts as not done', async () => {
    const { p } = ports();
    const out = await failClosed({ ...p, abandonLaunch: async () => 'failed' }, unproven, log);
    expect(exitCodeOf(out)).toBe(20);
  });
});
