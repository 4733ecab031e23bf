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

# Real Ethereum clients for the chain tests, cached between runs: geth 1.13.15 (release archive or go
# install), anvil (npm) and GoQuorum 24.4.1 (from ../shared/clients).
bin=$(./scripts/install-clients.sh "${DAGCTL_CLIENTS_CACHE:-$HOME/.cache/dagctl/clients}")
export DAGCTL_CLIENTS_BIN="$bin" DAGCTL_GETH="$bin/geth" DAGCTL_ANVIL="$bin/anvil" DAGCTL_QUORUM="$bin/quorum"

# The web tests' real parts: apache-airflow-client 3.3.2 and schemathesis (PyPI, in a venv, with moto and
# locust), the
# oidc-provider IdP and playwright-core (npm), and Debian's Chromium.
cache=${DAGCTL_TOOLS_CACHE:-$HOME/.cache/dagctl}
DAGCTL_PYTHON=$(./scripts/install-pytools.sh "$cache/py")
DAGCTL_NODE_TOOLS=$(./scripts/install-node-tools.sh "$cache/node")
DAGCTL_CHROMIUM=$(./scripts/ensure-chromium.sh)
# The load benchmark's baselines: Debian's wrk (locust is in the venv above).
DAGCTL_WRK=$(./scripts/ensure-wrk.sh)
# The `stress` chaos fault's stress-ng (Debian's, found on PATH).
./scripts/ensure-stress-ng.sh >/dev/null
# Nodes in network namespaces and their packet faults: iproute2 (ip, tc, ss) and nftables.
./scripts/ensure-netns-tools.sh
export DAGCTL_PYTHON DAGCTL_NODE_TOOLS DAGCTL_CHROMIUM DAGCTL_WRK
# The Kubernetes tests' real control plane (etcd, kube-apiserver, controller manager, scheduler, and kwok playing
# the node): built once from the Go module proxy into the cache, started on loopback for this run, stopped by
# PID and removed at its end.
kube_bin=$(./scripts/ensure-kube.sh "$cache/kube")
kube_state=$(mktemp -d "${TMPDIR:-/tmp}/dagctl-kube-XXXXXX")
trap '"$kube_state/stop.sh" 2>/dev/null || true; rm -rf "$kube_state"' EXIT
DAGCTL_TEST_KUBECONFIG=$(./scripts/kube-local/start.sh "$kube_bin" "$kube_state")
# helm 4 for the chart's tests (lint, template), built once from the Go module proxy.
DAGCTL_TEST_HELM=$(./scripts/ensure-helm.sh "$cache/helm")
# OpenTofu for the Terraform modules' checks (fmt, validate), built once from the Go module proxy.
DAGCTL_TEST_TOFU=$(./scripts/ensure-tofu.sh "$cache/tofu")
# Chaos Mesh's CRDs, installed by the Kubernetes chaos tests so the API server validates rendered faults.
DAGCTL_TEST_CHAOS_MESH_CRDS=$(./scripts/ensure-chaos-mesh-crds.sh "$cache/kube")
export DAGCTL_TEST_KUBECONFIG DAGCTL_TEST_HELM DAGCTL_TEST_TOFU DAGCTL_TEST_CHAOS_MESH_CRDS

cargo nextest run --workspace --no-fail-fast "$@"
