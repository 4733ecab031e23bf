#!/usr/bin/env python3
"""Build dagctl's OpenAPI 3.1 document from Airflow's generated /api/v2 spec.

Usage:
    python3 build_subset.py AIRFLOW_SPEC.yaml OUTPUT.json

AIRFLOW_SPEC is Airflow 3's generated REST API spec (the copy used by
apache-airflow-client: spec/v2.yaml). The output describes exactly the subset
of /api/v2 that dagctl implements, plus POST /auth/token (which Airflow serves
from its auth manager, outside the v2 spec).

What the script does:
  * keeps only the operations listed in KEEP, each with its path parameters,
    the listed query parameters (in Airflow's order), its requestBody, its
    responses, summary/description/operationId/tags and its `security`;
    header parameters are dropped;
  * adds query parameters we implement but Airflow's spec lacks (ADDED_PARAMS);
  * keeps only the components/schemas that the kept operations reference,
    directly or transitively, plus the securitySchemes;
  * rewrites OpenAPI 3.0 `nullable: true` (which the client spec still carries
    although it declares `openapi: 3.1.0`, and which JSON Schema 2020-12
    ignores) into 3.1 form: `type: [T, "null"]`, or `anyOf: [{$ref}, {type:
    "null"}]` next to a $ref. On query/path parameters, `nullable` is simply
    dropped: an optional query parameter cannot carry a JSON null; leaving it
    out is how a client sends "None";
  * drops the top-level `security` of the input (it names Basic/GoogleOpenID/
    Kerberos, left over from the v1 spec and not defined in securitySchemes);
    operations without their own `security` get an explicit `security: []`.

Requires PyYAML. Output is pretty-printed JSON with sorted keys, so it is
stable from run to run.
"""

import copy
import json
import sys

import yaml

TITLE = "dagctl REST API (Airflow 3 compatible subset)"
VERSION = "0.1.0"

# Range filters: when a listed *_gte/*_lte filter is kept, keep its _gt/_lt
# siblings too if Airflow has them.
RANGE_FIELDS = ["run_after", "logical_date", "start_date", "end_date"]

# (METHOD, path) -> query parameters to keep (path params are always kept).
KEEP = {
    ("GET", "/api/v2/version"): [],
    ("GET", "/api/v2/monitor/health"): [],
    ("GET", "/api/v2/dags"): [
        "limit", "offset", "tags", "tags_match_mode", "dag_id_pattern",
        "paused", "order_by", "exclude_stale",
    ],
    ("GET", "/api/v2/dags/{dag_id}"): [],
    ("PATCH", "/api/v2/dags/{dag_id}"): ["update_mask"],
    ("GET", "/api/v2/dags/{dag_id}/details"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns"): [
        "limit", "offset", "cursor", "state", "run_type", "order_by",
        "run_id_pattern",
    ] + [f"{f}_{op}" for f in RANGE_FIELDS for op in ("gte", "gt", "lte", "lt")],
    ("POST", "/api/v2/dags/{dag_id}/dagRuns"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"): [],
    ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"): ["update_mask"],
    ("POST", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"): [
        "limit", "offset", "state", "task_id", "order_by", "map_index",
    ],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped"): [
        "limit", "offset", "state", "order_by",
    ],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries"): [],
    ("POST", "/api/v2/dags/{dag_id}/clearTaskInstances"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}"): [
        "full_content", "map_index", "token",
    ],
    ("GET", "/api/v2/importErrors"): ["limit", "offset"],
    ("GET", "/api/v2/importErrors/{import_error_id}"): [],
    ("GET", "/api/v2/pools"): ["limit", "offset", "pool_name_pattern"],
    ("POST", "/api/v2/pools"): [],
    ("GET", "/api/v2/pools/{pool_name}"): [],
    ("PATCH", "/api/v2/pools/{pool_name}"): ["update_mask"],
    ("DELETE", "/api/v2/pools/{pool_name}"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries"): [
        "limit", "offset", "xcom_key", "map_index",
    ],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}"): [
        "map_index",
    ],
    ("GET", "/api/v2/eventLogs"): [
        "limit", "offset", "dag_id", "run_id", "task_id", "event", "owner",
        "order_by",
    ],
    ("GET", "/api/v2/eventLogs/{event_log_id}"): [],
    ("GET", "/api/v2/assets"): ["limit", "offset", "name_pattern", "uri_pattern", "dag_ids", "only_active", "order_by"],
    ("GET", "/api/v2/assets/{asset_id}"): [],
    ("GET", "/api/v2/assets/events"): [
        "limit", "offset", "order_by", "asset_id", "source_dag_id", "source_task_id", "source_run_id",
        "source_map_index", "name_pattern", "timestamp_gte", "timestamp_gt", "timestamp_lte", "timestamp_lt",
    ],
    ("POST", "/api/v2/assets/events"): [],
    ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents"): [],
    ("GET", "/api/v2/variables"): ["limit", "offset", "order_by", "variable_key_pattern"],
    ("POST", "/api/v2/variables"): [],
    ("PATCH", "/api/v2/variables"): [],
    ("GET", "/api/v2/variables/{variable_key}"): [],
    ("PATCH", "/api/v2/variables/{variable_key}"): ["update_mask"],
    ("DELETE", "/api/v2/variables/{variable_key}"): [],
    ("GET", "/api/v2/connections"): ["limit", "offset", "order_by", "connection_id_pattern"],
    ("POST", "/api/v2/connections"): [],
    ("PATCH", "/api/v2/connections"): [],
    ("GET", "/api/v2/connections/{connection_id}"): [],
    ("PATCH", "/api/v2/connections/{connection_id}"): ["update_mask"],
    ("DELETE", "/api/v2/connections/{connection_id}"): [],
}

