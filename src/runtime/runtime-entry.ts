/**
 * The runtime entry point: what daemon.json names as our runtime's `path`, in place of runsc itself. Docker
 * has one default runtime and the ECS agent names none, so the network choice has to be made per
 * container, from the OCI bundle Docker hands the runtime. Pure: the script's text comes out.
 *
 * gVisor has two network stacks. Its own (netstack) is the stronger boundary, but it takes over the
 * interfaces of the namespace it starts in: a container joining another's namespace (ECS awsvpc tasks join
 * their pause container's) then sees no interface, and runsc refuses the host's namespace outright. With
 * `--network=host` (passthrough) the sandbox uses the kernel's stack of the namespace it is in — still
 * inside gVisor, but the host kernel's network code is reachable from the task.
 *
 * The policy, per container at `create`:
 * - `auto`: a namespace of its own (none, bridge: no path, or Docker's sandbox file) keeps netstack; one
 *   that joins another container's (`/proc/<pid>/ns/net`) or the host's (the same namespace as the
 *   runtime's own, compared by device and inode) runs with passthrough.
 * - `passthrough`: every container with `--network=host`.
 * - `sandbox`: netstack only; joined and host containers fail at start, as with runsc alone.
 * Anything the entry cannot read or classify runs in runsc unchanged: it never falls back to runc. The
 * decision is made for every subcommand of a container from its bundle (runsc sets the network up at
 * `start`, which gets no --bundle: containerd's shim runs the runtime in the bundle directory).
 *
 * bash, not Node: it runs on every container start, and its cost must stay within milliseconds (no
 * process is started besides runsc: `-ef` compares namespaces inside bash).
 */

export type NetworkPolicy = 'auto' | 'passthrough' | 'sandbox';
export const NETWORK_POLICIES: readonly NetworkPolicy[] = ['auto', 'passthrough', 'sandbox'];

/** The network modes a probe proves: a namespace of its own, one joined from another container, the host's. */
export type NetworkMode = 'own' | 'joined' | 'host';
export const NETWORK_MODES: readonly NetworkMode[] = ['own', 'joined', 'host'];

/** Which modes can work under a policy (the proof tries exactly these). */
export function modesAllowed(policy: NetworkPolicy): NetworkMode[] {
  return policy === 'sandbox' ? ['own'] : [...NETWORK_MODES];
}

/** Which stack a container in `mode` gets under `policy`. */
export function stackFor(policy: NetworkPolicy, mode: NetworkMode): 'netstack' | 'passthrough' {
  if (policy === 'passthrough') return 'passthrough';
  if (policy === 'sandbox') return 'netstack';
  return mode === 'own' ? 'netstack' : 'passthrough';
}

/** The file name of the entry point in the state dir's bin/ (one per runtime name). */
export function runtimeEntryPath(stateDir: string, runtimeName: string): string {
  return `${stateDir}/bin/${runtimeName}`;
}

/** What the entry point writes unquoted: the configuration refuses any other runsc path before a change. */
export const SH_SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

export function renderRuntimeEntry(o: { runscPath: string; policy: NetworkPolicy }): string {
  if (!SH_SAFE.test(o.runscPath))
    throw new Error(`runsc path ${JSON.stringify(o.runscPath)} has characters the entry point does not quote`);
  return `#!/bin/bash
# ecs-gvisor runtime entry point (generated; do not edit: ecs-gvisor rewrites it). Docker runs every
# container of this runtime through it; it picks gVisor's network stack per container and execs runsc.
# policy=${o.policy}
runsc=${o.runscPath}
policy=${o.policy}
[ "$policy" = sandbox ] && exec "$runsc" "$@"
# The subcommand: the first argument that is neither a flag nor the value of a global flag.
i=0 sub=-1
for a in "$@"; do
  case "$a" in
    --root|--log|--log-format|--debug-log|--panic-log|--coverage-fd|--profile-cpu|--profile-heap|--trace) skip=1 ;;
    -*) skip= ;;
    *) if [ -n "$skip" ]; then skip=; else sub=$i; break; fi ;;
  esac
  i=$((i + 1))
done
[ $sub -ge 0 ] || exec "$runsc" "$@"
args=("$@")
pass=
if [ "$policy" = passthrough ]; then
  pass=1
else
  # The bundle: --bundle after the subcommand, else the working directory (containerd's shim runs every
  # subcommand of a container in its bundle). runsc sets the network up at start, not only at create,
  # so every subcommand of a container gets the same decision.
  bundle=.
  for ((j = sub + 1; j < \${#args[@]}; j++)); do
    case "\${args[$j]}" in
      --bundle|-b) bundle=\${args[$((j + 1))]} ;;
      --bundle=*) bundle=\${args[$j]#--bundle=} ;;
    esac
  done
  spec=
  [ -f "$bundle/config.json" ] && spec=$(<"$bundle/config.json")
  re='\\{[[:space:]]*"type"[[:space:]]*:[[:space:]]*"network"[[:space:]]*(,[[:space:]]*"path"[[:space:]]*:[[:space:]]*"([^"]*)"[[:space:]]*)?\\}'
  if [[ $spec =~ $re ]]; then
    ns=\${BASH_REMATCH[2]}
    if [ -n "$ns" ]; then
      # Another container's namespace (awsvpc tasks join their pause container's), or the host's.
      if [[ $ns =~ ^/proc/[0-9]+/ns/net$ ]] || [ "$ns" -ef /proc/self/ns/net ]; then pass=1; fi
    fi
  fi
fi
[ -n "$pass" ] || exec "$runsc" "$@"
# Last on the command line before the subcommand, so it wins over a --network in runtimeArgs.
exec "$runsc" "\${args[@]:0:$sub}" --network=host "\${args[@]:$sub}"
`;
}
