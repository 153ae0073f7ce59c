/**
 * The runtime step end to end: the built CLI against a real private dockerd with Debian's runsc.
 * Every assertion is on something observable: the bytes on disk, what Docker reports, the host's /proc.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { beforeEach, describe, expect, inject, it } from 'vitest';
import { logMessages, runCli } from '../harness/cli.js';
import {
  cliEnv,
  cmdline,
  dockerClient,
  dockerdPid,
  liveRuntime,
  RUNSC,
  RUNSC_ARGS,
  reloadCount,
  resetDocker,
} from '../harness/docker-state.js';

const d = inject('dockerd');
const busybox = inject('busyboxImage');
const docker = dockerClient(d);

/** A daemon.json an operator might have: keys dockerd accepts on reload, another runtime, odd spacing. */
const RICH = `{
    "log-driver": "json-file",
    "log-opts": { "max-size": "16m", "max-file": "4" },
    "labels": ["team=platform", "cost-centre=12345678901234567890"],
    "max-concurrent-downloads": 6,
    "runtimes": {
        "nvidia": { "path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": [] }
    },
    "shutdown-timeout": 30,
    "debug": false
}
`;

function read(): string {
  return readFileSync(d.daemonJson, 'utf8');
}

/** Host processes (shims, sandboxes, gofers) working for a container of the private dockerd. */
function processesUnder(execRoot: string): string[] {
  return readdirSync('/proc')
    .filter((e) => /^[0-9]+$/.test(e))
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    })
    .filter((c) => c.includes(execRoot) && !c.startsWith('containerd ') && !c.includes('containerd.toml') && !/^\S*dockerd /.test(c));
}

async function probesLeft(): Promise<number> {
  return (await docker.listContainers({ all: true, filters: { label: ['ecs-gvisor.probe'] } })).length;
}

beforeEach(async () => {
  await resetDocker(d, RICH);
});

describe('bootstrap --only ecs-init,runtime', () => {
  it('ecs-init is stopped before daemon.json changes; its unit-file changes (a systemd reload each) wait for the proof', async () => {
    // A stand-in systemctl for ecs.service that records each call with Docker's default runtime at that
    // moment, whether daemon.json names a default, and whether the proof was recorded.
    const dir = mkdtempSync('/tmp/egv-systemctl-');
    const env = cliEnv(d, { PATH: `${dir}:${process.env.PATH}` });
    writeFileSync(`${dir}/state`, 'ACTIVE=active\nFILE=enabled\n');
    writeFileSync(
      `${dir}/systemctl`,
      `#!/bin/sh
for a; do unit=$a; done
if [ "$unit" != ecs.service ]; then [ "$1" = show ] && printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'; exit 0; fi
. ${dir}/state
echo "$1 $(docker -H ${d.host} info --format '{{.DefaultRuntime}}') $(grep -c default-runtime ${d.daemonJson}) $(grep -c '"verified": *true' ${env.ECS_GVISOR_STATE_DIR}/runtime.json 2>/dev/null || echo 0)" >> ${dir}/calls
case "$1" in
  show) printf 'LoadState=loaded\\nActiveState=%s\\nUnitFileState=%s\\nFragmentPath=/usr/lib/systemd/system/ecs.service\\n' "$ACTIVE" "$FILE"; exit 0 ;;
  stop) ACTIVE=inactive ;;
  disable) FILE=disabled ;;
  mask) FILE=masked ;;
esac
printf 'ACTIVE=%s\\nFILE=%s\\n' "$ACTIVE" "$FILE" > ${dir}/state
`,
    );
    chmodSync(`${dir}/systemctl`, 0o755);
    const r = await runCli(['bootstrap', '--only', 'ecs-init,runtime'], env);
    expect(r.code).toBe(0);
    // Each line: the call, Docker's live default, whether daemon.json names a default, whether proven.
    expect(readFileSync(`${dir}/calls`, 'utf8').trim().split('\n')).toEqual([
      'show runc 0 0',
      'stop runc 0 0',
      'disable runsc 1 1',
      'mask runsc 1 1',
    ]);
    expect(readFileSync(`${dir}/state`, 'utf8')).toBe('ACTIVE=inactive\nFILE=masked\n');
    expect(await probesLeft()).toBe(0);
  });
});

