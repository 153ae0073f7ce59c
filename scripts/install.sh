#!/usr/bin/env bash
# Install ecs-gvisor on an ECS container instance (Amazon Linux 2023, Debian, Ubuntu): runsc from a pinned
# gVisor release (SHA-512 checked) or a given file, the release's executable (its own Node.js inside; or the
# single-file bundle with a Node you bring, --node), the systemd unit and the configuration; then enable
# and start the unit without waiting for it (cloud-init is never held). Nothing else is installed.
# Idempotent: running it again converges to the same files. `--uninstall` undoes it.
#
# Exit codes: 0 done, 2 bad arguments, 3 checksum mismatch or a bad runsc (nothing installed),
# 4 something needed is missing (an executable for this machine, node >= 24 with --node, curl, a file),
# 1 anything else.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
EXE=$HERE/ecs-gvisor
BUNDLE=$HERE/ecs-gvisor.mjs
UNIT=$HERE/ecs-gvisor.service
DOCS=$HERE/doc
RUNSC_URL=
RUNSC_FILE=
RUNSC_SHA512=
RUNSC_PATH=/usr/local/bin/runsc
NODE=
START=1
UNINSTALL=0
SETS=()

LIBDIR=/usr/local/lib/ecs-gvisor
BINLINK=/usr/local/bin/ecs-gvisor
UNITDIR=/etc/systemd/system
DOCDIR=/usr/local/share/doc/ecs-gvisor
CONFIG=/etc/ecs/ecs-gvisor.config
STATEDIR=/var/lib/ecs-gvisor
RELEASES=https://storage.googleapis.com/gvisor/releases/release
# The release's name for this machine's architecture.
case $(uname -m) in
  x86_64) ARCH=x64 ;;
  aarch64) ARCH=arm64 ;;
  *) ARCH=$(uname -m) ;;
esac

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --runsc-release VER    install runsc from gVisor release VER (e.g. 20261012.0): its gvisor.tar.bz2
  --runsc-url URL        install runsc from URL (a runsc binary or a .tar.bz2/.tar.gz with gvisor-bin/)
  --runsc-file PATH      the same from a local file
  --runsc-sha512 HEX     the pinned SHA-512 of that download or file (required for downloads)
  --runsc-path PATH      where runsc goes (default /usr/local/bin/runsc; gvisor-bin/ goes beside it)
  --set KEY=VALUE        set ECS_GVISOR_KEY in /etc/ecs/ecs-gvisor.config (repeatable)
  --executable PATH      the ecs-gvisor executable (default: beside this script; built for one architecture)
  --node PATH            run the bundle with this node (>= 24) instead of installing the executable
  --bundle PATH          ecs-gvisor.mjs, for --node (default: beside this script)
  --unit PATH            ecs-gvisor.service (default: beside this script)
  --docs DIR             the documentation to install in /usr/local/share/doc/ecs-gvisor (default: doc/ here)
  --no-start             enable the unit but do not start it now
  --root DIR             install into DIR instead of / (image building, tests): no systemctl, no rollback
  --uninstall            stop and disable ecs-gvisor, roll the host back, remove what install added
  -h, --help
Without a --runsc-* source, runsc must already be at --runsc-path, or ECS_GVISOR_RUNSC_SOURCE set.
EOF
}

die() { # die CODE MESSAGE
  printf 'install.sh: %s\n' "$2" >&2
  exit "$1"
}
say() { printf 'install.sh: %s\n' "$*"; }

