#!/usr/bin/env bash
# Makes sure the tools that put nodes in network namespaces and fault their packets are here: iproute2's `ip`,
# `tc` and `ss`, and nftables' `nft` (Debian's packages), installing the packages that are missing. Idempotent.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "ensure-netns-tools: $*" >&2; }

missing=()
for pair in ip:iproute2 tc:iproute2 ss:iproute2 nft:nftables; do
    program=${pair%%:*}
    package=${pair#*:}
    if ! command -v "$program" >/dev/null 2>&1; then
        case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages) ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
fi
for program in ip tc ss nft; do
    command -v "$program" >/dev/null 2>&1 || { log "$program is still missing"; exit 1; }
done
