import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import Docker from 'dockerode';

export const BUSYBOX_IMAGE = 'ecs-gvisor-test/busybox:1';
export const AGENT_STANDIN_IMAGE = 'ecs-gvisor-test/ecs-agent:1';

/**
 * Stand-in for amazon-ecs-agent: like a registered agent it answers GET 127.0.0.1:51678/v1/metadata.
 * With ECS_BACKEND_HOST set (the agent's own endpoint override) it first registers there, as the agent
 * calls RegisterContainerInstance. A file /data/stand-in-exit (host: /var/lib/ecs/data) makes it exit
 * with that code instead; /data/stand-in-exit-once does so once (the file is removed).
 */
const AGENT_SCRIPT = `#!/bin/sh
cluster="\${ECS_CLUSTER:-default}"
arn="arn:aws:ecs:us-east-1:111122223333:container-instance/$cluster/0123456789abcdef"
mkdir -p /tmp/www/v1
printf '{"Cluster":"%s","ContainerInstanceArn":"%s","Version":"Amazon ECS Agent - v0.0.0 (stand-in)"}' "$cluster" "$arn" > /tmp/www/v1/metadata
if [ -f /data/stand-in-exit-once ]; then c=$(cat /data/stand-in-exit-once); rm -f /data/stand-in-exit-once; exit "$c"; fi
if [ -f /data/stand-in-exit ]; then exit "$(cat /data/stand-in-exit)"; fi
if [ -n "$ECS_BACKEND_HOST" ]; then
  wget -q -O /dev/null --header 'Content-Type: application/x-amz-json-1.1' \\
    --header 'X-Amz-Target: AmazonEC2ContainerServiceV20141113.RegisterContainerInstance' \\
    --post-data "{\\"cluster\\":\\"$cluster\\",\\"containerInstanceArn\\":\\"$arn\\"}" "$ECS_BACKEND_HOST/" || { echo 'registration refused' >&2; exit 1; }
fi
exec httpd -f -p 127.0.0.1:51678 -h /tmp/www
`;
const APPLETS = ['sh', 'sleep', 'dmesg', 'uname', 'cat', 'ls', 'echo', 'httpd', 'true', 'false', 'ps', 'mkdir', 'wget'];

/** A ~2 MB busybox image from the host's busybox-static, imported (no registry needed), and the agent stand-in. */
export async function buildBusyboxImage(host: string): Promise<void> {
  await importRootfs(host, BUSYBOX_IMAGE, []);
  await importRootfs(host, AGENT_STANDIN_IMAGE, ['ENTRYPOINT ["/agent"]'], (root) =>
    writeFileSync(`${root}/agent`, AGENT_SCRIPT, { mode: 0o755 }),
  );
}

async function importRootfs(host: string, ref: string, changes: string[], extra?: (root: string) => void): Promise<void> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox is not installed (apt-get install busybox-static)');
  const root = mkdtempSync('/tmp/egv-bb-');
  try {
    mkdirSync(`${root}/bin`);
    copyFileSync(busybox, `${root}/bin/busybox`);
    for (const a of APPLETS) symlinkSync('busybox', `${root}/bin/${a}`);
    mkdirSync(`${root}/tmp`, { mode: 0o1777 });
    extra?.(root);
    const tarball = `${root}.tar`;
    execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
    const docker = new Docker({ socketPath: host.replace('unix://', '') });
    const [repo, tag] = ref.split(':');
    const stream = await docker.importImage(tarball, { repo, tag, changes } as object);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream as NodeJS.ReadableStream, (err: unknown) => (err ? reject(err) : resolve())),
    );
    rmSync(tarball, { force: true });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
