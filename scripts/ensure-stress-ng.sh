#!/usr/bin/env bash
# Makes sure Debian's stress-ng is at /usr/bin/stress-ng (the `stress` chaos fault finds it on PATH),
# installing the `stress-ng` package when it is missing. Idempotent. Prints the stress-ng path (the only line on
# stdout).
set -euo pipefail

program=/usr/bin/stress-ng

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "ensure-stress-ng: $*" >&2; }

if [ ! -x "$program" ]; then
    log "installing stress-ng (Debian package) ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stress-ng >/dev/null 2>&1 || {
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stress-ng >/dev/null
    }
fi
version=$("$program" --version 2>&1 || true)
case "$version" in
    stress-ng*) ;;
    *) log "$program does not run: $version"; exit 1 ;;
esac
echo "$program"
