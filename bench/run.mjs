#!/usr/bin/env node
// `npm run bench`: bundle each bench/*.bench.ts (the product's sources and the e2e harness, packages left
// to node_modules), run them one after another, print their output, and collect their figures (the
// `BENCH {json}` lines) into bench/results.md as one markdown table (a run of some, by name, only prints
// theirs). Usage: node bench/run.mjs [name…]
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const benches = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  .filter((n) => only.length === 0 || only.includes(n))
  .sort();
mkdirSync(`${dir}.out`, { recursive: true });

const rows = [];
let failed = 0;
for (const name of benches) {
  const out = `${dir}.out/${name}.mjs`;
  await build({
    entryPoints: [`${dir}${name}.bench.ts`],
    outfile: out,
    bundle: true,
    packages: 'external',
    platform: 'node',
    target: 'node24',
    format: 'esm',
    logLevel: 'warning',
  });
  process.stdout.write(`\n== ${name}\n`);
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, [out], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout.on('data', (b) => {
      process.stdout.write(b);
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('BENCH ')) rows.push(JSON.parse(line.slice(6)));
      }
    });
    child.on('exit', (c) => resolve(c));
  });
  if (code !== 0) {
    failed++;
    rows.push({ bench: name, metric: `(${name} exited ${code})`, value: '', unit: '', target: '', ok: false });
  }
}

const cell = (v) => String(v).replace(/\|/g, '\\|');
const table = [
  '| bench | figure | value | target | met |',
  '|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.bench} | ${cell(r.metric)} | ${cell(r.value)}${r.unit ? ` ${r.unit}` : ''} | ${cell(r.target)} | ${r.ok ? 'yes' : '**no**'} |`,
  ),
].join('\n');
const header = `Measured ${new Date().toISOString().slice(0, 10)} on ${process.arch}, node ${process.version} (\`npm run bench\`).\n\n`;
// Only a whole run replaces the recorded table: a run of some benches would drop the others' rows.
if (only.length === 0) writeFileSync(`${dir}results.md`, `${header}${table}\n`);
process.stdout.write(
  `\n${table}\n\n${only.length === 0 ? '(written to bench/results.md)' : '(bench/results.md left as it was: not every bench ran)'}\n`,
);
process.exit(failed ? 1 : 0);
