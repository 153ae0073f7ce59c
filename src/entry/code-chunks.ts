/**
 * The release executable's program, in chunks (scripts/package.mjs): `program` (the CLI), `status` (the
 * same CLI without the modules only the other commands import: 40 % less source, 15 % less code cache)
 * and the AWS SDK modules the program loads on first use (`ecs-autoscaling`, `ec2`). Each is a CommonJS
 * script stored in the executable with a V8 code cache made by the same Node after a warm-up run, so
 * what a command compiles comes from the cache instead of the parser; it cannot go stale, as both are
 * inside the executable.
 * Chunked because V8 reads a whole script before running any of it: EC2's model alone is twice the size
 * of the rest of the program, and `status` or `--version` must not pay for it.
 * This module is shared by the executable's entry and the build's warm-up, so the text V8 checks its
 * cache against is the same in both.
 */
import { Script } from 'node:vm';

export const CHUNKS = ['program', 'status', 'ecs-autoscaling', 'ec2'] as const;

/** The chunk a command line runs: `status` has one of its own, without the other commands' modules. */
export function chunkFor(argv: readonly string[]): 'program' | 'status' {
  return argv[0] === 'status' ? 'status' : 'program';
}

/** How a chunk requires another (esbuild leaves these to the loader's require). */
export const CHUNK_PREFIX = 'ecs-gvisor:chunk/';

export interface CompiledChunk {
  exports: Record<string, unknown>;
  script: Script;
  /** V8 refused the cache (another Node, or other V8 options): the chunk was compiled from source. */
  rejected: boolean;
}

/** A chunk compiled (with its cache, when given) and evaluated as a CommonJS module. */
export function compileChunk(
  name: string,
  source: string,
  cachedData: Buffer | undefined,
  require: (id: string) => unknown,
): CompiledChunk {
  const script = new Script(`(function (exports, require, module) {${source}\n})`, {
    filename: `${CHUNK_PREFIX}${name}`,
    ...(cachedData ? { cachedData } : {}),
  });
  const module = { exports: {} as Record<string, unknown> };
  (script.runInThisContext() as (e: unknown, r: unknown, m: unknown) => void)(module.exports, require, module);
  return { exports: module.exports, script, rejected: cachedData !== undefined && script.cachedDataRejected === true };
}

/**
 * A require for chunks: another chunk by `ecs-gvisor:chunk/<name>` (loaded once), anything else from
 * `builtin` (everything else is inside the chunks). `load` returns a chunk's source and cache.
 */
export function chunkRequire(
  load: (name: string) => { source: string; cachedData?: Buffer },
  builtin: (id: string) => unknown,
  onRejected: (name: string) => void,
  onCompiled?: (name: string, script: Script) => void,
): (id: string) => unknown {
  const loaded = new Map<string, Record<string, unknown>>();
  const require = (id: string): unknown => {
    if (!id.startsWith(CHUNK_PREFIX)) return builtin(id);
    const name = id.slice(CHUNK_PREFIX.length);
    let exports = loaded.get(name);
    if (!exports) {
      const { source, cachedData } = load(name);
      const c = compileChunk(name, source, cachedData, require);
      if (c.rejected) onRejected(name);
      onCompiled?.(name, c.script);
      exports = c.exports;
      loaded.set(name, exports);
    }
    return exports;
  };
  return require;
}

/**
 * Built-in modules that modules require as they load but use later, if ever: loading them cost a cold
 * `status` about 30 ms (crypto alone pulls in 37 internal modules), and child_process brings dgram along,
 * all for nothing. Each is required on the first use of one of its properties instead.
 */
export const LAZY_BUILTINS = new Set(['assert', 'child_process', 'crypto', 'https', 'zlib'].flatMap((m) => [m, `node:${m}`]));

/** `builtin`, with the modules of LAZY_BUILTINS loaded on first use. */
export function lazyBuiltins(builtin: (id: string) => unknown): (id: string) => unknown {
  const proxies = new Map<string, unknown>();
  return (id) => {
    if (!LAZY_BUILTINS.has(id)) return builtin(id);
    let proxy = proxies.get(id);
    if (!proxy) {
      let loaded: object | undefined;
      const mod = () => (loaded ??= builtin(id) as object);
      // A function target, as some modules are called (assert); every question goes to the module.
      proxy = new Proxy(() => {}, {
        get: (_, key) => Reflect.get(mod(), key),
        has: (_, key) => Reflect.has(mod(), key),
        apply: (_, self, args) => Reflect.apply(mod() as (...a: unknown[]) => unknown, self, args),
        ownKeys: () => Reflect.ownKeys(mod()),
        getOwnPropertyDescriptor: (_, key) => {
          const d = Reflect.getOwnPropertyDescriptor(mod(), key);
          return d && { ...d, configurable: true };
        },
      });
      proxies.set(id, proxy);
    }
    return proxy;
  };
}
