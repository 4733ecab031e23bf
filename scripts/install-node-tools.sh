#!/usr/bin/env bash
# Installs the pinned Node tools the tests use, from tests/web-harness/package.json and its
# package-lock.json (npm ci, so the locked versions and nothing else): oidc-provider (panva's
# certified OpenID Provider, run by tests/web-harness/oidc-provider.mjs), playwright-core
# (drives Debian's /usr/bin/chromium; playwright-core downloads no browser, and
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD is set all the same) and solc 0.8.28 (the Solidity compiler's
# JavaScript build, which checks chain/contracts/LoadToken.bin). Installs into CACHE_DIR/node; skips the
# install when that copy was made from the same lock file, so reruns are fast. Prints the dir that
# holds node_modules (the only line on stdout).
#
#   export DAGCTL_NODE_TOOLS=$(scripts/install-node-tools.sh "$HOME/.cache/dagctl-node")
#   node tests/web-harness/oidc-provider.mjs --port 0 ...
#
# The harness modules find the packages through $DAGCTL_NODE_TOOLS.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$here/tests/web-harness
cache=$1
mkdir -p "$cache/node"
dest=$(cd "$cache/node" && pwd)

log() { echo "install-node-tools: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "needs $tool (Node >= 20.19); none on PATH"
        exit 1
    fi
done

# The stamp is the lock file the copy was installed from, plus the Node major version.
want="$(node -p 'process.versions.node.split(".")[0]')
$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"

installed_ok() {
    [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$want" ] &&
        [ -f "$dest/node_modules/oidc-provider/package.json" ] &&
        [ -f "$dest/node_modules/playwright-core/package.json" ] &&
        [ -f "$dest/node_modules/solc/package.json" ]
}

if installed_ok; then
    log "oidc-provider, playwright-core and solc already in $dest/node_modules"
else
    log "installing oidc-provider, playwright-core and solc into $dest (npm ci)"
    rm -f "$dest/.installed"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
        npm ci --prefix "$dest" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    node -e '
        const [dir] = process.argv.slice(1);
        const lock = require(dir + "/package-lock.json");
        for (const name of ["oidc-provider", "playwright-core", "solc"]) {
            const want = lock.packages["node_modules/" + name].version;
            const got = require(dir + "/node_modules/" + name + "/package.json").version;
            if (got !== want) { console.error(`${name} is ${got}, the lock says ${want}`); process.exit(1); }
        }' "$dest" >&2
    echo "$want" >"$dest/.installed"
    installed_ok || { log "npm ci ran but the packages are missing from $dest/node_modules"; exit 1; }
fi

echo "$dest"