while (($#)); do
  case $1 in
    --runsc-release) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; RUNSC_URL="$RELEASES/$2/$(uname -m)/gvisor.tar.bz2"; shift 2 ;;
    --runsc-url) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; RUNSC_URL=$2; shift 2 ;;
    --runsc-file) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; RUNSC_FILE=$2; shift 2 ;;
    --runsc-sha512) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; RUNSC_SHA512=${2,,}; shift 2 ;;
    --runsc-path) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; RUNSC_PATH=$2; shift 2 ;;
    --set) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; SETS+=("$2"); shift 2 ;;
    --executable) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; EXE=$2; shift 2 ;;
    --bundle) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; BUNDLE=$2; shift 2 ;;
    --unit) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; UNIT=$2; shift 2 ;;
    --docs) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; DOCS=$2; shift 2 ;;
    --node) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; NODE=$2; shift 2 ;;
    --root) [[ $# -ge 2 ]] || die 2 "$1 needs a value"; ROOT=$2; shift 2 ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown argument \"$1\"" ;;
  esac
done

[[ $ROOT == / || $ROOT == /* ]] || die 2 "--root must be an absolute path, not \"$ROOT\""
[[ $RUNSC_PATH == /* ]] || die 2 "--runsc-path must be an absolute path, not \"$RUNSC_PATH\""
[[ -z $RUNSC_URL || -z $RUNSC_FILE ]] || die 2 "give one runsc source: --runsc-url/--runsc-release or --runsc-file"
[[ -z $RUNSC_SHA512 || $RUNSC_SHA512 =~ ^[0-9a-f]{128}$ ]] || die 2 "--runsc-sha512 must be 128 hexadecimal digits"
[[ -z $RUNSC_URL || -n $RUNSC_SHA512 ]] || die 2 "a runsc download must be pinned: give --runsc-sha512 (the release's published .sha512)"
for kv in "${SETS[@]}"; do
  # One line each: a newline inside the value would write a second key.
  [[ $kv != *$'\n'* && $kv != *$'\r'* ]] || die 2 "--set takes one line: \"${kv%%$'\n'*}…\" holds a line break"
  [[ $kv =~ ^ECS_GVISOR_[A-Z0-9_]+=.*$ ]] || die 2 "--set needs ECS_GVISOR_KEY=VALUE, not \"$kv\""
done
if [[ $ROOT == / ]]; then
  ((EUID == 0)) || die 4 "run as root (it installs under /usr/local, /etc and systemd)"
  R=
else
  R=${ROOT%/}
fi
MANIFEST=$R$STATEDIR/install.manifest
WORK=
trap 'if [[ -n $WORK ]]; then rm -rf "$WORK"; fi; if [[ -n ${NEWCONFIG:-} ]]; then rm -f "$NEWCONFIG"; fi' EXIT

# A file put in place atomically: a temporary copy beside it, then rename.
put() { # put MODE SRC DEST
  local tmp
  mkdir -p "$(dirname "$3")"
  tmp=$(mktemp "$3.XXXXXX")
  cat "$2" > "$tmp"
  chmod "$1" "$tmp"
  mv -f "$tmp" "$3"
}

record() { # record KIND PATH: what --uninstall removes
  # The state dir is root's alone (ecs-gvisor refuses one others can read into); so is the manifest.
  mkdir -p "$(dirname "$MANIFEST")"
  chmod 0700 "$(dirname "$MANIFEST")"
  (umask 077 && touch "$MANIFEST")
  chmod 0600 "$MANIFEST"
  grep -qxF "$1 $2" "$MANIFEST" || printf '%s %s\n' "$1" "$2" >> "$MANIFEST"
}

# A file or directory someone else put where we install (a distribution's runsc, say): kept in the state
# dir and put back by --uninstall, never overwritten for good.
keep_original() { # keep_original PATH
  local backup=$R$STATEDIR/backup/originals$1
  [[ -e $R$1 || -L $R$1 ]] || return 0
  [[ -f $MANIFEST ]] && grep -qE "^(file|dir|restore) $1\$" "$MANIFEST" && return 0
  mkdir -p "$(dirname "$backup")"
  chmod 0700 "$R$STATEDIR" "$R$STATEDIR/backup"
  rm -rf "$backup"
  cp -a "$R$1" "$backup"
  record restore "$1"
  say "kept the $1 that was there in $STATEDIR/backup/originals$1; --uninstall puts it back"
}

# What --uninstall may remove: the paths install.sh creates, nothing a tampered manifest names.
ours() { # ours KIND PATH
  [[ $2 == /* && $2 != *..* ]] || return 1
  case $1:$2 in
    file:"$LIBDIR/ecs-gvisor.mjs" | file:"$BINLINK" | file:"$UNITDIR/ecs-gvisor.service" | config:"$CONFIG" | dir:"$LIBDIR" | dir:"$DOCDIR") return 0 ;;
    file:*/runsc | dir:*/gvisor-bin | restore:*/runsc | restore:*/gvisor-bin) [[ $2 != /runsc && $2 != /gvisor-bin ]] ;;
    *) return 1 ;;
  esac
}

systemd_here() { [[ -z $R && -d /run/systemd/system ]] && command -v systemctl > /dev/null; }

# What runs ecs-gvisor here: the executable (it must be this machine's architecture), or with --node the
# bundle on that node. PROGRAM is the command line, checked by running --version.
PROGRAM=()
find_program() {
  local v out
  if [[ -n $NODE ]]; then
    [[ -x $NODE ]] || die 4 "--node $NODE is not an executable"
    [[ -f $BUNDLE ]] || die 4 "no bundle at $BUNDLE (pass --bundle)"
    v=$("$NODE" -e 'process.stdout.write(process.versions.node)') || die 4 "$NODE does not run"
    ((${v%%.*} >= 24)) || die 4 "$NODE is Node.js $v; the ecs-gvisor bundle needs 24 or newer (or install without --node: the executable carries its own)"
    PROGRAM=("$NODE" "$BUNDLE")
  else
    [[ -f $EXE ]] || die 4 "no executable at $EXE (the release tarball for this machine holds it; or pass --node PATH to run the bundle)"
    PROGRAM=("$EXE")
  fi
  out=$("${PROGRAM[@]}" --version 2>&1) || true
  out=${out%%$'\n'*}
  # Another architecture's executable cannot be executed at all; a C library older than Node's (glibc
  # 2.28) is named by the loader.
  [[ $out == "ecs-gvisor "* ]] || die 4 "${PROGRAM[*]} does not run on this $(uname -m) machine (${out:-it cannot be executed}): use the release tarball built for it (ecs-gvisor-<version>-linux-$ARCH.tar.gz) on a host with glibc 2.28 or newer, or --node PATH"
}

install_runsc() {
  local work src sha have dir version
  [[ -n $RUNSC_URL || -n $RUNSC_FILE ]] || {
    [[ -x $R$RUNSC_PATH ]] || say "warning: no runsc at $RUNSC_PATH yet; give --runsc-release/--runsc-url/--runsc-file or set ECS_GVISOR_RUNSC_SOURCE, or bootstrap fails closed"
    return 0
  }
  work=$(mktemp -d)
  WORK=$work
  if [[ -n $RUNSC_URL ]]; then
    command -v curl > /dev/null || die 4 "curl is needed to download $RUNSC_URL"
    src=$work/$(basename "${RUNSC_URL%%\?*}")
    curl -fsSL --retry 3 --connect-timeout 10 -o "$src" "$RUNSC_URL" || die 4 "cannot download $RUNSC_URL"
  else
    [[ -f $RUNSC_FILE ]] || die 4 "--runsc-file $RUNSC_FILE does not exist"
    src=$RUNSC_FILE
  fi
  if [[ -n $RUNSC_SHA512 ]]; then
    sha=$(sha512sum "$src")
    have=${sha%% *}
    [[ $have == "$RUNSC_SHA512" ]] || die 3 "SHA-512 of ${RUNSC_URL:-$RUNSC_FILE} is $have, expected $RUNSC_SHA512; nothing installed"
  fi
  case $src in
    *.tar.bz2 | *.tbz2 | *.tar.gz | *.tgz)
      mkdir "$work/x"
      tar -xf "$src" -C "$work/x" || die 3 "${RUNSC_URL:-$RUNSC_FILE} is not a readable tarball; nothing installed"
      dir=$(find "$work/x" -maxdepth 2 -type f -name runsc -printf '%h\n' | head -1)
      [[ -n $dir ]] || die 3 "${RUNSC_URL:-$RUNSC_FILE} holds no runsc; nothing installed"
      ;;
    *)
      mkdir "$work/x"
      cp "$src" "$work/x/runsc"
      dir=$work/x
      ;;
  esac
  chmod 0755 "$dir/runsc"
  # Captured, not piped into grep -q: under pipefail, grep leaving early can SIGPIPE runsc and fail a good binary.
  version=$("$dir/runsc" --version 2> /dev/null) || version=
  [[ $version == "runsc version "* ]] || die 3 "${RUNSC_URL:-$RUNSC_FILE} is not a working runsc ('runsc --version' failed); nothing installed"
  keep_original "$RUNSC_PATH"
  [[ ! -d $dir/gvisor-bin ]] || keep_original "$(dirname "$RUNSC_PATH")/gvisor-bin"
  # gvisor-bin/ first, then runsc: a runsc never points at helpers of another release.
  if [[ -d $dir/gvisor-bin ]]; then
    mkdir -p "$R$(dirname "$RUNSC_PATH")"
    rm -rf "$R$(dirname "$RUNSC_PATH")/gvisor-bin.new"
    cp -a "$dir/gvisor-bin" "$R$(dirname "$RUNSC_PATH")/gvisor-bin.new"
    rm -rf "$R$(dirname "$RUNSC_PATH")/gvisor-bin"
    mv "$R$(dirname "$RUNSC_PATH")/gvisor-bin.new" "$R$(dirname "$RUNSC_PATH")/gvisor-bin"
    record dir "$(dirname "$RUNSC_PATH")/gvisor-bin"
  fi
  put 0755 "$dir/runsc" "$R$RUNSC_PATH"
  record file "$RUNSC_PATH"
  say "runsc installed at $RUNSC_PATH: ${version%%$'\n'*}"
}

