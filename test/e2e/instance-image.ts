/**
 * The simulated ECS instance's image (docs/testing.md: End to end): a Debian bookworm rootfs from debootstrap with
 * systemd, Docker and runsc, plus stand-ins for what an ECS-optimized AMI has around the product: an
 * `ecs.service` shaped like ecs-init's, cloud-init's final stage (runs the userdata once), and a unit for
 * the fake AWS endpoints. The product itself is not in the image: each instance's userdata installs the
 * release with install.sh, as on a real launch.
 *
 * Built once per recipe: the rootfs tarball is cached by the hash of everything below, so a change to
 * the recipe rebuilds it and anything else reuses it (ECS_GVISOR_TEST_CACHE, default /var/cache/ecs-gvisor-test).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

// iproute2: the network-mode scenario plays the CNI plugin (a veth into a pause container's namespace);
// rpm: the rpm scenario installs and erases the release's rpm.
const PACKAGES = ['systemd', 'systemd-sysv', 'dbus', 'procps', 'iptables', 'iproute2', 'docker.io', 'runsc', 'rpm'];

/** ecs-init as the agent sees it: load the cached image, run `ecs-agent` under Docker's default runtime. */
const ECS_INIT = `#!/bin/sh
# Stand-in for /usr/libexec/amazon-ecs-init: what matters here is that it (re)creates the agent under
# whatever Docker's default runtime is, as the real one does.
IMAGE=amazon/amazon-ecs-agent:latest
case "$1" in
pre-start)
  docker image inspect "$IMAGE" > /dev/null 2>&1 || docker load -i /var/cache/ecs/ecs-agent.tar
  ;;
start)
  docker rm -f ecs-agent > /dev/null 2>&1
  mkdir -p /var/lib/ecs/data /var/log/ecs
  exec docker run --name ecs-agent --net host --env-file /etc/ecs/ecs.config \\
    -v /var/run:/var/run -v /var/log/ecs:/log -v /var/lib/ecs/data:/data -v /etc/ecs:/etc/ecs "$IMAGE"
  ;;
stop)
  docker stop ecs-agent
  ;;
post-stop)
  docker rm -f ecs-agent > /dev/null 2>&1
  exit 0
  ;;
esac
`;

/** ecs-init's own unit (packaging/amazon-linux-ami-integrated/ecs.service), pointing at the stand-in. */
const ECS_SERVICE = `[Unit]
Description=Amazon Elastic Container Service - container agent
Wants=docker.service
PartOf=docker.service
After=docker.service
After=cloud-final.service

[Service]
Type=simple
Restart=on-failure
RestartPreventExitStatus=5
RestartSec=10s
EnvironmentFile=-/etc/ecs/ecs.config
ExecStartPre=/bin/bash -c 'if [ $(/usr/bin/systemctl is-active docker) != "active" ]; then exit 1; fi'
ExecStartPre=/usr/libexec/amazon-ecs-init pre-start
ExecStart=/usr/libexec/amazon-ecs-init start
ExecStop=/usr/libexec/amazon-ecs-init stop
ExecStopPost=/usr/libexec/amazon-ecs-init post-stop

[Install]
WantedBy=multi-user.target
`;

const RUN_USERDATA = `#!/bin/sh
# cloud-init runs an instance's userdata once, on its first boot.
[ -e /var/lib/cloud/instance/boot-finished ] && exit 0
/bin/bash /opt/e2e/userdata.sh || exit 1
mkdir -p /var/lib/cloud/instance
touch /var/lib/cloud/instance/boot-finished
`;

const CLOUD_FINAL = `[Unit]
Description=Stand-in for cloud-init's final stage: the userdata, once
After=network-online.target e2e-fakes.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/run-userdata
TimeoutStartSec=300

[Install]
WantedBy=multi-user.target
`;

const FAKES_SERVICE = `[Unit]
Description=Fake AWS endpoints on this instance's loopback (ECS, Auto Scaling, EC2, IMDS)
Before=cloud-final.service ecs.service ecs-gvisor.service

[Service]
Type=notify
NotifyAccess=all
ExecStart=/opt/e2e-node/node /opt/e2e/fakes.mjs

[Install]
WantedBy=multi-user.target
`;

/** An operator's daemon.json from before the product: rollback must give back these exact bytes. */
export const SEED_DAEMON_JSON = '{\n    "log-driver": "json-file",\n    "log-opts": { "max-size": "10m", "max-file": "3" }\n}\n';

