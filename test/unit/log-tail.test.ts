/**
 * The agent's log read incrementally (src/adapters/log-tail.ts), on real files: only new whole lines,
 * across the agent's hourly rotation (rename, then a new file) and a truncation, and never from a file
 * someone other than root could have written.
 */
import { appendFileSync, chmodSync, chownSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogTail } from '../../src/adapters/log-tail.js';

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'egv-log-tail-'));
  chmodSync(dir, 0o755);
  path = join(dir, 'ecs-agent.log');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the agent’s log, read as it grows', () => {
  it('gives the lines added since the last read, whole lines only', async () => {
    writeFileSync(path, 'one\ntwo\nthr', { mode: 0o644 });
    const tail = new LogTail(path);
    expect(await tail.read()).toBe('one\ntwo\n');
    expect(await tail.read()).toBe('');
    appendFileSync(path, 'ee\nfour\n');
    expect(await tail.read()).toBe('three\nfour\n');
  });

  it('follows the hourly rotation: the rest of the renamed file first, then the new one from its start', async () => {
    writeFileSync(path, 'a\n', { mode: 0o644 });
    const tail = new LogTail(path);
    expect(await tail.read()).toBe('a\n');
    appendFileSync(path, 'b\n');
    renameSync(path, `${path}.2026-12-07-06`);
    writeFileSync(path, 'c\n', { mode: 0o644 });
    expect(await tail.read()).toBe('b\nc\n');
    appendFileSync(path, 'd\n');
    expect(await tail.read()).toBe('d\n');
  });

  it('reads a truncated file from its start, and nothing while there is no file', async () => {
    writeFileSync(path, 'long line one\nlong line two\n', { mode: 0o644 });
    const tail = new LogTail(path);
    await tail.read();
    writeFileSync(path, 'x\n');
    expect(await tail.read()).toBe('x\n');
    rmSync(path);
    expect(await tail.read()).toBe('');
    writeFileSync(path, 'y\n', { mode: 0o644 });
    expect(await tail.read()).toBe('y\n');
  });

  it('refuses a log or directory that someone other than root owns or may write', async () => {
    writeFileSync(path, 'Connected to ACS endpoint\n', { mode: 0o644 });
    chmodSync(path, 0o666);
    await expect(new LogTail(path).read()).rejects.toThrow(
      `The agent's log ${path} is not believed: its file is writable by group or others (mode 666).`,
    );
    chmodSync(path, 0o644);
    chownSync(path, 65534, 0);
    await expect(new LogTail(path).read()).rejects.toThrow('its file is owned by uid 65534, not root');
    chownSync(path, 0, 0);
    chmodSync(dir, 0o777);
    await expect(new LogTail(path).read()).rejects.toThrow('its directory is writable by group or others (mode 777)');
    chmodSync(dir, 0o755);
    expect(await new LogTail(path).read()).toBe('Connected to ACS endpoint\n');
  });
});
