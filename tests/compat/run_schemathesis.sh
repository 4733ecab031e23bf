#!/usr/bin/env bash
# Fuzzes a running dagctl REST API with schemathesis 4.x, from the schema the server itself serves
# at URL/api/v2/openapi.json, checking only that no request gets a 5xx (not_a_server_error).
#
#   export DAGCTL_PYTHON=$(scripts/install-pytools.sh "$HOME/.cache/dagctl-pytools")
#   tests/compat/run_schemathesis.sh http://127.0.0.1:8080 "$TOKEN" [extra schemathesis run args]
#
# DAGCTL_PYTHON is the venv's python made by scripts/install-pytools.sh; schemathesis is run from
# the same venv. Extra args come last, so they override the defaults below (e.g. `--max-examples 5`,
# `--exclude-method DELETE`, `--seed 7`, `--phases examples`).
#
# Budget: examples + coverage + fuzzing phases only (no stateful phase: no link-following loops),
# at most ST_MAX_EXAMPLES (25) fuzzing cases per operation, a per-request timeout of
# ST_REQUEST_TIMEOUT (10 s), and a hard cap of ST_HARD_LIMIT (150 s) on the whole run through
# `timeout`; if that cap fires, the exit code is 124. schemathesis' own --max-time is NOT used by
# default: in 4.x it makes fuzzing repeat until the budget is spent, so every run would take the
# full budget. The seed is fixed (ST_SEED) so CI runs are reproducible.
# Exit code: schemathesis' own (0 = no failures).
set -euo pipefail

if [ $# -lt 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "usage: $0 URL TOKEN [extra schemathesis run args]" >&2
    exit 2
fi
url=${1%/}
token=$2
shift 2

if [ -z "${DAGCTL_PYTHON:-}" ] || [ ! -x "$DAGCTL_PYTHON" ]; then
    echo "run_schemathesis: set DAGCTL_PYTHON to the venv python from scripts/install-pytools.sh" >&2
    exit 2
fi
st=$(dirname "$DAGCTL_PYTHON")/schemathesis
if [ ! -x "$st" ]; then
    echo "run_schemathesis: $st is missing (rerun scripts/install-pytools.sh)" >&2
    exit 2
fi

max_examples=${ST_MAX_EXAMPLES:-25}
request_timeout=${ST_REQUEST_TIMEOUT:-10}
hard_limit=${ST_HARD_LIMIT:-150}
seed=${ST_SEED:-20250101}

# schemathesis 4 keeps a crash cache in ./.schemathesis and hypothesis writes ./.hypothesis; run
# with an explicit config file (so no stray schemathesis.toml in a parent directory is picked up)
# that turns the cache off, and point hypothesis' storage at a scratch dir, so nothing lands in
# the work tree. ST_WORK_DIR keeps that dir (and its reports) instead of a removed temp dir.
if [ -n "${ST_WORK_DIR:-}" ]; then
    work=$ST_WORK_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/dagctl-schemathesis.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
printf '[cache]\nenabled = false\n' >"$work/schemathesis.toml"
export HYPOTHESIS_STORAGE_DIRECTORY=$work/hypothesis

# --url sets the base URL: the spec's paths already start with /api/v2 (as in Airflow's), so the
# base is the server root. --generation-database none: no example database between runs.
status=0
timeout --signal=TERM --kill-after=10 "$hard_limit" \
    "$st" --config-file "$work/schemathesis.toml" run "$url/api/v2/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --request-timeout "$request_timeout" \
    --wait-for-schema 30 \
    --seed "$seed" \
    --generation-database none \
    --no-color \
    "$@" || status=$?
if [ "$status" -eq 124 ]; then
    echo "run_schemathesis: stopped by the ${hard_limit}s hard limit (ST_HARD_LIMIT)" >&2
fi
exit "$status"
