#!/usr/bin/env bash
# Builds the rpm of each release architecture from dist/release/<arch>/ecs-gvisor-<version>/ (npm run
# package makes those, then runs this): dist/release/ecs-gvisor-<version>-<release>.<x86_64|aarch64>.rpm
# and its .sha512. rpmbuild comes from Debian's `rpm` package here, or any rpm-based system.
#   scripts/rpm.sh [--release N] [--out DIR] [ARCH ...]   (ARCH: x64, arm64; default both)
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "rpm.sh: $*" >&2; exit 1; }
command -v rpmbuild > /dev/null || die "rpmbuild is not installed (on Debian: apt-get install rpm)"

release=1
out=$PWD/dist/release
arches=()
while (($#)); do
  case $1 in
    --release) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--release takes a positive number"; release=$2; shift 2 ;;
    --out) [[ -n ${2:-} ]] || die "--out takes a directory"; out=$(realpath -m "$2"); shift 2 ;;
    x64 | arm64) arches+=("$1"); shift ;;
    *) die "unknown argument \"$1\" (x64, arm64, --release N, --out DIR)" ;;
  esac
done
((${#arches[@]})) || arches=(x64 arm64)
version=$(node -p 'require("./package.json").version')

top=$(mktemp -d /tmp/egv-rpm-XXXXXX)
trap 'rm -rf "$top"' EXIT
mkdir -p "$out"
for arch in "${arches[@]}"; do
  case $arch in
    x64) target=x86_64 ;;
    arm64) target=aarch64 ;;
  esac
  stage=$PWD/dist/release/$arch/ecs-gvisor-$version
  [[ -x $stage/ecs-gvisor ]] || die "no release for $arch at $stage: run npm run package first"
  # gzip level 6, as the tarball: xz or zstd at their defaults take minutes over the embedded Node.
  rpmbuild -bb --quiet --target "$target-linux" \
    --define "_topdir $top" --define "_binary_payload w6.gzdio" \
    --define "egv_version $version" --define "egv_release $release" --define "egv_stage $stage" \
    scripts/ecs-gvisor.spec > "$top/build.log" 2>&1 || { cat "$top/build.log" >&2; die "rpmbuild failed for $target (the log is above)"; }
  file=ecs-gvisor-$version-$release.$target.rpm
  mv "$top/RPMS/$target/$file" "$out/$file"
  (cd "$out" && sha512sum "$file" > "$file.sha512")
  echo "rpm     $out/$file ($(du -m "$out/$file" | cut -f1) MiB)"
done
