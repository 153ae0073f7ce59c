# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/demo.sh (from the repository root): puts the pinned Node.js 24 of
# tools/node first on PATH, installing it from the npm registry when it is missing (npm checks its
# integrity against tools/node/package-lock.json). The product needs Node 24; the machine's may be older.
# A problem is one sentence on stderr and a non-zero return.
pinned_node() {
  local arch bin
  case $(uname -m) in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) echo "there is no pinned Node.js for $(uname -m); the release is built for x86_64 and aarch64" >&2; return 1 ;;
  esac
  bin="$PWD/tools/node/node_modules/node-linux-$arch/bin"
  if [[ ! -x $bin/node ]]; then
    command -v npm > /dev/null || { echo "npm is not on PATH (on Debian: apt-get install npm)" >&2; return 1; }
    echo "installing the pinned Node.js 24 into tools/node"
    # --force: the other architecture's package is for another CPU, on purpose (it builds that executable).
    npm ci --prefix tools/node --force --ignore-scripts --no-audit --no-fund > /tmp/egv-node-ci.log 2>&1 ||
      { tail -20 /tmp/egv-node-ci.log >&2; echo "npm ci --prefix tools/node failed (the log is above)" >&2; return 1; }
  fi
  PATH="$bin:$PATH"
  export PATH
}
