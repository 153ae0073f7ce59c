/**
 * The real Amazon ECS agent (1.101.2) under ecs-gvisor, wired as `run` wires it (buildApp from a parsed
 * configuration, then the watch), against the real private dockerd with Debian's runsc and the fake ECS
 * and IMDS on 127.0.0.1, which the agent reaches through its own endpoint settings (ECS_BACKEND_HOST,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT). The agent registers through its own RegisterContainerInstance and
 * answers introspection on the host's 127.0.0.1:51678. Assertions are on Docker, the fakes' records,
 * the agent's own introspection answer and status.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { LinuxHost } from '../../src/adapters/linux-host.js';
import { acsEvents } from '../../src/agent/acs-evidence.js';
import { type App, buildApp } from '../../src/cli/composition.js';
import { parseConfig } from '../../src/config.js';
import { dockerClient, liveRuntime } from '../harness/docker-state.js';
import { FakeAcs } from '../harness/fake-acs.js';
import { restartPrivateDockerd } from '../harness/private-dockerd.js';
import {
  agentMetadata,
  forgetAgentState,
  INSTANCE_ID,
  importRealAgent,
  REAL_AGENT_IMAGE,
  realAgentConfig,
  seedRealAgentImds,
} from '../harness/real-agent.js';
import { until, watchEnv } from '../harness/watch-fixture.js';
import { useWatchHost } from '../harness/watch-host.js';

const d = inject('dockerd');
const busybox = inject('busyboxImage');
const docker = dockerClient(d);
const host = useWatchHost(d, '/tmp/egv-real-agent-', {});
let app: App;
let env: Record<string, string>;

beforeAll(async () => {
  await importRealAgent(d.socket);
}, 120_000);

/** Wire the app as main does, with the real agent, bootstrap runtime + agent, and start the watch. */
async function start(): Promise<void> {
  const { ecs, imds } = host.aws;
  seedRealAgentImds(imds);
  forgetAgentState();
  writeFileSync(`${host.dir}/ecs.config`, realAgentConfig({ cluster: 'prod', ecsUrl: ecs.url, imdsUrl: imds.url }));
  env = watchEnv(
    d,
    { dir: host.dir, agentImage: REAL_AGENT_IMAGE, intro: host.intro, imdsUrl: imds.url },
    { ECS_GVISOR_INTROSPECTION_URL: 'http://127.0.0.1:51678', ECS_GVISOR_DRIFT_CHECK_SECONDS: '2', ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '2' },
  );
  app = buildApp(
    parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env }),
    pino({ level: process.env.EGV_TEST_LOG ?? 'silent' }),
  );
  const runtime = await app.runtime.apply();
  await app.agent.apply();
  host.running = app.watch(runtime).run(host.ac.signal);
}

const agent = () => docker.getContainer('ecs-agent').inspect();
/** The ARN the agent itself reports once registered. */
const registeredArn = () =>
  until('the agent registered (introspection)', async () => (await agentMetadata())?.ContainerInstanceArn || undefined, 90_000, 250);

