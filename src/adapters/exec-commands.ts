import { execFile } from 'node:child_process';
import type { CommandResult, CommandsPort } from '../ports.js';

/** Runs programs with argument arrays (no shell). A non-zero exit is a result, not an exception. */
export class ExecCommands implements CommandsPort {
  run(
    file: string,
    args: readonly string[],
    opts: { timeoutMs?: number; env?: Record<string, string>; input?: string } = {},
  ): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        file,
        [...args],
        {
          timeout: opts.timeoutMs ?? 30_000,
          env: opts.env ? { ...process.env, ...opts.env } : undefined,
          maxBuffer: 16 * 1024 * 1024,
          encoding: 'utf8',
          killSignal: 'SIGKILL',
        },
        (err, stdout, stderr) => {
          if (err && typeof err.code === 'number') {
            resolve({ code: err.code, stdout, stderr });
          } else if (err?.killed) {
            resolve({ code: 124, stdout, stderr: `${stderr}\ntimed out after ${opts.timeoutMs ?? 30_000} ms`.trim() });
          } else if (err) {
            reject(err);
          } else {
            resolve({ code: 0, stdout, stderr });
          }
        },
      );
      if (opts.input !== undefined) {
        // A program that exits without reading all of it is answered by its exit code, not by EPIPE.
        child.stdin?.on('error', () => {});
        child.stdin?.end(opts.input);
      }
    });
  }
}
