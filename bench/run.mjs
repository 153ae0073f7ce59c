#!/usr/bin/env node
// `npm run bench`: bundle each bench/*.bench.ts (the product's sources and the e2e harness, packages left
// to node_modules), run them one after another, print their output, and collect their figures (the
// `BENCH {json}` lines) into bench/results.md as one markdown table, each row with the hour it was
// measured in (a run of some, by name, replaces only their rows). Usage: node bench/run.mjs [name…]
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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
const hour = `${new Date().toISOString().slice(0, 13)}:00Z`;
const row = (r) =>
  `| ${r.bench} | ${cell(r.metric)} | ${cell(r.value)}${r.unit ? ` ${r.unit}` : ''} | ${cell(r.target)} | ${r.ok ? 'yes' : '**no**'} | ${hour} |`;
const HEAD = ['| bench | figure | value | target | met | measured (UTC hour) |', '|---|---|---|---|---|---|'];
const header = `On ${process.arch}, node ${process.version} (\`npm run bench\`). Each row says the hour it was measured in: this machine's speed swings about 2× between hours, so compare figures of one hour (one bench's rows), and ratios across hours.\n\n`;
const path = `${dir}results.md`;
// A run of some benches replaces their rows and keeps the others' (each with its own hour).
const ran = new Set(benches);
const kept =
  only.length === 0 || !existsSync(path)
    ? []
    : readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('| ') && !l.startsWith('| bench |') && !ran.has(l.split(' | ')[0].slice(2)));
const fresh = rows.map(row);
const table = [...HEAD, ...kept, ...fresh].join('\n');
writeFileSync(path, `${header}${table}\n`);
process.stdout.write(
  `\n${[...HEAD, ...fresh].join('\n')}\n\n(written to bench/results.md${kept.length ? `, beside ${kept.length} rows of earlier runs` : ''})\n`,
);
process.exit(failed ? 1 : 0);
