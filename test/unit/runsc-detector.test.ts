import { appendFileSync, chmodSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ExecCommands } from '../../src/adapters/exec-commands.js';
import { NodeFiles } from '../../src/adapters/node-files.js';
import { cachedRunscDetector } from '../../src/runtime/runsc.js';

/** A runsc stand-in that counts how often it is asked for its version. */
function fakeRunsc(dir: string, path: string, version: string): void {
  writeFileSync(`${path}.tmp`, `#!/bin/sh\necho x >> ${dir}/calls\necho "runsc version ${version}"\necho "spec: 1.1.0-rc.1"\n`);
  chmodSync(`${path}.tmp`, 0o755);
  renameSync(`${path}.tmp`, path);
}

describe('cachedRunscDetector', () => {
  it('runs `runsc --version` again only when the binary changed', async () => {
    const dir = mkdtempSync('/tmp/egv-runsc-');
    const path = `${dir}/runsc`;
    const calls = () => readFileSync(`${dir}/calls`, 'utf8').split('\n').filter(Boolean).length;
    fakeRunsc(dir, path, 'release-20240101.0');
    const detect = cachedRunscDetector(new NodeFiles(), new ExecCommands(), path);
    expect((await detect()).version).toBe('release-20240101.0');
    expect((await detect()).version).toBe('release-20240101.0');
    expect(calls()).toBe(1);
    fakeRunsc(dir, path, 'release-20250101.0'); // replaced (a new inode), as an upgrade does
    expect((await detect()).version).toBe('release-20250101.0');
    expect(calls()).toBe(2);
    appendFileSync(path, '# edited in place\n');
    await detect();
    expect(calls()).toBe(3);
  });

  it('keeps its answer for the next process while the binary is the same file; a reader never writes it', async () => {
    const dir = mkdtempSync('/tmp/egv-runsc-');
    const path = `${dir}/runsc`;
    const calls = () => readFileSync(`${dir}/calls`, 'utf8').split('\n').filter(Boolean).length;
    fakeRunsc(dir, path, 'release-20240101.0');
    let kept: unknown;
    const store = {
      read: async () => kept,
      write: async (r: unknown) => {
        kept = r;
      },
    };
    expect((await cachedRunscDetector(new NodeFiles(), new ExecCommands(), path, store)()).version).toBe('release-20240101.0');
    expect(calls()).toBe(1);
    // Another process (status): the same file, so the version kept, and nothing run.
    const reader = cachedRunscDetector(new NodeFiles(), new ExecCommands(), path, { read: store.read });
    expect((await reader()).version).toBe('release-20240101.0');
    expect(calls()).toBe(1);
    // Replaced: asked again; the reader leaves the record as it was.
    fakeRunsc(dir, path, 'release-20250101.0');
    const before = JSON.stringify(kept);
    expect((await cachedRunscDetector(new NodeFiles(), new ExecCommands(), path, { read: store.read })()).version).toBe(
      'release-20250101.0',
    );
    expect(calls()).toBe(2);
    expect(JSON.stringify(kept)).toBe(before);
    // A record of another path, or one that is not a record, is not believed.
    kept = { ...(kept as object), path: `${dir}/other` };
    await cachedRunscDetector(new NodeFiles(), new ExecCommands(), path, { read: store.read })();
    kept = { path, identity: await new NodeFiles().identity(path), version: 'release-1' };
    await cachedRunscDetector(new NodeFiles(), new ExecCommands(), path, { read: store.read })();
    expect(calls()).toBe(4);
  });
});
