/**
 * The release executable's entry (scripts/package.mjs; CommonJS, what Node's single-executable builder
 * takes): --help and --version answer from here; anything else loads the program chunk from the
 * executable (entry/code-chunks.ts) and runs the CLI. The ESM bundle's entry is entry/bundle-entry.ts.
 */
import { quickAnswer } from '../cli/args.js';
import type { main as Main } from '../cli/main.js';
import { CHUNK_PREFIX, chunkFor, chunkRequire, lazyBuiltins } from './code-chunks.js';
import { earlyAsks } from './early-asks.js';

const argv = process.argv.slice(2);
const quick = quickAnswer(argv);
if (quick !== undefined) process.stdout.write(quick);
else {
  const early = earlyAsks(argv, process.env);
  // Loaded on the next turn of the event loop: by then the early ask's connection is made and its
  // request written, so dockerd works on it while the program loads (about 40 ms of compiling).
  setImmediate(() => {
    const sea = require('node:sea') as typeof import('node:sea');
    const require_ = chunkRequire(
      (name) => ({
        source: Buffer.from(sea.getRawAsset(`${name}.cjs`)).toString('latin1'),
        cachedData: Buffer.from(sea.getRawAsset(`${name}.cache`)),
      }),
      lazyBuiltins(require),
      (name) =>
        process.stderr.write(
          `ecs-gvisor: warning: this Node rejected the executable's code cache for its ${name} chunk (made by another Node, or under other V8 options); it runs, compiled from source, and starts slower\n`,
        ),
    );
    const { main } = require_(`${CHUNK_PREFIX}${chunkFor(argv)}`) as { main: typeof Main };
    void main(argv, process.env, process, undefined, early).then((code) => {
      process.exitCode = code;
    });
  });
}