describe('bootstrap --only runtime', () => {
  it('removes probes a killed run left by the names it recorded, never a task that carries the probe label', async () => {
    const env = cliEnv(d);
    // A task definition can set any Docker label, ours included.
    const task = await docker.createContainer({
      Image: busybox,
      Cmd: ['sleep', '600'],
      name: 'task-labelled',
      Labels: { 'ecs-gvisor.probe': '1' },
      HostConfig: { Runtime: 'runc' },
    });
    await task.start();
    // A probe of ours that a killed run left behind: created and recorded, never removed.
    const left = await docker.createContainer({
      Image: busybox,
      Cmd: ['sleep', '600'],
      name: 'ecs-gvisor-probe-left',
      Labels: { 'ecs-gvisor.probe': '1' },
    });
    mkdirSync(env.ECS_GVISOR_STATE_DIR!, { recursive: true });
    writeFileSync(`${env.ECS_GVISOR_STATE_DIR}/probes.json`, JSON.stringify({ names: ['ecs-gvisor-probe-left'] }));
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code).toBe(0);
    await expect(left.inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await task.inspect()).State.Running).toBe(true);
    expect(r.stdout).toContain('is not a probe of ours: left alone');
    expect(existsSync(`${env.ECS_GVISOR_STATE_DIR}/probes.json`)).toBe(false); // every probe of this run removed
  });

  it('merges runsc into a rich daemon.json, keeps every other byte, reloads and proves the sandbox', async () => {
    const env = cliEnv(d);
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    const after = read();
    const parsed = JSON.parse(after) as Record<string, unknown>;
    // Every foreign key and value is preserved, in the original order, with ours added.
    const original = JSON.parse(RICH) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual([...Object.keys(original), 'default-runtime']);
    for (const [k, v] of Object.entries(original)) if (k !== 'runtimes') expect(parsed[k]).toEqual(v);
    expect(parsed.runtimes).toEqual({
      nvidia: { path: '/usr/bin/nvidia-container-runtime', runtimeArgs: [] },
      // The entry point, which picks the network stack per container and runs the configured runsc.
      runsc: { path: `${env.ECS_GVISOR_STATE_DIR}/bin/runsc`, runtimeArgs: [RUNSC_ARGS] },
    });
    expect(readFileSync(`${env.ECS_GVISOR_STATE_DIR}/bin/runsc`, 'utf8')).toContain(`\nrunsc=${RUNSC}\n`);
    expect(parsed['default-runtime']).toBe('runsc');
    // Byte-level: the operator's lines are untouched (only the runtimes block grew).
    for (const line of RICH.split('\n').filter((l) => !l.includes('nvidia') && l.trim() !== '}')) expect(after).toContain(line);
    expect(statSync(d.daemonJson).mode & 0o777).toBe(0o644);

    // Docker's live state, through the API.
    const live = await liveRuntime(d);
    expect(live.defaultRuntime).toBe('runsc');
    expect(live.runtimes).toEqual(expect.arrayContaining(['nvidia', 'runsc']));

    // The first original is kept in the state dir, byte for byte.
    expect(readFileSync(`${env.ECS_GVISOR_STATE_DIR}/backup/daemon.json.orig`, 'utf8')).toBe(RICH);
    expect(await probesLeft()).toBe(0);

    const status = await runCli(['status', '--json'], env);
    const s = JSON.parse(status.stdout) as { runtime: Record<string, unknown> & { evidence: Record<string, unknown> } };
    expect(s.runtime.verified).toBe(true);
    expect(s.runtime.dockerDefaultRuntime).toBe('runsc');
    expect(s.runtime.runscVersion).toMatch(/20221219/);
    expect(String(s.runtime.evidence.cmdline)).toMatch(/^runsc-sandbox /);
    expect(s.runtime.evidence.memoryLimitBytes).toBe(64 * 1024 * 1024);
    // The limit acts on the sandbox: its cgroup is charged for the sandbox's memory, under the limit.
    expect(s.runtime.evidence.memoryChargedBytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(s.runtime.evidence.memoryChargedBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
  });

  it('a container started afterwards with no runtime named runs in gVisor', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d));
    expect(r.code).toBe(0);
    const c = await docker.createContainer({ Image: busybox, Cmd: ['/bin/sleep', '60'], HostConfig: { NetworkMode: 'none' } });
    await c.start();
    const info = await c.inspect();
    expect(info.HostConfig.Runtime).toBe('runsc');
    expect(cmdline(info.State.Pid)[0]).toBe('runsc-sandbox');
    const exec = await c.exec({ Cmd: ['/bin/dmesg'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    const out = await new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      stream.on('data', (b: Buffer) => chunks.push(b));
      stream.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    });
    expect(out).toContain('Starting gVisor...');
  });

  it('is idempotent: a second run writes nothing and does not reload', async () => {
    const env = cliEnv(d);
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    const before = statSync(d.daemonJson);
    const text = read();
    const reloads = reloadCount(d);

    const again = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(again.code).toBe(0);
    expect(logMessages(again.stdout)).toContain('daemon.json already converged');
    const after = statSync(d.daemonJson);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(read()).toBe(text);
    expect(reloadCount(d)).toBe(reloads);

    const plan = await runCli(['plan', '--only', 'runtime'], env);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain('unchanged (already converged)');
    expect(plan.stdout).toContain('no reload needed');
  });

  it('leaves running containers running (reload, not restart)', async () => {
    const c = await docker.createContainer({ Image: busybox, Cmd: ['/bin/sleep', '600'], HostConfig: { NetworkMode: 'none' } });
    await c.start();
    const before = await c.inspect();
    expect(before.HostConfig.Runtime).toBe('runc');

    expect((await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d))).code).toBe(0);

    const after = await c.inspect();
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).toBe(before.State.StartedAt);
    expect(after.State.Pid).toBe(before.State.Pid);
    expect(after.RestartCount).toBe(0);
  });

  it('writes a new daemon.json when there is none, and rollback removes it again', async () => {
    await resetDocker(d, undefined);
    const env = cliEnv(d);
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    expect(JSON.parse(read())).toEqual({
      runtimes: { runsc: { path: `${env.ECS_GVISOR_STATE_DIR}/bin/runsc`, runtimeArgs: [RUNSC_ARGS] } },
      'default-runtime': 'runsc',
    });

    const rb = await runCli(['rollback', '--only', 'runtime'], env);
    expect(rb.code).toBe(0);
    expect(existsSync(d.daemonJson)).toBe(false);
    expect(await liveRuntime(d)).toEqual({ defaultRuntime: 'runc', runtimes: ['runc'] });
  });
});

