#!/usr/bin/env bash
# Installs with apt (as root, on Debian) the commands the tests need that this machine lacks, without
# starting the system's Docker: the tests run a private dockerd, and a system one would bring its own
# bridge and iptables rules. `npm test` runs it first (pretest), `.ci/run` and the demo too.
#   scripts/test-deps.sh [COMMAND:PACKAGE ...]   (default: everything the tests use)
set -euo pipefail

# systemd-notify: the notify protocol; python3: the tests' stand-in notify socket (Node cannot bind AF_UNIX
# datagrams) and the fake runsc of a proof test. Every shell script is checked with shellcheck; the unit
# with systemd-analyze (systemd). debootstrap builds the simulated ECS instance of the end-to-end tests.
wanted=("$@")
if ((${#wanted[@]} == 0)); then
  wanted=(dockerd:docker.io runsc:runsc busybox:busybox-static iptables:iptables ip:iproute2 unshare:util-linux flock:util-linux tar:tar bzip2:bzip2
    systemd-notify:systemd systemd-analyze:systemd python3:python3 shellcheck:shellcheck debootstrap:debootstrap git:git)
fi
need=()
for cmd in "${wanted[@]}"; do
  command -v "${cmd%%:*}" > /dev/null 2>&1 || need+=("${cmd#*:}")
done
((${#need[@]})) || exit 0
if ((EUID != 0)) || ! command -v apt-get > /dev/null; then
  echo "test-deps: missing ${need[*]}; install them (as root on Debian: bash scripts/test-deps.sh)" >&2
  exit 1
fi
echo "test-deps: installing ${need[*]} with apt"
guard=
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  guard=1
fi
trap 'if [[ -n $guard ]]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q > /tmp/egv-apt.log 2>&1 || { tail -20 /tmp/egv-apt.log; exit 1; }
apt-get install -y -q --no-install-recommends "${need[@]}" >> /tmp/egv-apt.log 2>&1 || { tail -40 /tmp/egv-apt.log; exit 1; }
