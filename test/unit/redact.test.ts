import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { forgetSecrets, isSecretKey, MASK, redact, redactAssignment, rememberSecrets } from '../../src/redact.js';

afterEach(() => forgetSecrets());

describe('redaction', () => {
  it('knows secret keys by name, including *_CREDENTIALS, *_KEY and *_PASSWD', () => {
    for (const k of [
      'ECS_ENGINE_AUTH_DATA',
      'AWS_SECRET_ACCESS_KEY',
      'REGISTRY_CREDENTIALS',
      'SIGNING_KEY',
      'DB_PASSWD',
      'GITHUB_TOKEN',
      'TLS_PRIVATE_PEM',
    ]) {
      expect(isSecretKey(k), k).toBe(true);
    }
    for (const k of ['ECS_CLUSTER', 'ECS_RESERVED_MEMORY', 'HTTP_PROXY', 'ECS_KEYRING_MODE_X'.replace('KEYRING', 'KEYRINGS_NOT')])
      expect(isSecretKey(k), k).toBe(false);
  });

  it('masks proxy credentials in URLs in any text', () => {
    expect(redactAssignment('HTTPS_PROXY=http://ops:hunter2@proxy.internal:3128')).toBe(
      'HTTPS_PROXY=http://[redacted]@proxy.internal:3128',
    );
    expect(redact('connect to https://token123@git.example/x failed')).toBe('connect to https://[redacted]@git.example/x failed');
    expect(redact('mail me at ops@example.com')).toBe('mail me at ops@example.com');
  });

  it('masks remembered values wherever they turn up, even JSON-escaped, but not a *_TYPE or a too-short value', () => {
    rememberSecrets([
      ['ECS_ENGINE_AUTH_DATA', '{"https://index.docker.io/v1/":{"auth":"c2VjcmV0","email":"a@b"}}'],
      ['ECS_ENGINE_AUTH_TYPE', 'dockercfg'],
      ['HTTP_PROXY', 'http://ops:s3cr3t-pw@proxy:3128'],
      ['MY_PASSWORD', 'abc'],
      ['ECS_CLUSTER', 'prod-cluster'],
    ]);
    const docker =
      'invalid environment variable: ECS_ENGINE_AUTH_DATA={"https://index.docker.io/v1/":{"auth":"c2VjcmV0","email":"a@b"}}\u0000';
    expect(redact(docker)).toBe('invalid environment variable: ECS_ENGINE_AUTH_DATA=[redacted]\u0000');
    expect(redact(JSON.stringify({ message: docker }))).not.toContain('c2VjcmV0');
    expect(redact('proxy said s3cr3t-pw is wrong')).toBe('proxy said [redacted] is wrong');
    expect(redact('auth type dockercfg in prod-cluster, abc')).toBe('auth type dockercfg in prod-cluster, abc');
  });

  it('the logger masks a remembered secret inside a message and a field', () => {
    rememberSecrets([['REGISTRY_CREDENTIALS', 'opensesame42']]);
    let out = '';
    const sink = new Writable({
      write: (c, _e, cb) => {
        out += String(c);
        cb();
      },
    });
    createLogger('info', sink).error({ err: 'docker: bad env REGISTRY_CREDENTIALS=opensesame42' }, 'failed with opensesame42');
    expect(out).toContain('[redacted]');
    expect(out).not.toContain('opensesame42');
  });
});

describe('journald priorities', () => {
  it('prefixes each JSON line with the syslog priority of its level; JSON fields kept', async () => {
    const { withPriority, stdoutIsJournal } = await import('../../src/logger.js');
    let out = '';
    const sink = new Writable({
      write: (c, _e, cb) => {
        out += String(c);
        cb();
      },
    });
    const log = createLogger('trace', sink, true);
    log.fatal('f');
    log.error('e');
    log.warn('w');
    log.info('i');
    log.debug('d');
    const lines = out.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<2>', '<3>', '<4>', '<6>', '<7>']);
    expect(JSON.parse(lines[2]!.slice(3))).toMatchObject({ level: 'warn', msg: 'w', service: 'ecs-gvisor' });
    expect(withPriority('not json')).toBe('<6>not json');
    // Only when stdout is the stream systemd named.
    expect(stdoutIsJournal('8:1234', { dev: 8, ino: 1234 })).toBe(true);
    expect(stdoutIsJournal('8:1234', { dev: 8, ino: 99 })).toBe(false);
    expect(stdoutIsJournal(undefined, { dev: 8, ino: 1234 })).toBe(false);
  });
});

describe('redaction stays linear in the text and the secret', () => {
  it('a 1 MB repetitive secret and a text of 2 MB around it: masked, in well under a second each', () => {
    forgetSecrets();
    const secret = 'ab'.repeat(500_000);
    const t0 = performance.now();
    rememberSecrets([
      ['ECS_ENGINE_AUTH_DATA', secret],
      ['HTTPS_PROXY', `http://user:${'cd'.repeat(100_000)}@proxy:3128`],
    ]);
    // Nearly the secret (the pattern a backtracking search is slowest on), the secret itself, and many
    // "://" with no credentials after them.
    const text = `${'ab'.repeat(499_999)}c ECS_ENGINE_AUTH_DATA=${secret} ${'x://'.repeat(100_000)}`;
    const out = redact(text);
    const ms = performance.now() - t0;
    expect(out).not.toContain(secret);
    expect(out).toContain(`ECS_ENGINE_AUTH_DATA=${MASK} `);
    expect(out.startsWith('ab'.repeat(499_999))).toBe(true);
    // Measured at ~80 ms here; the quadratic version took 6 s for 64 KB and never finished 1 MB.
    expect(ms).toBeLessThan(5_000);
    forgetSecrets();
  });
});

describe('credentials in URL query parameters', () => {
  it('a presigned URL keeps its path and loses its token and signature; ordinary parameters stay', () => {
    const url =
      'https://bucket.s3.amazonaws.com/runsc/runsc?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAXXX%2F20261207&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr&X-Amz-Signature=0f1e2d&X-Amz-Expires=300&api_key=k1&version=2';
    expect(redact(`ECS_GVISOR_RUNSC_SOURCE=${url} was fetched`)).toBe(
      `ECS_GVISOR_RUNSC_SOURCE=https://bucket.s3.amazonaws.com/runsc/runsc?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=${MASK}&X-Amz-Security-Token=${MASK}&X-Amz-Signature=${MASK}&X-Amz-Expires=300&api_key=${MASK}&version=2 was fetched`,
    );
    // As JSON writes it too (the state files).
    expect(redact(JSON.stringify({ source: url }))).not.toMatch(/IQoJb3JpZ2luX2VjEJr|0f1e2d|ASIAXXX/);
  });
});
