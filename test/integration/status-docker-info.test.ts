/**
 * `status` asks Docker's /info from the entry, before the program is loaded (dockerd takes tens of
 * milliseconds to answer it). What that must not change: Docker is asked once, the report carries the
 * answer of the configured DOCKER_HOST and no other, Docker's refusal reads as before, and a socket that
 * never answers does not hold a command that has already failed. The executable and the bundle on Node,
 * against a fake Docker: a real HTTP server on a unix socket that records every request.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BUNDLE, EXECUTABLE } from '../harness/cli.js';

type Answer = 'info' | 'refuse' | 'never' | 'huge';

interface FakeDocker {
  socket: string;
  /** `METHOD path` of every request, in order of arrival. */
  requests: string[];
}

const servers: Server[] = [];
const sockets = new Set<Socket>();
const dirs: string[] = [];

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync('/tmp/egv-info-');
  dirs.push(d);
  return d;
}

/** A Docker that answers /info with `defaultRuntime` (or refuses it, or never answers) and knows no container. */
async function fakeDocker(socket: string, defaultRuntime: string, answer: Answer = 'info'): Promise<FakeDocker> {
  const fake: FakeDocker = { socket, requests: [] };
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!;
    fake.requests.push(`${req.method} ${path}`);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path.endsWith('/info')) {
      if (answer === 'never') return;
      if (answer === 'huge') {
        // 64 MB of one JSON document, written as fast as the reader takes it.
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(1024 * 1024, 'a');
        res.write('{"ServerVersion":"');
        let sent = 0;
        const more = () => {
          while (sent < 64) {
            sent++;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          res.end('"}');
        };
        res.on('error', () => undefined);
        return more();
      }
      if (answer === 'refuse') return json(500, { message: 'daemon is shutting down' });
      return json(200, {
        ServerVersion: '99.0.0-fake',
        DefaultRuntime: defaultRuntime,
        Runtimes: { runc: { path: 'runc' }, [defaultRuntime]: { path: `/opt/${defaultRuntime}` } },
        CgroupVersion: '1',
        CgroupDriver: 'cgroupfs',
        SecurityOptions: [],
      });
    }
    json(404, { message: `No such container: ${path}` });
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(socket, r));
  servers.push(server);
  return fake;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a command line (asynchronously: the fake Docker answers from this process). */
function run(file: string, args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const CLIS: [string, string, string[]][] = [
  ['the executable', EXECUTABLE, []],
  ['the bundle on Node', process.execPath, [BUNDLE]],
];

/** status --json with nothing else to read: no configuration file, an empty state directory, no runsc. */
function statusEnv(dir: string, extra: Record<string, string>): Record<string, string> {
  return {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    ECS_GVISOR_CONFIG: `${dir}/none.config`,
    ECS_GVISOR_STATE_DIR: `${dir}/state`,
    ECS_GVISOR_RUNSC_PATH: `${dir}/no-runsc`,
    ...extra,
  };
}

describe.each(CLIS)('status against a hostile Docker socket: %s', (_name, file, pre) => {
  it('a Docker that accepts and never answers: status reports within a few seconds, Docker unavailable', async () => {
    const dir = tempDir();
    const docker = await fakeDocker(`${dir}/docker.sock`, 'runsc', 'never');
    const r = await run(file, [...pre, 'status', '--json'], statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}` }));
    expect(r.code).toBe(8);
    expect(JSON.parse(r.stdout).runtime.dockerProblem).toMatch(/did not answer within 4 s to get info/);
    expect(r.ms).toBeLessThan(15_000);
  });

  it('a 64 MB /info answer is not read whole: status reports the refusal, its memory stays small', async () => {
    const dir = tempDir();
    const docker = await fakeDocker(`${dir}/docker.sock`, 'runsc', 'huge');
    const env = statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}` });
    // GNU time's maximum resident set, in KB, on stderr's last line.
    const r = await run('/usr/bin/time', ['-f', '%M', file, ...pre, 'status', '--json'], env);
    expect(r.code).toBe(8);
    expect(JSON.parse(r.stdout).runtime.dockerProblem).toMatch(/larger than 1 MiB/);
    const maxRssKb = Number(r.stderr.trim().split('\n').pop());
    // Node and the program alone take ~60–130 MB; reading the answer whole took 411 MB.
    expect(maxRssKb).toBeLessThan(250_000);
  });
});

