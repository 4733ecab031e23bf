#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium (the browser the web UI tests drive through
# playwright-core, which downloads no browser of its own), installing the `chromium` package when it
# is missing. Idempotent. Prints the chromium path (the only line on stdout).
#
#   export DAGCTL_CHROMIUM=$(scripts/ensure-chromium.sh)
set -euo pipefail

chromium=/usr/bin/chromium

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "ensure-chromium: $*" >&2; }

if [ ! -x "$chromium" ]; then
    log "installing Chromium (Debian package) ..."
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-liberation >/dev/null
fi
if [ ! -x "$chromium" ]; then
    log "apt-get installed chromium but $chromium is missing"
    exit 1
fi
# A browser that cannot start (missing libraries) fails here rather than in a test's timeout.
if ! timeout 60 "$chromium" --version >/dev/null 2>&1; then
    log "$chromium does not start: $(timeout 60 "$chromium" --version 2>&1 | tail -n 1)"
    exit 1
fi
echo "$chromium"
