#!/usr/bin/env python3
"""Drive dagctl's mapped task instances with apache-airflow-client 3.3.2, unchanged.

Usage:
    airflow_client_mapped.py --url URL --username U --password P --dag-id D --run-id R --task-id T --count N

Reads a finished run whose task T is mapped into N successful instances: lists them (get_mapped_task_instances),
reads one (get_mapped_task_instance) and its tries, its log (get_log with map_index) and its XCom
(get_xcom_entry with map_index). The client's own models parse every response, so a shape that differs from
Airflow's fails here. Prints one line per step and exits non-zero at the first failure.
"""

import argparse
import json
import sys
import urllib.request

import airflow_client.client as client


def token_for(url: str, username: str, password: str) -> str:
    req = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def main() -> int:
    ap = argparse.ArgumentParser()
    for name in ("url", "username", "password", "dag-id", "run-id", "task-id"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--count", type=int, required=True)
    args = ap.parse_args()
    url = args.url.rstrip("/")
    config = client.Configuration(host=url, access_token=token_for(url, args.username, args.password))
    with client.ApiClient(config) as api_client:
        tis = client.TaskInstanceApi(api_client)
        listed = tis.get_mapped_task_instances(args.dag_id, args.run_id, args.task_id)
        indexes = [ti.map_index for ti in listed.task_instances]
        check(listed.total_entries == args.count, f"total_entries {listed.total_entries} != {args.count}")
        check(indexes == list(range(args.count)), f"map indexes {indexes}")
        check(all(ti.state == "success" for ti in listed.task_instances), f"states {listed}")
        print(f"ok get_mapped_task_instances: {indexes}")
        one = tis.get_mapped_task_instance(args.dag_id, args.run_id, args.task_id, 1)
        check(one.map_index == 1 and one.task_id == args.task_id, f"instance 1: {one}")
        print(f"ok get_mapped_task_instance: map_index {one.map_index}, try {one.try_number}")
        tries = tis.get_mapped_task_instance_tries(args.dag_id, args.run_id, args.task_id, 1)
        check(tries.total_entries >= 1 and tries.task_instances[0].map_index == 1, f"tries: {tries}")
        print(f"ok get_mapped_task_instance_tries: {tries.total_entries}")
        log = tis.get_log(args.dag_id, args.run_id, args.task_id, one.try_number, map_index=1)
        text = json.dumps(log.to_dict(), default=str)
        check("[1]" in text, f"log of instance 1: {text[:500]}")
        print("ok get_log(map_index=1)")
        entry = client.XComApi(api_client).get_xcom_entry(
            args.dag_id, args.task_id, args.run_id, "return_value", map_index=1
        )
        entry = getattr(entry, "actual_instance", entry)  # the client's oneOf wrapper
        check(entry.map_index == 1 and entry.value == "20", f"xcom: {entry}")
        print(f"ok get_xcom_entry(map_index=1): {entry.value!r}")
    print("all mapped-instance steps passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one readable line, then a non-zero exit
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
