/**
 * The agent step against the real private dockerd, with a stand-in agent image. Docker creates the
 * ecs-init bind sources it lacks (/var/log/ecs, /var/lib/ecs/data, /etc/ecs, …) on this host, as it
 * would on an instance. Assertions are on `docker inspect`, the agent's own HTTP answer, and the CLI's
 * exit code and output.
 */
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const docker = dockerClient(d);
const SECRET = 'c2VjcmV0LWF1dGgtZGF0YS1kby1ub3QtbG9n';

let dir: string;
function env(extra: Record<string, string> = {}) {
  return cliEnv(d, {
    ECS_GVISOR_AGENT_IMAGE: agentImage,
    ECS_GVISOR_ECS_CONFIG: `${dir}/etc-ecs.config`,
    ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/var-lib-ecs.config`,
    ECS_GVISOR_AGENT_CACHE_DIR: `${dir}/cache`,
    ECS_GVISOR_AGENT_PULL_RETRIES: '0',
    ...extra,
  });
}

async function agent() {
  return docker.getContainer('ecs-agent').inspect();
}

async function metadata(): Promise<{ Cluster: string }> {
  for (let i = 0; i < 50; i++) {
    try {
      const res = await fetch('http://127.0.0.1:51678/v1/metadata');
      if (res.ok) return (await res.json()) as { Cluster: string };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the agent never answered on 127.0.0.1:51678');
}

beforeEach(async () => {
  await resetDocker(d, '{}\n');
  dir = mkdtempSync('/tmp/egv-agent-');
  mkdirSync(`${dir}/cache`);
  // ecs-init's order: /var/lib/ecs/ecs.config, then /etc/ecs/ecs.config wins.
  writeFileSync(
    `${dir}/var-lib-ecs.config`,
    'ECS_CLUSTER=from-instance\nECS_INSTANCE_ATTRIBUTES={"stack":"blue"}\nECS_ENABLE_TASK_ENI=false\n',
  );
  writeFileSync(
    `${dir}/etc-ecs.config`,
    `# operator settings\nECS_CLUSTER=prod\nECS_ENGINE_AUTH_TYPE=dockercfg\nECS_ENGINE_AUTH_DATA=${SECRET}\nECS_AGENT_LABELS={"team":"platform"}\nECS_RESERVED_MEMORY="256"\n`,
  );
  rmSync('/var/lib/ecs/data/stand-in-exit', { force: true });
});

afterAll(async () => {
  await resetDocker(d, '{}\n');
});

