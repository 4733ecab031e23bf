#!/usr/bin/env python3
"""Drives dagctl's assets with the OFFICIAL Airflow Python client (apache-airflow-client 3.3.2).

    python airflow_client_assets.py --url http://127.0.0.1:PORT --token TOKEN --uri s3://bucket/key \
        --consumer DAG

Lists the assets and finds URI (named by a DAG), reads its events, creates one through the API
(create_asset_event) and waits until it makes an asset-triggered run of CONSUMER, whose
upstream asset events hold it. Every answer passes the client's own models. Prints "ok: ..." per step;
exits 1 with "FAIL: step ..." on the first failure.
"""

from __future__ import annotations

import argparse
import sys
import time

import airflow_client.client as client
from airflow_client.client.exceptions import ApiException, NotFoundException
from airflow_client.client.models.create_asset_events_body import CreateAssetEventsBody


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    step = "setup"
    try:
        config = client.Configuration(host=args.url.rstrip("/"), access_token=args.token)
        with client.ApiClient(config) as api_client:
            assets = client.AssetApi(api_client)
            runs = client.DagRunApi(api_client)
            step = "get_assets"
            listed = assets.get_assets(limit=100, uri_pattern=args.uri)
            found = [a for a in listed.assets if a.uri == args.uri]
            if len(found) != 1:
                raise RuntimeError(f"{args.uri} not listed once: {listed}")
            asset = found[0]
            if not any(d.dag_id == args.consumer for d in asset.scheduled_dags):
                raise RuntimeError(f"{args.consumer} not in scheduled_dags: {asset.scheduled_dags}")
            print(f"ok: get_assets finds {asset.uri} (id {asset.id}), scheduling {[d.dag_id for d in asset.scheduled_dags]}")
            step = "get_asset"
            one = assets.get_asset(asset.id)
            if one.uri != args.uri:
                raise RuntimeError(f"get_asset answered {one}")
            try:
                assets.get_asset(10**9)
                raise RuntimeError("an unknown asset id was found")
            except NotFoundException:
                pass
            print("ok: get_asset, and 404 for an unknown id")
            step = "get_asset_events"
            before = assets.get_asset_events(asset_id=asset.id, limit=100)
            print(f"ok: get_asset_events: {before.total_entries} event(s) so far")
            step = "create_asset_event"
            made = assets.create_asset_event(CreateAssetEventsBody(asset_id=asset.id, extra={"from": "client"}))
            if made.asset_id != asset.id or made.extra.get("from") != "client":
                raise RuntimeError(f"create_asset_event answered {made}")
            print(f"ok: create_asset_event -> event {made.id}")
            step = "asset-triggered run"
            deadline = time.monotonic() + args.timeout
            while True:
                got = runs.get_dag_runs(args.consumer, limit=100, run_type=["asset_triggered"])
                mine = []
                for run in got.dag_runs:
                    events = runs.get_upstream_asset_events(args.consumer, run.dag_run_id)
                    if any(e.id == made.id for e in events.asset_events):
                        mine.append(run)
                if mine:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no asset-triggered run of {args.consumer} holds event {made.id}: {got}")
                time.sleep(0.5)
            print(f"ok: {args.consumer} ran {mine[0].dag_run_id} (run_type {mine[0].run_type.value}) with the event upstream")
            step = "get_asset_events after"
            after = assets.get_asset_events(asset_id=asset.id, limit=100, order_by=["-timestamp"])
            newest = after.asset_events[0]
            if newest.id != made.id or not any(r.dag_id == args.consumer for r in newest.created_dagruns):
                raise RuntimeError(f"the event's created_dagruns: {newest}")
            print(f"ok: the event lists the run it went into: {[r.run_id for r in newest.created_dagruns]}")
    except (ApiException, Exception) as e:  # noqa: BLE001 - report any failure with its step
        body = getattr(e, "body", "")
        print(f"FAIL: step {step}: {type(e).__name__}: {e} {body or ''}", flush=True)
        return 1
    print("ok: all asset steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