describe('plan --only runtime', () => {
  it('prints the daemon.json diff and changes nothing', async () => {
    const reloads = reloadCount(d);
    const r = await runCli(['plan', '--only', 'runtime'], cliEnv(d));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('+    "default-runtime": "runsc"');
    expect(r.stdout).toContain('set default-runtime: (absent) -> "runsc"');
    expect(r.stdout).toMatch(/reload by SIGHUP to dockerd pid \d+/);
    expect(read()).toBe(RICH);
    expect(reloadCount(d)).toBe(reloads);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
  });
});

describe('rollback --only runtime', () => {
  it('restores the original bytes and Docker’s live default', async () => {
    const env = cliEnv(d);
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    const rb = await runCli(['rollback', '--only', 'runtime'], env);
    expect(rb.code).toBe(0);
    expect(read()).toBe(RICH);
    const live = await liveRuntime(d);
    expect(live.defaultRuntime).toBe('runc');
    expect(live.runtimes).not.toContain('runsc');
    expect(live.runtimes).toContain('nvidia');
    expect(existsSync(`${env.ECS_GVISOR_STATE_DIR}/backup/daemon.json.manifest`)).toBe(false);
    // A second rollback has nothing left to do and says so.
    const again = await runCli(['rollback', '--only', 'runtime'], env);
    expect(again.code).toBe(0);
    expect(read()).toBe(RICH);
  });

  it('removes exactly what it added when the operator edited the file since', async () => {
    const env = cliEnv(d);
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    const edited = read().replace('"debug": false', '"debug": false,\n    "live-restore": true');
    writeFileSync(d.daemonJson, edited);
    expect((await runCli(['rollback', '--only', 'runtime'], env)).code).toBe(0);
    const parsed = JSON.parse(read()) as Record<string, unknown>;
    expect(parsed['live-restore']).toBe(true);
    expect(parsed['default-runtime']).toBeUndefined();
    expect(parsed.runtimes).toEqual({ nvidia: { path: '/usr/bin/nvidia-container-runtime', runtimeArgs: [] } });
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
  });

  it('brings back an operator’s own default runtime that it was told to replace', async () => {
    const withDefault = RICH.replace('"debug": false', '"debug": false,\n    "default-runtime": "nvidia"');
    await resetDocker(d, withDefault);
    process.kill(dockerdPid(d), 'SIGHUP'); // make nvidia the live default, as on a real GPU host
    await expect.poll(async () => (await liveRuntime(d)).defaultRuntime).toBe('nvidia');

    const refused = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d));
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('already makes "nvidia" the default-runtime');
    expect(read()).toBe(withDefault);

    const env = cliEnv(d, { ECS_GVISOR_REPLACE_DEFAULT_RUNTIME: 'true' });
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    expect((await runCli(['rollback', '--only', 'runtime'], env)).code).toBe(0);
    expect(read()).toBe(withDefault);
    expect((await liveRuntime(d)).defaultRuntime).toBe('nvidia');
  });
});

