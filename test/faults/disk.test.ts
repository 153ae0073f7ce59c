/**
 * Faults: the directory holding daemon.json read-only, or its filesystem full (a small tmpfs the private
 * dockerd's daemon.json links into). `bootstrap --only runtime` must fail with one sentence naming the
 * file, a documented exit code, the file byte-identical, no temporary file left beside it, no reload;
 * once there is room again the same bootstrap converges.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, liveRuntime, reloadCount, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const ORIGINAL = '{\n  "debug": false\n}\n';
let mnt: string;

beforeEach(async () => {
  await resetDocker(d, undefined);
  mnt = mkdtempSync('/tmp/egv-disk-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  writeFileSync(`${mnt}/daemon.json`, ORIGINAL);
  symlinkSync(`${mnt}/daemon.json`, d.daemonJson);
});
afterEach(async () => {
  rmSync(d.daemonJson, { force: true }); // the link, before its target goes
  execFileSync('umount', ['-l', mnt]);
  rmSync(mnt, { recursive: true, force: true });
  await resetDocker(d, '{}\n');
});

async function refused(env: Record<string, string>, message: RegExp): Promise<void> {
  const reloads = reloadCount(d);
  const r = await runCli(['bootstrap', '--only', 'runtime'], env);
  expect(r.code, r.stdout).toBe(4);
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(readFileSync(`${mnt}/daemon.json`, 'utf8')).toBe(ORIGINAL);
  expect(readdirSync(mnt).filter((f) => !f.startsWith('filler'))).toEqual(['daemon.json']);
  expect(reloadCount(d)).toBe(reloads);
  expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
}

describe('daemon.json where it cannot be written', () => {
  it('a read-only directory: one clear error, nothing written, no reload; converges once writable', async () => {
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const env = cliEnv(d);
    await refused(
      env,
      /^ecs-gvisor: Cannot write \S+daemon\.json \(EROFS: read-only file system.*held no change of ecs-gvisor's to roll back\.\n$/,
    );
    execFileSync('mount', ['-o', 'remount,rw', mnt]);
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code, r.stderr).toBe(0);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
  });

  it('a full filesystem: one clear error, nothing half-written, no reload; converges once there is room', async () => {
    // Fill what is left (tmpfs counts pages: a byte more than the free space fails).
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${mnt}/filler`, 'bs=4k'], { stdio: 'ignore' });
    } catch {
      // "No space left on device": full, as intended
    }
    const env = cliEnv(d);
    await refused(
      env,
      /^ecs-gvisor: Cannot write \S+daemon\.json \(ENOSPC: no space left on device.*held no change of ecs-gvisor's to roll back\.\n$/,
    );
    rmSync(`${mnt}/filler`);
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(`${mnt}/daemon.json`, 'utf8'))).toMatchObject({ debug: false, 'default-runtime': 'runsc' });
  });
});
