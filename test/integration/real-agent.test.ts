/**
 * The real Amazon ECS agent (1.101.2) under ecs-gvisor, wired as `run` wires it (buildApp from a parsed
 * configuration, then the watch), against the real private dockerd with Debian's runsc and the fake ECS
 * and IMDS on 127.0.0.1, which the agent reaches through its own endpoint settings (ECS_BACKEND_HOST,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT). The agent registers through its own RegisterContainerInstance and
 * answers introspection on the host's 127.0.0.1:51678. Assertions are on Docker, the fakes' records,
 * the agent's own introspection answer and status.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { LinuxHost } from '../../src/adapters/linux-host.js';
import { acsEvents } from '../../src/agent/acs-evidence.js';
import { type App, buildApp } from '../../src/cli/composition.js';
import { parseConfig } from '../../src/config.js';
import { TASK_ARN_LABEL } from '../../src/watch/ecs-tasks.js';
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
async function start(extra: Record<string, string> = {}): Promise<void> {
  const { ecs, imds } = host.aws;
  seedRealAgentImds(imds);
  forgetAgentState();
  writeFileSync(`${host.dir}/ecs.config`, realAgentConfig({ cluster: 'prod', ecsUrl: ecs.url, imdsUrl: imds.url }));
  env = watchEnv(
    d,
    { dir: host.dir, agentImage: REAL_AGENT_IMAGE, intro: host.intro, imdsUrl: imds.url },
    {
      ECS_GVISOR_INTROSPECTION_URL: 'http://127.0.0.1:51678',
      ECS_GVISOR_DRIFT_CHECK_SECONDS: '2',
      ECS_GVISOR_AUDIT_INTERVAL_SECONDS: '2',
      ECS_GVISOR_AGENT_LOG_FILE: AGENT_LOG,
      ...extra,
    },
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
/** Where ecs-init's mount puts the agent's log on the host. */
const AGENT_LOG = '/var/log/ecs/ecs-agent.log';
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

  it('its ACS connection, seen on the instance: an idle stretch costs no ECS call; a cut is seen within the grace period, confirmed by one call, healed, and its end seen with no call', async () => {
    const GRACE_S = 8;
    const acs = await FakeAcs.start(5_000);
    const { ecs } = host.aws;
    ecs.acsEndpoint = acs.url;
    ecs.acsConnected = (a) => acs.connected(a); // ECS's agentConnected is ACS's word, as in AWS
    try {
      await start({ ECS_GVISOR_ACS_GRACE_SECONDS: String(GRACE_S), ECS_GVISOR_UNHEALTHY_SECONDS: '5', ECS_GVISOR_HEAL_MAX_RESTARTS: '1' });
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
      // The kernel's word: the agent process holds that very connection; and its log says so.
      expect(await until('the kernel lists it', async () => (await toAcs()).find((c) => c.localPort === conn.remotePort))).toMatchObject({
        remoteAddress: '127.0.0.1',
      });
      await until('the agent’s log says it', () => acsEvents(readFileSync(AGENT_LOG, 'utf8')).at(-1)?.state === 'connected' || undefined);
      const watch = async () => (await app.status()).registration;
      await until('the watch sees it connected, and ECS confirmed the registration', async () => {
        const r = await watch();
        return r.acs?.state === 'connected' && r.identity === 'confirmed' && r.agentConnected === true;
      });
      process.stderr.write(`the agent's messages on its ACS connection: ${[...new Set(conn.received)].join(', ') || 'none'}\n`);

      // Idle and connected: no ECS call (the steady rate of this test's configuration would be one every 2 s).
      const described = () => ecs.count('DescribeContainerInstances');
      await new Promise((r) => setTimeout(r, 3_000)); // a poll planned before the evidence came may still land
      const idleFrom = described();
      await new Promise((r) => setTimeout(r, 20_000));
      expect(described()).toBe(idleFrom);

      const cutAt = Date.now();
      acs.cut();
      const lost = await until(
        'the watch sees the loss',
        async () => ((await watch()).acs?.state === 'disconnected' ? Date.now() : undefined),
        60_000,
      );
      expect(lost - cutAt).toBeLessThan(GRACE_S * 1000);
      expect(described()).toBe(idleFrom); // nothing asked within the grace period
      const confirmed = await until(
        'ECS asked: it says disconnected',
        async () => ((await watch()).agentConnected === false ? Date.now() : undefined),
        60_000,
      );
      expect(confirmed - lost).toBeGreaterThanOrEqual((GRACE_S - 1) * 1000);
      expect(described()).toBe(idleFrom + 1); // one call confirmed it
      process.stderr.write(
        `an ACS cut: seen on the instance in ${lost - cutAt} ms, confirmed by ECS ${confirmed - cutAt} ms after the cut\n`,
      );

      // The healing follows: the agent restarted (once: HEAL_MAX_RESTARTS=1), as ECS still says disconnected.
      const before = (await agent()).State.StartedAt;
      await until('the agent restarted', async () => (await agent()).State.StartedAt !== before || undefined, 90_000);
      await until(
        'registered again, and ECS asked about it',
        async () => {
          const r = await watch();
          return r.identity === 'confirmed' && r.agentConnected === false && r.acs?.state === 'disconnected';
        },
        90_000,
      );
      // Settled: the instance and ECS agree, so nothing is asked (checked over 10 s).
      let settled = described();
      await until(
        'no ECS call for 10 s',
        async () => {
          await new Promise((r) => setTimeout(r, 10_000));
          const now = described();
          const quiet = now === settled;
          settled = now;
          return quiet;
        },
        120_000,
        0,
      );

      const restoredAt = Date.now();
      acs.restore();
      await until(
        'the watch sees it connected again, and healthy',
        async () => {
          const s = await app.status();
          return s.registration.acs?.state === 'connected' && s.registration.agentConnected === true && s.verdict?.kind === 'healthy';
        },
        180_000,
      );
      const back = Date.now();
      expect(acs.connected(arn)).toBe(true);
      await new Promise((r) => setTimeout(r, 10_000));
      expect(described()).toBe(settled); // its end was seen here: no call
      process.stderr.write(`ACS back: seen and healthy ${back - restoredAt} ms after the restore, with no ECS call\n`);
    } finally {
      await acs.stop();
    }
  });

  it('runs a task ACS places, in gVisor under the task cgroup it made; the audit has the task and its limits from the agent itself, with no DescribeTasks', async () => {
    const acs = await FakeAcs.start(5_000);
    const { ecs } = host.aws;
    ecs.acsEndpoint = acs.url;
    const taskId = randomBytes(16).toString('hex');
    const taskArn = `arn:aws:ecs:us-east-1:111122223333:task/prod/${taskId}`;
    try {
      await start();
      const arn = await registeredArn();
      await until('the agent connected to ACS', () => acs.connected(arn) || undefined, 90_000);
      await until('ECS confirmed the registration', async () => (await app.status()).registration.identity === 'confirmed');
      // What ECS sends for a task definition of 0.25 vCPU and 128 MiB, one container of 64 MiB.
      acs.sendTask(arn, 'prod', {
        arn: taskArn,
        family: 'sandboxed',
        version: '1',
        desiredStatus: 'RUNNING',
        cpu: 0.25,
        memory: 128,
        containers: [
          {
            name: 'app',
            image: busybox,
            command: ['sleep', '600'],
            cpu: 0,
            memory: 64,
            essential: true,
            containerArn: `arn:aws:ecs:us-east-1:111122223333:container/prod/${taskId}/${randomUUID()}`,
          },
        ],
      });
      const listed = await until(
        'the task’s container',
        async () => (await docker.listContainers()).find((c) => c.Labels[TASK_ARN_LABEL] === taskArn),
        120_000,
        250,
      );
      const task = await docker.getContainer(listed.Id).inspect();
      expect(task.HostConfig.Runtime).toBe('runsc'); // the default runtime: gVisor
      expect(task.HostConfig.CgroupParent).toBe(`/ecs/${taskId}`); // the agent's own task cgroup

      const audited = await until(
        'the audit confirmed it by the agent’s word',
        async () => (await app.status()).audit?.tasks?.find((t) => t.id === listed.Id && t.task?.state === 'confirmed'),
        60_000,
      );
      expect(audited.task).toMatchObject({
        state: 'confirmed',
        arn: taskArn,
        asked: { memoryBytes: 128 * 1024 * 1024, cpuPeriodUs: 100_000, cpuQuotaUs: 25_000 },
      });
      expect(audited.parent).toMatchObject({ path: expect.stringContaining(`/ecs/${taskId}`), limits: { memoryBytes: 128 * 1024 * 1024 } });
      expect(audited.problems).toEqual([]);
      expect(ecs.count('DescribeTasks')).toBe(0);

      // A container someone else made, naming the task and copying its metadata endpoint: the agent disowns it.
      const v4 = task.Config.Env.find((e: string) => e.startsWith('ECS_CONTAINER_METADATA_URI_V4='))!;
      const forged = await docker.createContainer({
        Image: busybox,
        Cmd: ['sleep', '600'],
        Labels: { [TASK_ARN_LABEL]: taskArn },
        Env: [v4],
        HostConfig: { CgroupParent: `/ecs/${taskId}` },
      });
      await forged.start();
      const f = await until(
        'the forged container audited',
        async () => (await app.status()).audit?.tasks?.find((t) => t.id === forged.id && t.task),
        60_000,
      );
      expect(f.task).toMatchObject({ state: 'unconfirmed', reason: 'the agent did not create this container for that task' });
      expect(ecs.count('DescribeTasks')).toBe(0);
      process.stderr.write(
        `a task placed over ACS: ${task.Name} in ${task.HostConfig.Runtime} under ${task.HostConfig.CgroupParent}; 0 DescribeTasks\n`,
      );
    } finally {
      await acs.stop();
      // The task cgroups the agent made outlive its containers when they are removed under it.
      for (const c of await docker.listContainers({ all: true }))
        if (c.Labels[TASK_ARN_LABEL] === taskArn) await docker.getContainer(c.Id).remove({ force: true });
      for (const ctl of readdirSync('/sys/fs/cgroup')) {
        try {
          rmdirSync(`/sys/fs/cgroup/${ctl}/ecs/${taskId}`);
        } catch {
          // not made in this controller, or already gone
        }
      }
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
