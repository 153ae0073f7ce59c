import { describe, expect, it } from 'vitest';
import { CHUNK_PREFIX, chunkRequire, compileChunk, lazyBuiltins } from '../../src/entry/code-chunks.js';

const builtin = (id: string) => require(id) as unknown;

describe('the executable’s chunks', () => {
  it('a chunk compiles from its own code cache; another chunk’s cache is refused and it still runs', () => {
    // Each compile under another name: V8 answers a second compile of the same script from memory.
    const source = 'exports.twice = (n) => n * 2; exports.answer = exports.twice(21);';
    const first = compileChunk('a1', source, undefined, builtin);
    expect(first.rejected).toBe(false);
    const cache = first.script.createCachedData();
    expect(compileChunk('a2', source, cache, builtin)).toMatchObject({ rejected: false, exports: { answer: 42 } });

    const other = compileChunk('b', 'exports.answer = "something else entirely";', undefined, builtin).script.createCachedData();
    expect(compileChunk('a3', source, other, builtin)).toMatchObject({ rejected: true, exports: { answer: 42 } });
  });

  it('chunks require each other by name, each evaluated once; a refused cache is reported by name', () => {
    const evaluated: string[] = [];
    const sources: Record<string, string> = {
      program: `exports.sdk = () => require('${CHUNK_PREFIX}sdk').client; exports.path = require('node:path').join('a', 'b');`,
      sdk: 'globalThis.__egvEvaluated.push("sdk"); exports.client = {};',
    };
    (globalThis as { __egvEvaluated?: string[] }).__egvEvaluated = evaluated;
    const rejected: string[] = [];
    const junk = Buffer.from('not a code cache');
    const req = chunkRequire(
      (name) => ({ source: sources[name]!, cachedData: name === 'sdk' ? junk : undefined }),
      builtin,
      (name) => rejected.push(name),
    );
    const program = req(`${CHUNK_PREFIX}program`) as { sdk(): object; path: string };
    expect(program.path).toBe('a/b');
    expect(evaluated).toEqual([]); // loaded when first used
    expect(program.sdk()).toBe(program.sdk());
    expect(evaluated).toEqual(['sdk']);
    expect(rejected).toEqual(['sdk']);
    delete (globalThis as { __egvEvaluated?: string[] }).__egvEvaluated;
  });

  it('the lazy built-ins load on first use, called or read, and answer as the module does', () => {
    const loads: string[] = [];
    const req = lazyBuiltins((id) => {
      loads.push(id);
      return builtin(id);
    });
    const assert = req('assert') as (ok: unknown, msg?: string) => void;
    const crypto = req('node:crypto') as typeof import('node:crypto');
    const path = req('node:path') as typeof import('node:path');
    expect(loads).toEqual(['node:path']); // not on the list: at once
    expect(req('assert')).toBe(assert);
    expect(() => assert(false, 'refused')).toThrow('refused');
    expect(loads).toEqual(['node:path', 'assert']);
    expect(crypto.createHash('sha256').update('x').digest('hex')).toHaveLength(64);
    expect('randomBytes' in crypto && Object.keys(crypto).includes('createHash')).toBe(true);
    expect(loads).toEqual(['node:path', 'assert', 'node:crypto']);
    expect(path.sep).toBe('/');
  });
});