# Listed parameters whose absence from Airflow's spec is expected/allowed:
# they are added with this definition (inserted after `offset`).
# Range siblings (_gt/_lt) are optional: they are kept only if present.
OPTIONAL_IF_MISSING = {
    f"{f}_{op}" for f in RANGE_FIELDS for op in ("gt", "lt")
}
ADDED_PARAMS = {
    ("GET", "/api/v2/dags/{dag_id}/dagRuns"): {
        "cursor": {
            "in": "query",
            "name": "cursor",
            "required": False,
            "description": (
                "Keyset pagination cursor (dagctl; Airflow client 3.3.2 adds "
                "the same parameter). Empty string means the first page; "
                "otherwise pass `next_cursor`/`previous_cursor` from a "
                "previous response."
            ),
            "schema": {"type": "string", "title": "Cursor"},
        },
    },
}

# Operation keys copied from Airflow (others, e.g. x-openapi-router, dropped).
OP_KEYS = ("summary", "description", "operationId", "tags", "deprecated",
           "requestBody", "responses", "security")


def auth_token_path():
    """POST /auth/token, as served by Airflow's simple auth manager."""
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}
    body_ref = {"schema": {"$ref": "#/components/schemas/LoginBody"}}
    return {
        "post": {
            "tags": ["Auth"],
            "summary": "Create Token",
            "description": (
                "Authenticate with username and password and get a JWT to send "
                "as `Authorization: Bearer <access_token>`. Not part of "
                "Airflow's /api/v2 spec: Airflow serves it from its auth "
                "manager (`POST /auth/token`)."
            ),
            "operationId": "create_token",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": copy.deepcopy(body_ref),
                    "application/x-www-form-urlencoded": copy.deepcopy(body_ref),
                },
            },
            "responses": {
                "201": {
                    "description": "Successful Response",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginResponse"}}},
                },
                "400": {"description": "Bad Request", "content": copy.deepcopy(err)},
                "401": {"description": "Unauthorized", "content": copy.deepcopy(err)},
                "415": {"description": "Unsupported Media Type", "content": copy.deepcopy(err)},
                "422": {"description": "Validation Error", "content": copy.deepcopy(err)},
            },
        }
    }


