/**
 * Installing runsc from a release URL (a real HTTP server on 127.0.0.1) or a local tarball, SHA-512
 * checked, then used by the real dockerd to prove the sandbox.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, liveRuntime, RUNSC, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const runscBytes = readFileSync(RUNSC);
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

/** What the release server serves, and what it was asked for. */
const served = new Map<string, Buffer>();
const hits: string[] = [];
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const body = served.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(async () => {
  served.clear();
  hits.length = 0;
  await resetDocker(d, '{}\n');
});

function target(): string {
  return `${mkdtempSync('/tmp/egv-bin-')}/bin/runsc`;
}

describe('runsc install', () => {
  it('installs a release binary from a URL with a pinned SHA-512, then proves the sandbox with it', async () => {
    served.set('/release/runsc', runscBytes);
    const path = target();
    const env = cliEnv(d, {
      ECS_GVISOR_RUNSC_PATH: path,
      ECS_GVISOR_RUNSC_SOURCE: `${base}/release/runsc`,
      ECS_GVISOR_RUNSC_SHA512: sha512(runscBytes),
    });
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(path).equals(runscBytes)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o755);
    // daemon.json names the entry point, which runs the installed runsc.
    expect(JSON.parse(readFileSync(d.daemonJson, 'utf8')).runtimes.runsc.path).toBe(`${env.ECS_GVISOR_STATE_DIR}/bin/runsc`);
    expect(readFileSync(`${env.ECS_GVISOR_STATE_DIR}/bin/runsc`, 'utf8')).toContain(`\nrunsc=${path}\n`);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');

    // Already installed from that source: no download the second time.
    hits.length = 0;
    expect((await runCli(['bootstrap', '--only', 'runtime'], env)).code).toBe(0);
    expect(hits).toEqual([]);
  });

  it('refuses a plain http:// source without a pinned SHA-512 before fetching anything, even when the server offers a .sha512', async () => {
    // Whoever answers plain HTTP chooses both the binary and its checksum: the proof would then vouch for their runsc.
    const evil = Buffer.concat([runscBytes.subarray(0, 4), Buffer.from('not the release')]);
    served.set('/release/runsc', evil);
    served.set('/release/runsc.sha512', Buffer.from(`${sha512(evil)}  runsc\n`));
    const path = target();
    const r = await runCli(
      ['bootstrap', '--only', 'runtime'],
      cliEnv(d, { ECS_GVISOR_RUNSC_PATH: path, ECS_GVISOR_RUNSC_SOURCE: `${base}/release/runsc` }),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /ECS_GVISOR_RUNSC_SOURCE="http:\/\/127\.0\.0\.1:\d+\/release\/runsc" is plain http:\/\/ and needs ECS_GVISOR_RUNSC_SHA512/,
    );
    expect(hits).toEqual([]);
    expect(existsSync(path)).toBe(false);
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
  });

  it('uses the .sha512 beside a local source when no SHA-512 is pinned', async () => {
    const dir = mkdtempSync('/tmp/egv-rel-');
    copyFileSync(RUNSC, `${dir}/runsc`);
    writeFileSync(`${dir}/runsc.sha512`, `${sha512(runscBytes)}  runsc\n`);
    const path = target();
    const r = await runCli(
      ['bootstrap', '--only', 'runtime'],
      cliEnv(d, { ECS_GVISOR_RUNSC_PATH: path, ECS_GVISOR_RUNSC_SOURCE: `${dir}/runsc` }),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(path).equals(runscBytes)).toBe(true);
  });

  it('installs runsc and gvisor-bin/ from a local .tar.bz2 with a pinned SHA-512', async () => {
    const stage = mkdtempSync('/tmp/egv-rel-');
    mkdirSync(`${stage}/gvisor/gvisor-bin`, { recursive: true });
    copyFileSync(RUNSC, `${stage}/gvisor/runsc`);
    writeFileSync(`${stage}/gvisor/gvisor-bin/marker`, 'sentry would live here\n');
    const tarball = `${stage}/gvisor.tar.bz2`;
    execFileSync('tar', ['-C', stage, '-cjf', tarball, 'gvisor']);
    const path = target();
    const env = cliEnv(d, {
      ECS_GVISOR_RUNSC_PATH: path,
      ECS_GVISOR_RUNSC_SOURCE: tarball,
      ECS_GVISOR_RUNSC_SHA512: sha512(readFileSync(tarball)),
    });
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(path).equals(runscBytes)).toBe(true);
    expect(readFileSync(`${path.replace(/runsc$/, '')}gvisor-bin/marker`, 'utf8')).toBe('sentry would live here\n');
  });

  it('refuses a checksum mismatch and installs nothing, changes nothing', async () => {
    served.set('/release/runsc', runscBytes);
    const path = target();
    const env = cliEnv(d, {
      ECS_GVISOR_RUNSC_PATH: path,
      ECS_GVISOR_RUNSC_SOURCE: `${base}/release/runsc`,
      ECS_GVISOR_RUNSC_SHA512: '0'.repeat(128),
    });
    const r = await runCli(['bootstrap', '--only', 'runtime'], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      /runsc from http:\/\/127\.0\.0\.1:\d+\/release\/runsc has SHA-512 [0-9a-f]{16}…, expected 0000000000000000… .*nothing was installed\./,
    );
    expect(existsSync(path)).toBe(false);
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
  });

  it('refuses a download that is not runsc (an error page) and a missing checksum file', async () => {
    const page = Buffer.from('<html>gateway error</html>');
    served.set('/release/runsc', page);
    const path = target();
    let r = await runCli(
      ['bootstrap', '--only', 'runtime'],
      cliEnv(d, { ECS_GVISOR_RUNSC_PATH: path, ECS_GVISOR_RUNSC_SOURCE: `${base}/release/runsc`, ECS_GVISOR_RUNSC_SHA512: sha512(page) }),
    );
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('is neither a runsc binary nor a release tarball');
    expect(existsSync(path)).toBe(false);

    // A local source without a pin and without a .sha512 beside it.
    const dir = mkdtempSync('/tmp/egv-rel-');
    copyFileSync(RUNSC, `${dir}/runsc`);
    r = await runCli(
      ['bootstrap', '--only', 'runtime'],
      cliEnv(d, { ECS_GVISOR_RUNSC_PATH: path, ECS_GVISOR_RUNSC_SOURCE: `${dir}/runsc` }),
    );
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/Cannot get the checksum from .*runsc\.sha512/);
    expect(existsSync(path)).toBe(false);
    expect(readFileSync(d.daemonJson, 'utf8')).toBe('{}\n');
  });
});
