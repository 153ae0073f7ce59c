import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderDiff } from '../../src/diff.js';
import { EcsGvisorError } from '../../src/errors.js';
import {
  type DesiredRuntime,
  dockerdFlagConflict,
  originalKeys,
  parseDaemonJson,
  planDaemonJson,
  planRemoval,
  transitionText,
} from '../../src/runtime/daemon-json.js';

const F = '/etc/docker/daemon.json';
const desired: DesiredRuntime = { name: 'runsc', path: '/usr/local/bin/runsc', runtimeArgs: ['--platform=systrap'] };
const doc = (text: string | undefined) => parseDaemonJson(F, text === undefined ? undefined : Buffer.from(text));
const plan = (text: string | undefined, replace = false) => planDaemonJson(doc(text), desired, { replaceDefaultRuntime: replace });

describe('planDaemonJson', () => {
  it('creates a document for a missing or blank file', () => {
    for (const t of [undefined, '', '  \n']) {
      const p = plan(t);
      expect(p.changed).toBe(true);
      expect(JSON.parse(p.next)).toEqual({
        runtimes: { runsc: { path: '/usr/local/bin/runsc', runtimeArgs: ['--platform=systrap'] } },
        'default-runtime': 'runsc',
      });
    }
  });

  it('omits runtimeArgs when none are configured', () => {
    const p = planDaemonJson(doc('{}'), { ...desired, runtimeArgs: [] }, { replaceDefaultRuntime: false });
    expect(JSON.parse(p.next).runtimes.runsc).toEqual({ path: '/usr/local/bin/runsc' });
  });

  it('keeps other runtimes, number spellings and formatting byte for byte', () => {
    const text = '{\n\t"big": 12345678901234567890,\n\t"f": 1.50,\n\t"runtimes": {"nvidia": {"path": "nv"}}\n}\n';
    const p = plan(text);
    expect(p.next).toContain('"big": 12345678901234567890');
    expect(p.next).toContain('"f": 1.50');
    expect(p.next).toContain('{"nvidia": {"path": "nv"}, "runsc": {"path":"/usr/local/bin/runsc","runtimeArgs":["--platform=systrap"]}}');
    expect(p.next.endsWith('\t"default-runtime": "runsc"\n}\n')).toBe(true);
  });

  it('keeps CRLF line endings', () => {
    const p = plan('{\r\n  "debug": true\r\n}\r\n');
    expect(p.next).not.toMatch(/[^\r]\n/);
    expect(JSON.parse(p.next)['default-runtime']).toBe('runsc');
  });

  it('replaces a stale entry for our runtime and an explicit runc default', () => {
    const p = plan('{"runtimes": {"runsc": {"path": "/old/runsc"}}, "default-runtime": "runc"}');
    expect(p.changes).toEqual([
      'set runtimes.runsc: {"path":"/old/runsc"} -> {"path":"/usr/local/bin/runsc","runtimeArgs":["--platform=systrap"]}',
      'set default-runtime: "runc" -> "runsc"',
    ]);
    expect(Object.keys(JSON.parse(p.next))).toEqual(['runtimes', 'default-runtime']);
  });

  it('refuses another default runtime unless told to replace it', () => {
    const text = '{"runtimes": {"nvidia": {"path": "nv"}}, "default-runtime": "nvidia"}';
    expect(() => plan(text)).toThrow(EcsGvisorError);
    expect(() => plan(text)).toThrow(/already makes "nvidia" the default-runtime/);
    expect(JSON.parse(plan(text, true).next)['default-runtime']).toBe('runsc');
  });

  it('plans nothing once converged', () => {
    const once = plan('{"debug": true}');
    const twice = plan(once.next);
    expect(twice.changed).toBe(false);
    expect(twice.changes).toEqual([]);
  });
});