describe('bootstrap --only runtime,agent', () => {
  it('runs the agent under runc with ecs-init’s spec while runsc is the default', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(SECRET);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');

    const c = await agent();
    const hc = c.HostConfig as Record<string, unknown>;
    expect(c.State.Running).toBe(true);
    expect(hc.Runtime).toBe('runc');
    expect(hc.NetworkMode).toBe('host');
    expect(hc.UsernsMode).toBe('host');
    expect(hc.CapAdd).toEqual(['NET_ADMIN', 'SYS_ADMIN']);
    expect(hc.Init).toBe(true);
    expect(hc.RestartPolicy).toMatchObject({ Name: '' }); // ecs-gvisor owns restarts, not Docker
    expect(hc.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-file': '4', 'max-size': '16m' } });
    const binds = hc.Binds as string[];
    expect(binds).toEqual(
      expect.arrayContaining([
        `${d.socket}:/var/run/docker.sock`, // the agent reaches the dockerd that runs it
        '/var/log/ecs:/log',
        '/var/lib/ecs/data:/data',
        '/etc/ecs:/etc/ecs',
        '/var/cache/ecs:/var/cache/ecs',
        '/sys/fs/cgroup:/sys/fs/cgroup',
        '/var/lib/ecs:/var/lib/ecs',
        '/var/log/ecs/exec:/log/exec',
        '/etc/ssl:/etc/ssl:ro', // Debian host
        '/run/docker/plugins:/run/docker/plugins:ro',
        '/etc/docker/plugins:/etc/docker/plugins:ro',
        '/usr/lib/docker/plugins:/usr/lib/docker/plugins:ro',
        '/proc:/host/proc:ro',
        '/usr/lib:/usr/lib:ro',
        '/lib:/lib:ro',
        '/sbin:/host/sbin:ro',
        '/etc/alternatives:/etc/alternatives:ro',
        '/usr/sbin:/usr/sbin:ro',
      ]),
    );
    // Binds of host files that may or may not exist here: present exactly when the host has them.
    for (const p of ['/usr/bin/nsenter', '/usr/lib64', '/lib64', '/var/lib/cloud/data/result.json']) {
      expect(binds.some((b) => b.startsWith(`${p}:`))).toBe(existsSync(p));
    }
    const modinfo = ['/sbin/modinfo', '/usr/sbin/modinfo'].find((p) => existsSync(p));
    expect(binds.filter((b) => b.includes('modinfo'))).toEqual(modinfo ? [`${modinfo}:${modinfo}`] : []);
    expect(binds.some((b) => b.startsWith('/usr/bin/lsblk:'))).toBe(existsSync('/usr/bin/lsblk'));
    expect(binds.some((b) => b.startsWith('/var/lib/ecs/deps'))).toBe(existsSync('/var/lib/ecs/deps'));

    const envMap = new Map((c.Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    expect(envMap.get('ECS_CLUSTER')).toBe('prod'); // /etc/ecs/ecs.config wins
    expect(envMap.get('ECS_INSTANCE_ATTRIBUTES')).toBe('{"stack":"blue"}');
    expect(envMap.get('ECS_ENABLE_TASK_ENI')).toBe('false'); // file beats default
    expect(envMap.get('ECS_RESERVED_MEMORY')).toBe('"256"'); // byte-identical to ecs-init: quotes kept
    expect(envMap.get('ECS_ENGINE_AUTH_DATA')).toBe(SECRET);
    expect(envMap.has('# operator settings')).toBe(false);
    expect(envMap.get('ECS_LOGFILE')).toBe('/log/ecs-agent.log');
    expect(envMap.get('ECS_DATADIR')).toBe('/data');
    expect(envMap.get('ECS_AVAILABLE_LOGGING_DRIVERS')).toBe('["json-file","syslog","awslogs","fluentd","none"]');
    expect(envMap.get('ECS_DETAILED_OS_FAMILY')).toMatch(/^debian_\d+$/);
    expect(envMap.get('SSL_CERT_DIR')).toBe('/etc/ssl/certs');
    expect(c.Config.Labels).toMatchObject({ team: 'platform', 'ecs-gvisor.managed': 'true' });
    expect(c.Config.Labels['ecs-gvisor.spec-hash']).toMatch(/^[0-9a-f]{32}$/);

    // The quoted value is reported, not changed.
    expect(r.stdout).toContain('the value of ECS_RESERVED_MEMORY is in quotes');
    expect((await metadata()).Cluster).toBe('prod');
  });

  it('is idempotent: a second run keeps the same container', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], env())).code).toBe(0);
    const first = await agent();
    const again = await runCli(['bootstrap', '--only', 'runtime,agent'], env());
    expect(again.code).toBe(0);
    const second = await agent();
    expect(second.Id).toBe(first.Id);
    expect(second.State.StartedAt).toBe(first.State.StartedAt);
    const p = await runCli(['plan', '--only', 'agent'], env());
    expect(p.stdout).toContain('left alone');
  });

  it('recreates the agent when its spec changes, and plan shows the diff with secrets redacted', async () => {
    const e = env();
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], e)).code).toBe(0);
    const before = await agent();
    writeFileSync(
      `${dir}/etc-ecs.config`,
      readFileSync(`${dir}/etc-ecs.config`, 'utf8').replace('ECS_CLUSTER=prod', 'ECS_CLUSTER=staging'),
    );

    const p = await runCli(['plan', '--only', 'agent'], e);
    expect(p.code).toBe(0);
    expect(p.stdout).toContain('spec changed: to be recreated');
    expect(p.stdout).toContain('-    "ECS_CLUSTER=prod",');
    expect(p.stdout).toContain('+    "ECS_CLUSTER=staging",');
    expect(p.stdout).toContain('ECS_ENGINE_AUTH_DATA=[redacted]');
    expect(p.stdout + p.stderr).not.toContain(SECRET);
    expect((await agent()).Id).toBe(before.Id); // plan changed nothing

    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], e);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(SECRET);
    const after = await agent();
    expect(after.Id).not.toBe(before.Id);
    expect(after.Config.Env).toContain('ECS_CLUSTER=staging');
  });

  it('replaces an ecs-agent container ecs-init made (under the default runtime) and never leaves two', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime'], env())).code).toBe(0);
    // What ecs-init would do next: create ecs-agent with no runtime named, so it lands in runsc.
    const foreign = await docker.createContainer({ name: 'ecs-agent', Image: agentImage, HostConfig: { NetworkMode: 'none' } });
    expect((await foreign.inspect()).HostConfig.Runtime).toBe('runsc');

    const r = await runCli(['bootstrap', '--only', 'agent'], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('without proving the sandbox in this run');
    const c = await agent();
    expect(c.Id).not.toBe(foreign.id);
    expect(c.HostConfig.Runtime).toBe('runc');
    const all = await docker.listContainers({ all: true, filters: { name: ['ecs-agent'] } });
    expect(all).toHaveLength(1);
  });

  it('never starts the agent when the sandbox cannot be proven (fail closed)', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env({ ECS_GVISOR_RUNSC_ARGS: '' }));
    expect(r.code).toBe(5);
    await expect(agent()).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe('agent image', () => {
  it('loads the image from ecs-init’s cache when Docker lacks it, and records the cache as loaded', async () => {
    const tarball = `${dir}/cache/ecs-agent.tar`;
    await pipeline((await docker.getImage(agentImage).get()) as NodeJS.ReadableStream, createWriteStream(tarball));
    writeFileSync(`${dir}/cache/state`, '2'); // reload needed
    await docker.getImage(agentImage).remove({ force: true });
    try {
      const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env());
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('loading the agent image from the cache');
      await expect(docker.getImage(agentImage).inspect()).resolves.toBeTruthy();
      expect(readFileSync(`${dir}/cache/state`, 'utf8')).toBe('1');
      expect((await agent()).State.Running).toBe(true);
    } finally {
      // Leave the image for the other tests whatever happened.
      const present = await docker
        .getImage(agentImage)
        .inspect()
        .then(
          () => true,
          () => false,
        );
      if (!present) await docker.loadImage(tarball);
    }
  });

  it('fails with a clear error when the image is missing, uncached and cannot be pulled', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env({ ECS_GVISOR_AGENT_IMAGE: '127.0.0.1:1/ecs-agent:missing' }));
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(
      /The agent image 127\.0\.0\.1:1\/ecs-agent:missing is not in Docker, .*ecs-agent\.tar is not cached, and pulling it failed/,
    );
    await expect(agent()).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe('our agent is the container we created', () => {
  it('an ecs-agent someone else created with our labels is replaced, not kept, and rollback leaves it alone', async () => {
    const e = env();
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], e)).code).toBe(0);
    const ours = await agent();
    await docker.getContainer(ours.Id).remove({ force: true });
    // Our labels, copied: the spec hash included.
    const fake = await docker.createContainer({
      name: 'ecs-agent',
      Image: agentImage,
      Labels: ours.Config.Labels,
      HostConfig: { NetworkMode: 'none', Runtime: 'runc' },
    });
    expect((await runCli(['rollback', '--only', 'agent'], { ...e })).stdout).toContain('no container of ours to remove');
    expect((await agent()).Id).toBe(fake.id);
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], e)).code).toBe(0);
    const now = await agent();
    expect(now.Id).not.toBe(fake.id);
    expect(now.HostConfig.NetworkMode).toBe('host');
  });
});

