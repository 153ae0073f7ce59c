/**
 * The state dir's record of daemon.json before ecs-gvisor first changed it. The original bytes are
 * written first and the manifest last, so a manifest on disk always has its original beside it; the
 * first original is never overwritten by later runs.
 */
// A namespace import lets the bundler drop what is unused (the named `z` export pulls in every locale).
import * as z from 'zod';
import { EcsGvisorError } from '../errors.js';
import type { FilesPort } from '../ports.js';
import { privateStateDir } from '../state-store.js';
import { sha256 } from './daemon-json.js';

const manifestSchema = z.object({
  version: z.literal(1),
  file: z.string(),
  existed: z.boolean(),
  originalSha256: z.string(),
  /** Docker's live default runtime before our first change (what rollback must bring back). */
  liveDefaultRuntime: z.string(),
  /** Hash of the text we last wrote: when the file still matches, rollback restores the original bytes. */
  writtenSha256: z.string(),
  createdAt: z.string(),
});
export type DaemonJsonBackup = z.infer<typeof manifestSchema> & { originalText: string | undefined };

export class BackupStore {
  private readonly dir: string;

  constructor(
    private readonly files: Pick<FilesPort, 'read' | 'readText' | 'writeAtomic' | 'remove' | 'privateDir'>,
    stateDir: string,
  ) {
    this.dir = `${stateDir}/backup`;
  }

  get manifestPath(): string {
    return `${this.dir}/daemon.json.manifest`;
  }

  get originalPath(): string {
    return `${this.dir}/daemon.json.orig`;
  }

  async load(file: string): Promise<DaemonJsonBackup | undefined> {
    const raw = await this.files.readText(this.manifestPath, { noFollow: true });
    if (raw === undefined) return undefined;
    let manifest: z.infer<typeof manifestSchema>;
    try {
      manifest = manifestSchema.parse(JSON.parse(raw));
    } catch (err) {
      throw new EcsGvisorError(
        'ROLLBACK_FAILED',
        `The backup record ${this.manifestPath} is corrupt; restore ${file} by hand from ${this.originalPath}.`,
        { cause: err },
      );
    }
    if (manifest.file !== file) return undefined; // a backup of another file (ECS_GVISOR_DAEMON_JSON changed)
    let originalText: string | undefined;
    if (manifest.existed) {
      const orig = await this.files.read(this.originalPath, { noFollow: true });
      if (!orig || sha256(orig) !== manifest.originalSha256) {
        throw new EcsGvisorError(
          'ROLLBACK_FAILED',
          `The backup ${this.originalPath} is missing or does not match its record ${this.manifestPath}.`,
        );
      }
      originalText = Buffer.from(orig).toString('utf8');
    }
    return { ...manifest, originalText };
  }

  /** Record the original (first time only) and the hash of what we are about to write. */
  async record(
    file: string,
    originalText: string | undefined,
    liveDefaultRuntime: string,
    writtenSha256: string,
    now: Date,
  ): Promise<void> {
    const existing = await this.load(file);
    await privateStateDir(this.files, this.dir, `The backup dir ${this.dir}`);
    if (!existing && originalText !== undefined) await this.files.writeAtomic(this.originalPath, originalText, 0o600, { noFollow: true });
    const base = existing ?? {
      version: 1 as const,
      file,
      existed: originalText !== undefined,
      originalSha256: originalText === undefined ? '' : sha256(originalText),
      liveDefaultRuntime,
      createdAt: now.toISOString(),
    };
    const { originalText: _drop, ...manifest } = { ...base, originalText: undefined, writtenSha256 };
    await this.files.writeAtomic(this.manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, 0o600, { noFollow: true });
  }

  /** Forget the backup once the original is back in place. Manifest first: it is the commit point. */
  async clear(): Promise<void> {
    await this.files.remove(this.manifestPath);
    await this.files.remove(this.originalPath);
  }
}
