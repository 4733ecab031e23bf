#!/usr/bin/env bash
# Builds OpenTofu 1.12.6 from the Go module proxy into the cache dir given as $1, once, for the Terraform
# modules' checks (`tofu fmt -check`, and `tofu validate` where providers can be had). Prints the binary's path
# (the only line on stdout).
#
#   tofu=$(scripts/ensure-tofu.sh "$HOME/.cache/dagctl/tofu")
#   "$tofu" fmt -check -recursive terraform/
#
# `go install github.com/opentofu/opentofu/cmd/tofu@v1.12.6` is refused ("The go.mod file for the module
# providing named packages contains one or more replace directives"): a wrapper module requires OpenTofu and
# copies its go.mod's replace directives (hashicorp/hcl/v2 => opentofu/hcl/v2), as ensure-kube.sh does for
# Kubernetes. Cold, `go get` plus the build took 10 minutes of wall time (niced, GOMAXPROCS=1, -p 1, beside a
# cargo build) for a 115 MB stripped binary; Go's build cache (1.6 GB) is made in a temporary dir and removed
# afterwards, the module cache is Go's own.
#
# Providers: not installed. hashicorp/helm 3.1.2, hashicorp/kubernetes 3.2.1 and hashicorp/random 3.9.0 are Go
# modules whose go.mod has no /v3 suffix, so the Go module proxy serves none of their v2+ releases (only
# v1.x), and these machines reach no provider registry. `tofu init` for the modules therefore needs a machine
# that reaches registry.opentofu.org, or a filesystem mirror made there (`tofu providers mirror DIR`) and named
# in a CLI config file (TF_CLI_CONFIG_FILE) with provider_installation { filesystem_mirror { path = DIR } }.
set -euo pipefail

TOFU_VERSION=1.12.6

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)
bin=$cache/tofu-$TOFU_VERSION
log() { echo "ensure-tofu: $*" >&2; }

if [ -x "$bin/tofu" ] && "$bin/tofu" version 2>/dev/null | grep -q "^OpenTofu v$TOFU_VERSION\$"; then
    echo "$bin/tofu"
    exit 0
fi
if ! command -v go >/dev/null; then
    log "Go is needed to build OpenTofu (none on PATH)"
    exit 1
fi
log "building OpenTofu $TOFU_VERSION ..."
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
work=$(mktemp -d "$cache/.build-XXXXXX")
export GOCACHE=$work/gocache
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
jobs=${GO_BUILD_JOBS:-$(nproc)}

mkdir -p "$work/mod" && cd "$work/mod"
go mod init dagctl.local/tofu >/dev/null 2>&1
gomod=$(go mod download -json "github.com/opentofu/opentofu@v$TOFU_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
[ -s "$gomod" ] || { log "could not download OpenTofu $TOFU_VERSION's go.mod"; exit 1; }
# Its go line (a Go newer than the wrapper's default would make `go get` ask for a toolchain switch).
go mod edit -go="$(awk '$1 == "go" {print $2; exit}' "$gomod")"
# One-line replace directives (`replace A v => B v2`) and those inside a `replace ( ... )` block.
replaces=$(awk '
    /^replace \(/ {inblock = 1; next}
    inblock && /^\)/ {inblock = 0; next}
    inblock && /=>/ {print; next}
    /^replace / && /=>/ {sub(/^replace /, ""); print}
' "$gomod")
while read -r old _ arrow new newver; do
    [ -n "${old:-}" ] || continue
    if [ "$arrow" != "=>" ] || [ -z "${newver:-}" ]; then
        log "unexpected replace directive in OpenTofu's go.mod: $old $_ $arrow $new ${newver:-}"
        exit 1
    fi
    go mod edit -replace "$old=$new@$newver"
done <<<"$replaces"
go get "github.com/opentofu/opentofu/cmd/tofu@v$TOFU_VERSION" >/dev/null 2>&1 ||
    { log "go get github.com/opentofu/opentofu/cmd/tofu@v$TOFU_VERSION failed"; exit 1; }
mkdir -p "$bin.partial"
nice -n 10 go build -p "$jobs" -trimpath \
    -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
    -o "$bin.partial/tofu" github.com/opentofu/opentofu/cmd/tofu
"$bin.partial/tofu" version | grep -q "^OpenTofu v$TOFU_VERSION\$" ||
    { log "the built binary does not report v$TOFU_VERSION"; exit 1; }
rm -rf "$bin"
mv "$bin.partial" "$bin"
echo "$bin/tofu"
