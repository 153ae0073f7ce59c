#!/usr/bin/env node
// The release: one ESM file that runs with a plain `node` (>= 20) and no node_modules, and a tarball
// holding it with the systemd unit, the install script and the userdata example.
//   node scripts/package.mjs               bundle + dist/release/ecs-gvisor-<version>.tar.gz
//   node scripts/package.mjs --bundle-only dist/bundle/ecs-gvisor.mjs only (what the tests run)
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bundle = join(root, 'dist/bundle/ecs-gvisor.mjs');

// Transports dockerode requires at load but ecs-gvisor never uses: SSH (docker-modem; the configuration
// refuses an ssh:// DOCKER_HOST) and BuildKit sessions over gRPC and protobuf (buildImage; images are
// imported or pulled). Left out, they are not parsed by every command. Any use fails with this message.
const UNUSED = /^(ssh2|@grpc\/grpc-js|@grpc\/proto-loader|protobufjs)$/;
const leaveOut = {
  name: 'leave-out',
  setup(b) {
    b.onResolve({ filter: UNUSED }, (a) => ({ path: a.path, namespace: 'left-out' }));
    b.onLoad({ filter: /.*/, namespace: 'left-out' }, (a) => ({
      loader: 'js',
      contents: `function leftOut() { throw new Error(${JSON.stringify(`${a.path} is not part of the ecs-gvisor bundle`)}); }
module.exports = new Proxy({}, { get: (_, key) => (key === '__esModule' ? false : leftOut) });`,
    }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  // jsonc-parser's "main" is a UMD build whose requires esbuild cannot follow; its "module" build is plain ESM.
  mainFields: ['module', 'main'],
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
};

// The AWS SDK is most of the code by size (EC2's model alone describes every EC2 operation), yet `status`,
// `plan` and `bootstrap` never call AWS, and EC2 is called only when neither the configuration nor IMDS
// names the Auto Scaling group. Code in the bundle is parsed by every command, even code that only runs on
// first use; a string is not. So each SDK module below is bundled on its own (CommonJS) and carried as a
// string, compiled the first time it is imported.
const EMBEDDED = /\/aws-sdk\/(ecs-autoscaling|ec2)\.js$/;
const embed = {
  name: 'embed',
  setup(b) {
    b.onResolve({ filter: EMBEDDED }, (a) => ({
      path: join(root, 'src/adapters/aws-sdk', `${EMBEDDED.exec(a.path)[1]}.ts`),
      namespace: 'embedded',
    }));
    b.onLoad({ filter: /.*/, namespace: 'embedded' }, async (a) => {
      const out = await build({ ...common, entryPoints: [a.path], format: 'cjs', write: false, plugins: [leaveOut] });
      // A script has no dynamic import(); the SDK uses it only for Node's own modules, which require gives.
      const code = out.outputFiles[0].text.replace(/\bimport\(("[^"]+")\)/g, (_call, name) => {
        if (!isBuiltin(JSON.parse(name))) throw new Error(`${a.path}: import(${name}) of a module that is not Node's own`);
        return `Promise.resolve().then(() => require(${name}))`;
      });
      if (/\bimport\(/.test(code)) throw new Error(`${a.path}: an import() that cannot become a require`);
      const wrapped = `(function (exports, require, module, __filename, __dirname) {${code}\n})`;
      // A CommonJS module: importing it gives its exports as named bindings, so nothing here lists them.
      // require, __filename and __dirname are the bundle's own (its banner).
      return {
        loader: 'js',
        resolveDir: root,
        contents: `require('node:vm').runInThisContext(${JSON.stringify(wrapped)}, { filename: ${JSON.stringify(`ecs-gvisor.mjs:${relative(root, a.path)}`)} })(exports, require, module, __filename, __dirname);`,
      };
    });
  },
};

await build({
  entryPoints: [join(root, 'src/cli/entry.ts')],
  outfile: bundle,
  ...common,
  format: 'esm',
  plugins: [leaveOut, embed],
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
  execFileSync('tar', [
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '--sort=name',
    '-C',
    join(root, 'dist/release'),
    '-czf',
    tarball,
    name,
  ]);
  console.log(`release ${tarball} (${kib(tarball)})`);
}
