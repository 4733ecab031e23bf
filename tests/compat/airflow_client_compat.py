#!/usr/bin/env python3
"""Drives a dagctl server with the OFFICIAL Airflow Python client (apache-airflow-client 3.3.2).

    python airflow_client_compat.py --url http://127.0.0.1:PORT --username admin \
        --password PW --dag-id DAG [--timeout 120]

Every API call goes through the client's own Api classes and models, so the server's answers
must pass the client's pydantic models (strict types, required fields, enums). The one exception
is the token: the client has no token helper (its README does a plain POST to /auth/token), so
this script does that POST with urllib, exactly as the README does.

Prints one "ok: ..." line per step. Exit 0 if all pass; on the first failure prints
"FAIL: step ...", the exception and the response body, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import urllib.error
import urllib.request

import airflow_client.client as client
from airflow_client.client.exceptions import ApiException, ConflictException, UnauthorizedException
from airflow_client.client.models.dag_patch_body import DAGPatchBody
from airflow_client.client.models.dag_run_state import DagRunState
from airflow_client.client.models.structured_log_message import StructuredLogMessage
from airflow_client.client.models.task_instance_state import TaskInstanceState
from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody
from airflow_client.client.models.clear_task_instances_body import ClearTaskInstancesBody
from airflow_client.client.models.clear_task_instances_body_task_ids_inner import ClearTaskInstancesBodyTaskIdsInner
from airflow_client.client.models.dag_run_clear_body import DAGRunClearBody
from airflow_client.client.models.dag_run_patch_body import DAGRunPatchBody
from airflow_client.client.models.pool_body import PoolBody
from airflow_client.client.models.pool_patch_body import PoolPatchBody
from airflow_client.client.models.variable_body import VariableBody
from airflow_client.client.models.connection_body import ConnectionBody
from airflow_client.client.models.actions_inner4 import ActionsInner4
from airflow_client.client.models.bulk_body_variable_body import BulkBodyVariableBody
from airflow_client.client.models.bulk_create_action_variable_body import BulkCreateActionVariableBody
from airflow_client.client.exceptions import NotFoundException

PAGE = 100  # Airflow's default [api] maximum_page_limit
MAX_PAGES = 50


class StepFailed(Exception):
    pass


def ok(msg: str) -> None:
    print(f"ok: {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise StepFailed(msg)


def get_token(url: str, username: str, password: str) -> str:
    """POST {url}/auth/token as the client README's get_airflow_client_access_token does."""
    req = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, body = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode("utf-8", "replace")
    check(status == 201, f"POST /auth/token: expected HTTP 201, got {status}: {body[:500]}")
    try:
        token = json.loads(body)["access_token"]
    except (ValueError, KeyError, TypeError) as e:
        raise StepFailed(f"POST /auth/token: no access_token in {body[:500]!r} ({e})") from e
    check(isinstance(token, str) and token != "", f"POST /auth/token: bad access_token {token!r}")
    return token


def raw_body(api, method: str, *args, **kwargs) -> str:
    """Refetch a GET through the client's *_without_preload_content twin, to show what the
    server sent when the client could not deserialize it."""
    try:
        resp = getattr(api, f"{method}_without_preload_content")(*args, **kwargs)
        return f"HTTP {resp.status} {resp.headers.get('content-type')}: {resp.data.decode('utf-8', 'replace')[:3000]}"
    except Exception as e:  # diagnostics only
        return f"(could not refetch raw body: {e!r})"


def call_get(api, method: str, *args, **kwargs):
    """Call a read-only client method; on a deserialization error, also print the raw body."""
    try:
        return getattr(api, method)(*args, **kwargs)
    except ApiException:
        raise
    except Exception as e:
        body = raw_body(api, method, *args, **kwargs)
        raise StepFailed(
            f"{type(api).__name__}.{method} could not be deserialized by the 3.3.2 models: "
            f"{type(e).__name__}: {e}\n  raw response: {body}"
        ) from e


