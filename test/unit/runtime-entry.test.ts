/**
 * The runtime entry point, run as Docker's shim runs it (bash, the argument shapes containerd's runc shim
 * uses), in front of a recording runsc: the arguments runsc receives are the observable outcome. The
 * namespaces are real: the host's is this process's own, a joined one a /proc/<pid>/ns/net path.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { modesAllowed, type NetworkPolicy, renderRuntimeEntry, stackFor } from '../../src/runtime/runtime-entry.js';

const dir = mkdtempSync('/tmp/egv-entry-');
const runsc = `${dir}/runsc`;
writeFileSync(runsc, `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/argv\n`);
chmodSync(runsc, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function entry(policy: NetworkPolicy): string {
  const f = `${dir}/entry-${policy}`;
  writeFileSync(f, renderRuntimeEntry({ runscPath: runsc, policy }), { mode: 0o755 });
  return f;
}

/** A bundle whose config.json has this network namespace entry (containerd writes it on one line). */
function bundle(name: string, ns: Record<string, string> | undefined): string {
  const b = `${dir}/${name}`;
  mkdirSync(b, { recursive: true });
  const namespaces = [{ type: 'pid' }, ...(ns ? [ns] : []), { type: 'mount' }];
  writeFileSync(`${b}/config.json`, JSON.stringify({ ociVersion: '1.0.2', linux: { namespaces } }));
  return b;
}

/** What runsc got when the shim asked the entry to create a container from `b`. */
function create(e: string, b: string, bundleArg: 'sep' | 'eq' | 'cwd' = 'sep'): string[] {
  const shim = ['--root', '/run/docker/runtime-runc/moby', '--log', `${b}/log.json`, '--log-format', 'json', '--systemd-cgroup'];
  const tail = bundleArg === 'sep' ? ['--bundle', b] : bundleArg === 'eq' ? [`--bundle=${b}`] : [];
  execFileSync(e, [...shim, 'create', ...tail, '--pid-file', `${b}/init.pid`, 'c0ffee'], { cwd: bundleArg === 'cwd' ? b : dir });
  return readFileSync(`${dir}/argv`, 'utf8').trim().split('\n');
}

const host = { type: 'network', path: '/proc/self/ns/net' };
const hostBind = { type: 'network', path: `/proc/${process.pid}/task/${process.pid}/ns/net` }; // another spelling of the same namespace
const joined = { type: 'network', path: '/proc/1/ns/net' };
const bridge = { type: 'network', path: `${dir}/exec-root/netns/1a2b3c` };
const fresh = { type: 'network' };

describe('runtime entry point', () => {
  it('auto: netstack for a namespace of its own, passthrough for a joined one and the host’s', () => {
    const e = entry('auto');
    expect(create(e, bundle('fresh', fresh))).not.toContain('--network=host');
    expect(create(e, bundle('bridge', bridge))).not.toContain('--network=host');
    const j = create(e, bundle('joined', joined));
    // Just before the subcommand, after the shim's own global flags: it wins over runtimeArgs.
    expect(j.slice(j.indexOf('create') - 1, j.indexOf('create') + 1)).toEqual(['--network=host', 'create']);
    expect(j.slice(-1)).toEqual(['c0ffee']);
    expect(create(e, bundle('host', host))).toContain('--network=host');
    expect(create(e, bundle('host-bind', hostBind), 'eq')).toContain('--network=host'); // compared by inode, not spelling
    expect(create(e, bundle('joined-cwd', joined), 'cwd')).toContain('--network=host'); // no --bundle: the working directory
    // runsc sets the network up at start, which gets no bundle: the shim runs it in the bundle directory.
    execFileSync(e, ['--root', '/r', 'start', 'c0ffee'], { cwd: bundle('joined-start', joined) });
    expect(readFileSync(`${dir}/argv`, 'utf8').trim().split('\n')).toEqual(['--root', '/r', '--network=host', 'start', 'c0ffee']);
    execFileSync(e, ['--root', '/r', 'start', 'c0ffee'], { cwd: bundle('fresh-start', fresh) });
    expect(readFileSync(`${dir}/argv`, 'utf8').trim().split('\n')).toEqual(['--root', '/r', 'start', 'c0ffee']);
  });

  it('passthrough: every container; sandbox: none', () => {
    expect(create(entry('passthrough'), bundle('p-fresh', fresh))).toContain('--network=host');
    expect(create(entry('sandbox'), bundle('s-joined', joined))).not.toContain('--network=host');
    expect(create(entry('sandbox'), bundle('s-host', host))).not.toContain('--network=host');
  });

  it('anything it cannot classify runs in runsc unchanged (never outside gVisor), as does a subcommand outside a bundle', () => {
    const e = entry('auto');
    const b = `${dir}/garbage`;
    mkdirSync(b);
    writeFileSync(`${b}/config.json`, '{"linux": not json');
    expect(create(e, b)).toEqual([
      '--root',
      '/run/docker/runtime-runc/moby',
      '--log',
      `${b}/log.json`,
      '--log-format',
      'json',
      '--systemd-cgroup',
      'create',
      '--bundle',
      b,
      '--pid-file',
      `${b}/init.pid`,
      'c0ffee',
    ]);
    expect(create(e, `${dir}/no-such-bundle`)).not.toContain('--network=host');
    execFileSync(e, ['--root', '/r', 'exec', '--process', '/tmp/p.json', 'c0ffee']);
    expect(readFileSync(`${dir}/argv`, 'utf8').trim().split('\n')).toEqual(['--root', '/r', 'exec', '--process', '/tmp/p.json', 'c0ffee']);
    execFileSync(e, ['--version']);
    expect(readFileSync(`${dir}/argv`, 'utf8').trim()).toBe('--version');
  });

  it('refuses a runsc path it would have to quote', () => {
    expect(() => renderRuntimeEntry({ runscPath: '/opt/my runsc', policy: 'auto' })).toThrow(/does not quote/);
  });

  it('plans modes and stacks per policy', () => {
    expect(modesAllowed('auto')).toEqual(['own', 'joined', 'host']);
    expect(modesAllowed('sandbox')).toEqual(['own']);
    expect([stackFor('auto', 'own'), stackFor('auto', 'joined'), stackFor('auto', 'host')]).toEqual([
      'netstack',
      'passthrough',
      'passthrough',
    ]);
    expect(stackFor('passthrough', 'own')).toBe('passthrough');
    expect(stackFor('sandbox', 'host')).toBe('netstack');
  });
});
