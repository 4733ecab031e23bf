#!/usr/bin/env bash
# Installs the pinned Python tools the REST API compatibility tests run: the official Airflow
# client (apache-airflow-client 3.3.2 from PyPI), schemathesis 4.32.5, moto 5.2.5 in server mode (a
# local CloudWatch Logs endpoint for the monitor's log shipping tests) and locust 2.47.0 (chain.locust, and
# the baseline of `dagctl bench load`), into a venv at
# CACHE_DIR/venv. Skips the install when the venv already holds exactly these pins (a marker file
# written after a successful install), so reruns are fast. Prints the venv's python (the only
# line on stdout).
#
#   py=$(scripts/install-pytools.sh "$HOME/.cache/dagctl-pytools")
#   export DAGCTL_PYTHON=$py
#   "$py" tests/compat/airflow_client_compat.py --url http://127.0.0.1:8080 ...
#   tests/compat/run_schemathesis.sh http://127.0.0.1:8080 "$TOKEN"
#
# schemathesis 4.32.5 requires Python >= 3.11. The base interpreter is $DAGCTL_PYTHON_BASE if set,
# else the first of python3.13, python3.12, python3.11, python3 on PATH that is >= 3.11.
set -euo pipefail

AIRFLOW_CLIENT_VERSION=3.3.2
SCHEMATHESIS_VERSION=4.32.5
MOTO_VERSION=5.2.5
LOCUST_VERSION=2.47.0
# HCL for terraform/check_inputs.py (the Terragrunt layout's inputs against the modules' variables).
PYTHON_HCL2_VERSION=8.1.4
PINS="apache-airflow-client==${AIRFLOW_CLIENT_VERSION} schemathesis==${SCHEMATHESIS_VERSION} moto[server]==${MOTO_VERSION} locust==${LOCUST_VERSION} python-hcl2==${PYTHON_HCL2_VERSION}"

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
cache=$1
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
venv=$cache/venv
py=$venv/bin/python
marker=$venv/.dagctl-pytools-pins

log() { echo "install-pytools: $*" >&2; }

py_ok() { # $1: interpreter; true if it runs and is >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_base() {
    if [ -n "${DAGCTL_PYTHON_BASE:-}" ]; then
        py_ok "$DAGCTL_PYTHON_BASE" || { log "DAGCTL_PYTHON_BASE=$DAGCTL_PYTHON_BASE is not a Python >= 3.11"; return 1; }
        echo "$DAGCTL_PYTHON_BASE"
        return 0
    fi
    local c
    for c in python3.13 python3.12 python3.11 python3; do
        if command -v "$c" >/dev/null 2>&1 && py_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    log "no Python >= 3.11 on PATH (schemathesis $SCHEMATHESIS_VERSION needs it); set DAGCTL_PYTHON_BASE"
    return 1
}

# The marker holds the pins and the venv interpreter's version, so a changed pin or a replaced
# base interpreter both force a rebuild.
want_marker() {
    echo "$PINS"
    "$py" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo "python-missing"
}

if [ -x "$py" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$(want_marker)" ]; then
    log "$PINS already in $venv"
    echo "$py"
    exit 0
fi

base=$(find_base)
log "creating $venv with $base ($("$base" --version 2>&1))"
rm -rf "$venv"
"$base" -m venv "$venv" >&2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
log "installing $PINS"
# shellcheck disable=SC2086 # PINS is a list of requirement specifiers
"$py" -m pip install --quiet $PINS >&2

# Check what pip actually installed before writing the marker.
for spec in $PINS; do
    name=${spec%%==*}
    name=${name%%\[*}
    want=${spec#*==}
    have=$("$py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    if [ "$have" != "$want" ]; then
        log "$name: wanted $want, pip show says '${have:-not installed}'"
        exit 1
    fi
done
"$py" -c 'import airflow_client.client, schemathesis, moto.server' >&2 || { log "installed packages do not import"; exit 1; }
# locust monkey-patches the standard library with gevent: imported on its own.
"$py" -c 'import locust' >&2 || { log "locust does not import"; exit 1; }
"$py" -c 'import hcl2' >&2 || { log "python-hcl2 does not import"; exit 1; }
[ -x "$venv/bin/schemathesis" ] || { log "$venv/bin/schemathesis is missing"; exit 1; }

want_marker >"$marker"
log "installed $PINS into $venv"
echo "$py"
