#!/usr/bin/env bash
# Fetches Chaos Mesh's CustomResourceDefinitions (NetworkChaos, PodChaos, StressChaos, TimeChaos) from the Go
# module proxy into the cache dir given as $1, once, so the Kubernetes chaos tests install them into the local
# API server and it validates every rendered fault against their schemas. Prints the directory holding the
# YAML files (the only line on stdout). Chaos Mesh's v2 tags are +incompatible versions the proxy does not
# serve, so the pin is a pseudo-version of its master (commit 47411975a8cb, 2026-09-02).
set -euo pipefail

CHAOS_MESH_VERSION=v0.9.1-0.20260902003049-47411975a8cb
KINDS=(networkchaos podchaos stresschaos timechaos)

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)
dir=$cache/chaos-mesh-crds-$CHAOS_MESH_VERSION
complete() {
    local kind
    for kind in "${KINDS[@]}"; do
        [ -s "$dir/chaos-mesh.org_$kind.yaml" ] || return 1
    done
}
if complete; then
    echo "$dir"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "ensure-chaos-mesh-crds: Go is needed to download the module (none on PATH)" >&2
    exit 1
fi
echo "ensure-chaos-mesh-crds: downloading github.com/chaos-mesh/chaos-mesh@$CHAOS_MESH_VERSION ..." >&2
work=$(mktemp -d "$cache/.fetch-XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# `go mod download` checks the module's hash against the checksum database.
module=$(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-modcacherw GOMODCACHE=$work/mod \
    go mod download -json "github.com/chaos-mesh/chaos-mesh@$CHAOS_MESH_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
if [ -z "$module" ] || [ ! -d "$module/config/crd/bases" ]; then
    echo "ensure-chaos-mesh-crds: the module has no config/crd/bases" >&2
    exit 1
fi
mkdir -p "$dir.partial"
for kind in "${KINDS[@]}"; do
    cp "$module/config/crd/bases/chaos-mesh.org_$kind.yaml" "$dir.partial/"
done
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "$dir"
