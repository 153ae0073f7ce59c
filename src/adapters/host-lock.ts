/**
 * The host-wide lock every command that changes the host takes: a kernel flock(2) on `<state dir>/lock`,
 * held by a small `flock(1)` child. Node has no flock of its own; the child holds the lock until its
 * stdin closes, which the kernel also does when we die (SIGKILL included), so a dead holder never
 * leaves a stale lock behind. Who holds it is written beside it (lock.json) for the waiter's message.
 */
import { spawn } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import { EcsGvisorError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { HostLockPort, ReleaseLock } from '../ports.js';
import type { StateStore } from '../state-store.js';

const HOLDER_STATE = 'lock.json';
/** flock(1)'s exit status when the lock stays taken (-n) or the wait runs out (-w). */
const CONFLICT = 75;

interface Holder {
  pid: number;
  purpose: string;
  since: string;
}

export class FlockHostLock implements HostLockPort {
  constructor(
    private readonly deps: { state: StateStore; log: Logger },
    /** `holder`: the state file naming who holds it (lock.json for the host lock). */
    private readonly opts: { path: string; holder?: string },
  ) {}

  private get holderFile(): string {
    return this.opts.holder ?? HOLDER_STATE;
  }

  /** Who holds it, as its holder wrote it (plain text, clipped); undefined when nobody wrote it. */
  async holder(): Promise<string | undefined> {
    const h = await this.deps.state.read<Holder>(this.holderFile);
    return h ? describe(h) : undefined;
  }

  async acquire(purpose: string, waitMs: number): Promise<ReleaseLock> {
    const now = await this.take(purpose, 0);
    if (now) return now;
    const holder = await this.deps.state.read<Holder>(this.holderFile);
    const who = describe(holder);
    this.deps.log.warn(
      { holder, waitSeconds: Math.ceil(waitMs / 1000) },
      `the host lock is held by ${who}; waiting up to ${Math.ceil(waitMs / 1000)} s before ${purpose}`,
    );
    const later = await this.take(purpose, waitMs);
    if (later) return later;
    throw new EcsGvisorError(
      'HOST_LOCKED',
      `Another ecs-gvisor command (${describe((await this.deps.state.read<Holder>(this.holderFile)) ?? holder)}) still held the host lock ${this.opts.path} after ${Math.ceil(waitMs / 1000)} s (ECS_GVISOR_LOCK_TIMEOUT_SECONDS); nothing was changed.`,
    );
  }

  tryAcquire(purpose: string): Promise<ReleaseLock | undefined> {
    return this.take(purpose, 0);
  }

  /** One flock(1) child: resolves with its release once it holds the lock, undefined on conflict. */
  private async take(purpose: string, waitMs: number): Promise<ReleaseLock | undefined> {
    await this.deps.state.prepare(); // flock(1) creates the lock file: only in a dir that is ours alone
    // flock(1) opens the path before it waits: a FIFO there would block that open past any timeout.
    const st = await lstat(this.opts.path).catch(() => undefined);
    if (st && !st.isFile())
      throw new EcsGvisorError(
        'STATE_DIR_UNSAFE',
        `The host lock ${this.opts.path} is not a regular file (${st.isFIFO() ? 'a FIFO' : st.isSymbolicLink() ? 'a symbolic link' : 'a special file'}); remove it. Nothing was changed.`,
      );
    const wait = waitMs > 0 ? ['--wait', String(Math.ceil(waitMs / 1000))] : ['--nonblock'];
    const child = spawn(
      'flock',
      ['--exclusive', '--conflict-exit-code', String(CONFLICT), ...wait, this.opts.path, 'sh', '-c', 'echo locked; exec cat >/dev/null'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        // util-linux's flock lives in /usr/bin everywhere we run; found there even with a narrow PATH.
        env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/bin:/bin:/usr/sbin:/sbin` },
      },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    return new Promise((resolve, reject) => {
      child.once('error', (err) =>
        reject(
          new EcsGvisorError('HOST_LOCKED', `Cannot take the host lock ${this.opts.path}: flock(1) did not run (${err.message}).`, {
            cause: err,
          }),
        ),
      );
      child.stdout.once('data', () => {
        // Held until the caller releases it, or until this process ends and the kernel does.
        const release: ReleaseLock = async () => {
          child.stdin.end();
          await exited;
        };
        this.deps.state.write(this.holderFile, { pid: process.pid, purpose, since: new Date().toISOString() } satisfies Holder).then(
          () => resolve(release),
          async (err: unknown) => {
            await release();
            reject(err);
          },
        );
      });
      exited.then((code) => {
        if (code === CONFLICT) resolve(undefined);
        else
          reject(
            new EcsGvisorError(
              'HOST_LOCKED',
              `Cannot take the host lock ${this.opts.path}: flock(1) exited ${code} (${stderr.trim() || 'no message'}).`,
            ),
          );
      });
    });
  }
}

/** Who holds the lock, from lock.json: a file, so its text is shown only as plain characters, clipped. */
function describe(h: Holder | undefined): string {
  if (!h) return 'another process';
  const pid = Number.isSafeInteger(h.pid) ? String(h.pid) : '?';
  return `pid ${pid} (${printable(h.purpose)}, since ${printable(h.since)})`;
}

function printable(v: unknown): string {
  // Control characters (terminal escapes among them) become "?".
  // eslint-disable-next-line no-control-regex
  const s = String(v ?? '?').replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
