#!/bin/bash
# Launch-template userdata: an ECS container instance whose tasks all run in gVisor. Fill in the block
# below (the infra/ CDK app does). It only installs: ecs-gvisor starts with --no-block, so cloud-init
# never waits for Docker, the sandbox proof or ECS registration.
set -euo pipefail

ECS_CLUSTER_NAME='__ECS_CLUSTER__'                # the cluster the agent joins
RELEASE_URL='__RELEASE_URL__'                     # ecs-gvisor-<version>-linux-<x64|arm64>.tar.gz for this instance's
                                                  # architecture (S3 or HTTPS); {arch} in it becomes x64 or arm64
RELEASE_SHA512='__RELEASE_SHA512__'               # its SHA-512 (the tarball's .sha512), pinned
RUNSC_RELEASE='__RUNSC_RELEASE__'                 # a gVisor point release, e.g. 20261012.0
RUNSC_SHA512='__RUNSC_SHA512__'                   # the SHA-512 of that release's gvisor.tar.bz2 (this architecture's)
RUNSC_MIRROR_URL='__RUNSC_MIRROR_URL__'           # a copy of that gvisor.tar.bz2 (S3 or HTTPS; '' for gVisor's storage)
AGENT_IMAGE='__AGENT_IMAGE__'                     # the ECS agent image, pinned ('' for ecs-gvisor's default)
LAUNCH_HOOK='__LAUNCH_HOOK__'                     # Auto Scaling launch hook name ('' for none)
TERMINATE_HOOK='__TERMINATE_HOOK__'               # Auto Scaling terminate hook name ('' for none)
HEARTBEAT_TIMEOUT='__HEARTBEAT_TIMEOUT__'         # the hooks' HeartbeatTimeout in seconds ('' for 3600)
ASG_NAME='__ASG_NAME__'                           # the group ('' to read the instance's tag)
SET_INSTANCE_HEALTH='__SET_INSTANCE_HEALTH__'     # true: an agent that cannot be healed marks the instance Unhealthy

log() { printf 'ecs-gvisor userdata: %s\n' "$*"; }

# s3:// through the instance role: the aws CLI when the AMI has one, else curl's own SigV4 signing (curl
# 7.75 or newer) with the role's credentials from instance metadata, handed over on stdin (not argv).
fetch() { # fetch URL DEST
  local url=$1 dest=$2 token role creds region bucket key
  case $url in
    s3://*)
      if command -v aws > /dev/null; then
        aws s3 cp --only-show-errors "$url" "$dest"
        return
      fi
      token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
      role=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/iam/security-credentials/)
      creds=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/iam/security-credentials/$role")
      region=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/placement/region)
      bucket=${url#s3://}
      key=${bucket#*/}
      bucket=${bucket%%/*}
      python3 -c 'import json, sys; c = json.load(sys.stdin); print("user = \"%s:%s\"\nheader = \"x-amz-security-token: %s\"" % (c["AccessKeyId"], c["SecretAccessKey"], c["Token"]))' <<< "$creds" |
        curl -fsSL --retry 5 --connect-timeout 10 --config - --aws-sigv4 "aws:amz:$region:s3" -o "$dest" "https://$bucket.s3.$region.amazonaws.com/$key"
      ;;
    *) curl -fsSL --retry 5 --connect-timeout 10 -o "$dest" "$url" ;;
  esac
}

# The agent's own settings: ECS_CLUSTER set (or replaced), every other line kept. The file may hold
# registry credentials: a new one is root's alone, an existing one keeps its mode and owner.
mkdir -p /etc/ecs
[[ -e /etc/ecs/ecs.config ]] || (umask 077 && : > /etc/ecs/ecs.config)
cp -p /etc/ecs/ecs.config /etc/ecs/ecs.config.new
grep -v '^ECS_CLUSTER=' /etc/ecs/ecs.config > /etc/ecs/ecs.config.new || true
printf 'ECS_CLUSTER=%s\n' "$ECS_CLUSTER_NAME" >> /etc/ecs/ecs.config.new
mv -f /etc/ecs/ecs.config.new /etc/ecs/ecs.config

# The release carries a Node.js executable per architecture: this instance's, or a clear stop.
case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
RELEASE_URL=${RELEASE_URL//\{arch\}/$arch}
if [[ $RELEASE_URL =~ -linux-(x64|arm64)\.tar\.gz$ && ${BASH_REMATCH[1]} != "$arch" ]]; then
  log "$RELEASE_URL is the ${BASH_REMATCH[1]} release and this instance is $arch ($(uname -m)); not installing"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "fetching $RELEASE_URL"
fetch "$RELEASE_URL" "$work/release.tar.gz"
have=$(sha512sum "$work/release.tar.gz")
if [[ ${have%% *} != "$RELEASE_SHA512" ]]; then
  log "SHA-512 of $RELEASE_URL is ${have%% *}, expected $RELEASE_SHA512; not installing"
  exit 1
fi
tar -xzf "$work/release.tar.gz" -C "$work"

if [[ -n $RUNSC_MIRROR_URL ]]; then
  log "fetching runsc from $RUNSC_MIRROR_URL"
  fetch "$RUNSC_MIRROR_URL" "$work/gvisor.tar.bz2"
  args=(--runsc-file "$work/gvisor.tar.bz2" --runsc-sha512 "$RUNSC_SHA512")
else
  args=(--runsc-release "$RUNSC_RELEASE" --runsc-sha512 "$RUNSC_SHA512")
fi
if [[ -n $AGENT_IMAGE ]]; then args+=(--set "ECS_GVISOR_AGENT_IMAGE=$AGENT_IMAGE"); fi
if [[ -n $LAUNCH_HOOK ]]; then args+=(--set "ECS_GVISOR_LAUNCH_HOOK=$LAUNCH_HOOK"); fi
if [[ -n $TERMINATE_HOOK ]]; then args+=(--set "ECS_GVISOR_TERMINATE_HOOK=$TERMINATE_HOOK"); fi
if [[ -n $HEARTBEAT_TIMEOUT ]]; then args+=(--set "ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS=$HEARTBEAT_TIMEOUT"); fi
if [[ -n $ASG_NAME ]]; then args+=(--set "ECS_GVISOR_ASG_NAME=$ASG_NAME"); fi
if [[ $SET_INSTANCE_HEALTH == true ]]; then args+=(--set "ECS_GVISOR_SET_INSTANCE_HEALTH=true"); fi
installer=("$work"/ecs-gvisor-*/install.sh)
"${installer[0]}" "${args[@]}"
log "installed; follow it with: journalctl -u ecs-gvisor -f"