describe('bootstrap: converged means the agent stays up', () => {
  it.each([
    ['an empty variable name', '=x\n', 'no variable name before "="'],
    ['a NUL byte in a value', `ECS_ENGINE_AUTH_DATA=${SECRET}\0tail\n`, '"ECS_ENGINE_AUTH_DATA" has a NUL byte'],
  ])(
    'an ecs.config line Docker would refuse (%s) is refused before the running agent is touched, in one sentence, secrets masked',
    async (_name, line, what) => {
      expect((await runCli(['bootstrap', '--only', 'runtime,agent'], env())).code).toBe(0);
      const before = await agent();
      writeFileSync(`${dir}/etc-ecs.config`, `${readFileSync(`${dir}/etc-ecs.config`, 'utf8')}${line}`);
      const e = env();
      const r = await runCli(['bootstrap', '--only', 'agent'], e);
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toMatch(
        new RegExp(
          `^ecs-gvisor: ${dir}/etc-ecs\\.config line \\d+: ${what}, which Docker cannot pass to the agent; nothing was changed\\.\\n$`,
        ),
      );
      // The same container, never stopped (the same start); nothing half-made beside it.
      const after = await agent();
      expect(after.Id).toBe(before.Id);
      expect(after.State.Running).toBe(true);
      expect(after.State.StartedAt).toBe(before.State.StartedAt);
      const names = (await docker.listContainers({ all: true })).flatMap((c) => c.Names);
      expect(names.filter((n) => n.startsWith('/ecs-agent'))).toEqual(['/ecs-agent']);
      for (const text of [
        r.stderr,
        r.stdout,
        ...readdirSync(e.ECS_GVISOR_STATE_DIR!)
          .filter((f) => f.endsWith('.json'))
          .map((f) => readFileSync(`${e.ECS_GVISOR_STATE_DIR}/${f}`, 'utf8')),
      ]) {
        expect(text).not.toContain(SECRET);
      }
    },
  );

  it('a replacement that exits at once puts the previous agent back, running', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], env())).code).toBe(0);
    const before = await agent();
    // A new agent image whose entry point does not exist: created and started (docker-init runs), then exit 127.
    const tmp = await docker.createContainer({ Image: agentImage, name: `egv-broken-${process.pid}` });
    await tmp.commit({ repo: 'egv-broken-agent', tag: '1', changes: ['ENTRYPOINT ["/no/such/agent"]'] });
    await tmp.remove();
    const r = await runCli(['bootstrap', '--only', 'agent'], env({ ECS_GVISOR_AGENT_IMAGE: 'egv-broken-agent:1' }));
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(
      new RegExp(
        `^ecs-gvisor: The new agent container exited with code 127 within 1 s of its start \\(its last line: .*no/such/agent.*\\); the previous agent ${before.Id.slice(0, 12)} was put back\\.\\n$`,
      ),
    );
    const after = await agent();
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    const names = (await docker.listContainers({ all: true })).flatMap((c) => c.Names);
    expect(names.filter((n) => n.startsWith('/ecs-agent'))).toEqual(['/ecs-agent']);
    // The next bootstrap with the good image keeps it: agent.json still names it.
    const again = await runCli(['bootstrap', '--only', 'agent'], env());
    expect(again.code, again.stderr).toBe(0);
    expect((await agent()).Id).toBe(before.Id);
    await docker.getImage('egv-broken-agent:1').remove();
  });

  it('an agent that exits right after its start is exit 4 with one sentence, not "converged"', async () => {
    writeFileSync('/var/lib/ecs/data/stand-in-exit', '5'); // as the real agent does when its registration is refused
    try {
      const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env({ ECS_GVISOR_AGENT_SETTLE_SECONDS: '3' }));
      expect(r.code).toBe(4);
      expect(r.stderr.trim()).toBe(
        'ecs-gvisor: The agent container ecs-agent exited with code 5 within 3 s of its start; see docker logs ecs-agent.',
      );
      expect(r.stdout).not.toContain('the ECS agent runs under runc');
    } finally {
      rmSync('/var/lib/ecs/data/stand-in-exit', { force: true });
    }
    // Once it stays up, the same command converges.
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], env({ ECS_GVISOR_AGENT_SETTLE_SECONDS: '3' }))).code).toBe(0);
    expect((await agent()).State.Running).toBe(true);
  });

  it('ECS_EXTERNAL=true is refused before any step, with nothing changed', async () => {
    writeFileSync(`${dir}/etc-ecs.config`, 'ECS_CLUSTER=prod\nECS_EXTERNAL=true\n');
    const before = readFileSync(d.daemonJson, 'utf8');
    const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env());
    expect(r.code).toBe(3);
    expect(r.stderr.trim()).toBe(
      `ecs-gvisor: ${dir}/etc-ecs.config sets ECS_EXTERNAL=true (ECS Anywhere), but ecs-gvisor runs the agent only on EC2 container instances; remove the key or leave this host to ecs-init.`,
    );
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(before);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
    await expect(agent()).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe('rollback --only agent', () => {
  it('removes our agent container but never one it did not create', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime,agent'], env())).code).toBe(0);
    expect((await runCli(['rollback', '--only', 'agent'], env())).code).toBe(0);
    await expect(agent()).rejects.toMatchObject({ statusCode: 404 });

    await docker.createContainer({ name: 'ecs-agent', Image: agentImage, HostConfig: { NetworkMode: 'none' } });
    const r = await runCli(['rollback', '--only', 'agent'], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no container of ours to remove');
    expect((await agent()).Name).toBe('/ecs-agent');
  });
});
