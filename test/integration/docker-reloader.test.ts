/**
 * How dockerd is reloaded, against the real private dockerd: through systemd when docker.service runs
 * that dockerd (here a stand-in systemctl that records its argv and forwards the reload as SIGHUP, as
 * docker.service's ExecReload does), and what happens when dockerd refuses a reload.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { beforeEach, describe, expect, inject, it } from 'vitest';
import { DockerodeDocker } from '../../src/adapters/dockerode-docker.js';
import { ExecCommands } from '../../src/adapters/exec-commands.js';
import { LinuxHost } from '../../src/adapters/linux-host.js';
import { NodeFiles } from '../../src/adapters/node-files.js';
import { SystemClock } from '../../src/adapters/system-clock.js';
import { Systemctl } from '../../src/adapters/systemctl.js';
import { DockerReloader } from '../../src/runtime/docker-reloader.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, dockerdPid, liveRuntime, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');

/** A systemctl that knows one unit, docker.service, whose MainPID is the private dockerd. */
function fakeSystemctl(mainPid: number): { bin: string; argvLog: string } {
  const dir = mkdtempSync('/tmp/egv-systemctl-');
  const argvLog = `${dir}/argv.log`;
  const bin = `${dir}/systemctl`;
  writeFileSync(
    bin,
    `#!/bin/sh
echo "$*" >> ${argvLog}
case "$1" in
  show) [ "$4" = docker.service ] && printf 'LoadState=loaded\\nMainPID=${mainPid}\\n' || printf 'LoadState=not-found\\nMainPID=0\\n' ;;
  reload) [ "$3" = docker.service ] && exec kill -s HUP ${mainPid}; exit 5 ;;
  *) exit 1 ;;
esac
`,
  );
  chmodSync(bin, 0o755);
  return { bin, argvLog };
}

function reloader(opts: { systemd: boolean; bin: string; pidfile?: string }) {
  const systemdDir = mkdtempSync('/tmp/egv-run-systemd-');
  if (opts.systemd) mkdirSync(`${systemdDir}/system`);
  const commands = new ExecCommands();
  const docker = new DockerodeDocker(d.host);
  return new DockerReloader(
    {
      docker,
      files: new NodeFiles(),
      host: new LinuxHost('/proc', `${systemdDir}/system`),
      services: new Systemctl(commands, opts.bin),
      clock: new SystemClock(),
      log: pino({ level: 'silent' }),
    },
    { pidfile: opts.pidfile ?? d.pidfile, unit: 'docker.service', timeoutMs: 5_000 },
  );
}

const EXPECT_RUNSC = {
  defaultRuntime: 'runsc',
  present: { runsc: { path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] } },
  absent: [],
};
const RUNSC_FILE = '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}, "default-runtime": "runsc"}\n';

beforeEach(async () => {
  await resetDocker(d, RUNSC_FILE);
});

describe('DockerReloader', () => {
  it('reloads through systemctl when systemd runs the dockerd of the pidfile, and confirms through the API', async () => {
    const { bin, argvLog } = fakeSystemctl(dockerdPid(d));
    const r = reloader({ systemd: true, bin });
    const proc = await r.locate();
    expect(proc).toMatchObject({ pid: dockerdPid(d), viaSystemd: true });
    const info = await r.apply(proc, EXPECT_RUNSC, d.daemonJson);
    expect(info.defaultRuntime).toBe('runsc');
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    expect(readFileSync(argvLog, 'utf8').split('\n')).toEqual([
      'show --property=LoadState,MainPID -- docker.service',
      'reload -- docker.service',
      '',
    ]);
  });

  it('signals the pidfile’s dockerd itself when systemd runs a different dockerd', async () => {
    const { bin, argvLog } = fakeSystemctl(1); // docker.service's MainPID is someone else
    const r = reloader({ systemd: true, bin });
    const proc = await r.locate();
    expect(proc).toMatchObject({ pid: dockerdPid(d), viaSystemd: false });
    await r.apply(proc, EXPECT_RUNSC, d.daemonJson);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    expect(readFileSync(argvLog, 'utf8')).not.toContain('reload');
  });

  it('uses SIGHUP without systemd, and never asks systemctl', async () => {
    const { bin, argvLog } = fakeSystemctl(dockerdPid(d));
    const r = reloader({ systemd: false, bin });
    const proc = await r.locate();
    expect(proc).toMatchObject({ pid: dockerdPid(d), viaSystemd: false });
    expect(proc.cmdline).toContain(`--config-file`);
    await r.apply(proc, EXPECT_RUNSC, d.daemonJson);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    expect(() => readFileSync(argvLog)).toThrow(/ENOENT/);
  });

  it('reports a reload dockerd refused, with what it still runs', async () => {
    writeFileSync(d.daemonJson, '{"default-runtime": "runsc"}\n'); // names a runtime dockerd does not know
    const r = reloader({ systemd: false, bin: '/bin/false' });
    await expect(r.apply(await r.locate(), EXPECT_RUNSC, d.daemonJson)).rejects.toThrow(
      /dockerd did not apply .*daemon\.json within 5 s: it reports default runtime "runc"/,
    );
  });
});

describe('bootstrap when dockerd refuses the reload', () => {
  it('exits 4, restores the file, and Docker keeps running on the old config', async () => {
    // An option dockerd 20.10 does not know: it refuses every reload of this file.
    const original = '{\n  "debug": false,\n  "no-such-option": true\n}\n';
    await resetDocker(d, original);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_RELOAD_TIMEOUT_SECONDS: '3' }));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('dockerd did not apply');
    expect(r.stderr).toContain('were restored');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(original);
    expect(await liveRuntime(d)).toEqual({ defaultRuntime: 'runc', runtimes: ['runc'] });
  });
});
