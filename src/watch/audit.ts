/**
 * The sandbox audit: every running container except our own agent must have been created with our
 * runtime and must show live gVisor evidence on the host (its process is a runsc sandbox). Pure: the
 * containers and their processes' command lines come in, violations come out.
 */
import type { ContainerState } from '../ports.js';
import { isSandboxCmdline, type SandboxStack, sandboxStack } from '../runtime/sandbox-proof.js';

export interface Violation {
  id: string;
  name: string;
  runtime: string;
  reason: string;
}

/** Each audited container's network mode (Docker's NetworkMode) and the stack its sandbox runs. */
export interface ContainerNetwork {
  id: string;
  name: string;
  networkMode: string;
  /** The sandbox's network; `none`: the container is not in a sandbox. */
  stack: SandboxStack | 'none';
}

export interface AuditResult {
  checked: number;
  violations: Violation[];
  networks: ContainerNetwork[];
}

/**
 * Our agent runs under runc on purpose; probes are ours and short-lived. Both are known by the IDs
 * ecs-gvisor recorded when it created them (`ours`): a task can set any label and any name it likes.
 */
export function exempt(c: ContainerState, ours: ReadonlySet<string>): boolean {
  return ours.has(c.id);
}

export function audit(
  containers: readonly ContainerState[],
  cmdlines: ReadonlyMap<number, readonly string[] | undefined>,
  runtime: string,
  ours: ReadonlySet<string>,
): AuditResult {
  const violations: Violation[] = [];
  const networks: ContainerNetwork[] = [];
  let checked = 0;
  for (const c of containers) {
    if (!c.running || exempt(c, ours)) continue;
    checked++;
    const base = { id: c.id, name: c.name, runtime: c.runtime || '(default at creation)' };
    const argv = cmdlines.get(c.pid);
    const sandboxed = c.runtime === runtime && argv !== undefined && isSandboxCmdline(argv);
    networks.push({ id: c.id, name: c.name, networkMode: c.networkMode ?? '', stack: sandboxed ? sandboxStack(argv) : 'none' });
    if (c.runtime !== runtime) {
      violations.push({ ...base, reason: `created with runtime "${c.runtime}", not ${runtime}` });
    } else if (!sandboxed) {
      violations.push({ ...base, reason: `its process (pid ${c.pid}) is not a gVisor sandbox` });
    }
  }
  return { checked, violations, networks };
}