const FILES: Record<string, { text: string; mode: number }> = {
  'usr/libexec/amazon-ecs-init': { text: ECS_INIT, mode: 0o755 },
  // Where the ecs-init package puts it (a mask in /etc/systemd/system can override it).
  'usr/lib/systemd/system/ecs.service': { text: ECS_SERVICE, mode: 0o644 },
  'usr/local/sbin/run-userdata': { text: RUN_USERDATA, mode: 0o755 },
  'etc/systemd/system/cloud-final.service': { text: CLOUD_FINAL, mode: 0o644 },
  'etc/systemd/system/e2e-fakes.service': { text: FAKES_SERVICE, mode: 0o644 },
  'etc/docker/daemon.json': { text: SEED_DAEMON_JSON, mode: 0o644 },
  'etc/hostname': { text: 'ip-127-0-0-1\n', mode: 0o644 },
};
const ENABLE = ['/usr/lib/systemd/system/ecs.service', '/etc/systemd/system/cloud-final.service', '/etc/systemd/system/e2e-fakes.service'];
// Timers and gettys a container has no use for; they only slow the boot. systemd-sysctl and binfmt would
// write the outer kernel's settings through the instance's writable /proc/sys.
const MASK = [
  'systemd-sysctl.service',
  'systemd-binfmt.service',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'dpkg-db-backup.timer',
  'e2scrub_all.timer',
  'e2scrub_reap.service',
  'fstrim.timer',
  'getty@tty1.service',
  'console-getty.service',
  'systemd-logind.service',
];

const RECIPE = JSON.stringify({ v: 1, suite: 'bookworm', variant: 'minbase', PACKAGES, FILES, ENABLE, MASK });
export const INSTANCE_IMAGE = `ecs-gvisor-test/instance:${createHash('sha256').update(RECIPE).digest('hex').slice(0, 12)}`;

/** The rootfs tarball for this recipe: from the cache, or debootstrap (about a minute with a near mirror). */
export async function instanceRootfs(log: (line: string) => void = () => undefined): Promise<string> {
  const cache = process.env.ECS_GVISOR_TEST_CACHE ?? '/var/cache/ecs-gvisor-test';
  const tarball = `${cache}/${INSTANCE_IMAGE.split(':')[1]}.tar`;
  if (existsSync(tarball)) return tarball;
  mkdirSync(cache, { recursive: true });
  const root = `${cache}/build-${process.pid}`;
  rmSync(root, { recursive: true, force: true });
  const mirror = process.env.ECS_GVISOR_TEST_MIRROR ?? 'http://deb.debian.org/debian';
  log(`building the instance rootfs with debootstrap from ${mirror} (cached as ${tarball})`);
  try {
    await run('debootstrap', ['--variant=minbase', `--include=${PACKAGES.join(',')}`, 'bookworm', root, mirror], { maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    rmSync(root, { recursive: true, force: true });
    throw new Error(`debootstrap failed: ${e.message}\n${(e.stdout ?? '').split('\n').slice(-20).join('\n')}\n${e.stderr ?? ''}`);
  }
  for (const [path, f] of Object.entries(FILES)) {
    mkdirSync(dirname(`${root}/${path}`), { recursive: true });
    writeFileSync(`${root}/${path}`, f.text);
    chmodSync(`${root}/${path}`, f.mode);
  }
  mkdirSync(`${root}/etc/systemd/system/multi-user.target.wants`, { recursive: true });
  for (const u of ENABLE) symlinkSync(u, `${root}/etc/systemd/system/multi-user.target.wants/${basename(u)}`);
  for (const u of MASK) {
    rmSync(`${root}/etc/systemd/system/${u}`, { force: true });
    symlinkSync('/dev/null', `${root}/etc/systemd/system/${u}`);
  }
  // What an image does not need: downloaded packages, package lists, documentation.
  for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/locale']) {
    rmSync(`${root}/${d}`, { recursive: true, force: true });
    mkdirSync(`${root}/${d}`, { recursive: true });
  }
  execFileSync('tar', ['-C', root, '--numeric-owner', '-cf', `${tarball}.tmp`, '.']);
  renameSync(`${tarball}.tmp`, tarball);
  rmSync(root, { recursive: true, force: true });
  return tarball;
}

/** The image in the given engine: imported from the cached rootfs unless it is there already. */
export async function importInstanceImage(
  docker: (args: string[], input?: string) => Promise<string>,
  log?: (line: string) => void,
): Promise<string> {
  try {
    await docker(['image', 'inspect', INSTANCE_IMAGE]);
    return INSTANCE_IMAGE;
  } catch {
    // not imported yet
  }
  const tarball = await instanceRootfs(log);
  await docker(['import', tarball, INSTANCE_IMAGE]);
  return INSTANCE_IMAGE;
}
