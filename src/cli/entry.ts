/** The single-file bundle's entry (scripts/package.mjs): the CLI with the process's own arguments and environment. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2), process.env);
