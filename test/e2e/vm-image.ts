/**
 * The simulated instance as a virtual machine on a cgroup v2 kernel (docs/testing.md: End to end), for what this
 * machine's own kernel (cgroup v1 only) cannot show: Amazon Linux 2023's cgroup v2 with Docker's systemd
 * driver. The same rootfs as the container instance (instance-image.ts), plus Debian's cloud kernel
 * (its NVMe driver and ext4 are built in, so the root disk needs no initramfs, as on EC2's Nitro
 * instances) and kmod for Docker's modules, and two things a container got from its engine: a way in
 * (a command channel on the second serial port, `e2e-exec`) and /opt/e2e (a virtio disk of its own).
 *
 * Cached like the rootfs: a raw ext4 image keyed by the rootfs's recipe, the kernel's version and
 * everything below. Each boot writes to a throwaway overlay (qemu -snapshot).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';
import { instanceRootfs } from './instance-image.js';

const run = promisify(execFile);

/**
 * The command channel's guest end: a line `ID BASE64(script)` in, a line `ID CODE BASE64(stdout)
 * BASE64(stderr)` out, one command at a time. Raw mode: no line length limit, no echo.
 */
const EXEC_AGENT = `#!/bin/bash
tty=/dev/ttyS1
stty -F "$tty" raw -echo -icrnl -onlcr -opost
exec 3<>"$tty"
printf 'E2E-EXEC-READY\\n' >&3
while IFS=' ' read -r id script <&3; do
  [ -n "$id" ] || continue
  printf '%s' "$script" | base64 -d > /run/e2e-cmd
  timeout 900 bash /run/e2e-cmd > /run/e2e-out 2> /run/e2e-err < /dev/null
  code=$?
  printf '%s %s %s %s\\n' "$id" "$code" "$(base64 -w0 < /run/e2e-out)" "$(base64 -w0 < /run/e2e-err)" >&3
done
`;

const EXEC_SERVICE = `[Unit]
Description=e2e: the test's command channel (second serial port)
DefaultDependencies=no
After=systemd-tmpfiles-setup-dev.service

[Service]
ExecStart=/usr/local/sbin/e2e-exec
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
`;

/**
 * /opt/e2e, from the payload disk, before local-fs.target: without udev (the image has none, as a
 * container needs none) systemd never sees a device unit for it, so fstab cannot mount it.
 */
const PAYLOAD_SERVICE = `[Unit]
Description=e2e: the test's files at /opt/e2e (the payload disk)
DefaultDependencies=no
After=systemd-modules-load.service
Before=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for i in $(seq 600); do [ -b /dev/vda ] && exec mount -o ro /dev/vda /opt/e2e; sleep 0.1; done; echo no /dev/vda; exit 1'

[Install]
WantedBy=local-fs.target
`;

/** ecs-init's cache on the AMI: filled from /opt/e2e before anything could want the agent image. */
const CACHE_SERVICE = `[Unit]
Description=e2e: the AMI's agent image cache
After=e2e-payload.service
Requires=e2e-payload.service
Before=docker.service ecs.service cloud-final.service
ConditionPathExists=!/var/cache/ecs/state

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /var/cache/ecs && cp -a /opt/e2e/cache/. /var/cache/ecs/'

[Install]
WantedBy=multi-user.target
`;

const VM_FILES: Record<string, { text: string; mode: number }> = {
  'usr/local/sbin/e2e-exec': { text: EXEC_AGENT, mode: 0o755 },
  'etc/systemd/system/e2e-exec.service': { text: EXEC_SERVICE, mode: 0o644 },
  'etc/systemd/system/e2e-cache.service': { text: CACHE_SERVICE, mode: 0o644 },
  'etc/systemd/system/e2e-payload.service': { text: PAYLOAD_SERVICE, mode: 0o644 },
  // The payload disk: virtio, so it never takes the root disk's NVMe name. No udev: loaded by name.
  'etc/modules-load.d/e2e.conf': { text: 'virtio_pci\nvirtio_blk\n', mode: 0o644 },
};
const VM_ENABLE: Record<string, string> = {
  'sysinit.target.wants/e2e-exec.service': '/etc/systemd/system/e2e-exec.service',
  'local-fs.target.wants/e2e-payload.service': '/etc/systemd/system/e2e-payload.service',
  'multi-user.target.wants/e2e-cache.service': '/etc/systemd/system/e2e-cache.service',
};
/** A machine has what a container did not (logind's bus name is what poweroff asks for). */
const VM_UNMASK = ['systemd-logind.service', 'systemd-sysctl.service'];

export interface VmImage {
  /** The root disk (raw ext4; boots write to an overlay). */
  disk: string;
  kernel: string;
  /** The kernel's command line. */
  append: string;
}

