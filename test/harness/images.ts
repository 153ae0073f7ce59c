import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import Docker from 'dockerode';

export const BUSYBOX_IMAGE = 'ecs-gvisor-test/busybox:1';
const APPLETS = ['sh', 'sleep', 'dmesg', 'uname', 'cat', 'ls', 'echo', 'httpd', 'true', 'false', 'ps', 'mkdir'];

/** A ~2 MB busybox image from the host's busybox-static, imported (no registry needed). */
export async function buildBusyboxImage(host: string): Promise<void> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox is not installed (apt-get install busybox-static)');
  const root = mkdtempSync('/tmp/egv-bb-');
  try {
    mkdirSync(`${root}/bin`);
    copyFileSync(busybox, `${root}/bin/busybox`);
    for (const a of APPLETS) symlinkSync('busybox', `${root}/bin/${a}`);
    const tarball = `${root}.tar`;
    execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
    const docker = new Docker({ socketPath: host.replace('unix://', '') });
    const [repo, tag] = BUSYBOX_IMAGE.split(':');
    const stream = await docker.importImage(tarball, { repo, tag } as object);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream as NodeJS.ReadableStream, (err: unknown) => (err ? reject(err) : resolve())),
    );
    rmSync(tarball, { force: true });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