def dagctl_paths():
    """dagctl's own endpoints (under /api/v2/dagctl), for what the UI needs beyond Airflow's API."""
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}
    security = [{"OAuth2PasswordBearer": []}, {"HTTPBearer": []}]

    def errors(*codes):
        names = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 422: "Validation Error"}
        return {str(c): {"description": names[c], "content": copy.deepcopy(err)} for c in codes}

    def ok(schema):
        return {"description": "Successful Response",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    dag_id = {"name": "dag_id", "in": "path", "required": True, "schema": {"type": "string", "title": "Dag Id"}}
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "title": "Run Id"}}
    network_name = {"name": "network_name", "in": "path", "required": True,
                    "schema": {"type": "string", "title": "Network Name"}}
    return {
        "/api/v2/dagctl/whoami": {"get": {
            "tags": ["dagctl"], "summary": "Who Am I", "operationId": "dagctl_whoami",
            "description": "The caller's name and role, and the CSRF token of a browser session.",
            "security": security, "responses": {"200": ok("DagctlWhoami"), **errors(401)}}},
        "/api/v2/dagctl/token": {"post": {
            "tags": ["dagctl"], "summary": "Issue Token", "operationId": "dagctl_issue_token",
            "description": "An API token for the signed-in user (for single sign-on users, who have no password).",
            "security": security,
            "responses": {"201": ok("DagctlToken"), **errors(401, 403)}}},
        "/api/v2/dagctl/dags/{dag_id}/grid": {"get": {
            "tags": ["dagctl"], "summary": "Grid", "operationId": "dagctl_grid",
            "description": "A page of runs (newest first) with the state of every task; tasks in topological order.",
            "security": security,
            "parameters": [dag_id,
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}},
                           {"name": "offset", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0, "default": 0}}],
            "responses": {"200": ok("DagctlGrid"), **errors(401, 403, 404, 422)}}},
        "/api/v2/dagctl/networks/{network_name}/series": {"get": {
            "tags": ["dagctl"], "summary": "Network Series", "operationId": "dagctl_network_series",
            "description": "Monitor samples of a network's nodes, oldest first (dagctl net samples).",
            "security": security,
            "parameters": [network_name,
                           {"name": "metric", "in": "query", "required": False, "schema": {"type": "string"}},
                           {"name": "node", "in": "query", "required": False, "schema": {"type": "string"}},
                           {"name": "from", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "date-time"}},
                           {"name": "to", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "date-time"}},
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000}}],
            "responses": {"200": ok("DagctlNetworkSeries"), **errors(401, 403, 404, 422)}}},
        "/api/v2/dagctl/networks/{network_name}/alerts": {"get": {
            "tags": ["dagctl"], "summary": "Network Alerts", "operationId": "dagctl_network_alerts",
            "description": "WARN and ERROR patterns of a network's node logs with their counts, most recent first.",
            "security": security,
            "parameters": [network_name,
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": ok("DagctlNetworkAlerts"), **errors(401, 403, 404, 422)}}},
        "/api/v2/dagctl/runs/{dag_id}/{run_id}/kpis": {"get": {
            "tags": ["dagctl"], "summary": "Run KPIs", "operationId": "dagctl_run_kpis",
            "description": "A run's KPIs computed now (live while it runs): loads, blocks, nodes, alerts, the "
                           "configuration recommendation, trend and regressions (dagctl kpi -o json; docs/kpis.md).",
            "security": security, "parameters": [dag_id, run_id],
            "responses": {"200": ok("DagctlRunKpis"), **errors(401, 403, 404)}}},
        "/api/v2/dagctl/runs/{dag_id}/{run_id}/report.html": {"get": {
            "tags": ["dagctl"], "summary": "Run KPI Report", "operationId": "dagctl_run_report",
            "description": "The run's KPIs as one self-contained HTML page with inline charts (dagctl kpi -o html).",
            "security": security, "parameters": [dag_id, run_id],
            "responses": {"200": {"description": "Successful Response",
                                  "content": {"text/html": {"schema": {"type": "string"}}}},
                          **errors(401, 403, 404)}}},
        "/api/v2/dagctl/dags/{dag_id}/kpi-trend": {"get": {
            "tags": ["dagctl"], "summary": "DAG KPI Trend", "operationId": "dagctl_dag_kpi_trend",
            "description": "The headline KPIs of the DAG's runs that kept them (chain.log_etl), oldest first, and the "
                           "newest run's regressions.",
            "security": security, "parameters": [dag_id],
            "responses": {"200": ok("DagctlKpiTrend"), **errors(401, 403, 404)}}},
        "/api/v2/dagctl/dags/{dag_id}/graph": {"get": {
            "tags": ["dagctl"], "summary": "Graph", "operationId": "dagctl_graph",
            "description": "The DAG's tasks and their dependencies.",
            "security": security, "parameters": [dag_id],
            "responses": {"200": ok("DagctlGraph"), **errors(401, 403, 404)}}},
    }


DAGCTL_SCHEMAS = {
    "DagctlRunKpis": {
        "title": "DagctlRunKpis", "type": "object",
        "properties": {
            "version": {"type": "integer"}, "run": {"type": "object"}, "computed_at": {"type": "string"},
            "network": {"type": ["string", "null"]}, "loads": {"type": "array", "items": {"type": "object"}},
            "blocks": {"type": ["object", "null"]}, "nodes": {"type": "array", "items": {"type": "object"}},
            "alerts": {"type": "array", "items": {"type": "object"}}, "recommendation": {"type": "object"},
            "not_computed": {"type": "array", "items": {"type": "object"}}, "scalars": {"type": "object"},
            "trend": {"type": "array", "items": {"type": "object"}},
            "regressions": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["version", "run", "loads", "nodes", "recommendation", "not_computed"],
    },
    "DagctlKpiTrend": {
        "title": "DagctlKpiTrend", "type": "object",
        "properties": {
            "dag_id": {"type": "string"},
            "runs": {"type": "array", "items": {"type": "object", "properties": {
                "run_id": {"type": "string"}, "computed_at": {"type": "string", "format": "date-time"},
                "values": {"type": "object", "additionalProperties": {"type": "number"}}},
                "required": ["run_id", "computed_at", "values"]}},
            "regressions": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["dag_id", "runs", "regressions"],
    },
    "DagctlNetworkSeries": {
        "title": "DagctlNetworkSeries", "type": "object",
        "properties": {
            "network": {"type": "string"},
            "samples": {"type": "array", "items": {"type": "object", "properties": {
                "at": {"type": "string", "format": "date-time"}, "node": {"type": "string"},
                "metric": {"type": "string"}, "value": {"type": "number"}},
                "required": ["at", "node", "metric", "value"]}},
        },
        "required": ["network", "samples"],
    },
    "DagctlNetworkAlerts": {
        "title": "DagctlNetworkAlerts", "type": "object",
        "properties": {
            "network": {"type": "string"},
            "alerts": {"type": "array", "items": {"type": "object", "properties": {
                "node": {"type": "string"}, "level": {"type": "string", "enum": ["warn", "error"]},
                "pattern": {"type": "string"}, "message": {"type": "string"}, "count": {"type": "integer"},
                "first_at": {"type": "string", "format": "date-time"},
                "last_at": {"type": "string", "format": "date-time"}},
                "required": ["node", "level", "pattern", "message", "count", "first_at", "last_at"]}},
        },
        "required": ["network", "alerts"],
    },
    "DagctlToken": {
        "title": "DagctlToken", "type": "object",
        "properties": {"access_token": {"type": "string"}, "expires_in": {"type": "integer"}},
        "required": ["access_token", "expires_in"],
    },
    "DagctlWhoami": {
        "title": "DagctlWhoami", "type": "object",
        "properties": {"username": {"type": "string"},
                       "role": {"type": "string", "enum": ["Viewer", "User", "Op", "Admin"]},
                       "csrf_token": {"type": "string"}},
        "required": ["username", "role", "csrf_token"],
    },
    "DagctlGrid": {
        "title": "DagctlGrid", "type": "object",
        "properties": {
            "dag_id": {"type": "string"},
            "tasks": {"type": "array", "items": {"type": "string"}},
            "total_runs": {"type": "integer"},
            "runs": {"type": "array", "items": {"type": "object", "properties": {
                "dag_run_id": {"type": "string"}, "state": {"type": "string"}, "run_type": {"type": "string"},
                "run_after": {"type": "string", "format": "date-time"},
                "logical_date": {"type": ["string", "null"], "format": "date-time"},
                "start_date": {"type": ["string", "null"], "format": "date-time"},
                "end_date": {"type": ["string", "null"], "format": "date-time"},
                "task_instances": {"type": "object", "additionalProperties": {"type": "object"}}},
                "required": ["dag_run_id", "state", "run_type", "run_after", "task_instances"]}},
        },
        "required": ["dag_id", "tasks", "total_runs", "runs"],
    },
    "DagctlGraph": {
        "title": "DagctlGraph", "type": "object",
        "properties": {
            "dag_id": {"type": "string"},
            "nodes": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "operator": {"type": "string"},
                "task_group": {"type": ["string", "null"]}, "trigger_rule": {"type": "string"},
                "retries": {"type": "integer"}, "pool": {"type": "string"}}, "required": ["id", "operator"]}},
            "edges": {"type": "array", "items": {"type": "object", "properties": {
                "source_id": {"type": "string"}, "target_id": {"type": "string"}},
                "required": ["source_id", "target_id"]}},
        },
        "required": ["dag_id", "nodes", "edges"],
    },
}


AUTH_SCHEMAS = {
    "LoginBody": {
        "title": "LoginBody",
        "description": "Username/password login body.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "username": {"title": "Username", "type": "string"},
            "password": {"title": "Password", "type": "string"},
        },
        "required": ["username", "password"],
    },
    "LoginResponse": {
        "title": "LoginResponse",
        "description": "Login response: a JWT access token.",
        "type": "object",
        "properties": {
            "access_token": {"title": "Access Token", "type": "string"},
        },
        "required": ["access_token"],
    },
}