/** Debian's cloud kernel package for this architecture, by name (linux-image-cloud-amd64 depends on it). */
async function kernelPackage(): Promise<string> {
  const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const { stdout } = await run('apt-cache', ['depends', `linux-image-cloud-${arch}`]);
  const dep = /Depends: (linux-image-\S+)/.exec(stdout)?.[1];
  if (!dep) throw new Error(`apt-cache knows no linux-image-cloud-${arch} (run apt-get update)`);
  return dep;
}

/** The image for this recipe: from the cache, or made from the instance rootfs (seconds) and two packages. */
export async function vmImage(log: (line: string) => void = () => undefined): Promise<VmImage> {
  const rootfs = await instanceRootfs(log);
  const kernelPkg = await kernelPackage();
  const version = kernelPkg.replace(/^linux-image-/, '');
  const recipe = JSON.stringify({ v: 1, rootfs: basename(rootfs), kernelPkg, VM_FILES, VM_ENABLE, VM_UNMASK });
  const key = createHash('sha256').update(recipe).digest('hex').slice(0, 12);
  const cache = dirname(rootfs);
  const disk = `${cache}/vm-${key}.raw`;
  const kernel = `${cache}/vm-${key}.vmlinuz`;
  const append = 'root=/dev/nvme0n1 rw console=ttyS0 apparmor=0 systemd.unified_cgroup_hierarchy=1 quiet';
  if (existsSync(disk) && existsSync(kernel)) return { disk, kernel, append };

  log(`building the cgroup v2 machine image (kernel ${version}; cached as ${disk})`);
  const work = mkdtempSync(`${cache}/vm-build-`);
  try {
    const debs = `${work}/debs`;
    mkdirSync(debs);
    await run('apt-get', ['download', kernelPkg, 'kmod', 'libkmod2'], { cwd: debs });
    const root = `${work}/root`;
    mkdirSync(root);
    await run('tar', ['-C', root, '--numeric-owner', '-xf', rootfs]);
    // The packages' files into the merged-/usr layout (dpkg -x into the root would replace its /bin link).
    const unpacked = `${work}/unpacked`;
    for (const deb of readdirSync(debs)) await run('dpkg', ['-x', `${debs}/${deb}`, unpacked]);
    for (const [from, to] of [
      ['lib/modules', 'usr/lib/modules'],
      ['usr/lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'],
      ['usr/lib/aarch64-linux-gnu', 'usr/lib/aarch64-linux-gnu'],
      ['bin/kmod', 'usr/bin/kmod'],
      ['lib/modprobe.d', 'usr/lib/modprobe.d'],
    ] as const) {
      if (!existsSync(`${unpacked}/${from}`)) continue;
      mkdirSync(dirname(`${root}/${to}`), { recursive: true });
      execFileSync('cp', ['-a', '-T', `${unpacked}/${from}`, `${root}/${to}`]);
    }
    for (const tool of ['modprobe', 'insmod', 'rmmod', 'lsmod', 'modinfo', 'depmod']) {
      rmSync(`${root}/usr/sbin/${tool}`, { force: true });
      symlinkSync('/usr/bin/kmod', `${root}/usr/sbin/${tool}`);
    }
    execFileSync('chroot', [root, '/usr/sbin/depmod', version]);
    for (const [path, f] of Object.entries(VM_FILES)) {
      mkdirSync(dirname(`${root}/${path}`), { recursive: true });
      writeFileSync(`${root}/${path}`, f.text);
      chmodSync(`${root}/${path}`, f.mode);
    }
    for (const [link, unit] of Object.entries(VM_ENABLE)) {
      mkdirSync(dirname(`${root}/etc/systemd/system/${link}`), { recursive: true });
      symlinkSync(unit, `${root}/etc/systemd/system/${link}`);
    }
    for (const u of VM_UNMASK) rmSync(`${root}/etc/systemd/system/${u}`, { force: true });
    // The test's Node runs the fakes, from the payload disk (off PATH, as in the container instance).
    mkdirSync(`${root}/opt/e2e-node`, { recursive: true });
    mkdirSync(`${root}/opt/e2e`, { recursive: true });
    symlinkSync('/opt/e2e/node', `${root}/opt/e2e-node/node`);
    execFileSync('truncate', ['-s', '6G', `${work}/disk.raw`]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', root, `${work}/disk.raw`]);
    cpSync(`${unpacked}/boot/vmlinuz-${version}`, `${work}/vmlinuz`);
    renameSync(`${work}/vmlinuz`, kernel);
    renameSync(`${work}/disk.raw`, disk);
    return { disk, kernel, append };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A raw ext4 image holding `dir`'s files (the machine's /opt/e2e), sized to fit them. */
export function payloadDisk(dir: string, image: string): void {
  const bytes = Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);
  const mib = Math.ceil((bytes * 1.2) / 1048576) + 64;
  execFileSync('truncate', ['-s', `${mib}M`, image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', dir, image]);
}
