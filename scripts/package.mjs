#!/usr/bin/env node
// The release: one ESM file that runs with a plain `node` (>= 20) and no node_modules, and a tarball
// holding it with the systemd unit, the install script and the userdata example.
//   node scripts/package.mjs               bundle + dist/release/ecs-gvisor-<version>.tar.gz
//   node scripts/package.mjs --bundle-only dist/bundle/ecs-gvisor.mjs only (what the tests run)
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bundle = join(root, 'dist/bundle/ecs-gvisor.mjs');

await build({
  entryPoints: [join(root, 'src/cli/entry.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // jsonc-parser's "main" is a UMD build whose requires esbuild cannot follow; its "module" build is plain ESM.
  mainFields: ['module', 'main'],
  // ssh2 (dockerode's SSH transport, unused here) tries these optional native parts and copes without them.
  external: ['cpu-features', '*.node'],
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  // CommonJS dependencies bundled into ESM still call require() and read __dirname.
  banner: {
    js: [
      '#!/usr/bin/env node',
      "import { createRequire as __egvRequire } from 'node:module';",
      "import { fileURLToPath as __egvPath } from 'node:url';",
      'const require = __egvRequire(import.meta.url);',
      'const __filename = __egvPath(import.meta.url);',
      "const __dirname = __egvPath(new URL('.', import.meta.url));",
    ].join('\n'),
  },
});
chmodSync(bundle, 0o755);
const kib = (p) => `${(statSync(p).size / 1024).toFixed(0)} KiB`;
console.log(`bundle  ${bundle} (${kib(bundle)})`);

if (!process.argv.includes('--bundle-only')) {
  const name = `ecs-gvisor-${version}`;
  const stage = join(root, 'dist/release', name);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const [from, to] of [
    [bundle, 'ecs-gvisor.mjs'],
    ['scripts/ecs-gvisor.service', 'ecs-gvisor.service'],
    ['scripts/install.sh', 'install.sh'],
    ['scripts/userdata.sh', 'userdata.sh'],
    ['README.md', 'README.md'],
  ]) {
    copyFileSync(from.startsWith('/') ? from : join(root, from), join(stage, to));
    chmodSync(join(stage, to), to.endsWith('.sh') || to.endsWith('.mjs') ? 0o755 : 0o644);
  }
  const tarball = join(root, 'dist/release', `${name}.tar.gz`);
  // Owner and times fixed, so the same inputs give the same tarball.
  execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '--sort=name', '-C', join(root, 'dist/release'), '-czf', tarball, name]);
  console.log(`release ${tarball} (${kib(tarball)})`);
}
