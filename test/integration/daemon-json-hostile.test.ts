/**
 * Malformed and hostile daemon.json files, and dockerd command lines that make our edit unsafe: each is
 * refused with one sentence naming the file, a documented exit code, the file byte-identical, no
 * backup, no reload.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, liveRuntime, reloadCount, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');

const HOSTILE: Array<[string, Buffer, RegExp]> = [
  ['truncated object', Buffer.from('{"log-driver": "json-file"'), /is not valid JSON/],
  ['not JSON at all', Buffer.from('log-driver=json-file\n'), /is not valid JSON/],
  ['two objects appended by `cat >>`', Buffer.from('{"debug": true}\n{"default-runtime": "runsc"}\n'), /is not valid JSON/],
  ['trailing comma', Buffer.from('{"debug": true,}'), /is not valid JSON/],
  ['comments (JSONC)', Buffer.from('{\n  // keep debug on\n  "debug": true\n}'), /is not valid JSON/],
  ['single quotes', Buffer.from("{'debug': true}"), /is not valid JSON/],
  ['NaN', Buffer.from('{"max-concurrent-downloads": NaN}'), /is not valid JSON/],
  ['array top level', Buffer.from('[{"default-runtime": "runsc"}]'), /JSON object at the top level, not an array/],
  ['string top level', Buffer.from('"runsc"'), /not a string/],
  ['null top level', Buffer.from('null'), /not null/],
  ['number top level', Buffer.from('42'), /not a number/],
  ['runtimes is an array', Buffer.from('{"runtimes": []}'), /"runtimes" set to an array/],
  ['runtimes is a string', Buffer.from('{"runtimes": "runsc"}'), /"runtimes" set to a string/],
  ['runtimes is null', Buffer.from('{"runtimes": null}'), /"runtimes" set to null/],
  ['a runtime entry is a string', Buffer.from('{"runtimes": {"runsc": "/usr/bin/runsc"}}'), /runtimes\."runsc" set to a string/],
  ['default-runtime is a number', Buffer.from('{"default-runtime": 5}'), /"default-runtime" set to a number/],
  [
    'duplicate top-level key',
    Buffer.from('{"default-runtime": "runc", "debug": true, "default-runtime": "nvidia"}'),
    /"default-runtime" more than once/,
  ],
  ['duplicate runtime', Buffer.from('{"runtimes": {"x": {"path": "a"}, "x": {"path": "b"}}}'), /runtime "x" more than once/],
  ['byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{}')]), /byte-order mark/],
  ['invalid UTF-8', Buffer.concat([Buffer.from('{"labels": ["'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]), /not valid UTF-8/],
  ['NUL byte', Buffer.from('{"debug": true}\0'), /NUL byte/],
  [
    '2 MiB of whitespace and a key',
    Buffer.concat([Buffer.from('{"debug": true'), Buffer.alloc(2 * 1024 * 1024, 0x20), Buffer.from('}')]),
    /more than a daemon\.json/,
  ],
  ['nested 100,000 deep', Buffer.from(`{"x": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`), /is not valid JSON|must hold/],
  [
    'another default runtime',
    Buffer.from('{"runtimes": {"kata": {"path": "/usr/bin/kata-runtime"}}, "default-runtime": "kata"}'),
    /already makes "kata" the default-runtime/,
  ],
];

beforeEach(async () => {
  await resetDocker(d, '{}\n');
});

describe('malformed or hostile daemon.json', () => {
  it.each(HOSTILE)('%s: refused, exit 3, file byte-identical, nothing written, no reload', async (_name, bytes, message) => {
    writeFileSync(d.daemonJson, bytes);
    const env = cliEnv(d);
    const reloads = reloadCount(d);
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code).toBe(3);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(d.daemonJson);
    expect(lines[0]).toMatch(message);
    expect(readFileSync(d.daemonJson).equals(bytes)).toBe(true);
    expect(existsSync(`${env.ECS_GVISOR_STATE_DIR}/backup`)).toBe(false);
    expect(reloadCount(d)).toBe(reloads);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
    // plan refuses the same way and changes nothing either.
    const p = await runCli(['plan', '--only', 'runtime'], env);
    expect(p.code).toBe(3);
    expect(readFileSync(d.daemonJson).equals(bytes)).toBe(true);
  });

  it('a directory where daemon.json should be: refused, exit 3', async () => {
    rmSync(d.daemonJson, { force: true });
    mkdirSync(d.daemonJson);
    try {
      const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d));
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`${d.daemonJson} cannot be read`);
      expect(lstatSync(d.daemonJson).isDirectory()).toBe(true);
    } finally {
      rmSync(d.daemonJson, { recursive: true, force: true });
    }
  });

  it('a symlinked daemon.json: the file it points at is updated and the link kept', async () => {
    const real = `${mkdtempSync('/tmp/egv-real-')}/daemon.json`;
    writeFileSync(real, '{\n  "debug": false\n}\n');
    rmSync(d.daemonJson, { force: true });
    symlinkSync(real, d.daemonJson);
    const env = cliEnv(d);
    try {
      expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
      expect(lstatSync(d.daemonJson).isSymbolicLink()).toBe(true);
      expect(readlinkSync(d.daemonJson)).toBe(real);
      expect(JSON.parse(readFileSync(real, 'utf8'))['default-runtime']).toBe('runsc');
      expect((await runCli(['rollback', '--only', 'runtime'], env)).code).toBe(0);
      expect(readFileSync(real, 'utf8')).toBe('{\n  "debug": false\n}\n');
      expect(lstatSync(d.daemonJson).isSymbolicLink()).toBe(true);
    } finally {
      rmSync(d.daemonJson, { force: true });
    }
  });
});

describe('dockerd command lines that make the edit unsafe', () => {
  let fake: ReturnType<typeof spawn> | undefined;
  afterEach(() => {
    fake?.kill('SIGKILL');
    fake = undefined;
  });

  /** A stand-in process whose /proc cmdline carries the given dockerd flags, named by a pidfile. */
  async function fakeDockerd(flags: string[]): Promise<string> {
    fake = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', '--', ...flags], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
    const pidfile = `${mkdtempSync('/tmp/egv-pid-')}/docker.pid`;
    writeFileSync(pidfile, `${fake.pid}\n`);
    return pidfile;
  }

  it('--default-runtime on dockerd’s command line: refused before writing', async () => {
    const pidfile = await fakeDockerd(['--config-file', d.daemonJson, '--default-runtime=runc']);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_DOCKER_PIDFILE: pidfile }));
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('dockerd was started with --default-runtime=runc');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
  });

  it('dockerd reading another config file: refused before writing', async () => {
    const pidfile = await fakeDockerd(['--config-file', '/etc/docker/other.json']);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_DOCKER_PIDFILE: pidfile }));
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('reads /etc/docker/other.json, not ECS_GVISOR_DAEMON_JSON=');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
  });

  it('no dockerd to reload (stale pidfile, no systemd): refused before writing', async () => {
    const pidfile = `${mkdtempSync('/tmp/egv-pid-')}/docker.pid`;
    writeFileSync(pidfile, '999999\n');
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_DOCKER_PIDFILE: pidfile }));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('cannot reload dockerd');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
  });
});
