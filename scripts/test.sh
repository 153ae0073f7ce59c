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

# shellcheck source=scripts/pinned-node.sh
. scripts/pinned-node.sh
pinned_node || die "no Node.js 24 (see above)"
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
