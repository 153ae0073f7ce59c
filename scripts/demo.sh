#!/usr/bin/env bash
# Shows the runtime step on this machine without touching the host's Docker: starts a private dockerd
# (own data root, socket, pidfile and daemon.json; no bridge, no iptables), gives it a daemon.json an
# operator might have, then runs plan -> bootstrap -> a container under gVisor -> status -> rollback.
# Needs root and a built tree (npm ci && npm run build); installs docker.io and runsc with apt when
# missing (scripts/test-deps.sh). Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
((EUID == 0)) || { echo "demo.sh: run it as root: it starts a private dockerd" >&2; exit 1; }
[[ -f dist/cli/main.js ]] || npm run build >/dev/null
# The product runs on Node 24 (the release's); this machine's may be older.
# shellcheck source=scripts/pinned-node.sh
. scripts/pinned-node.sh
pinned_node || { echo "demo.sh: no Node.js 24 (see above)" >&2; exit 1; }
bash scripts/test-deps.sh dockerd:docker.io runsc:runsc

dir=$(mktemp -d /tmp/egv-demo-XXXXXX)
sock="$dir/docker.sock"
cleanup() {
  if [[ -f $dir/docker.pid ]]; then kill "$(cat "$dir/docker.pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 50); do [[ -S $sock ]] || break; sleep 0.2; done
  rm -rf "$dir" 2>/dev/null || true
}
trap cleanup EXIT

cat > "$dir/daemon.json" <<'JSON'
{
    "log-driver": "json-file",
    "log-opts": { "max-size": "16m", "max-file": "4" },
    "runtimes": {
        "nvidia": { "path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": [] }
    }
}
JSON
cp "$dir/daemon.json" "$dir/daemon.json.before"

netns=()
[[ -e /sys/class/net/docker0 ]] && netns=(unshare --net --)  # --bridge=none would delete another engine's docker0
"${netns[@]}" dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
  -H "unix://$sock" --config-file "$dir/daemon.json" --bridge=none --iptables=false >"$dir/dockerd.log" 2>&1 &
for _ in $(seq 1 120); do docker -H "unix://$sock" info >/dev/null 2>&1 && break; sleep 0.25; done

export ECS_GVISOR_CONFIG="$dir/ecs-gvisor.config"
cat > "$ECS_GVISOR_CONFIG" <<CONF
ECS_GVISOR_DOCKER_HOST=unix://$sock
ECS_GVISOR_DAEMON_JSON=$dir/daemon.json
ECS_GVISOR_DOCKER_PIDFILE=$dir/docker.pid
ECS_GVISOR_STATE_DIR=$dir/state
ECS_GVISOR_RUNSC_PATH=$(command -v runsc)
# Debian's runsc (20221219) needs a network flag on current kernels; see docs/network-modes.md.
ECS_GVISOR_RUNSC_ARGS=--network=none
CONF
egv() { node bin/ecs-gvisor.js "$@"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "ecs-gvisor plan --only runtime"
egv plan --only runtime
step "ecs-gvisor bootstrap --only runtime"
egv bootstrap --only runtime | sed -n 's/.*"msg":"\([^"]*\)".*/  \1/p'
step "docker info --format '{{.DefaultRuntime}}'"
docker -H "unix://$sock" info --format '{{.DefaultRuntime}}'
step "docker run -d --network none ecs-gvisor/probe:1   # no --runtime: the default applies"
id=$(docker -H "unix://$sock" run -d --network none ecs-gvisor/probe:1)
pid=$(docker -H "unix://$sock" inspect -f '{{.State.Pid}}' "$id")
echo "  runtime: $(docker -H "unix://$sock" inspect -f '{{.HostConfig.Runtime}}' "$id"); host process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-60)..."
docker -H "unix://$sock" rm -f "$id" >/dev/null
step "ecs-gvisor status"
egv status || true
echo "  (healthy says NO because this demo runs the runtime step only: no ECS agent and no run watching."
echo "   The lines that matter here are 'verified: yes' and the evidence: a probe's host process is runsc's.)"
step "ecs-gvisor rollback --only runtime"
egv rollback --only runtime | sed -n 's/.*"msg":"\([^"]*\)".*/  \1/p'
step "cmp daemon.json daemon.json.before && docker info --format '{{.DefaultRuntime}}'"
cmp "$dir/daemon.json" "$dir/daemon.json.before" && echo "  daemon.json is byte-identical to the original"
docker -H "unix://$sock" info --format '  default runtime: {{.DefaultRuntime}}'
