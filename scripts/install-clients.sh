#!/usr/bin/env bash
# Installs the pinned Ethereum clients the chain tests run: geth 1.13.15 (the last line that
# seals Clique) and anvil 1.7.1, into the cache dir given as $1. Skips what is already there,
# so reruns are fast. Prints the bin dir (the only line on stdout).
#
#   bin=$(scripts/install-clients.sh "$HOME/.cache/dagctl-clients")
#   export DAGCTL_GETH=$bin/geth DAGCTL_ANVIL=$bin/anvil
#
# geth: the official release archive, checked against its pinned SHA-256 (the same pins as
# chain/src/backend/local/clients/mod.rs); where it cannot be downloaded (these CI machines reach only package
# registries), `go install` through the Go module proxy.
# anvil: the npm package @foundry-rs/anvil, which ships the binary in a platform package.
# GoQuorum 24.4.1: no registry these machines reach ships it, so it comes from the build kept in
# ../shared/clients (from the project root; DAGCTL_SHARED_CLIENTS elsewhere), decompressed into the cache
# once and checked against its pinned SHA-256 (the same pin as chain/src/backend/local/clients/quorum.rs).
# Without that file nothing is installed here, and the GoQuorum tests fail saying so.
set -euo pipefail

GETH_VERSION=1.13.15
ANVIL_VERSION=1.7.1
QUORUM_VERSION=24.4.1
QUORUM_SHA256=5beadd44e391cc4726c3fdf567d1028eb8bd3227a30bf0c449e60d8d02f68d90
shared=${DAGCTL_SHARED_CLIENTS:-$(cd "$(dirname "$0")/.." && pwd)/../shared/clients}

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
cache=$1
bin=$cache/bin
mkdir -p "$bin"
cache=$(cd "$cache" && pwd)
bin=$cache/bin

log() { echo "install-clients: $*" >&2; }

geth_ok() {
    # Read the whole answer first: `grep -q` stops at its match and, under pipefail, geth's SIGPIPE failed it.
    [ -x "$bin/geth" ] && grep -q "^Version: ${GETH_VERSION}-" <<<"$("$bin/geth" version 2>/dev/null)"
}

geth_archive() {
    local name sha
    case "$(uname -m)" in
        x86_64) name=geth-linux-amd64-1.13.15-c5ba367e sha=2f153cdcd9801d748d8f812cce9d7a432d155f52eb78018d09d881dfe354dfdd ;;
        aarch64) name=geth-linux-arm64-1.13.15-c5ba367e sha=8976fce7e02ab904ef69d1b45ca5215c35c7d29dfbd705cc59f1cd8179976f2d ;;
        *) return 1 ;;
    esac
    local work
    work=$(mktemp -d "$bin/.download-XXXXXX")
    if curl -fsSL --connect-timeout 10 --max-time 600 -o "$work/geth.tar.gz" \
        "${DAGCTL_GETH_RELEASE_URL:-https://gethstore.blob.core.windows.net/builds}/$name.tar.gz" 2>/dev/null; then
        if ! echo "$sha  $work/geth.tar.gz" | sha256sum -c --status; then
            rm -rf "$work"
            log "the geth release archive does not match its pinned SHA-256; refusing it"
            exit 1
        fi
        tar -xzf "$work/geth.tar.gz" -C "$work" "$name/geth" && mv "$work/$name/geth" "$bin/geth"
        rm -rf "$work"
        return 0
    fi
    rm -rf "$work"
    return 1
}

if geth_ok; then
    log "geth $GETH_VERSION already in $bin"
elif geth_archive && geth_ok; then
    log "geth $GETH_VERSION installed from its release archive (SHA-256 checked)"
else
    if ! command -v go >/dev/null 2>&1; then
        log "geth $GETH_VERSION needs a Go toolchain (go install); none on PATH"
        exit 1
    fi
    log "building geth $GETH_VERSION with go install (a few minutes on a cold cache)"
    # -checklinkname=0: newer Go refuses an old dependency's go:linkname otherwise.
    GOBIN=$bin GOFLAGS=-mod=mod CGO_ENABLED=${CGO_ENABLED:-1} \
        go install -ldflags=-checklinkname=0 "github.com/ethereum/go-ethereum/cmd/geth@v${GETH_VERSION}" >&2
    geth_ok || { log "geth was built but does not report version $GETH_VERSION"; exit 1; }
fi

anvil_pkg=$cache/anvil
anvil_real=$anvil_pkg/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
case "$(uname -m)" in
    aarch64 | arm64) anvil_real=$anvil_pkg/node_modules/@foundry-rs/anvil-linux-arm64/bin/anvil ;;
esac
anvil_ok() {
    [ -x "$bin/anvil" ] && grep -q "$ANVIL_VERSION" <<<"$("$bin/anvil" --version 2>/dev/null)"
}

if anvil_ok; then
    log "anvil $ANVIL_VERSION already in $bin"
else
    if ! command -v npm >/dev/null 2>&1; then
        log "anvil $ANVIL_VERSION needs npm; none on PATH"
        exit 1
    fi
    log "installing anvil $ANVIL_VERSION from npm"
    npm install --silent --no-audit --no-fund --prefix "$anvil_pkg" "@foundry-rs/anvil@${ANVIL_VERSION}" >&2
    if [ ! -x "$anvil_real" ]; then
        log "npm installed @foundry-rs/anvil but $anvil_real is missing"
        exit 1
    fi
    ln -sf "$anvil_real" "$bin/anvil"
    anvil_ok || { log "anvil does not report version $ANVIL_VERSION"; exit 1; }
fi

quorum_ok() {
    [ -x "$bin/quorum" ] && echo "$QUORUM_SHA256  $bin/quorum" | sha256sum -c --status
}
quorum_xz=$shared/geth-quorum-${QUORUM_VERSION}-linux-amd64.xz
if quorum_ok; then
    log "GoQuorum $QUORUM_VERSION already in $bin"
elif [ -f "$quorum_xz" ]; then
    log "installing GoQuorum $QUORUM_VERSION from $quorum_xz"
    tmp=$(mktemp "$bin/.quorum-XXXXXX")
    xz -dc "$quorum_xz" > "$tmp"
    if ! echo "$QUORUM_SHA256  $tmp" | sha256sum -c --status; then
        rm -f "$tmp"
        log "$quorum_xz does not hold the pinned GoQuorum build (SHA-256 $QUORUM_SHA256); refusing it"
        exit 1
    fi
    chmod 755 "$tmp"
    mv "$tmp" "$bin/quorum"
else
    log "no GoQuorum $QUORUM_VERSION: $quorum_xz is missing (the GoQuorum tests will fail)"
fi

echo "$bin"