describe.each(CLIS)('status and Docker’s /info: %s', (_name, file, pre) => {
  it('asks Docker for /info once and reports that answer', async () => {
    const dir = tempDir();
    const docker = await fakeDocker(`${dir}/docker.sock`, 'runsc-from-env-host');
    const r = await run(file, [...pre, 'status', '--json'], statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}` }));
    expect(r.code, r.stderr).toBe(8);
    expect(JSON.parse(r.stdout).runtime).toMatchObject({
      dockerDefaultRuntime: 'runsc-from-env-host',
      cgroup: { version: '1', driver: 'cgroupfs' },
    });
    expect(docker.requests.filter((q) => q === 'GET /info')).toHaveLength(1);
    const text = await run(file, [...pre, 'status'], statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}` }));
    expect(text.stdout).toMatch(/^cgroups +v1, Docker's cgroupfs driver$/m);
  });

  it('DOCKER_HOST set only in the configuration file: asked early of the default socket, that answer is not reported', async () => {
    // The default socket (/var/run/docker.sock, /run being where /var/run points) is a fake of the test's
    // own: /run is replaced by a directory of ours in a mount namespace of the command's alone.
    const run_ = tempDir();
    const dir = tempDir();
    const atDefault = await fakeDocker(`${run_}/docker.sock`, 'runtime-of-the-default-socket');
    const configured = await fakeDocker(`${dir}/configured.sock`, 'runtime-of-the-configured-socket');
    writeFileSync(`${dir}/ecs-gvisor.config`, `ECS_GVISOR_DOCKER_HOST=unix://${configured.socket}\n`);
    const env = statusEnv(dir, { ECS_GVISOR_CONFIG: `${dir}/ecs-gvisor.config` });
    const r = await run(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${run_} /run && exec "$@"`, 'sh', file, ...pre, 'status', '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(8);
    expect(JSON.parse(r.stdout).runtime).toMatchObject({ dockerDefaultRuntime: 'runtime-of-the-configured-socket' });
    expect(atDefault.requests).toEqual(['GET /info']);
    expect(configured.requests.filter((q) => q === 'GET /info')).toHaveLength(1);
  });

  it('Docker refusing /info: the report gives Docker’s own words, and Docker was asked once', async () => {
    const dir = tempDir();
    const docker = await fakeDocker(`${dir}/docker.sock`, 'runsc', 'refuse');
    const r = await run(file, [...pre, 'status', '--json'], statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}` }));
    expect(r.code, r.stderr).toBe(8);
    expect(JSON.parse(r.stdout).runtime.dockerProblem).toBe('Docker refused to get info (HTTP 500: daemon is shutting down).');
    expect(docker.requests.filter((q) => q === 'GET /info')).toHaveLength(1);
  });

  it('a Docker that never answers /info does not hold a command that failed on its configuration', async () => {
    const dir = tempDir();
    const docker = await fakeDocker(`${dir}/docker.sock`, 'runsc', 'never');
    const env = statusEnv(dir, { ECS_GVISOR_DOCKER_HOST: `unix://${docker.socket}`, ECS_GVISOR_LOG_LEVEL: 'chatty' });
    const r = await run(file, [...pre, 'status', '--json'], env);
    expect(r.stderr).toContain('ECS_GVISOR_LOG_LEVEL="chatty"');
    expect(r.code).toBe(2);
    expect(docker.requests).toEqual(['GET /info']);
    // Far below Docker's 60 s deadline: the unanswered connection did not keep the process alive.
    expect(r.ms).toBeLessThan(30_000);
  });
});
