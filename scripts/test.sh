#!/usr/bin/env bash
# The whole test suite: starts what the tests need (PostgreSQL on 127.0.0.1:5432, the blockchain clients),
# then runs every test with nextest. Usage: ./scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-postgres.sh
export DAGCTL_TEST_PG_URL="${DAGCTL_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest ..."
  cargo install cargo-nextest --locked --quiet
fi

# Real Ethereum clients for the chain tests: geth 1.13.15 (go install) and anvil (npm), cached between runs.
bin=$(./scripts/install-clients.sh "${DAGCTL_CLIENTS_CACHE:-$HOME/.cache/dagctl/clients}")
export DAGCTL_CLIENTS_BIN="$bin" DAGCTL_GETH="$bin/geth" DAGCTL_ANVIL="$bin/anvil"

cargo nextest run --workspace --no-fail-fast "$@"
