/**
 * The agent's own word on a container's task (introspection's /v1/tasks and the task metadata endpoint),
 * against answers shaped as the real agent 1.101.2 gives them (test/integration/real-agent.test.ts runs
 * one): who created a container, the limits asked, and every way a copied endpoint or another's listener
 * is refused; then the task directory asking the agent first and ECS only about the rest.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { metadataEndpointIdOf } from '../../src/adapters/dockerode-docker.js';
import { AgentTasks } from '../../src/agent/agent-tasks.js';
import { AwsCaller } from '../../src/aws/aws-caller.js';
import { HttpError } from '../../src/errors.js';
import type { EcsPort, EcsTaskView, HttpPort } from '../../src/ports.js';
import { EcsTaskDirectory } from '../../src/watch/ecs-tasks.js';
import { FakeClock } from '../harness/fake-clock.js';

const CI = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc';
const TASK = 'arn:aws:ecs:us-east-1:111122223333:task/prod/c75280042dfbb074679b644d0e20a5e5';
const ID = 'a'.repeat(64);
const EP = 'd607d513-127c-4ed8-a322-d1a8079f4f3e';
const INTRO = 'http://127.0.0.1:51678';
const TMDS = 'http://127.0.0.1:51679';

function http(pages: Record<string, unknown>): HttpPort & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    get: async (url) => {
      asked.push(url);
      if (!(url in pages)) throw new HttpError('status', 'not found', 404);
      const p = pages[url];
      if (p instanceof Error) throw p;
      return Buffer.from(typeof p === 'string' ? p : JSON.stringify(p));
    },
  };
}
const introPage = {
  [`${INTRO}/v1/tasks?dockerid=${ID}`]: { Arn: TASK, KnownStatus: 'RUNNING', Containers: [{ DockerId: ID, Name: 'app' }] },
};
const tmdsPage = (o: Record<string, unknown> = {}) => ({
  [`${TMDS}/v4/${EP}/task`]: { TaskARN: TASK, Limits: { CPU: 0.25, Memory: 128 }, Containers: [{ DockerId: ID }], ...o },
});
const agent = (pages: Record<string, unknown>, problem?: string) =>
  new AgentTasks({ http: http(pages), introspectionUrl: INTRO, tmdsUrl: TMDS, listenerProblem: async () => problem });

describe('the agent’s word on a container’s task', () => {
  it('names the task and the limits ECS sent it (CPU in vCPU made units, memory in MiB)', async () => {
    expect(await agent({ ...introPage, ...tmdsPage() }).view({ id: ID, metadataEndpointId: EP }, CI)).toEqual({
      arn: TASK,
      containerInstanceArn: CI,
      cpu: '256',
      memory: '128',
      runtimeIds: [ID],
    });
    // A task without task-level limits: none asked.
    expect(await agent({ ...introPage, ...tmdsPage({ Limits: undefined }) }).view({ id: ID, metadataEndpointId: EP }, CI)).toEqual({
      arn: TASK,
      containerInstanceArn: CI,
      runtimeIds: [ID],
    });
  });

  it('a container the agent did not create, or an endpoint copied from another task’s container, is disowned (null)', async () => {
    expect(await agent({ ...tmdsPage() }).view({ id: ID, metadataEndpointId: EP }, CI)).toBeNull(); // introspection: 404
    const other = { [`${INTRO}/v1/tasks?dockerid=${ID}`]: { Arn: TASK, Containers: [{ DockerId: 'b'.repeat(64) }] } };
    expect(await agent({ ...other, ...tmdsPage() }).view({ id: ID, metadataEndpointId: EP }, CI)).toBeNull();
    expect(await agent({ ...introPage, ...tmdsPage({ TaskARN: `${TASK}0` }) }).view({ id: ID, metadataEndpointId: EP }, CI)).toBeNull();
    expect(await agent({ ...introPage, ...tmdsPage({ Containers: [] }) }).view({ id: ID, metadataEndpointId: EP }, CI)).toBeNull();
  });

  it('cannot be asked (undefined: ECS is asked instead) without an endpoint, when nothing listens, or when the listener is not the agent’s', async () => {
    expect(await agent({ ...introPage, ...tmdsPage() }).view({ id: ID }, CI)).toBeUndefined();
    const refused = { [`${TMDS}/v4/${EP}/task`]: new HttpError('refused', 'refused') };
    expect(await agent({ ...introPage, ...refused }).view({ id: ID, metadataEndpointId: EP }, CI)).toBeUndefined();
    const pages = http({ ...introPage, ...tmdsPage() });
    const squatted = new AgentTasks({
      http: pages,
      introspectionUrl: INTRO,
      tmdsUrl: TMDS,
      listenerProblem: async () => 'port 51679 is held by pid 4242',
    });
    expect(await squatted.view({ id: ID, metadataEndpointId: EP }, CI)).toBeUndefined();
    expect(pages.asked).toEqual([]); // nothing was read from a listener that is not the agent's
    await expect(
      agent({ ...introPage, [`${TMDS}/v4/${EP}/task`]: 'not json' }).view({ id: ID, metadataEndpointId: EP }, CI),
    ).rejects.toThrow(/answered something that is not JSON/);
  });

  it('takes the endpoint ID from the agent’s one variable only, in its exact form', () => {
    expect(metadataEndpointIdOf(['SECRET=x', `ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/${EP}`])).toBe(EP);
    expect(metadataEndpointIdOf([`ECS_CONTAINER_METADATA_URI_V4=http://10.0.0.1/v4/${EP}`])).toBeUndefined();
    expect(metadataEndpointIdOf([`ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/../x`])).toBeUndefined();
    expect(metadataEndpointIdOf(null)).toBeUndefined();
  });
});

describe('the task directory', () => {
  const views: EcsTaskView[] = [{ arn: TASK, containerInstanceArn: CI, cpu: '512', runtimeIds: ['c2'] }];
  function directory(agentSays: (id: string) => EcsTaskView | null | undefined) {
    const clock = new FakeClock();
    const asked: string[][] = [];
    const describeTasks = async (_c: string, arns: readonly string[]) => {
      asked.push([...arns]);
      return views;
    };
    const ecs = { describeTasks } as unknown as EcsPort;
    const aws = new AwsCaller(
      {
        ecs: () => ecs,
        autoScaling: () => ({}) as never,
        ec2: () => ({}) as never,
        imds: { get: async () => 'i-1' },
        clock,
        log: pino({ level: 'silent' }),
      },
      { maxCallsPerHour: 60, retry: { retries: 0, minMs: 1, maxMs: 1 } },
    );
    const dir = new EcsTaskDirectory(
      { aws, clock, log: pino({ level: 'silent' }), agent: { view: async (c) => agentSays(c.id) } },
      { minIntervalMs: 300_000 },
    );
    return { dir, asked };
  }

  it('asks the agent first; ECS only about what the agent could not answer; a disowned container is never ECS’s question', async () => {
    const { dir, asked } = directory((id) =>
      id === 'c1' ? { arn: TASK, containerInstanceArn: CI, cpu: '256', runtimeIds: [id] } : id === 'forged' ? null : undefined,
    );
    await dir.learn('prod', 'us-east-1', CI, [
      { arn: TASK, containerId: 'c1', metadataEndpointId: EP },
      { arn: TASK, containerId: 'forged', metadataEndpointId: EP },
    ]);
    expect(asked).toEqual([]);
    expect(dir.view(TASK)).toMatchObject({ cpu: '256', runtimeIds: ['c1'] });
    expect(dir.source(TASK)).toBe('the agent');
    expect(dir.isDisowned('forged')).toBe(true);
    // A container the agent cannot speak for: one DescribeTasks.
    const other = 'arn:aws:ecs:us-east-1:111122223333:task/prod/ffffffffffffffffffffffffffffffff';
    const d2 = directory(() => undefined);
    await d2.dir.learn('prod', 'us-east-1', CI, [{ arn: other, containerId: 'c2' }]);
    expect(d2.asked).toEqual([[other]]);
    expect(d2.dir.source(other)).toBe('ECS');
  });
});
