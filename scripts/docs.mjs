#!/usr/bin/env node
// Write what the documentation takes from the code: docs/configuration.md, from the configuration
// reference (src/config-reference.ts) and the schema's defaults (src/config.ts). A unit test fails when
// the committed file differs from what this writes. Usage: npm run docs
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Inside the repository, so the bundle finds the packages it leaves to node_modules.
mkdirSync(join(root, 'dist'), { recursive: true });
const dir = mkdtempSync(join(root, 'dist', '.docs-'));
try {
  const out = join(dir, 'reference.mjs');
  await build({
    stdin: {
      contents: "export { configurationDoc } from './src/config-reference.ts'; export { configDefaults } from './src/config.ts';",
      resolveDir: root,
      loader: 'ts',
    },
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    logLevel: 'warning',
  });
  const { configurationDoc, configDefaults } = await import(pathToFileURL(out).href);
  writeFileSync(join(root, 'docs/configuration.md'), configurationDoc(configDefaults()));
  console.log('wrote docs/configuration.md');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