# The config as it will be: KEY=VALUE lines set (replacing the key where it is), every other line kept.
# Written to a temporary file beside the real one and checked before anything is installed.
NEWCONFIG=
compose_config() {
  local file=$R$CONFIG kv key check
  mkdir -p "$(dirname "$file")"
  NEWCONFIG=$(mktemp "$file.XXXXXX")
  if [[ -e $file ]]; then
    cat "$file" > "$NEWCONFIG"
  else
    printf '# ecs-gvisor settings (KEY=VALUE); every key: ecs-gvisor --help, or configuration.md in the docs.\n' > "$NEWCONFIG"
  fi
  [[ $RUNSC_PATH == /usr/local/bin/runsc ]] || SETS+=("ECS_GVISOR_RUNSC_PATH=$RUNSC_PATH")
  for kv in "${SETS[@]}"; do
    key=${kv%%=*}
    grep -v "^[[:space:]]*$key=" "$NEWCONFIG" > "$NEWCONFIG.next" || true
    printf '%s\n' "$kv" >> "$NEWCONFIG.next"
    mv "$NEWCONFIG.next" "$NEWCONFIG"
  done
  chmod 0644 "$NEWCONFIG"
  # Read as the service will read it: a bad key or value (status exits 2) stops the install here, before
  # any change. Exit 8 only says the instance is not healthy yet, which before the install it is not.
  local rc=0
  check=$(ECS_GVISOR_CONFIG=$NEWCONFIG "${PROGRAM[@]}" status --json 2>&1 > /dev/null) || rc=$?
  if ((rc != 0 && rc != 8)); then
    rm -f "$NEWCONFIG"
    check=${check##*$'\n'}
    die 2 "${check//"$NEWCONFIG"/"$R$CONFIG"}"
  fi
}

install_config() {
  [[ -e $R$CONFIG ]] || record config "$CONFIG"
  mv -f "$NEWCONFIG" "$R$CONFIG"
  NEWCONFIG=
}

# The release's doc/ (what the unit's Documentation= and --help point to), replaced as a whole; the
# license beside it. A tree without docs installs without them.
install_docs() {
  local f
  [[ -d $DOCS ]] || return 0
  record dir "$DOCDIR"
  rm -rf -- "$R$DOCDIR"
  for f in "$DOCS"/*.md "$HERE"/LICENSE "$HERE"/NOTICE; do
    if [[ -f $f ]]; then put 0644 "$f" "$R$DOCDIR/$(basename "$f")"; fi
  done
}

do_install() {
  [[ -f $UNIT ]] || die 4 "no unit at $UNIT (pass --unit)"
  find_program
  compose_config
  install_runsc
  local wrapper
  if [[ -n $NODE ]]; then
    put 0755 "$BUNDLE" "$R$LIBDIR/ecs-gvisor.mjs"
    record file "$LIBDIR/ecs-gvisor.mjs"
    record dir "$LIBDIR"
    wrapper=$(mktemp)
    printf '#!/bin/sh\nexec %s %s/ecs-gvisor.mjs "$@"\n' "$NODE" "$LIBDIR" > "$wrapper"
    put 0755 "$wrapper" "$R$BINLINK"
    rm -f "$wrapper"
  else
    put 0755 "$EXE" "$R$BINLINK"
    # A bundle an earlier --node install left: the executable replaces it.
    rm -rf -- "$R$LIBDIR"
  fi
  record file "$BINLINK"
  put 0644 "$UNIT" "$R$UNITDIR/ecs-gvisor.service"
  record file "$UNITDIR/ecs-gvisor.service"
  install_docs
  install_config
  if systemd_here; then
    systemctl daemon-reload
    if ((START)); then
      # --no-block: userdata (cloud-init) must not wait for bootstrap, which waits on Docker and ECS.
      systemctl enable --now --no-block ecs-gvisor.service
      say "enabled and starting: journalctl -u ecs-gvisor -f; ecs-gvisor status"
    else
      systemctl enable ecs-gvisor.service
      say "enabled (not started)"
    fi
  else
    say "installed under ${R:-/}; systemd not in charge here, so the unit was not enabled"
  fi
}

do_uninstall() {
  local kind path
  if systemd_here; then
    systemctl disable --now ecs-gvisor.service 2> /dev/null || true
    # Give the host back: daemon.json restored, the agent container removed, ecs-init enabled again.
    if [[ -x $BINLINK ]]; then
      "$BINLINK" rollback || say "warning: ecs-gvisor rollback failed; see its message above (state in $STATEDIR)"
    fi
  fi
  if [[ -f $MANIFEST ]]; then
    # Files first, then directories (deepest first), then what was there before us goes back.
    while read -r kind path; do
      if ! ours "$kind" "$path"; then
        say "warning: not removing \"$path\" ($kind): install.sh never creates it; $MANIFEST has been changed"
        continue
      fi
      case $kind in
        file | config) rm -f "$R$path" ;;
      esac
    done < "$MANIFEST"
    while read -r kind path; do
      if [[ $kind == dir ]] && ours "$kind" "$path"; then rm -rf -- "$R$path"; fi
    done < <(sort -r "$MANIFEST")
    while read -r kind path; do
      if [[ $kind == restore ]] && ours "$kind" "$path" && [[ -e $R$STATEDIR/backup/originals$path || -L $R$STATEDIR/backup/originals$path ]]; then
        rm -rf -- "$R$path"
        mv "$R$STATEDIR/backup/originals$path" "$R$path"
        say "put back the $path that was there before"
      fi
    done < "$MANIFEST"
    rm -f "$MANIFEST"
  fi
  if systemd_here; then systemctl daemon-reload; fi
  say "uninstalled (state kept in $STATEDIR)"
}

if ((UNINSTALL)); then do_uninstall; else do_install; fi
