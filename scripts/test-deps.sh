#!/usr/bin/env bash
# Installs with apt (as root, on Debian) the commands the tests need that this machine lacks, without
# starting the system's Docker: the tests run a private dockerd, and a system one would bring its own
# bridge and iptables rules. `npm test` (scripts/test.sh) runs it first, `.ci/run` and the demo too.
#   scripts/test-deps.sh [COMMAND:PACKAGE ...]   (default: everything the tests use)
set -euo pipefail

# systemd-notify: the notify protocol; python3: the tests' stand-in notify socket (Node cannot bind AF_UNIX
# datagrams) and the fake runsc of a proof test. Every shell script is checked with shellcheck; the unit
# with systemd-analyze (systemd). debootstrap builds the simulated ECS instance of the end-to-end tests;
# GNU time measures a command's peak memory; rpm builds the release's rpms (and rpm2cpio, cpio open them);
# promtool (Prometheus's own parser and linter) checks the metrics exposition. qemu-system-x86 boots the cgroup v2 instance (a virtual machine
# under software emulation) from an ext4 image e2fsprogs makes.
# qemu-user-static and the other architecture's C and C++ libraries run that architecture's Node (to build
# its executable) and the release's arm64 executable and probe in the tests. An entry is COMMAND:PACKAGE,
# or /PATH:PACKAGE for a file the package installs.
wanted=("$@")
if ((${#wanted[@]} == 0)); then
  wanted=(dockerd:docker.io runsc:runsc busybox:busybox-static iptables:iptables ip:iproute2 unshare:util-linux flock:util-linux tar:tar bzip2:bzip2
    systemd-notify:systemd systemd-analyze:systemd python3:python3 shellcheck:shellcheck debootstrap:debootstrap git:git /usr/bin/time:time
    rpmbuild:rpm rpm2cpio:rpm2cpio cpio:cpio promtool:prometheus
    qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs
    qemu-aarch64-static:qemu-user-static /usr/aarch64-linux-gnu/lib/libc.so.6:libc6-arm64-cross
    /usr/aarch64-linux-gnu/lib/libstdc++.so.6:libstdc++6-arm64-cross /usr/aarch64-linux-gnu/lib/libgcc_s.so.1:libgcc-s1-arm64-cross)
fi
need=()
for cmd in "${wanted[@]}"; do
  case $cmd in
    /*) [[ -e ${cmd%%:*} ]] || need+=("${cmd#*:}") ;;
    *) command -v "${cmd%%:*}" > /dev/null 2>&1 || need+=("${cmd#*:}") ;;
  esac
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
