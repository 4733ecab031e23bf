#!/usr/bin/env bash
# Makes sure Debian's wrk is at /usr/bin/wrk (the HTTP baseline of `dagctl bench load`), installing the `wrk`
# package when it is missing. Idempotent. Prints the wrk path (the only line on stdout).
#
#   export DAGCTL_WRK=$(scripts/ensure-wrk.sh)
set -euo pipefail

wrk=/usr/bin/wrk

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "ensure-wrk: $*" >&2; }

if [ ! -x "$wrk" ]; then
    log "installing wrk (Debian package) ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || {
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
    }
fi
# `wrk --version` prints its version and usage, and exits 1.
version=$("$wrk" --version 2>&1 || true)
case "$version" in
    wrk*) ;;
    *) log "$wrk does not run: $version"; exit 1 ;;
esac
echo "$wrk"