def fix_nullable(node, in_parameter=False):
    """Rewrite OpenAPI 3.0 `nullable: true` into OpenAPI 3.1 / JSON Schema."""
    if isinstance(node, list):
        return [fix_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: fix_nullable(v) for k, v in node.items()}
    if "nullable" not in node:
        return node
    nullable = node.pop("nullable")
    if not nullable or in_parameter:
        return node
    if "$ref" in node:
        ref = node.pop("$ref")
        node["anyOf"] = [{"$ref": ref}, {"type": "null"}]
    elif "type" in node:
        t = node["type"]
        types = list(t) if isinstance(t, list) else [t]
        if "null" not in types:
            types.append("null")
        node["type"] = types
        if "enum" in node and None not in node["enum"]:
            node["enum"] = list(node["enum"]) + [None]
    elif "anyOf" in node or "oneOf" in node:
        key = "anyOf" if "anyOf" in node else "oneOf"
        if {"type": "null"} not in node[key]:
            node[key] = node[key] + [{"type": "null"}]
    else:
        raise SystemExit(f"don't know how to make nullable: {node!r}")
    return node


def fix_parameter(param):
    param = copy.deepcopy(param)
    if "schema" in param:
        # Top level of a parameter schema: drop nullable (see module doc);
        # nested schemas are converted normally.
        param["schema"] = fix_nullable(param["schema"], in_parameter=True)
    return param


