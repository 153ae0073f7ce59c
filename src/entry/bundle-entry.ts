/**
 * The release's entry (scripts/package.mjs): the CLI with the process's own arguments and environment.
 * --help and --version answer before the rest of the program is loaded. No top-level await: the
 * executable's copy is CommonJS (what Node's single-executable builder takes).
 */
import { quickAnswer } from '../cli/args.js';
import { earlyAsks } from './early-asks.js';

const argv = process.argv.slice(2);
const quick = quickAnswer(argv);
if (quick !== undefined) process.stdout.write(quick);
else {
  // Asked now, answered while main.js loads (entry/early-asks.ts).
  const early = earlyAsks(argv, process.env);
  void import('../cli/main.js')
    .then(({ main }) => main(argv, process.env, process, undefined, early))
    .then((code) => {
      process.exitCode = code;
    });
}