/** JSON objects an operator could have, without our two keys. */
const foreignObject = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 12 }).filter((k) => k !== 'runtimes' && k !== 'default-runtime' && k !== '__proto__'),
  fc.jsonValue({ maxDepth: 3 }),
  { maxKeys: 8 },
);
const otherRuntimes = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== 'runsc' && k !== '__proto__'),
  fc.record({ path: fc.string(), runtimeArgs: fc.array(fc.string(), { maxLength: 3 }) }),
  { maxKeys: 3 },
);

describe('merge properties', () => {
  it('any object in: every foreign key and value preserved, in order; ours added; idempotent; removal round-trips', () => {
    fc.assert(
      fc.property(foreignObject, fc.option(otherRuntimes, { nil: undefined }), fc.constantFrom(0, 2, 4, '\t'), (obj, rts, indent) => {
        const generated: Record<string, unknown> = { ...obj };
        if (rts) generated.runtimes = rts;
        const text = `${JSON.stringify(generated, null, indent)}\n`;
        // Compare with what the file says (JSON has no -0, for one), not with the generator's object.
        const original = JSON.parse(text) as Record<string, unknown>;
        const p = plan(text);
        const out = JSON.parse(p.next) as Record<string, unknown>;
        // Foreign keys: same values, same relative order.
        const keys = Object.keys(out).filter((k) => k !== 'default-runtime' && !(k === 'runtimes' && !rts));
        expect(keys).toEqual(Object.keys(original));
        for (const [k, v] of Object.entries(original)) if (k !== 'runtimes') expect(out[k]).toEqual(v);
        expect(out.runtimes).toEqual({ ...(rts ?? {}), runsc: { path: desired.path, runtimeArgs: [...desired.runtimeArgs] } });
        expect(out['default-runtime']).toBe('runsc');
        // Planning again yields nothing.
        expect(plan(p.next).changed).toBe(false);
        // Removing what we added gives the original object back.
        const removed = planRemoval(doc(p.next), 'runsc', originalKeys(doc(text), 'runsc'));
        expect(JSON.parse(removed)).toEqual(original);
      }),
      { numRuns: 300 },
    );
  });
});

describe('transitionText', () => {
  it('states the old live default and an empty runtimes map when the target lacks them', () => {
    expect(JSON.parse(transitionText(undefined, 'runc'))).toEqual({ 'default-runtime': 'runc', runtimes: {} });
    expect(JSON.parse(transitionText('{"debug": true}', 'runc'))).toEqual({ debug: true, 'default-runtime': 'runc', runtimes: {} });
  });
  it('leaves a target that already states both alone', () => {
    const t = '{"runtimes": {"nvidia": {"path": "nv"}}, "default-runtime": "nvidia"}';
    expect(transitionText(t, 'runc')).toBe(t);
  });
});

describe('dockerdFlagConflict', () => {
  it('finds --default-runtime in either spelling and --add-runtime for our name', () => {
    expect(dockerdFlagConflict(['/usr/bin/dockerd', '--default-runtime=runc'], 'runsc')).toMatch(/--default-runtime=runc/);
    expect(dockerdFlagConflict(['/usr/bin/dockerd', '--default-runtime', 'nvidia'], 'runsc')).toMatch(/--default-runtime=nvidia/);
    expect(dockerdFlagConflict(['dockerd', '--add-runtime', 'runsc=/usr/bin/runsc'], 'runsc')).toMatch(/--add-runtime runsc=/);
    expect(dockerdFlagConflict(['dockerd', '--add-runtime=nvidia=/x'], 'runsc')).toBeUndefined();
    expect(
      dockerdFlagConflict(['/usr/bin/dockerd', '-H', 'fd://', '--containerd=/run/containerd/containerd.sock'], 'runsc'),
    ).toBeUndefined();
  });
});

describe('renderDiff', () => {
  it('shows removed lines before added ones', () => {
    expect(renderDiff(F, '{\n  "a": 1\n}\n', '{\n  "a": 1,\n  "b": 2\n}\n').split('\n').slice(2)).toEqual([
      ' {',
      '-  "a": 1',
      '+  "a": 1,',
      '+  "b": 2',
      ' }',
    ]);
  });
});
