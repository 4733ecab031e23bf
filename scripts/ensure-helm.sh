#!/usr/bin/env bash
# Builds helm 4.3.2 from the Go module proxy into the cache dir given as $1, once, for the Helm chart's tests
# (`helm lint`, `helm template`). Prints the binary's path (the only line on stdout).
set -euo pipefail

HELM_VERSION=4.3.2

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)
bin=$cache/helm-$HELM_VERSION
if [ -x "$bin/helm" ] && "$bin/helm" version --short 2>/dev/null | grep -q "^v$HELM_VERSION"; then
    echo "$bin/helm"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "ensure-helm: Go is needed to build helm (none on PATH)" >&2
    exit 1
fi
echo "ensure-helm: building helm $HELM_VERSION ..." >&2
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$bin"
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOCACHE=$work/gocache GOBIN=$work/bin \
    nice -n 10 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION"
mv "$work/bin/helm" "$bin/helm"
echo "$bin/helm"