describe('fail closed', () => {
  it('rolls back when runsc cannot start a sandbox on this host (no network flag on this kernel)', async () => {
    const env = cliEnv(d, { ECS_GVISOR_RUNSC_ARGS: '' });
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code).toBe(5);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('The sandbox is not proven');
    expect(r.stderr).toContain('were restored');
    expect(read()).toBe(RICH);
    const live = await liveRuntime(d);
    expect(live.defaultRuntime).toBe('runc');
    expect(live.runtimes).not.toContain('runsc');
    expect(await probesLeft()).toBe(0);
    // runsc leaves its sandbox, gofer and shim behind when a start fails; the probe reaps them.
    expect(processesUnder(`${d.dir}/exec`)).toEqual([]);
    expect(existsSync(`${env.ECS_GVISOR_STATE_DIR}/backup/daemon.json.manifest`)).toBe(false);
    const status = JSON.parse((await runCli(['status', '--json'], env)).stdout) as {
      runtime: { verified: boolean; lastError: { code: string } };
    };
    expect(status.runtime.verified).toBe(false);
    expect(status.runtime.lastError.code).toBe('SANDBOX_UNPROVEN');
  });

  it('rolls back when runsc answers --version but fails to run anything', async () => {
    const dir = mkdtempSync('/tmp/egv-broken-');
    const broken = `${dir}/runsc`;
    writeFileSync(
      broken,
      `#!/bin/sh\nfor a in "$@"; do [ "$a" = --version ] && exec ${RUNSC} --version; done\necho "broken on purpose" >&2\nexit 1\n`,
    );
    chmodSync(broken, 0o755);
    await resetDocker(d, undefined);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_RUNSC_PATH: broken }));
    expect(r.code).toBe(5);
    expect(existsSync(d.daemonJson)).toBe(false);
    expect(await liveRuntime(d)).toEqual({ defaultRuntime: 'runc', runtimes: ['runc'] });
    expect(await probesLeft()).toBe(0);
  });

  /** A runc posing as runsc: it answers --version as runsc, then runs each container with runc, disguised. */
  function poser(disguise: 'append-arg' | 'rename-init'): string {
    const dir = mkdtempSync('/tmp/egv-poser-');
    writeFileSync(
      `${dir}/runsc`,
      `#!/usr/bin/python3
import json, os, shutil, sys
args = sys.argv[1:]
if '--version' in args:
    os.execv('${RUNSC}', ['runsc', '--version'])
if 'create' in args and '--bundle' in args:
    bundle = args[args.index('--bundle') + 1]
    with open(bundle + '/config.json') as f:
        spec = json.load(f)
    if ${JSON.stringify(disguise)} == 'append-arg':
        spec['process']['args'].append('runsc-sandbox')
    else:
        root = os.path.join(bundle, spec['root']['path'])
        shutil.copy(root + '/bin/sleep', root + '/bin/runsc-sandbox')
        spec['process']['args'][0] = '/bin/runsc-sandbox'
    with open(bundle + '/config.json', 'w') as f:
        json.dump(spec, f)
# runsc's own flags mean nothing to runc.
args = [a for a in args if not a.startswith(('--network=', '--platform='))]
os.execv('/usr/sbin/runc', ['runc'] + args)
`,
    );
    chmodSync(`${dir}/runsc`, 0o755);
    return `${dir}/runsc`;
  }

  it.each([
    ['a runc that adds "runsc-sandbox" to the probe’s arguments', 'append-arg' as const, /not a gVisor sandbox/],
    [
      'a runc that names the probe’s own init /bin/runsc-sandbox',
      'rename-init' as const,
      /is named like a sandbox but executes .*\/bin\/runsc-sandbox, not the configured runsc/,
    ],
  ])('is not fooled by %s: exit 5, rolled back', async (_name, disguise, message) => {
    await resetDocker(d, undefined);
    const r = await runCli(
      ['bootstrap', '--only', 'runtime'],
      cliEnv(d, { ECS_GVISOR_RUNSC_PATH: poser(disguise), ECS_GVISOR_PROBE_TIMEOUT_SECONDS: '5' }),
    );
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(message);
    expect(existsSync(d.daemonJson)).toBe(false);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
    expect(await probesLeft()).toBe(0);
  });

  it('refuses --systemd-cgroup under Docker’s cgroupfs driver before any change (exit 2), where runsc would start no sandbox', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_RUNSC_ARGS: '--network=none --systemd-cgroup' }));
    expect(r.stderr).toBe(
      'ecs-gvisor: ECS_GVISOR_RUNSC_ARGS has --systemd-cgroup, but Docker uses the cgroupfs cgroup driver, under which runsc starts no sandbox with it; remove the flag (or switch Docker to the systemd driver). Nothing was changed.\n',
    );
    expect(r.code).toBe(2);
    expect(read()).toBe(RICH);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
  });

  it('refuses before writing when runsc is missing', async () => {
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_RUNSC_PATH: '/nonexistent/runsc' }));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('ECS_GVISOR_RUNSC_PATH=/nonexistent/runsc does not exist');
    expect(read()).toBe(RICH);
  });
});
