/**
 * The rpms `npm run package` builds (scripts/rpm.sh, Debian's rpmbuild): each holds its architecture's
 * executable untouched, the unit in /usr/lib/systemd/system naming /usr/bin, the config as
 * %config(noreplace) and the docs; its scriptlets pass shellcheck. Installed, upgraded and erased with
 * `rpm --root` into a copy of the simulated instance's Debian rootfs, so the scriptlets run chrooted with
 * that root's own /bin/sh and systemctl (offline: no systemd runs there, as in an AMI build). The erase on
 * a running instance, where the scriptlet rolls the host back, is scenario 12 of test/e2e.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceRootfs } from '../e2e/instance-image.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const version = JSON.parse(readFileSync(`${repo}package.json`, 'utf8')).version as string;
const rpmOf = (target: string, release = 1, dir = `${repo}dist/release`) => `${dir}/ecs-gvisor-${version}-${release}.${target}.rpm`;
const ARCHES = [
  { arch: 'x64', target: 'x86_64' },
  { arch: 'arm64', target: 'aarch64' },
] as const;
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');
/** rpm, with the notice Debian's build prints before installing into any database taken off stderr. */
function rpm(args: string[]) {
  const r = spawnSync('rpm', args, { encoding: 'utf8', timeout: 300_000 });
  const notice =
    /^rpm: (RPM should not be used directly install RPM packages, use Alien instead!|However assuming you know what you are doing\.\.\.)\n\n?/gm;
  return { ...r, stderr: r.stderr.replace(notice, '') };
}
const WANTS = 'etc/systemd/system/multi-user.target.wants/ecs-gvisor.service';

