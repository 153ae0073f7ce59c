/**
 * Every ECS network mode in gVisor, with a current runsc (release-20260817, from the project's shared
 * test material; Debian's cannot run gVisor's own network stack on this kernel) behind ecs-gvisor's
 * runtime entry point, on the real private dockerd. The traffic stays inside the dockerd's network
 * namespace: its loopback, and an address this test assigns inside a pause container's namespace to one
 * end of a veth pair it creates. Assertions are on what arrives (the bytes a server in another container
 * or on the host answers), on the sandbox processes' command lines, and on status.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, cmdline, dockerClient, dockerdPid, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const busybox = inject('busyboxImage');
const docker = dockerClient(d);
const SHARED_RUNSC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/gvisor/runsc');
let dir: string;
let runsc: string;

/** The CLI's environment: the current runsc, no runtimeArgs (netstack by default), the given policy. */
const env = (policy: string, extra: Record<string, string> = {}) =>
  cliEnv(d, { ECS_GVISOR_RUNSC_PATH: runsc, ECS_GVISOR_RUNSC_ARGS: '', ECS_GVISOR_NETWORK_POLICY: policy, ...extra });

/** A command in the private dockerd's network namespace (the "host" its containers see). */
const inDockerNs = (argv: string[]) => execFileSync('nsenter', [`--net=/proc/${dockerdPid(d)}/ns/net`, ...argv], { encoding: 'utf8' });
const dockerCli = (args: string[]) =>
  execFileSync('docker', ['-H', d.host, ...args], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const sandboxArgv = async (name: string) => cmdline((await docker.getContainer(name).inspect()).State.Pid);
const passthrough = (argv: string[]) => argv.filter((a) => a.startsWith('--network=')).pop() === '--network=host';

beforeAll(() => {
  if (!existsSync(SHARED_RUNSC)) throw new Error(`the current runsc is missing: ${SHARED_RUNSC}`);
  dir = mkdtempSync('/tmp/egv-netmodes-');
  runsc = `${dir}/runsc`;
  copyFileSync(SHARED_RUNSC, runsc); // never the shared file itself
  execFileSync('chmod', ['0755', runsc]);
});
beforeEach(async () => {
  await resetDocker(d, '{}\n');
});
afterAll(async () => {
  await resetDocker(d, '{}\n');
  rmSync(dir, { recursive: true, force: true });
});

describe('network policy auto (the default), current runsc', () => {
  it('proves all three modes and publishes them in status: own namespace on netstack, joined and host on passthrough', async () => {
    const e = env('auto'); // one state dir for both commands
    const r = await runCli(['bootstrap', '--only', 'runtime'], e);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse((await runCli(['status', '--json'], e)).stdout);
    expect(s.runtime.networkPolicy).toBe('auto');
    expect(s.runtime.networkModes).toEqual(['bridge', 'awsvpc', 'host']);
    expect(s.runtime.evidence.networks).toEqual({
      own: { proven: true, stack: 'netstack' },
      joined: { proven: true, stack: 'passthrough' },
      host: { proven: true, stack: 'passthrough' },
    });
  });

  it('host mode: a task reaches a server on the host’s 127.0.0.1, in a sandbox on passthrough', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime'], env('auto'))).code).toBe(0);
    const www = mkdtempSync(`${dir}/www-`);
    execFileSync('sh', ['-c', `echo from-the-host > ${www}/index.html`]);
    const server = execFileSync(
      'sh',
      ['-c', `nsenter --net=/proc/${dockerdPid(d)}/ns/net busybox httpd -p 127.0.0.1:18581 -h ${www} && echo started`],
      { encoding: 'utf8' },
    );
    expect(server.trim()).toBe('started');
    try {
      dockerCli(['run', '-d', '--name', 'task-host', '--network', 'host', busybox, 'sleep', '600']);
      expect(dockerCli(['exec', 'task-host', 'wget', '-qO-', 'http://127.0.0.1:18581/'])).toBe('from-the-host');
      const argv = await sandboxArgv('task-host');
      expect(argv[0]).toMatch(/runsc-sandbox|gvisor/);
      expect(passthrough(argv)).toBe(true);
    } finally {
      execFileSync('pkill', ['-f', `busybox httpd -p 127.0.0.1:18581 -h ${www}`]);
    }
  });

  it('awsvpc: an interface added to the pause container’s namespace after it started is shared by the task’s containers, as is 127.0.0.1', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime'], env('auto'))).code).toBe(0);
    // The pause container, as ECS starts it; then what the CNI plugin does: an interface and an address.
    dockerCli(['run', '-d', '--name', 'pause', '--network', 'none', busybox, 'sleep', '600']);
    const pausePid = (await docker.getContainer('pause').inspect()).State.Pid;
    expect(passthrough(cmdline(pausePid))).toBe(false); // a namespace of its own: netstack
    inDockerNs(['ip', 'link', 'add', 'egv-eni0', 'type', 'veth', 'peer', 'name', 'egv-eni1']);
    try {
      inDockerNs(['ip', 'link', 'set', 'egv-eni1', 'netns', String(pausePid)]);
      const inPause = (argv: string[]) => execFileSync('nsenter', [`--net=/proc/${pausePid}/ns/net`, ...argv]);
      inPause(['ip', 'addr', 'add', '10.213.0.2/24', 'dev', 'egv-eni1']);
      inPause(['ip', 'link', 'set', 'egv-eni1', 'up']);
      // The task's containers join it.
      dockerCli([
        'run',
        '-d',
        '--name',
        'task-a',
        '--network',
        'container:pause',
        busybox,
        'sh',
        '-c',
        'mkdir -p /tmp/w && echo from-a > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w',
      ]);
      dockerCli(['run', '-d', '--name', 'task-b', '--network', 'container:pause', busybox, 'sleep', '600']);
      const get = (url: string) => {
        for (let i = 0; ; i++) {
          try {
            return dockerCli(['exec', 'task-b', 'wget', '-qO-', url]);
          } catch (err) {
            if (i >= 50) throw err;
            execFileSync('sleep', ['0.2']); // the server in A may still be starting
          }
        }
      };
      expect(get('http://127.0.0.1:8080/')).toBe('from-a');
      expect(get('http://10.213.0.2:8080/')).toBe('from-a');
      expect(passthrough(await sandboxArgv('task-a'))).toBe(true);
      expect(passthrough(await sandboxArgv('task-b'))).toBe(true);
      // The interface is still there for the next container of the task.
      expect(inPause(['ip', '-o', '-4', 'addr', 'show', 'dev', 'egv-eni1']).toString()).toContain('10.213.0.2/24');
    } finally {
      try {
        inDockerNs(['ip', 'link', 'del', 'egv-eni0']);
      } catch {
        // gone with the namespace
      }
    }
  });
});

