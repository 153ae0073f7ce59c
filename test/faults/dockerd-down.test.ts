/**
 * Faults: dockerd stopped for 60 s while `run` watches. `run` must stay up the whole time (no crash, no
 * exit for systemd to restart), and once Docker is back converge again: runsc still the default (it is in
 * daemon.json), the agent running under runc, the watch running; SIGTERM still exits 0.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BUNDLE, runCli } from '../harness/cli.js';
import { dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';
import { restartPrivateDockerd } from '../harness/private-dockerd.js';
import { type StandInHost, standInHost } from '../harness/stand-in-host.js';
import { until } from '../harness/watch-fixture.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
let host: StandInHost;

beforeAll(async () => {
  await resetDocker(d, '{}\n');
  host = standInHost(d, agentImage, 'down');
});
afterAll(async () => {
  host.remove();
  await resetDocker(d, '{}\n');
});

describe('dockerd down for 60 s under run', () => {
  it('run stays up, then converges again', async () => {
    const env = host.env({ ECS_GVISOR_INTROSPECTION_SECONDS: '1', ECS_GVISOR_DRIFT_CHECK_SECONDS: '2' });
    const log = `${host.dir}/run.log`;
    const out = openSync(log, 'a');
    const child = spawn('nsenter', [`--net=/run/netns/${host.ns}`, process.execPath, BUNDLE, 'run'], { env, stdio: ['ignore', out, out] });
    let exit: number | null | undefined;
    child.on('exit', (code) => (exit = code));
    const status = async () =>
      JSON.parse((await runCli(['status', '--json'], env, 10_000, host.ns)).stdout) as {
        watch: { running: boolean };
        agent: { running: boolean };
      };
    try {
      await until('run watching with the agent up', async () => (await status()).watch.running && (await status()).agent.running, 60_000);

      await restartPrivateDockerd(d, 60_000);
      expect(exit, readFileSync(log, 'utf8').slice(-2000)).toBeUndefined();

      await until('the agent running again', async () => (await dockerClient(d).getContainer('ecs-agent').inspect()).State.Running, 60_000);
      const agent = await dockerClient(d).getContainer('ecs-agent').inspect();
      expect(agent.HostConfig.Runtime).toBe('runc');
      expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
      await until(
        'status: the watch running and the agent up',
        async () => (await status()).watch.running && (await status()).agent.running,
        60_000,
      );
      expect(exit).toBeUndefined();
      expect(readFileSync(log, 'utf8')).toContain('lost Docker; waiting for it to come back');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (exit === undefined ? child.on('exit', r) : r(undefined)));
    }
    expect(exit).toBe(0);
    await runCli(['rollback'], env, 120_000, host.ns);
  }, 240_000);
});