describe('the rpm', () => {
  it('one per architecture with its .sha512: the executable as released, the unit naming /usr/bin, the config noreplace, the docs', () => {
    for (const { arch, target } of ARCHES) {
      const file = rpmOf(target);
      expect(readFileSync(`${file}.sha512`, 'utf8')).toBe(`${sha512(readFileSync(file))}  ecs-gvisor-${version}-1.${target}.rpm\n`);
      expect(rpm(['-qp', '--qf', '%{NAME} %{VERSION}-%{RELEASE} %{ARCH} %{LICENSE}', file]).stdout).toBe(
        `ecs-gvisor ${version}-1 ${target} Apache-2.0`,
      );
      const list = rpm(['-qplv', file]).stdout;
      expect(list).toMatch(/^-rwxr-xr-x +1 root +root .* \/usr\/bin\/ecs-gvisor$/m);
      expect(list).toMatch(/^-rw-r--r-- +1 root +root .* \/usr\/lib\/systemd\/system\/ecs-gvisor\.service$/m);
      expect(list).toMatch(/^-rw-r--r-- +1 root +root .* \/usr\/share\/doc\/ecs-gvisor\/configuration\.md$/m);
      expect(rpm(['-qpc', file]).stdout).toBe('/etc/ecs/ecs-gvisor.config\n');
      // Not stripped or rewritten: the executable is byte for byte the release's.
      const cpio = execFileSync('bash', ['-c', `rpm2cpio ${file} | cpio -i --quiet --to-stdout ./usr/bin/ecs-gvisor`], {
        maxBuffer: 512 << 20,
      });
      expect(sha512(cpio)).toBe(sha512(readFileSync(`${repo}dist/release/${arch}/ecs-gvisor-${version}/ecs-gvisor`)));
    }
  });

  it('its scriptlets pass shellcheck as the /bin/sh they run under', () => {
    const scripts = rpm(['-qp', '--scripts', rpmOf('x86_64')]).stdout;
    const parts = scripts.split(/^(\w+) scriptlet \(using \/bin\/sh\):\n/m).slice(1);
    const names = parts.filter((_, n) => n % 2 === 0);
    expect(names).toEqual(['postinstall', 'preuninstall', 'postuninstall']);
    for (let n = 0; n < parts.length; n += 2) {
      const check = spawnSync('shellcheck', ['-s', 'sh', '-'], { input: parts[n + 1], encoding: 'utf8' });
      expect(check.stdout, `${parts[n]}:\n${parts[n + 1]}`).toBe('');
      expect(check.status).toBe(0);
    }
  });

  describe('installed, upgraded and erased in a root', () => {
    let root: string;
    let upgrade: string;

    beforeAll(async () => {
      const tarball = await instanceRootfs();
      root = mkdtempSync('/tmp/egv-rpmroot-');
      execFileSync('tar', ['-C', root, '--numeric-owner', '-xf', tarball]);
      expect(existsSync(`${root}/usr/bin/systemctl`)).toBe(true);
      // Release 2 of the same version: what an upgrade brings.
      const out = mkdtempSync('/tmp/egv-rpm2-');
      execFileSync('bash', [`${repo}scripts/rpm.sh`, '--release', '2', '--out', out, 'x64'], { cwd: repo, encoding: 'utf8' });
      upgrade = rpmOf('x86_64', 2, out);
    }, 600_000);
    afterAll(() => {
      if (root) rmSync(root, { recursive: true, force: true });
    });

    it('install enables the unit; an upgrade keeps an edited config; erase removes it all and keeps the edit as .rpmsave', () => {
      // The root's rpm database is its own; Debian's packages are not in it, hence --nodeps.
      const first = rpm(['--root', root, '-i', '--nodeps', rpmOf('x86_64')]);
      expect(first.stderr).toBe('');
      expect(first.status).toBe(0);
      expect(statSync(`${root}/usr/bin/ecs-gvisor`).mode & 0o7777).toBe(0o755);
      const unit = readFileSync(`${root}/usr/lib/systemd/system/ecs-gvisor.service`, 'utf8');
      expect(unit).toMatch(/^ExecStart=\/usr\/bin\/ecs-gvisor run$/m);
      expect(unit).toMatch(/^Documentation=file:\/usr\/share\/doc\/ecs-gvisor\/operations\.md /m);
      expect(existsSync(`${root}/usr/share/doc/ecs-gvisor/operations.md`)).toBe(true);
      expect(statSync(`${root}/etc/ecs/ecs-gvisor.config`).mode & 0o7777).toBe(0o644);
      // Enabled by the root's own systemctl, run by the scriptlet.
      expect(lstatSync(`${root}/${WANTS}`).isSymbolicLink()).toBe(true);
      // (Debian's systemctl names it by /lib, a link to /usr/lib in that root.)
      expect(realpathSync(`${root}${readlinkSync(`${root}/${WANTS}`)}`)).toBe(
        realpathSync(`${root}/usr/lib/systemd/system/ecs-gvisor.service`),
      );
      // The executable in the root runs (its own Node inside).
      expect(execFileSync(`${root}/usr/bin/ecs-gvisor`, ['--version'], { encoding: 'utf8' })).toMatch(
        new RegExp(`^ecs-gvisor ${version.replaceAll('.', '\\.')} \\(node v24\\.`),
      );

      const config = `${root}/etc/ecs/ecs-gvisor.config`;
      writeFileSync(config, `${readFileSync(config, 'utf8')}ECS_GVISOR_RUNSC_PATH=/usr/bin/runsc\n`);
      const up = rpm(['--root', root, '-U', '--nodeps', upgrade]);
      expect(up.stderr).toBe('');
      expect(up.status).toBe(0);
      expect(rpm(['--root', root, '-q', 'ecs-gvisor']).stdout).toBe(`ecs-gvisor-${version}-2.x86_64\n`);
      expect(readFileSync(config, 'utf8')).toMatch(/^ECS_GVISOR_RUNSC_PATH=\/usr\/bin\/runsc$/m);
      expect(existsSync(`${config}.rpmnew`)).toBe(false);
      expect(lstatSync(`${root}/${WANTS}`).isSymbolicLink()).toBe(true);

      const erase = rpm(['--root', root, '-e', 'ecs-gvisor']);
      expect(erase.status, erase.stderr).toBe(0);
      for (const f of [
        'usr/bin/ecs-gvisor',
        'usr/lib/systemd/system/ecs-gvisor.service',
        'usr/share/doc/ecs-gvisor',
        'etc/ecs/ecs-gvisor.config',
      ])
        expect(existsSync(`${root}/${f}`), f).toBe(false);
      expect(existsSync(`${root}/${WANTS}`)).toBe(false);
      expect(readFileSync(`${config}.rpmsave`, 'utf8')).toMatch(/^ECS_GVISOR_RUNSC_PATH=\/usr\/bin\/runsc$/m);
      expect(rpm(['--root', root, '-q', 'ecs-gvisor']).status).not.toBe(0);
    }, 600_000);
  });
});
