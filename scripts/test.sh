#!/usr/bin/env bash
# `npm test`: everything the suite needs, then the suite, on a fresh Debian machine as root. Installs what
# is missing and leaves what is there: the apt packages (scripts/test-deps.sh), the pinned Node 24
# (tools/node, put first on PATH so every step below runs on it whatever Node started npm), the packages
# of the tree and of infra/. Then lints, builds, typechecks, packages the release, runs the unit, infra and
# integration tests, then the end-to-end tests. A missing prerequisite is one sentence and exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "npm test: $*" >&2; exit 1; }
((EUID == 0)) || die "run it as root: the tests start a private dockerd, network namespaces and iptables rules"
command -v npm > /dev/null || die "npm is not on PATH (on Debian: apt-get install npm)"

bash scripts/test-deps.sh

case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) die "there is no pinned Node.js for $(uname -m); the release is built for x86_64 and aarch64" ;;
esac
bin="$PWD/tools/node/node_modules/node-linux-$arch/bin"
if [[ ! -x $bin/node ]]; then
  echo "npm test: installing the pinned Node.js 24 into tools/node"
  # --force: the other architecture's package is for another CPU, on purpose (it builds that executable).
  npm ci --prefix tools/node --force --ignore-scripts --no-audit --no-fund > /tmp/egv-node-ci.log 2>&1 ||
    { tail -20 /tmp/egv-node-ci.log >&2; die "npm ci --prefix tools/node failed (the log is above)"; }
fi
PATH="$bin:$PATH"
export PATH
echo "npm test: Node.js $(node --version) from tools/node"

[[ -x node_modules/.bin/vitest ]] || npm ci --no-audit --no-fund
[[ -d infra/node_modules ]] || npm ci --prefix infra --no-audit --no-fund

# Biome: the formatting and the lint rules in biome.json (`npm run format` fixes what it can).
npm run lint
npm run build
npm run typecheck
npm run package
npx vitest run --project unit --project infra --project integration
npx vitest run --project e2e