def paginate(fetch, items_attr: str, stop=None):
    """Offset-paginate a list endpoint through the client. fetch(limit, offset) -> collection.
    Stops early when stop(items) is true; bounded to MAX_PAGES pages."""
    items: list = []
    for page in range(MAX_PAGES):
        coll = fetch(PAGE, page * PAGE)
        batch = getattr(coll, items_attr)
        items.extend(batch)
        total = getattr(coll, "total_entries", None)
        if stop is not None and stop(items):
            break
        if len(batch) < PAGE or (total is not None and len(items) >= total):
            break
    return items


def describe(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"{type(e).__name__}: HTTP {e.status} {e.reason}; body: {(e.body or '')[:3000]}"
    return f"{type(e).__name__}: {e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8080")
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--dag-id", required=True)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the run")
    args = ap.parse_args()
    url = args.url.rstrip("/")
    dag_id = args.dag_id

    step = "setup"
    try:
        # a. token + Configuration. host is the server root: every generated resource_path
        # already starts with /api/v2 (e.g. '/api/v2/dags/{dag_id}').
        step = "a. token"
        token = get_token(url, args.username, args.password)
        config = client.Configuration(host=url, access_token=token)
        ok(f"token from POST {url}/auth/token ({len(token)} chars)")

        with client.ApiClient(config) as api_client:
            dag_api = client.DAGApi(api_client)
            run_api = client.DagRunApi(api_client)
            ti_api = client.TaskInstanceApi(api_client)

            # b. version + health
            step = "b. version"
            version = call_get(client.VersionApi(api_client), "get_version")
            ok(f"version {version.version} (git_version {version.git_version})")
            step = "b. monitor health"
            health = call_get(client.MonitorApi(api_client), "get_health")
            ok(
                "health metadatabase=%s scheduler=%s triggerer=%s"
                % (health.metadatabase.status, health.scheduler.status, health.triggerer.status)
            )

            # c. list DAGs
            step = "c. get_dags"
            dags = paginate(
                lambda limit, offset: call_get(dag_api, "get_dags", limit=limit, offset=offset),
                "dags",
                stop=lambda items: any(d.dag_id == dag_id for d in items),
            )
            check(any(d.dag_id == dag_id for d in dags), f"{dag_id} not in get_dags: {[d.dag_id for d in dags]}")
            ok(f"get_dags lists {dag_id} ({len(dags)} DAGs read)")

            # d. pause, then unpause
            for want in (True, False):
                step = f"d. patch_dag is_paused={want}"
                resp = dag_api.patch_dag(dag_id, DAGPatchBody(is_paused=want), update_mask=["is_paused"])
                check(resp.is_paused is want, f"patch_dag returned is_paused={resp.is_paused}, wanted {want}")
                got = call_get(dag_api, "get_dag", dag_id)
                check(got.is_paused is want, f"get_dag after patch says is_paused={got.is_paused}, wanted {want}")
                ok(f"patch_dag(update_mask=['is_paused']) -> is_paused={want}, get_dag agrees")

            step = "d. get_dag_details"
            details = call_get(dag_api, "get_dag_details", dag_id)
            ok(f"get_dag_details catchup={details.catchup} concurrency={details.concurrency}")

            # e. trigger (the client sends "logical_date": null)
            step = "e. trigger_dag_run"
            body = TriggerDAGRunPostBody(conf={"greeting": "from-airflow-client"}, logical_date=None)
            check(body.to_dict().get("logical_date", "absent") is None, f"client body {body.to_dict()}")
            run = run_api.trigger_dag_run(dag_id, body)
            run_id = run.dag_run_id
            check(run.dag_id == dag_id, f"trigger returned dag_id {run.dag_id}")
            check(run.conf == {"greeting": "from-airflow-client"}, f"trigger returned conf {run.conf}")
            ok(f"trigger_dag_run -> {run_id} state={run.state.value} run_type={run.run_type.value}")

            # f. poll the run
            step = "f. get_dag_run (poll)"
            deadline = time.monotonic() + args.timeout
            polls = 0
            while True:
                run = call_get(run_api, "get_dag_run", dag_id, run_id)
                polls += 1
                if run.state == DagRunState.SUCCESS:
                    break
                check(run.state != DagRunState.FAILED, f"run {run_id} failed")
                check(
                    time.monotonic() < deadline,
                    f"run {run_id} still {run.state.value} after {args.timeout}s",
                )
                time.sleep(0.5)
            ok(f"run {run_id} success after {polls} polls (start {run.start_date}, end {run.end_date})")

            # g. task instances
            step = "g. get_task_instances"
            tis = paginate(
                lambda limit, offset: call_get(
                    ti_api, "get_task_instances", dag_id, run_id, limit=limit, offset=offset
                ),
                "task_instances",
            )
            check(len(tis) >= 1, "no task instances")
            bad = [(t.task_id, t.state.value if t.state else None) for t in tis if t.state != TaskInstanceState.SUCCESS]
            check(not bad, f"task instances not success: {bad}")
            ok(f"{len(tis)} task instances, all success: {sorted(t.task_id for t in tis)}")

            # h. log of the first task instance, try 1, structured JSON form (the client's
            # default Accept for get_log is application/json)
            step = "h. get_log"
            ti = tis[0]
            log = call_get(ti_api, "get_log", dag_id, run_id, ti.task_id, 1, full_content=True, map_index=ti.map_index)
            lines = log.content.actual_instance or []
            text = [
                (m.event if isinstance(m, StructuredLogMessage) else str(m)) for m in lines
            ]
            check(any(t.strip() for t in text), f"log of {ti.task_id} try 1 has no content: {lines!r}")
            ok(f"get_log {ti.task_id} try 1: {len(lines)} lines")
            for m in lines[:5]:
                if isinstance(m, StructuredLogMessage):
                    print(f"    {m.timestamp} {m.event}")
                else:
                    print(f"    {m}")

            # i. cross-DAG runs, import errors, pools, event logs
            step = "i. get_dag_runs(~)"
            runs = paginate(
                lambda limit, offset: call_get(run_api, "get_dag_runs", "~", limit=limit, offset=offset),
                "dag_runs",
                stop=lambda items: any(r.dag_run_id == run_id and r.dag_id == dag_id for r in items),
            )
            check(
                any(r.dag_run_id == run_id and r.dag_id == dag_id for r in runs),
                f"run {run_id} not in get_dag_runs('~') ({len(runs)} runs read)",
            )
            ok(f"get_dag_runs('~') lists {run_id} ({len(runs)} runs read)")

            step = "i. get_dag_versions"
            version_api = client.DagVersionApi(api_client)
            versions = call_get(version_api, "get_dag_versions", dag_id, limit=PAGE)
            check(versions.total_entries >= 1, f"get_dag_versions: {versions}")
            first = versions.dag_versions[0]
            check(first.dag_id == dag_id and first.version_number == 1, f"first version {first}")
            one = call_get(version_api, "get_dag_version", dag_id, first.version_number)
            check(one.id == first.id and one.bundle_name == "dags-folder", f"get_dag_version: {one}")
            ok(f"get_dag_versions: {versions.total_entries} version(s), v1 bundle_version={first.bundle_version!r}")

            step = "i. get_import_errors"
            ie = call_get(client.ImportErrorApi(api_client), "get_import_errors", limit=PAGE)
            ok(f"get_import_errors: total_entries={ie.total_entries}")

            step = "i. get_pools"
            pools = call_get(client.PoolApi(api_client), "get_pools", limit=PAGE)
            names = [p.name for p in pools.pools]
            ok(f"get_pools: total_entries={pools.total_entries} {names}")

            step = "i. get_event_logs"
            ev_api = client.EventLogApi(api_client)

            def mentions(e) -> bool:
                return e.dag_id == dag_id or dag_id in (e.event or "") or dag_id in (e.extra or "")

            events = paginate(
                lambda limit, offset: call_get(ev_api, "get_event_logs", dag_id=dag_id, limit=limit, offset=offset),
                "event_logs",
                stop=lambda items: any(mentions(e) for e in items),
            )
            hits = [e for e in events if mentions(e)]
            check(hits, f"no event log entry mentions {dag_id} ({len(events)} read)")
            ok(f"get_event_logs: {len(hits)} entries mention {dag_id}: {sorted({e.event for e in hits})}")

            # j. bad token -> 401
            step = "j. bad token"
            bad_config = client.Configuration(host=url, access_token="not-a-valid-token")
            with client.ApiClient(bad_config) as bad_client:
                try:
                    client.DAGApi(bad_client).get_dags(limit=1)
                except UnauthorizedException:
                    ok("get_dags with a bad token -> 401 UnauthorizedException")
                except ApiException as e:
                    check(e.status == 401, f"expected 401, got {describe(e)}")
                    ok("get_dags with a bad token -> 401")
                else:
                    raise StepFailed("get_dags with a bad token succeeded")

            # k. duplicate dag_run_id -> 409
            step = "k. trigger_dag_run duplicate dag_run_id"
            try:
                dup = run_api.trigger_dag_run(dag_id, TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None))
            except ConflictException:
                ok(f"trigger with existing dag_run_id {run_id} -> 409 ConflictException")
            except ApiException as e:
                check(e.status == 409, f"expected 409, got {describe(e)}")
                ok(f"trigger with existing dag_run_id {run_id} -> 409")
            else:
                raise StepFailed(f"second trigger with dag_run_id {run_id} succeeded: {dup}")

            # l. clearing through the client's own bodies (which carry every field the model knows)
            # The 3.3.2 client cannot deserialize a dry-run answer from any server: each item of
            # ClearTaskInstanceCollectionResponse is a oneOf of TaskInstanceResponse and NewTaskResponse
            # (task_id + task_display_name only), so every task instance matches both and the generated code
            # raises "Multiple matches found". The client's own *_without_preload_content method reads it raw.
            step = "l. clear_dag_run dry_run"
            raw = run_api.clear_dag_run_without_preload_content(dag_id, run_id, DAGRunClearBody(dry_run=True))
            check(raw.status == 200, f"dry-run clear answered {raw.status}")
            listed = json.loads(raw.data)["task_instances"]
            check(len(listed) >= 1 and all("task_id" in t for t in listed), f"dry-run clear listed {listed}")
            ok(f"clear_dag_run(dry_run=True) lists {len(listed)} task instances (read raw: client oneOf bug)")
            step = "l. post_clear_task_instances"
            first_task = tis[0].task_id
            body = ClearTaskInstancesBody(
                dry_run=False,
                dag_run_id=run_id,
                only_failed=False,
                task_ids=[ClearTaskInstancesBodyTaskIdsInner(first_task)],
                include_downstream=True,
            )
            resp = ti_api.post_clear_task_instances(dag_id, body)
            check(len(resp.task_instances) >= 1, f"clear returned {resp.task_instances}")
            ok(f"post_clear_task_instances cleared {len(resp.task_instances)} task instances from {first_task}")
            step = "l. the cleared run succeeds again"
            deadline = time.monotonic() + args.timeout
            while True:
                run = call_get(run_api, "get_dag_run", dag_id, run_id)
                if run.state == DagRunState.SUCCESS:
                    break
                check(run.state != DagRunState.FAILED, f"run {run_id} failed after the clear")
                check(time.monotonic() < deadline, f"run {run_id} still {run.state.value} after the clear")
                time.sleep(0.5)
            ok(f"run {run_id} succeeded again after the clear")
            step = "l. patch_dag_run note"
            patched = run_api.patch_dag_run(dag_id, run_id, DAGRunPatchBody(note="checked by the client"), update_mask=["note"])
            check(patched.note == "checked by the client", f"note is {patched.note!r}")
            ok("patch_dag_run(update_mask=['note']) sets the note")

            # m. pools through the client
            step = "m. pools"
            pool_api = client.PoolApi(api_client)
            created = pool_api.post_pool(PoolBody(name="compat-pool", slots=2, description="made by the client"))
            check(created.slots == 2 and created.open_slots == 2, f"created {created}")
            changed = pool_api.patch_pool("compat-pool", PoolPatchBody(slots=5), update_mask=["slots"])
            check(changed.slots == 5, f"patched {changed}")
            pool_api.delete_pool("compat-pool")
            ok("post_pool, patch_pool(update_mask=['slots']) and delete_pool")

            # n. variables through the client
            step = "n. variables"
            var_api = client.VariableApi(api_client)
            created = var_api.post_variable(VariableBody(key="compat_region", value="eu-west", description="from the client"))
            check(created.key == "compat_region" and created.value == "eu-west" and created.is_encrypted, f"created {created}")
            got = call_get(var_api, "get_variable", "compat_region")
            check(got.value == "eu-west" and got.description == "from the client", f"got {got}")
            patched = var_api.patch_variable(
                "compat_region", VariableBody(key="compat_region", value="us-east"), update_mask=["value"]
            )
            check(patched.value == "us-east" and patched.description == "from the client", f"patched {patched}")
            try:
                var_api.post_variable(VariableBody(key="compat_region", value="again"))
                raise StepFailed("a second post_variable of one key succeeded")
            except ConflictException:
                pass
            bulk = var_api.bulk_variables(
                BulkBodyVariableBody(
                    actions=[
                        ActionsInner4(
                            BulkCreateActionVariableBody(
                                action="create",
                                entities=[VariableBody(key="compat_a", value="1"), VariableBody(key="compat_json", value={"nodes": 4})],
                            )
                        )
                    ]
                )
            )
            check(sorted(bulk.create.success or []) == ["compat_a", "compat_json"], f"bulk {bulk}")
            listed = call_get(var_api, "get_variables", limit=PAGE, variable_key_pattern="compat_%")
            check(sorted(v.key for v in listed.variables) == ["compat_a", "compat_json", "compat_region"], f"listed {listed}")
            check(json.loads(call_get(var_api, "get_variable", "compat_json").value) == {"nodes": 4}, "JSON value")
            for key in ("compat_region", "compat_a", "compat_json"):
                var_api.delete_variable(key)
            try:
                var_api.get_variable("compat_region")
                raise StepFailed("a deleted variable is still there")
            except NotFoundException:
                pass
            ok("post/get/patch/bulk/get_variables/delete_variable, 409 on a taken key, 404 once deleted")

            # o. connections through the client
            step = "o. connections"
            conn_api = client.ConnectionApi(api_client)
            made = conn_api.post_connection(
                ConnectionBody(
                    connection_id="compat_rpc", conn_type="ethereum", host="127.0.0.1", port=8545,
                    password="pw-compat-1", extra='{"chain_id": 1337}',
                )
            )
            check(made.connection_id == "compat_rpc" and made.port == 8545, f"made {made}")
            got = call_get(conn_api, "get_connection", "compat_rpc")
            check(got.password == "pw-compat-1" and json.loads(got.extra) == {"chain_id": 1337}, f"an Admin reads {got}")
            moved = conn_api.patch_connection(
                "compat_rpc", ConnectionBody(connection_id="compat_rpc", conn_type="ethereum", port=8546), update_mask=["port"]
            )
            check(moved.port == 8546 and moved.host == "127.0.0.1" and moved.password == "pw-compat-1", f"patched {moved}")
            listed = call_get(conn_api, "get_connections", limit=PAGE)
            check(any(c.connection_id == "compat_rpc" for c in listed.connections), f"listed {listed}")
            conn_api.delete_connection("compat_rpc")
            ok("post/get/patch(update_mask=['port'])/get_connections/delete_connection")

    except Exception as e:  # noqa: BLE001 - report any failure with its step
        print(f"FAIL: step {step}: {describe(e)}", flush=True)
        if not isinstance(e, (StepFailed, ApiException)):
            traceback.print_exc()
        return 1

    print("ok: all airflow-client compatibility steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
