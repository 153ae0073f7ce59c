/**
 * The release artifacts: the executable runs with no Node on the host (and the arm64 one under
 * qemu-user-static), the single-file bundle runs with a plain node and no node_modules, each tarball
 * holds what an instance needs and matches its .sha512, the unit passes systemd's own checker, the scripts pass shellcheck, and
 * install.sh installs (runsc from a pinned tarball with gvisor-bin/), converges on a second run, refuses
 * a checksum mismatch or a bad setting without installing, and --uninstall removes exactly what it added.
 * install.sh runs with --root (no systemctl here); the simulated instance runs it for real.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { CHUNKS } from '../../src/entry/code-chunks.js';
import { BUNDLE, EXECUTABLE } from '../harness/cli.js';
import { RUNSC } from '../harness/docker-state.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const INSTALL = `${repo}scripts/install.sh`;
const UNIT = `${repo}scripts/ecs-gvisor.service`;
const clean = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };

function install(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('bash', [INSTALL, '--executable', EXECUTABLE, '--unit', UNIT, '--docs', `${repo}docs`, ...args], {
    env: clean,
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let tarball: string;
let sha: string;

/**
 * userdata.sh with the cluster and `url` filled in as /tmp/ud.$$.sh, `run` then running it, in a mount
 * namespace of its own with a private copy of /etc, so the host's /etc/ecs is never touched.
 */
function userdata(url: string, setup: string, run: string) {
  return spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'bash',
      '-c',
      `set -e; etc=$(mktemp -d); cp -a /etc/. "$etc"/; mount --bind "$etc" /etc; ${setup}
       sed -e "s|__ECS_CLUSTER__|prod|" -e "s|__RELEASE_URL__|${url}|" ${repo}scripts/userdata.sh > /tmp/ud.$$.sh
       ${run}; rm -f /tmp/ud.$$.sh`,
    ],
    { encoding: 'utf8' },
  );
}

/** A file's digest: comparing 120 MiB executables element by element would take minutes. */
const sha512 = (path: string) => createHash('sha512').update(readFileSync(path)).digest('hex');

beforeAll(() => {
  // A release-shaped tarball: runsc with gvisor-bin/ beside it, bzip2-compressed.
  const d = mkdtempSync('/tmp/egv-release-');
  mkdirSync(`${d}/gvisor/gvisor-bin`, { recursive: true });
  copyFileSync(RUNSC, `${d}/gvisor/runsc`);
  writeFileSync(`${d}/gvisor/gvisor-bin/helper`, '#!/bin/sh\n');
  tarball = `${d}/gvisor.tar.bz2`;
  execFileSync('tar', ['-cjf', tarball, '-C', d, 'gvisor']);
  sha = createHash('sha512').update(readFileSync(tarball)).digest('hex');
});

/** `status` with no configuration file, no Docker, no Node on PATH and an empty state directory: unhealthy (8). */
function statusAgainstNothing(): Record<string, string> {
  const dir = mkdtempSync('/tmp/egv-exe-');
  return {
    PATH: '/nonexistent',
    ECS_GVISOR_CONFIG: '/nonexistent',
    ECS_GVISOR_DOCKER_HOST: `unix://${dir}/none.sock`,
    ECS_GVISOR_STATE_DIR: dir,
  };
}

