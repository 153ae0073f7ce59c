/**
 * The metrics as a file for node_exporter's textfile collector: written whole to a temporary name (which
 * the collector ignores: it reads only `*.prom`) and renamed over the file, so a scrape never reads half
 * of it. Written as root into a directory that must be root's and writable by no one else: anywhere else
 * a local user could swap the file or the directory for a link between two writes.
 */
import { constants } from 'node:fs';
import { lstat, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EcsGvisorError } from '../errors.js';

export async function writeMetricsTextfile(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const st = await lstat(dir).catch(() => undefined);
  const uid = process.getuid?.() ?? 0;
  if (!st?.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new EcsGvisorError(
      'METRICS_TEXTFILE_UNSAFE',
      `The directory of ECS_GVISOR_METRICS_TEXTFILE=${path} must exist, be a directory (not a link) owned by ${uid === 0 ? 'root' : `uid ${uid}`} and be writable by no one else.`,
    );
  }
  const tmp = `${path}.${process.pid}.tmp`;
  await unlink(tmp).catch(() => undefined); // one a crash left
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    await fh.writeFile(text);
    await fh.chmod(0o644); // whatever the umask: node_exporter need not run as root
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** The file gone (a stopped service has no figures); nothing when it is not there. */
export async function removeMetricsTextfile(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