describe('network policy sandbox and passthrough', () => {
  it('sandbox: netstack only; a host-mode task fails at start (as with runsc alone), and status says host and awsvpc are not proven', async () => {
    const e = env('sandbox');
    expect((await runCli(['bootstrap', '--only', 'runtime'], e)).code).toBe(0);
    const s = JSON.parse((await runCli(['status', '--json'], e)).stdout);
    expect(s.runtime.networkModes).toEqual(['bridge']);
    expect(s.runtime.evidence.networks.host).toEqual({ proven: false, reason: 'refused by ECS_GVISOR_NETWORK_POLICY=sandbox' });
    expect(() => dockerCli(['run', '--rm', '--network', 'host', busybox, 'true'])).toThrow();
  });

  it('passthrough: every container, its own namespace included', async () => {
    expect((await runCli(['bootstrap', '--only', 'runtime'], env('passthrough'))).code).toBe(0);
    dockerCli(['run', '-d', '--name', 'task-own', '--network', 'none', busybox, 'sleep', '600']);
    expect(passthrough(await sandboxArgv('task-own'))).toBe(true);
  });

  it('rollback removes the entry point with the runtime entry', async () => {
    const e = env('auto');
    expect((await runCli(['bootstrap', '--only', 'runtime'], e)).code).toBe(0);
    const entry = `${e.ECS_GVISOR_STATE_DIR}/bin/runsc`;
    expect(existsSync(entry)).toBe(true);
    expect((await runCli(['rollback', '--only', 'runtime'], e)).code).toBe(0);
    expect(existsSync(entry)).toBe(false);
  });
});
