import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The single-file bundle (`npm run bundle`): what install.sh puts on instances, so the tests run it. */
export const BUNDLE = fileURLToPath(new URL('../../dist/bundle/ecs-gvisor.mjs', import.meta.url));
/** The release executable for this machine's architecture (npm run package). */
export const EXECUTABLE = fileURLToPath(new URL(`../../dist/sea/${process.arch}/ecs-gvisor`, import.meta.url));
const BIN = BUNDLE;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the bundled CLI as an operator would, with exactly the given ECS_GVISOR_* environment. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 120_000, netns?: string): Promise<CliResult> {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };
  // nsenter switches only the network namespace; `ip netns exec` would also remount /sys (hiding cgroups).
  const [file, argv] = netns
    ? ['nsenter', [`--net=/run/netns/${netns}`, process.execPath, BIN, ...args]]
    : [process.execPath, [BIN, ...args]];
  return new Promise((resolve) => {
    execFile(file, argv, { env: { ...base, ...env }, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The `msg` fields of the JSON log lines a command wrote. */
export function logMessages(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
}
