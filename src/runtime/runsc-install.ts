/**
 * Optional install of runsc from a release URL or a local file: a runsc binary, or a release tarball
 * (gvisor.tar.bz2 keeps gvisor-bin/ beside runsc). The artifact's SHA-512 must match the pinned value
 * or, for https:// and local sources only, the `<source>.sha512` file (`<hex>  <name>`); a mismatch
 * refuses and installs nothing.
 */
import { createHash } from 'node:crypto';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { CommandsPort, FilesPort, HttpPort } from '../ports.js';
import { redact } from '../redact.js';
import type { StateStore } from '../state-store.js';
import { sha256 } from './daemon-json.js';
import { parseRunscVersion } from './runsc.js';

const MAX_ARTIFACT = 512 * 1024 * 1024;
const INSTALL_STATE = 'runsc-install.json';

interface InstallRecord {
  source: string;
  artifactSha512: string;
  installedSha256: string;
  version: string;
  installedAt: string;
}

export type ArtifactKind = 'binary' | 'tarball';

/** Tell a runsc binary from a tarball by its first bytes. */
export function artifactKind(bytes: Uint8Array): ArtifactKind | undefined {
  const b = Buffer.from(bytes.subarray(0, 512));
  if (b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return 'binary';
  if (b.subarray(0, 3).toString('latin1') === 'BZh') return 'tarball';
  if (b[0] === 0x1f && b[1] === 0x8b) return 'tarball';
  if (b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'tarball';
  if (b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return 'tarball';
  return undefined;
}

/** The hex digest from a `.sha512` file (`<hex>  <name>` or just `<hex>`); checks the name when given. */
export function parseSha512File(text: string, expectedName: string): string | undefined {
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{128})(?:\s+\*?(\S+))?\s*$/.exec(line.trim());
    if (!m) continue;
    if (m[2] !== undefined && basename(m[2]) !== expectedName) continue;
    return m[1]!.toLowerCase();
  }
  return undefined;
}

export class RunscInstaller {
  constructor(
    private readonly deps: { files: FilesPort; commands: CommandsPort; http: HttpPort; state: StateStore; log: Logger },
    private readonly opts: { path: string; source: string | undefined; sha512: string | undefined },
  ) {}

  /** Install when a source is configured and the installed runsc is not already that source's. */
  async ensure(): Promise<'not-configured' | 'up-to-date' | 'installed'> {
    const { source } = this.opts;
    if (!source) return 'not-configured';
    const record = await this.deps.state.read<InstallRecord>(INSTALL_STATE);
    const installed = await this.deps.files.read(this.opts.path, { maxBytes: MAX_ARTIFACT });
    if (
      record &&
      installed &&
      // Recorded masked (a presigned URL's token never reaches the state dir): a new signature of the
      // same object is the same source.
      record.source === redact(source) &&
      (this.opts.sha512 === undefined || record.artifactSha512 === this.opts.sha512) &&
      sha256(installed) === record.installedSha256
    ) {
      return 'up-to-date';
    }

    const artifact = await this.fetch(source, 'runsc');
    const expected = this.opts.sha512 ?? (await this.publishedSha512(source));
    const actual = createHash('sha512').update(artifact).digest('hex');
    if (actual !== expected) {
      throw new EcsGvisorError(
        'RUNSC_CHECKSUM_MISMATCH',
        `runsc from ${source} has SHA-512 ${actual.slice(0, 16)}…, expected ${expected.slice(0, 16)}… (${this.opts.sha512 ? 'ECS_GVISOR_RUNSC_SHA512' : `${source}.sha512`}); nothing was installed.`,
      );
    }
    const kind = artifactKind(artifact);
    if (!kind) {
      throw new EcsGvisorError(
        'RUNSC_INSTALL_FAILED',
        `ECS_GVISOR_RUNSC_SOURCE=${source} is neither a runsc binary nor a release tarball; nothing was installed.`,
      );
    }

    const work = await this.deps.files.tempDir('ecs-gvisor-runsc-');
    try {
      const staged = await this.stage(artifact, kind, work, source);
      const version = await this.check(staged.runsc, source);
      try {
        await this.deps.files.mkdirp(dirname(this.opts.path), 0o755);
        // gvisor-bin first: a runsc that needs it must never be in place without it.
        if (staged.gvisorBin) await this.deps.files.installTree(staged.gvisorBin, `${dirname(this.opts.path)}/gvisor-bin`);
        await this.deps.files.installFile(staged.runsc, this.opts.path, 0o755);
      } catch (err) {
        throw new EcsGvisorError(
          'RUNSC_INSTALL_FAILED',
          `Cannot install runsc at ECS_GVISOR_RUNSC_PATH=${this.opts.path} (${messageOf(err)}).`,
          { cause: err },
        );
      }
      const bytes = await this.deps.files.read(this.opts.path, { maxBytes: MAX_ARTIFACT });
      await this.deps.state.write(INSTALL_STATE, {
        source: redact(source),
        artifactSha512: actual,
        installedSha256: sha256(bytes ?? new Uint8Array()),
        version,
        installedAt: new Date().toISOString(),
      } satisfies InstallRecord);
      this.deps.log.info({ source, path: this.opts.path, version }, 'runsc installed');
      return 'installed';
    } finally {
      await this.deps.files.removeTree(work);
    }
  }

  private async stage(
    artifact: Uint8Array,
    kind: ArtifactKind,
    work: string,
    source: string,
  ): Promise<{ runsc: string; gvisorBin?: string }> {
    if (kind === 'binary') {
      const runsc = `${work}/runsc`;
      await this.deps.files.writeAtomic(runsc, artifact, 0o755);
      return { runsc };
    }
    const archive = `${work}/artifact`;
    await this.deps.files.writeAtomic(archive, artifact, 0o600);
    const out = `${work}/x`;
    await this.deps.files.mkdirp(out, 0o700);
    const r = await this.deps.commands.run('tar', ['-xf', archive, '-C', out, '--no-same-owner'], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new EcsGvisorError(
        'RUNSC_INSTALL_FAILED',
        `Cannot unpack ${source} (tar exited ${r.code}: ${r.stderr.trim().slice(0, 200)}); nothing was installed.`,
      );
    }
    for (const dir of [out, ...(await this.subdirs(out))]) {
      if (await this.deps.files.exists(`${dir}/runsc`)) {
        const gvisorBin = `${dir}/gvisor-bin`;
        return { runsc: `${dir}/runsc`, gvisorBin: (await this.deps.files.exists(gvisorBin)) ? gvisorBin : undefined };
      }
    }
    throw new EcsGvisorError('RUNSC_INSTALL_FAILED', `The tarball ${source} holds no runsc; nothing was installed.`);
  }

  private async subdirs(dir: string): Promise<string[]> {
    const r = await this.deps.commands.run('find', [dir, '-mindepth', '1', '-maxdepth', '2', '-type', 'd'], { timeoutMs: 10_000 });
    return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  }

  private async check(runsc: string, source: string): Promise<string> {
    const r = await this.deps.commands.run(runsc, ['--version'], { timeoutMs: 15_000 }).catch((err: unknown) => ({
      code: -1,
      stdout: '',
      stderr: messageOf(err),
    }));
    const v = r.code === 0 ? parseRunscVersion(r.stdout) : undefined;
    if (!v) {
      throw new EcsGvisorError(
        'RUNSC_INSTALL_FAILED',
        `The runsc from ${source} does not run here ("runsc --version" exited ${r.code}); nothing was installed.`,
      );
    }
    return v.version;
  }

  private async publishedSha512(source: string): Promise<string> {
    // The config refuses this too; kept here so no caller can skip it.
    if (source.startsWith('http://')) {
      throw new EcsGvisorError(
        'CONFIG_INVALID',
        `ECS_GVISOR_RUNSC_SOURCE=${source} is plain http:// and needs ECS_GVISOR_RUNSC_SHA512; nothing was installed.`,
      );
    }
    const text = Buffer.from(await this.fetch(`${source}.sha512`, 'checksum')).toString('utf8');
    const hex = parseSha512File(text, basename(source));
    if (!hex) {
      throw new EcsGvisorError(
        'RUNSC_CHECKSUM_MISMATCH',
        `${source}.sha512 holds no SHA-512 for ${basename(source)}; nothing was installed.`,
      );
    }
    return hex;
  }

  private async fetch(location: string, what: string): Promise<Uint8Array> {
    try {
      if (/^https?:\/\//.test(location)) return await this.deps.http.get(location, { timeoutMs: 300_000, maxBytes: MAX_ARTIFACT });
      const bytes = await this.deps.files.read(location, { maxBytes: MAX_ARTIFACT });
      if (!bytes) throw new Error('no such file');
      return bytes;
    } catch (err) {
      if (err instanceof EcsGvisorError) throw err;
      throw new EcsGvisorError(
        'RUNSC_INSTALL_FAILED',
        `Cannot get the ${what} from ${location} (${messageOf(err)}); nothing was installed.`,
        { cause: err },
      );
    }
  }
}

function basename(p: string): string {
  return (
    p
      .replace(/[?#].*$/, '')
      .split('/')
      .pop() ?? p
  );
}

function dirname(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}