describe('the bundle and the release', () => {
  it('runs with a plain node from an empty directory (no node_modules), and the npx entry works too', () => {
    const dir = mkdtempSync('/tmp/egv-bundle-');
    copyFileSync(BUNDLE, `${dir}/ecs-gvisor.mjs`);
    expect(execFileSync(process.execPath, [`${dir}/ecs-gvisor.mjs`, '--version'], { cwd: dir, env: clean, encoding: 'utf8' })).toBe(
      `ecs-gvisor 0.1.0 (node ${process.version})\n`,
    );
    const status = spawnSync(process.execPath, [`${dir}/ecs-gvisor.mjs`, 'status', '--json'], {
      cwd: dir,
      env: { ...clean, ECS_GVISOR_CONFIG: '/nonexistent', ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent.sock', ECS_GVISOR_STATE_DIR: dir },
      encoding: 'utf8',
    });
    // Not healthy (no Docker, nothing bootstrapped): exit 8, the report still printed.
    expect(status.status).toBe(8);
    expect(JSON.parse(status.stdout)).toMatchObject({ version: '0.1.0', healthy: false, lifecycle: { enabled: false } });
    expect(execFileSync(process.execPath, [`${repo}bin/ecs-gvisor.js`, '--version'], { env: clean, encoding: 'utf8' })).toBe(
      `ecs-gvisor 0.1.0 (node ${process.version})\n`,
    );
  });

  it('the executable runs with no Node on the host: its own Node 24 inside, no node_modules', () => {
    const dir = mkdtempSync('/tmp/egv-exe-');
    copyFileSync(EXECUTABLE, `${dir}/ecs-gvisor`);
    const bare = { PATH: '/nonexistent', HOME: '/root' };
    expect(execFileSync(`${dir}/ecs-gvisor`, ['--version'], { cwd: dir, env: bare, encoding: 'utf8' })).toMatch(
      /^ecs-gvisor 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/,
    );
    const status = spawnSync(`${dir}/ecs-gvisor`, ['status', '--json'], {
      cwd: dir,
      env: { ...bare, ECS_GVISOR_CONFIG: '/nonexistent', ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent.sock', ECS_GVISOR_STATE_DIR: dir },
      encoding: 'utf8',
    });
    expect(status.status).toBe(8);
    expect(JSON.parse(status.stdout)).toMatchObject({ version: '0.1.0', healthy: false });
    // Its AWS SDK is inside too: a bad setting of one of its keys is refused like any other.
    expect(status.stderr).toBe('');
  });

  it('status into a pipe whose reader is gone: no crash, the exit code is still the health (bundle and executable)', async () => {
    const env = statusAgainstNothing();
    for (const [file, args] of [
      [EXECUTABLE, ['status', '--json']],
      [process.execPath, [BUNDLE, 'status', '--json']],
    ] as const) {
      const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      // The read end closes before the program has started, let alone written.
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      const code = await new Promise((resolve) => child.on('close', resolve));
      expect({ file, code, stderr }).toEqual({ file, code: 8, stderr: '' });
    }
  });

  it('status and plan into a full disk (/dev/full): one sentence and exit 4, no uncaught error (bundle and executable)', async () => {
    const env = statusAgainstNothing();
    for (const [file, args] of [
      [EXECUTABLE, ['status', '--json']],
      [process.execPath, [BUNDLE, 'status']],
      [process.execPath, [BUNDLE, 'plan', '--only', 'ecs-init']],
    ] as const) {
      const full = openSync('/dev/full', 'w');
      const r = spawnSync(file, args, { env, stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      closeSync(full);
      expect({ file, args, code: r.status, stderr: r.stderr }).toEqual({
        file,
        args,
        code: 4,
        stderr: 'ecs-gvisor: cannot write the answer to standard output (ENOSPC).\n',
      });
    }
  });

  it('the executable’s chunks import nothing dynamically: a script compiled by vm has no loader for it', () => {
    for (const chunk of CHUNKS) expect(readFileSync(`${repo}dist/sea/${process.arch}/${chunk}.cjs`, 'utf8')).not.toMatch(/\bimport\(/);
  });

  it('docker-modem formats a request for its debug log only when that log is on (bundle and executable)', () => {
    // The one line of docker-modem the build changes: it asks before formatting, and still logs when asked.
    // (Minified names may hold a $.)
    for (const file of [BUNDLE, ...['program', 'status'].map((c) => `${repo}dist/sea/${process.arch}/${c}.cjs`)])
      expect(readFileSync(file, 'utf8')).toMatch(/([\w$]+)\.enabled&&\1\("Sending: %s",[\w$]+\.inspect\(/);
    const env = statusAgainstNothing();
    const quiet = spawnSync(EXECUTABLE, ['status', '--json'], { env, encoding: 'utf8' });
    const debug = spawnSync(EXECUTABLE, ['status', '--json'], { env: { ...env, DEBUG: 'modem' }, encoding: 'utf8' });
    expect(quiet.stderr).toBe('');
    expect(debug.stderr).toMatch(/modem Sending: \{/);
  });

  it('the executable runs status from a chunk without the other commands’ modules, and they run from the whole program', () => {
    const chunk = (name: string) => readFileSync(`${repo}dist/sea/${process.arch}/${name}.cjs`, 'utf8');
    for (const m of ['composition', 'run', 'commands']) {
      expect(chunk('status')).toContain(`./${m}.js is not part of the status chunk`);
      expect(chunk('program')).not.toContain(`./${m}.js is not part of the status chunk`);
    }
    expect(chunk('status').length).toBeLessThan(chunk('program').length * 0.7);
    // Commands that need the steps reach Docker (absent here) through the program's adapters.
    const env = statusAgainstNothing();
    for (const command of [
      ['rollback', '--only', 'agent'],
      ['plan', '--only', 'agent'],
    ]) {
      const r = spawnSync(EXECUTABLE, command, { env, encoding: 'utf8' });
      expect({ command, code: r.status }).toEqual({ command, code: 4 });
      expect(r.stderr).toMatch(/^ecs-gvisor: Docker at unix:\/\/\S+ cannot be reached to inspect /m);
    }
  });

  it('the executable’s status loads none of the built-in modules it never uses (Node’s own list of what it loaded)', () => {
    const dir = mkdtempSync('/tmp/egv-exe-');
    writeFileSync(
      `${dir}/loaded.cjs`,
      `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(`${dir}/loaded`)}, process.moduleLoadList.join('\\n')));`,
    );
    const status = spawnSync(EXECUTABLE, ['status', '--json'], {
      // No runsc to ask (on an instance, the record run keeps answers without running it).
      env: { ...statusAgainstNothing(), ECS_GVISOR_RUNSC_PATH: `${dir}/no-runsc`, NODE_OPTIONS: `--require ${dir}/loaded.cjs` },
      encoding: 'utf8',
    });
    expect(JSON.parse(status.stdout)).toMatchObject({ version: '0.1.0' });
    const loaded = readFileSync(`${dir}/loaded`, 'utf8').split('\n');
    expect(loaded).toContain('NativeModule http'); // it did ask Docker
    const unused = ['worker_threads', 'child_process', 'dgram', 'crypto', 'zlib', 'https', 'assert'];
    expect(unused.filter((m) => loaded.includes(`NativeModule ${m}`))).toEqual([]);
  });

  it('the arm64 executable runs under qemu-user-static and names the Node inside', () => {
    const exe = `${repo}dist/sea/arm64/ecs-gvisor`;
    const qemu = { env: { ...clean, QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu' }, encoding: 'utf8' as const };
    const out =
      process.arch === 'arm64'
        ? execFileSync(exe, ['--version'], { encoding: 'utf8' })
        : execFileSync('qemu-aarch64-static', [exe, '--version'], qemu);
    expect(out).toMatch(/^ecs-gvisor 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/);
    // An ARM ELF (e_machine 183), not this host's.
    expect(readFileSync(exe).readUInt16LE(18)).toBe(0xb7);
  });

  it('one tarball per architecture, each with its .sha512: the executable, the bundle, the unit, the scripts, the license and the SBOM', () => {
    const dir = `${repo}dist/release`;
    for (const arch of ['x64', 'arm64']) {
      const file = `ecs-gvisor-0.1.0-linux-${arch}.tar.gz`;
      const list = execFileSync('tar', ['-tzvf', `${dir}/${file}`], { encoding: 'utf8' });
      for (const f of ['ecs-gvisor', 'ecs-gvisor.mjs', 'install.sh', 'userdata.sh'])
        expect(list).toMatch(new RegExp(`^-rwxr-xr-x 0/0 .* ecs-gvisor-0\\.1\\.0/${f.replace('.', '\\.')}$`, 'm'));
      for (const f of ['ecs-gvisor.service', 'LICENSE', 'NOTICE', 'sbom.cdx.json', 'doc/configuration.md', 'doc/operations.md'])
        expect(list).toMatch(new RegExp(`^-rw-r--r-- 0/0 .* ecs-gvisor-0\\.1\\.0/${f.replace('.', '\\.')}$`, 'm'));
      // The SBOM beside the tarball is the one inside it, and the checksum file lists both.
      const bomFile = `ecs-gvisor-0.1.0-linux-${arch}.cdx.json`;
      const inside = execFileSync('tar', ['-xzOf', `${dir}/${file}`, 'ecs-gvisor-0.1.0/sbom.cdx.json'], { encoding: 'utf8' });
      expect(readFileSync(`${dir}/${bomFile}`, 'utf8')).toBe(inside);
      const bom = JSON.parse(inside) as {
        bomFormat: string;
        specVersion: string;
        components: Array<{ name: string; version: string; hashes: unknown[] }>;
      };
      expect(bom).toMatchObject({ bomFormat: 'CycloneDX', specVersion: '1.5' });
      const lock = JSON.parse(readFileSync(`${repo}package-lock.json`, 'utf8')) as { packages: Record<string, { version: string }> };
      expect(bom.components).toContainEqual(
        expect.objectContaining({
          name: 'dockerode',
          version: lock.packages['node_modules/dockerode']!.version,
          hashes: [expect.objectContaining({ alg: 'SHA-512' })],
        }),
      );
      expect(bom.components).toContainEqual(expect.objectContaining({ name: `node-linux-${arch}`, type: 'platform' }));
      expect(bom.components.some((c) => c.name === 'vitest')).toBe(false); // dev packages are not shipped
      const hex = (f: string) =>
        createHash('sha512')
          .update(readFileSync(`${dir}/${f}`))
          .digest('hex');
      expect(readFileSync(`${dir}/${file}.sha512`, 'utf8')).toBe(`${hex(file)}  ${file}\n${hex(bomFile)}  ${bomFile}\n`);
      expect(execFileSync('sha512sum', ['-c', `${file}.sha512`], { cwd: dir, encoding: 'utf8' })).toBe(`${file}: OK\n${bomFile}: OK\n`);
    }
    // The plain CloudFormation template for an existing cluster and group, with its checksum.
    const cfn = 'ecs-gvisor-0.1.0-existing-group.cfn.json';
    expect(JSON.parse(readFileSync(`${dir}/${cfn}`, 'utf8')).Parameters).toHaveProperty('AutoScalingGroupName');
    expect(execFileSync('sha512sum', ['-c', `${cfn}.sha512`], { cwd: dir, encoding: 'utf8' })).toBe(`${cfn}: OK\n`);
  });

  it('the scripts pass shellcheck', () => {
    const scripts = execFileSync('git', ['ls-files', '*.sh', '.ci/run'], { cwd: repo, encoding: 'utf8' }).trim().split('\n');
    expect(scripts).toEqual(expect.arrayContaining(['scripts/install.sh', 'scripts/userdata.sh', 'scripts/demo.sh', '.ci/run']));
    const r = spawnSync('shellcheck', scripts, { cwd: repo, encoding: 'utf8' });
    expect(r.error).toBeUndefined(); // shellcheck is installed (CI installs it)
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('install.sh', () => {
  it('installs runsc from a pinned tarball, the bundle, the unit and the config; converges on a second run; --uninstall removes what it added', () => {
    const root = mkdtempSync('/tmp/egv-root-');
    const first = install([
      '--root',
      root,
      '--runsc-file',
      tarball,
      '--runsc-sha512',
      sha,
      '--set',
      'ECS_GVISOR_LAUNCH_HOOK=launch',
      '--set',
      'ECS_GVISOR_RUNSC_ARGS=--network=none',
    ]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(execFileSync(`${root}/usr/local/bin/runsc`, ['--version'], { encoding: 'utf8' })).toMatch(/^runsc version /);
    expect(statSync(`${root}/usr/local/bin/runsc`).mode & 0o777).toBe(0o755);
    expect(existsSync(`${root}/usr/local/bin/gvisor-bin/helper`)).toBe(true);
    // The executable itself, nothing else of ours: no Node, no bundle.
    expect(sha512(`${root}/usr/local/bin/ecs-gvisor`)).toBe(sha512(EXECUTABLE));
    expect(statSync(`${root}/usr/local/bin/ecs-gvisor`).mode & 0o777).toBe(0o755);
    // The state dir and the manifest in it are root's alone from the first install on.
    expect(statSync(`${root}/var/lib/ecs-gvisor`).mode & 0o777).toBe(0o700);
    expect(statSync(`${root}/var/lib/ecs-gvisor/install.manifest`).mode & 0o777).toBe(0o600);
    expect(existsSync(`${root}/usr/local/lib/ecs-gvisor`)).toBe(false);
    const unit = readFileSync(`${root}/etc/systemd/system/ecs-gvisor.service`, 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/local\/bin\/ecs-gvisor run$/m);
    expect(unit).not.toContain('@');
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=2 3 5 6$/m);
    expect(unit).toMatch(/^Conflicts=ecs\.service$/m);
    // Documentation= names a page that is there (the --help text points to the same directory).
    expect(unit).toMatch(/^Documentation=.* file:\/usr\/local\/share\/doc\/ecs-gvisor\/operations\.md$/m);
    const docs = `${root}/usr/local/share/doc/ecs-gvisor`;
    expect(readFileSync(`${docs}/configuration.md`, 'utf8')).toBe(readFileSync(`${repo}docs/configuration.md`, 'utf8'));
    expect(existsSync(`${docs}/operations.md`)).toBe(true);
    expect(statSync(`${docs}/configuration.md`).mode & 0o777).toBe(0o644);
    // systemd's own checker accepts it (stderr would name any line it could not parse); it also wants the
    // command to exist, so a copy names the one installed under the test's root.
    const check = `${mkdtempSync('/tmp/egv-unit-')}/ecs-gvisor.service`;
    writeFileSync(check, unit.replace('ExecStart=/usr/local/bin/', `ExecStart=${root}/usr/local/bin/`));
    const verify = spawnSync('systemd-analyze', ['verify', check], { encoding: 'utf8', timeout: 60_000 });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    const config = () => readFileSync(`${root}/etc/ecs/ecs-gvisor.config`, 'utf8');
    expect(config()).toMatch(/^ECS_GVISOR_LAUNCH_HOOK=launch$/m);
    expect(config()).toMatch(/^ECS_GVISOR_RUNSC_ARGS=--network=none$/m);
    const manifest = readFileSync(`${root}/var/lib/ecs-gvisor/install.manifest`, 'utf8');

    // Again, with one setting changed: the key is replaced, not repeated; nothing else moves.
    writeFileSync(`${root}/etc/ecs/ecs-gvisor.config`, `${config()}# an operator's note\n`);
    const second = install(['--root', root, '--runsc-file', tarball, '--runsc-sha512', sha, '--set', 'ECS_GVISOR_LAUNCH_HOOK=launch-2']);
    expect(second.code).toBe(0);
    expect(config().match(/ECS_GVISOR_LAUNCH_HOOK=/g)).toHaveLength(1);
    expect(config()).toMatch(/^ECS_GVISOR_LAUNCH_HOOK=launch-2$/m);
    expect(config()).toContain("# an operator's note");
    expect(config()).toMatch(/^ECS_GVISOR_RUNSC_ARGS=--network=none$/m);
    expect(readFileSync(`${root}/var/lib/ecs-gvisor/install.manifest`, 'utf8')).toBe(manifest);

    const gone = install(['--root', root, '--uninstall']);
    expect(gone.code).toBe(0);
    for (const f of [
      'usr/local/bin/runsc',
      'usr/local/bin/gvisor-bin',
      'usr/local/lib/ecs-gvisor',
      'usr/local/share/doc/ecs-gvisor',
      'usr/local/bin/ecs-gvisor',
      'etc/systemd/system/ecs-gvisor.service',
      'etc/ecs/ecs-gvisor.config',
      'var/lib/ecs-gvisor/install.manifest',
    ]) {
      expect(existsSync(`${root}/${f}`), f).toBe(false);
    }
  });

  it('--node runs the bundle on the node given (24 or newer) through a wrapper; the executable replaces it later; one for another machine is refused', () => {
    const root = mkdtempSync('/tmp/egv-root-');
    const withNode = install(['--root', root, '--runsc-path', RUNSC, '--node', process.execPath, '--bundle', BUNDLE]);
    expect(withNode.stderr).toBe('');
    expect(withNode.code).toBe(0);
    expect(readFileSync(`${root}/usr/local/lib/ecs-gvisor/ecs-gvisor.mjs`)).toEqual(readFileSync(BUNDLE));
    expect(readFileSync(`${root}/usr/local/bin/ecs-gvisor`, 'utf8')).toBe(
      `#!/bin/sh\nexec ${process.execPath} /usr/local/lib/ecs-gvisor/ecs-gvisor.mjs "$@"\n`,
    );
    expect(readFileSync(`${root}/etc/systemd/system/ecs-gvisor.service`, 'utf8')).toMatch(/^ExecStart=\/usr\/local\/bin\/ecs-gvisor run$/m);
    // A Node older than the bundle's: refused, naming it.
    const old = `${mkdtempSync('/tmp/egv-node-')}/node`;
    writeFileSync(old, '#!/bin/sh\nprintf 20.19.0\n', { mode: 0o755 });
    const refused = install(['--root', root, '--runsc-path', RUNSC, '--node', old, '--bundle', BUNDLE]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toBe(
      `install.sh: ${old} is Node.js 20.19.0; the ecs-gvisor bundle needs 24 or newer (or install without --node: the executable carries its own)\n`,
    );
    // Back to the executable: the wrapper and the bundle go.
    expect(install(['--root', root, '--runsc-path', RUNSC]).code).toBe(0);
    expect(sha512(`${root}/usr/local/bin/ecs-gvisor`)).toBe(sha512(EXECUTABLE));
    expect(existsSync(`${root}/usr/local/lib/ecs-gvisor`)).toBe(false);
    // Another architecture's executable does not run here: refused before anything changes.
    const other = `${repo}dist/sea/${process.arch === 'x64' ? 'arm64' : 'x64'}/ecs-gvisor`;
    const fresh = mkdtempSync('/tmp/egv-root-');
    const wrong = spawnSync('bash', [INSTALL, '--executable', other, '--unit', UNIT, '--root', fresh, '--runsc-path', RUNSC], {
      env: clean,
      encoding: 'utf8',
    });
    expect(wrong.status).toBe(4);
    expect(wrong.stderr).toMatch(
      new RegExp(
        `does not run on this \\S+ machine \\(.*Exec format error\\): use the release tarball built for it \\(ecs-gvisor-<version>-linux-${process.arch}\\.tar\\.gz\\)`,
      ),
    );
    expect(readdirSync(fresh)).toEqual([]);
  });

  it('keeps a configuration it did not create, and a runsc it did not install', () => {
    const root = mkdtempSync('/tmp/egv-root-');
    mkdirSync(`${root}/etc/ecs`, { recursive: true });
    writeFileSync(`${root}/etc/ecs/ecs-gvisor.config`, 'ECS_GVISOR_AUDIT_ACTION=stop\n');
    expect(install(['--root', root, '--runsc-path', RUNSC]).code).toBe(0);
    expect(readFileSync(`${root}/etc/ecs/ecs-gvisor.config`, 'utf8')).toBe(
      `ECS_GVISOR_AUDIT_ACTION=stop\nECS_GVISOR_RUNSC_PATH=${RUNSC}\n`,
    );
    expect(install(['--root', root, '--uninstall']).code).toBe(0);
    expect(existsSync(`${root}/etc/ecs/ecs-gvisor.config`)).toBe(true);
    expect(existsSync(RUNSC)).toBe(true);
  });

  it('--runsc-path over a runsc it did not install keeps that one and --uninstall puts it back; a tampered manifest removes nothing else', () => {
    const root = mkdtempSync('/tmp/egv-root-');
    mkdirSync(`${root}/usr/bin`, { recursive: true });
    writeFileSync(`${root}/usr/bin/runsc`, '#!/bin/sh\necho the distribution runsc\n', { mode: 0o755 });
    mkdirSync(`${root}/etc`, { recursive: true });
    writeFileSync(`${root}/etc/passwd`, 'root:x:0:0::/root:/bin/sh\n');
    const r = install(['--root', root, '--runsc-file', tarball, '--runsc-sha512', sha, '--runsc-path', '/usr/bin/runsc']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('kept the /usr/bin/runsc that was there in /var/lib/ecs-gvisor/backup/originals/usr/bin/runsc');
    expect(execFileSync(`${root}/usr/bin/runsc`, ['--version'], { encoding: 'utf8' })).toMatch(/^runsc version /);
    expect(statSync(`${root}/var/lib/ecs-gvisor`).mode & 0o777).toBe(0o700);
    // Someone edits the manifest to have --uninstall remove what is not ours.
    writeFileSync(
      `${root}/var/lib/ecs-gvisor/install.manifest`,
      `${readFileSync(`${root}/var/lib/ecs-gvisor/install.manifest`, 'utf8')}file /etc/passwd\ndir /etc\ndir /usr/bin/../../etc\n`,
    );
    const gone = install(['--root', root, '--uninstall']);
    expect(gone.code).toBe(0);
    expect(readFileSync(`${root}/usr/bin/runsc`, 'utf8')).toBe('#!/bin/sh\necho the distribution runsc\n');
    expect(readFileSync(`${root}/etc/passwd`, 'utf8')).toBe('root:x:0:0::/root:/bin/sh\n');
    expect(gone.stdout).toContain('warning: not removing "/etc/passwd" (file): install.sh never creates it');
    expect(gone.stdout).toContain('warning: not removing "/etc" (dir)');
    expect(existsSync(`${root}/usr/local/lib/ecs-gvisor`)).toBe(false);
  });

  it('refuses a checksum mismatch, a download without a pin and a bad setting, installing nothing', () => {
    const root = mkdtempSync('/tmp/egv-root-');
    const bad = install(['--root', root, '--runsc-file', tarball, '--runsc-sha512', 'a'.repeat(128)]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toBe(`install.sh: SHA-512 of ${tarball} is ${sha}, expected ${'a'.repeat(128)}; nothing installed\n`);
    expect(existsSync(`${root}/usr/local/bin/runsc`)).toBe(false);
    expect(existsSync(`${root}/usr/local/lib/ecs-gvisor`)).toBe(false);

    const unpinned = install(['--root', root, '--runsc-release', '20261012.0']);
    expect(unpinned.code).toBe(2);
    expect(unpinned.stderr).toMatch(/must be pinned: give --runsc-sha512/);

    const setting = install(['--root', root, '--runsc-path', RUNSC, '--set', 'ECS_GVISOR_SPOT_DRAIN=maybe']);
    expect(setting.code).toBe(2);
    expect(setting.stderr).toBe(
      `install.sh: ecs-gvisor: ${root}/etc/ecs/ecs-gvisor.config: ECS_GVISOR_SPOT_DRAIN="maybe" must be true or false.\n`,
    );
    expect(existsSync(`${root}/usr/local/lib/ecs-gvisor`)).toBe(false);
    expect(existsSync(`${root}/etc/ecs/ecs-gvisor.config`)).toBe(false);
    expect(readdirSync(`${root}/etc/ecs`)).toEqual([]); // no temporary file left either
    expect(install(['--root', root, '--set', 'LAUNCH_HOOK=x']).stderr).toBe(
      'install.sh: --set needs ECS_GVISOR_KEY=VALUE, not "LAUNCH_HOOK=x"\n',
    );
    // A line break inside a value would write a second key.
    const twoKeys = install(['--root', root, '--runsc-path', RUNSC, '--set', 'ECS_GVISOR_LAUNCH_HOOK=x\nECS_GVISOR_AUDIT_ACTION=stop']);
    expect(twoKeys.code).toBe(2);
    expect(twoKeys.stderr).toBe('install.sh: --set takes one line: "ECS_GVISOR_LAUNCH_HOOK=x…" holds a line break\n');
    expect(existsSync(`${root}/etc/ecs/ecs-gvisor.config`)).toBe(false);
    // Quotes systemd would strip and ecs-gvisor would keep: refused by the config check.
    const quoted = install(['--root', root, '--runsc-path', RUNSC, '--set', 'ECS_GVISOR_AUDIT_ACTION="stop"']);
    expect(quoted.code).toBe(2);
    expect(quoted.stderr).toMatch(/has quotes or a backslash, which systemd removes and ecs-gvisor keeps/);
  });

  it('userdata sets ECS_CLUSTER and keeps ecs.config root-only: a 0600 file stays 0600, a new one is created 0600', () => {
    // The release URL points nowhere: the script stops (exit 1) right after editing ecs.config.
    const run = (setup: string) =>
      userdata(
        'file:///nonexistent/release.tar.gz',
        `rm -rf /etc/ecs; ${setup}`,
        "bash /tmp/ud.$$.sh >/dev/null 2>&1 || true; stat -c '%a %U' /etc/ecs/ecs.config; cat /etc/ecs/ecs.config",
      );
    const kept = run(
      `mkdir -p /etc/ecs; printf 'ECS_ENGINE_AUTH_DATA={"a":1}\\nECS_CLUSTER=old\\n' > /etc/ecs/ecs.config; chmod 600 /etc/ecs/ecs.config`,
    );
    expect(kept.stderr).toBe('');
    expect(kept.stdout).toBe('600 root\nECS_ENGINE_AUTH_DATA={"a":1}\nECS_CLUSTER=prod\n');
    const fresh = run('');
    expect(fresh.stdout).toBe('600 root\nECS_CLUSTER=prod\n');
  });

  it('userdata refuses the other architecture’s release before fetching it, and fills {arch} with its own', () => {
    const other = process.arch === 'x64' ? 'arm64' : 'x64';
    const uname = process.arch === 'x64' ? 'x86_64' : 'aarch64';
    const run = (url: string) => userdata(url, '', 'bash /tmp/ud.$$.sh 2>&1 || echo "exit $?"');
    const wrong = run(`file:///nonexistent/ecs-gvisor-0.1.0-linux-${other}.tar.gz`);
    expect(wrong.stdout).toBe(
      `ecs-gvisor userdata: file:///nonexistent/ecs-gvisor-0.1.0-linux-${other}.tar.gz is the ${other} release and this instance is ${process.arch} (${uname}); not installing\nexit 1\n`,
    );
    // {arch} becomes this instance's: the fetch is of its own tarball (which does not exist here).
    expect(run('file:///nonexistent/ecs-gvisor-0.1.0-linux-{arch}.tar.gz').stdout).toContain(
      `fetching file:///nonexistent/ecs-gvisor-0.1.0-linux-${process.arch}.tar.gz`,
    );
  });

  it('accepts a runsc that prints more after its version line than a pipe holds', () => {
    // Reading only the first line through a pipe would kill such a runsc with SIGPIPE and call it broken.
    const dir = mkdtempSync('/tmp/egv-chatty-');
    writeFileSync(`${dir}/runsc`, '#!/bin/sh\necho "runsc version chatty"\nyes spec | head -c 1000000\n', { mode: 0o755 });
    const root = mkdtempSync('/tmp/egv-root-');
    const r = install(['--root', root, '--runsc-file', `${dir}/runsc`, '--no-start']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('runsc installed at /usr/local/bin/runsc: runsc version chatty\n');
    expect(readFileSync(`${root}/usr/local/bin/runsc`)).toEqual(readFileSync(`${dir}/runsc`));
  });
});