describe('the real ECS agent', () => {
  it('exits 0 when dockerd stops it, and is back after the Docker restart with the same container-instance ARN', async () => {
    await start();
    const arn = await registeredArn();
    const { ecs } = host.aws;
    expect(ecs.instances.get(arn)?.ec2InstanceId).toBe(INSTANCE_ID); // its own registration, with its identity document
    await until('the verified attribute', () => ecs.instances.get(arn)?.attributes['ecs-gvisor.sandbox'] === 'verified', 60_000);
    const first = await agent();
    expect(first.HostConfig.Runtime).toBe('runc');
    const registrations = ecs.count('RegisterContainerInstance');

    await restartPrivateDockerd(d);
    await until(
      'the agent running again',
      async () => (await agent()).State.Running && (await agent()).State.StartedAt !== first.State.StartedAt,
      90_000,
    );
    expect(await registeredArn()).toBe(arn);
    expect(ecs.count('RegisterContainerInstance')).toBeGreaterThan(registrations);
    const st = await until('status with the agent back', async () => {
      const s = await app.status();
      return s.agent.running && s.agent.lastExit ? s : undefined;
    });
    // Docker stopped it with SIGTERM and it exited 0, as the real agent does; that held only until Docker came back.
    expect(st.agent).toMatchObject({ runtime: 'runc', running: true, lastExit: { code: 0, decision: 'done' } });
    expect(st.agent.stopped).toBeUndefined();
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
  });

  it('holds its ACS connection on a real websocket: the kernel and its log say so, a cut is seen in both, and so is the reconnect', async () => {
    const acs = await FakeAcs.start(5_000);
    host.aws.ecs.acsEndpoint = acs.url;
    try {
      await start();
      const arn = await registeredArn();
      const conn = await until('the agent connected to ACS', () => acs.open.find((c) => c.query.containerInstanceArn === arn), 90_000);
      // The container's first process is docker-init (ecs-init's Init: true); the agent is its child.
      const init = (await agent()).State.Pid;
      const port = Number(new URL(acs.url).port);
      const linux = new LinuxHost();
      const toAcs = async () => {
        const pids = [init, ...(await linux.childrenOf(init))];
        return (await Promise.all(pids.map((p) => linux.connectionsOf(p)))).flat().filter((c) => c.remotePort === port);
      };
      // The kernel's word: the agent process holds that very connection.
      expect(await until('the kernel lists it', async () => (await toAcs()).find((c) => c.localPort === conn.remotePort))).toMatchObject({
        remoteAddress: '127.0.0.1',
      });
      const log = () => readFileSync('/var/log/ecs/ecs-agent.log', 'utf8');
      await until('the agent’s log says it', () => acsEvents(log()).at(-1)?.state === 'connected' || undefined, 30_000);
      process.stderr.write(`the agent's messages on its ACS connection: ${[...new Set(conn.received)].join(', ') || 'none'}\n`);

      const cutAt = Date.now();
      acs.cut();
      await until('the kernel: no connection to ACS', async () => (await toAcs()).length === 0 || undefined, 60_000);
      const kernelMs = Date.now() - cutAt;
      await until('the log: disconnected', () => acsEvents(log()).at(-1)?.state === 'disconnected' || undefined, 180_000);
      process.stderr.write(
        `a cut ACS connection: gone from the kernel's table in ${kernelMs} ms, in the agent's log in ${Date.now() - cutAt} ms\n`,
      );

      const restoredAt = Date.now();
      acs.restore();
      const again = await until('reconnected', () => acs.open.find((c) => c.query.containerInstanceArn === arn), 180_000);
      await until('the kernel lists the new one', async () => (await toAcs()).some((c) => c.localPort === again.remotePort) || undefined);
      await until('the log: connected', () => acsEvents(log()).at(-1)?.state === 'connected' || undefined, 30_000);
      process.stderr.write(`ACS back: the agent reconnected in ${again.at - restoredAt} ms\n`);
    } finally {
      await acs.stop();
    }
  });

  it('a new image under the same name is picked up: the agent is recreated on it and registers as the same instance', async () => {
    await start();
    const arn = await registeredArn();
    const old = await agent();
    host.ac.abort(); // as when the service restarts (a new AMI cache, an operator's pull)
    await host.running;
    host.running = undefined;
    const newId = await importRealAgent(d.socket, REAL_AGENT_IMAGE); // the tag moves to a new image
    expect(newId).not.toBe(old.Image);
    const plan = await app.agent.plan();
    expect(plan.container.action).toBe('recreate');
    const r = await app.agent.apply();
    expect(r.action).toBe('recreate');
    const now = await agent();
    expect(now.Id).not.toBe(old.Id);
    expect(now.Image).toBe(newId);
    expect(now.State.Running).toBe(true);
    await until('registered again', async () => (await agentMetadata())?.ContainerInstanceArn === arn, 90_000, 250);
    expect((await app.agent.plan()).container.action).toBe('keep');
  });

  it('rollback keeps the runtime entry while a task created under it exists: exec and restart still work; the next rollback removes it', async () => {
    const original = '{\n  "log-level": "info"\n}\n';
    writeFileSync(d.daemonJson, original);
    await start();
    await registeredArn();
    host.ac.abort();
    await host.running;
    host.running = undefined;
    const task = await docker.createContainer({ Image: busybox, Cmd: ['sleep', '600'], name: 'task-under-runsc' });
    await task.start();
    expect((await task.inspect()).HostConfig.Runtime).toBe('runsc');

    await app.agent.rollback();
    const first = await app.runtime.rollback();
    expect(first).toEqual({ restored: true, keptFor: ['task-under-runsc'] });
    const live = await liveRuntime(d);
    expect(live.defaultRuntime).toBe('runc'); // nothing new lands in gVisor any more
    expect(live.runtimes).toContain('runsc');
    expect(JSON.parse(readFileSync(d.daemonJson, 'utf8'))).toEqual({
      'log-level': 'info',
      runtimes: { runsc: expect.objectContaining({ path: expect.any(String) }) },
    });
    // What ECS Exec and a task restart need.
    expect(execFileSync('docker', ['-H', d.host, 'exec', 'task-under-runsc', 'echo', 'inside'], { encoding: 'utf8' }).trim()).toBe(
      'inside',
    );
    execFileSync('docker', ['-H', d.host, 'restart', '-t', '1', 'task-under-runsc']);
    expect((await task.inspect()).State.Running).toBe(true);
    expect((await task.inspect()).HostConfig.Runtime).toBe('runsc');

    // A rollback while it still exists keeps the entry again; once it is gone the file is the original.
    expect((await app.runtime.rollback()).keptFor).toEqual(['task-under-runsc']);
    await task.remove({ force: true });
    expect(await app.runtime.rollback()).toEqual({ restored: true, keptFor: [] });
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(original);
    expect((await liveRuntime(d)).runtimes).not.toContain('runsc');
    expect(await app.runtime.rollback()).toEqual({ restored: false, keptFor: [] });
  });
});