def collect_refs(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref)
        for v in node.values():
            collect_refs(v, out)
    elif isinstance(node, list):
        for v in node:
            collect_refs(v, out)


def build(spec):
    src_paths = spec["paths"]
    paths = {}
    report = []  # human-readable notes, printed to stderr
    for (method, path), wanted in KEEP.items():
        try:
            src = src_paths[path][method.lower()]
        except KeyError:
            raise SystemExit(f"{method} {path}: not in the input spec")
        op = {k: copy.deepcopy(src[k]) for k in OP_KEYS if k in src}
        if "security" not in op:
            op["security"] = []

        params_src = src.get("parameters", [])
        src_query = [p["name"] for p in params_src if p["in"] == "query"]
        added = ADDED_PARAMS.get((method, path), {})
        for name in wanted:
            if name not in src_query and name not in added and name not in OPTIONAL_IF_MISSING:
                raise SystemExit(f"{method} {path}: query parameter {name!r} not in the input spec")

        params = []
        for p in params_src:
            if p["in"] == "path" or (p["in"] == "query" and p["name"] in wanted):
                params.append(fix_parameter(p))
        for name, definition in added.items():
            if name in src_query:
                report.append(f"{method} {path}: {name} exists upstream; kept Airflow's definition")
                continue
            report.append(f"{method} {path}: added query parameter {name!r} (not in Airflow's spec)")
            pos = next((i + 1 for i, p in enumerate(params) if p["name"] == "offset"), len(params))
            params.insert(pos, copy.deepcopy(definition))
        if params:
            op["parameters"] = params

        dropped = [n for n in src_query if n not in wanted]
        headers = [p["name"] for p in params_src if p["in"] == "header"]
        report.append(
            f"{method} {path}: dropped query params: {', '.join(dropped) or '-'}"
            + (f"; dropped header params: {', '.join(headers)}" if headers else "")
        )
        for key in ("requestBody", "responses"):
            if key in op:
                op[key] = fix_nullable(op[key])
        paths.setdefault(path, {})[method.lower()] = op

    paths["/auth/token"] = auth_token_path()
    paths.update(dagctl_paths())

    # Transitive closure of referenced component schemas.
    src_schemas = dict(spec["components"]["schemas"])
    for name in list(AUTH_SCHEMAS) + list(DAGCTL_SCHEMAS):
        if name in src_schemas:
            raise SystemExit(f"schema {name} already exists in the input spec")
    src_schemas.update(AUTH_SCHEMAS)
    src_schemas.update(DAGCTL_SCHEMAS)
    prefix = "#/components/schemas/"
    todo = set()
    collect_refs(paths, todo)
    seen = set()
    while todo:
        ref = todo.pop()
        if not ref.startswith(prefix):
            raise SystemExit(f"unsupported $ref {ref}")
        name = ref[len(prefix):]
        if name in seen:
            continue
        if name not in src_schemas:
            raise SystemExit(f"dangling $ref {ref}")
        seen.add(name)
        collect_refs(src_schemas[name], todo)
    schemas = {n: fix_nullable(copy.deepcopy(src_schemas[n])) for n in sorted(seen)}

    info = spec.get("info", {})
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "The subset of Airflow 3's public REST API (`/api/v2`) that "
                "dagctl implements, plus `POST /auth/token` for obtaining a "
                "JWT. Generated by web/openapi/build_subset.py from Airflow's "
                "generated OpenAPI spec; operations, parameters and schemas "
                "keep Airflow's names and shapes."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": copy.deepcopy(spec["components"]["securitySchemes"]),
        },
        "x-dagctl": {
            "derived_from": {
                "title": info.get("title"),
                "version": str(info.get("version")),
                "openapi": str(spec.get("openapi")),
            },
            "note": (
                f"Derived from Airflow's generated REST API spec "
                f"('{info.get('title')}', info.version {info.get('version')}) "
                f"by web/openapi/build_subset.py. nullable:true was rewritten "
                f"to OpenAPI 3.1 null types; header parameters and the input's "
                f"top-level security were dropped."
            ),
        },
    }
    # Sanity: every $ref in the output resolves inside it.
    refs = set()
    collect_refs(doc, refs)
    missing = sorted(r for r in refs if r[len(prefix):] not in schemas)
    if missing:
        raise SystemExit(f"unresolved refs: {missing}")
    return doc, report


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    doc, report = build(spec)
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    n_ops = sum(len(v) for v in doc["paths"].values())
    for line in report:
        sys.stderr.write(line + "\n")
    sys.stderr.write(
        f"wrote {argv[2]}: {n_ops} operations, "
        f"{len(doc['components']['schemas'])} schemas\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
