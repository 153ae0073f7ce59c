/**
 * The agent step's decisions (create, keep, start, recreate, replace ecs-init's, put the previous one
 * back, refuse), against Docker and the files in memory (test/fakes): milliseconds each. What they
 * assert is what Docker would then hold; the same paths against a real dockerd are in
 * test/integration/agent-step.test.ts.
 */
import pino from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { AGENT_NAME, HASH_LABEL, MANAGED_LABEL } from '../../src/agent/agent-spec.js';
import { AGENT_STATE, AgentStep } from '../../src/agent/agent-step.js';
import { EcsGvisorError } from '../../src/errors.js';
import { StateStore } from '../../src/state-store.js';
import { MemoryDocker } from '../fakes/memory-docker.js';
import { MemoryFiles } from '../fakes/memory-files.js';

const IMAGE = 'amazon/amazon-ecs-agent:latest';
const STATE_DIR = '/var/lib/ecs-gvisor';

let docker: MemoryDocker;
let files: MemoryFiles;
let state: StateStore;

function step(o: { settleMs?: number } = {}) {
  return new AgentStep(
    { docker, files, state, log: pino({ level: 'silent' }), sleep: async () => {} },
    {
      image: IMAGE,
      dockerHost: 'unix:///var/run/docker.sock',
      ecsConfig: '/etc/ecs/ecs.config',
      instanceConfig: '/var/lib/ecs/ecs.config',
      cacheDir: '/var/cache/ecs',
      pullRetries: 0,
      replaceSettleMs: o.settleMs ?? 0,
    },
  );
}

const agent = () => docker.byName(AGENT_NAME);

beforeEach(() => {
  docker = new MemoryDocker();
  docker.addImage(IMAGE);
  files = new MemoryFiles({ '/etc/ecs/ecs.config': 'ECS_CLUSTER=prod\n' });
  state = new StateStore(files, STATE_DIR);
});

describe('the agent step against Docker in memory', () => {
  it('creates and starts the agent under runc, and records its ID', async () => {
    const r = await step().apply();
    expect(r.action).toBe('create');
    expect(agent()).toMatchObject({ id: r.id, running: true, runtime: 'runc', labels: { [MANAGED_LABEL]: 'true' } });
    expect(agent()!.spec!.Env).toContain('ECS_CLUSTER=prod');
    expect(JSON.parse(files.text(`${STATE_DIR}/${AGENT_STATE}`)!)).toMatchObject({ id: r.id, hash: r.hash });
    expect(docker.changes).toEqual(['create ecs-agent', 'start ecs-agent']);
  });

  it('keeps a running agent whose spec and image are unchanged; starts a stopped one', async () => {
    const first = await step().apply();
    docker.changes.length = 0;
    expect(await step().apply()).toMatchObject({ id: first.id, action: 'keep' });
    expect(docker.changes).toEqual([]);
    await docker.stopContainer(first.id);
    docker.changes.length = 0;
    expect(await step().apply()).toMatchObject({ id: first.id, action: 'start' });
    expect(docker.changes).toEqual(['start ecs-agent']);
  });

  it('recreates the agent when ecs.config changed: the new one created aside, the old stopped, renamed and removed', async () => {
    const first = await step().apply();
    files.put('/etc/ecs/ecs.config', 'ECS_CLUSTER=other\n');
    docker.changes.length = 0;
    const r = await step().apply();
    expect(r.action).toBe('recreate');
    expect(r.id).not.toBe(first.id);
    expect(docker.changes).toEqual([
      'create ecs-agent-next',
      'rename ecs-agent ecs-agent-previous',
      'stop ecs-agent-previous',
      'rename ecs-agent-next ecs-agent',
      'start ecs-agent',
      'remove ecs-agent-previous',
    ]);
    expect(agent()!.spec!.Env).toContain('ECS_CLUSTER=other');
    expect([...docker.containers.values()].map((c) => c.name)).toEqual([AGENT_NAME]);
  });

  it('recreates the agent when its image was re-tagged (the same name, a new image ID)', async () => {
    const first = await step().apply();
    docker.addImage(IMAGE, { variant: 'v2' });
    const r = await step().apply();
    expect(r.action).toBe('recreate');
    expect(agent()!.imageId).toBe(await docker.imageId(IMAGE));
    expect(agent()!.id).not.toBe(first.id);
  });

  it('replaces an agent ecs-init made (no record of ours), whatever its labels claim', async () => {
    const foreign = docker.addContainer({ name: AGENT_NAME, runtime: 'runsc', labels: { [MANAGED_LABEL]: 'true', [HASH_LABEL]: 'x' } });
    // A record of ours names another container: the labels alone do not make this one ours.
    await state.write(AGENT_STATE, { hash: 'x', spec: {}, id: 'f'.repeat(64) });
    const r = await step().apply();
    expect(r.action).toBe('replace-foreign');
    expect(docker.containers.has(foreign.id)).toBe(false);
    expect(agent()).toMatchObject({ running: true, runtime: 'runc' });
  });

  it('puts the previous agent back when the new one exits at once, and does not try that spec again (no churn)', async () => {
    const first = await step().apply();
    docker.addImage(IMAGE, { variant: 'broken', exitsWith: 5 });
    const s = step({ settleMs: 1_000 });
    const err = await s.apply().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EcsGvisorError);
    expect((err as EcsGvisorError).code).toBe('AGENT_EXITED');
    expect((err as EcsGvisorError).message).toMatch(
      /exited with code 5 .*\(its last line: fatal: exiting with 5\); the previous agent \w{12} was put back/,
    );
    expect(agent()).toMatchObject({ id: first.id, running: true });
    // The same spec again: the running agent stays, nothing is created.
    docker.changes.length = 0;
    expect(await s.apply()).toMatchObject({ id: first.id, action: 'keep' });
    expect((await s.plan()).warnings.join('\n')).toMatch(/was refused .*; the running agent stays/);
    expect(docker.changes).toEqual([]);
  });

  it('keeps the running agent when Docker refuses the new spec', async () => {
    const first = await step().apply();
    files.put('/etc/ecs/ecs.config', 'ECS_CLUSTER=other\n');
    docker.refuseCreate = 'invalid environment variable';
    const err = (await step()
      .apply()
      .catch((e: unknown) => e)) as EcsGvisorError;
    expect(err.code).toBe('AGENT_SPEC_REFUSED');
    expect(err.message).toBe(
      `Docker refused the agent container built from /etc/ecs/ecs.config (invalid environment variable); the running agent ${first.id.slice(0, 12)} was kept.`,
    );
    expect(agent()).toMatchObject({ id: first.id, running: true });
  });

  it('refuses an ecs.config it cannot pass on (a NUL byte), touching nothing', async () => {
    const first = await step().apply();
    files.put('/etc/ecs/ecs.config', 'ECS_CLUSTER=prod\nECS_X=a\0b\n');
    docker.changes.length = 0;
    await expect(step().apply()).rejects.toMatchObject({ code: 'ECS_CONFIG_INVALID' });
    expect(docker.changes).toEqual([]);
    expect(agent()).toMatchObject({ id: first.id, running: true });
  });

  it('rolls back only the agent it made; stop leaves the container for its logs', async () => {
    const foreign = docker.addContainer({ name: AGENT_NAME, runtime: '' });
    expect(await step().rollback()).toEqual({ removed: false });
    expect(docker.containers.has(foreign.id)).toBe(true);
    expect(await step().stop()).toEqual({ stopped: true });
    expect(docker.byName(AGENT_NAME)).toMatchObject({ running: false });
  });
});
