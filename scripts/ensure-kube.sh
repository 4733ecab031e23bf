#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the Kubernetes tests, once, into the cache dir given as $1:
# etcd 3.7.3, kube-apiserver, kube-controller-manager and kube-scheduler 1.37.2, and kwok 0.8.0 (which plays
# the nodes and pod phases), all from the Go module proxy (no registry these machines reach ships them).
# Prints the bin dir (the only line on stdout). Skips what is already built, so reruns take a moment.
#
#   bin=$(scripts/ensure-kube.sh "$HOME/.cache/dagctl/kube")
#   scripts/kube-local/start.sh "$bin" STATE_DIR    # prints a kubeconfig; STATE_DIR/stop.sh stops it by PID
#
# Cold, this takes about 18 CPU-minutes and 2.9 GB of memory while linking; Go's build cache (about 5 GB) is
# made in a temporary dir and removed afterwards, the module cache is Go's own (shared with geth's install).
# See ../shared/reference/kubernetes-local.md for the recipe's facts.
set -euo pipefail

ETCD_VERSION=3.7.3
KUBE_VERSION=1.37.2
KUBE_MINOR=37
KWOK_VERSION=0.8.0

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)
bin=$cache/bin-etcd$ETCD_VERSION-k8s$KUBE_VERSION-kwok$KWOK_VERSION
components=(kube-apiserver kube-controller-manager kube-scheduler)

log() { echo "ensure-kube: $*" >&2; }

complete() {
    local name
    for name in etcd "${components[@]}" kwok; do
        [ -x "$bin/$name" ] || return 1
    done
    [ -s "$bin/stages/pod-ready.yaml" ] && [ -s "$bin/stages/crd-logs.yaml" ]
}

if complete; then
    echo "$bin"
    exit 0
fi

if ! command -v go >/dev/null; then
    log "Go is needed to build the control plane (none on PATH)"
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
work=$(mktemp -d "$cache/.build-XXXXXX")
export GOCACHE=$work/gocache
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$bin.partial"
jobs=${GO_BUILD_JOBS:-$(nproc)}
build() { nice -n 10 go build -p "$jobs" -trimpath "$@"; }

if [ ! -x "$bin.partial/etcd" ]; then
    log "building etcd $ETCD_VERSION ..."
    mkdir -p "$work/etcd" && cd "$work/etcd"
    go mod init dagctl.local/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
    build -ldflags "-s -w" -o "$bin.partial/etcd" go.etcd.io/etcd/server/v3
fi

version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
    version_flags+=" -X $pkg.gitTreeState=clean"
done
missing=()
for name in "${components[@]}"; do
    [ -x "$bin.partial/$name" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "building ${missing[*]} $KUBE_VERSION ..."
    mkdir -p "$work/kube" && cd "$work/kube"
    go mod init dagctl.local/kube >/dev/null 2>&1
    # kubernetes requires its staging modules at v0.0.0 with replaces to its own tree; a wrapper module
    # replaces each with the same path at the matching release.
    gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
    staged=$(awk '/^require/,/^\)/ {print}' "$gomod" | awk '$2 == "v0.0.0" {print $1}')
    [ -n "$staged" ] || { log "found no staging modules in $gomod"; exit 1; }
    for module in $staged; do
        go mod edit -replace "$module=$module@v0.$KUBE_MINOR.${KUBE_VERSION##*.}"
    done
    go mod edit -require "k8s.io/kubernetes@v$KUBE_VERSION"
    for name in "${missing[@]}"; do
        go get "k8s.io/kubernetes/cmd/$name@v$KUBE_VERSION" >/dev/null 2>&1
    done
    for name in "${missing[@]}"; do
        log "  linking $name ..."
        build -ldflags "-s -w $version_flags" -o "$bin.partial/$name" "k8s.io/kubernetes/cmd/$name"
    done
fi

if [ ! -x "$bin.partial/kwok" ]; then
    log "building kwok $KWOK_VERSION ..."
    GOBIN=$bin.partial nice -n 10 go install -p "$jobs" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
fi
# kwok has no built-in stages: the node and pod stages it needs come from its module's kustomize tree.
stages=$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage
mkdir -p "$bin.partial/stages"
for file in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml; do
    if [ ! -s "$stages/$file" ]; then
        log "kwok's stage $file is missing from $stages"
        exit 1
    fi
    cp "$stages/$file" "$bin.partial/stages/$(basename "$file")"
done
# The Logs CRD: kwok serves a pod's log from the file a Logs object names.
cp "$stages/../crd/bases/kwok.x-k8s.io_logs.yaml" "$bin.partial/stages/crd-logs.yaml"
chmod -R u+w "$bin.partial"
rm -rf "$bin"
mv "$bin.partial" "$bin"
complete || { log "the build left $bin incomplete"; exit 1; }
echo "$bin"
