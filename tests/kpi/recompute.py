#!/usr/bin/env python3
"""Recomputes a run's KPIs from the raw data, independently of dagctl's Rust code, for the KPI tests.

Usage: recompute.py RECORDS_FILE SAMPLES_JSON [WINDOW_FROM_S WINDOW_TO_S]

RECORDS_FILE is a load test's `.calls` file (layout in chain/src/load/record.rs); SAMPLES_JSON the output of
`dagctl net samples NAME -o json` (a list of {at, node, metric, value}). Prints one JSON object with the same
KPIs `dagctl kpi` computes, by the definitions in docs/kpis.md, with exact percentiles (nearest rank over
sorted values: the test allows for the HDR histograms' 0.1%). Standard library only.
"""
import json
import math
import struct
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone

OUTCOMES = {0: "ok", 1: "rpc_error", 2: "http", 3: "timeout", 4: "refused", 5: "reset", 6: "garbage", 7: "dropped"}
NONE32 = 0xFFFFFFFF


def nearest_rank(values, q):
    values = sorted(values)
    if not values:
        return None
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]


def response_name(outcome, code):
    name = OUTCOMES.get(outcome, f"unknown({outcome})")
    if name == "rpc_error":
        return f"rpc_error({code})"
    if name == "http":
        return f"http_{code}"
    return name


def spread(values):
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    return {
        "count": n,
        "mean": mean,
        "stddev": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
        "min": min(values),
        "p50": nearest_rank(values, 0.5),
        "p99": nearest_rank(values, 0.99),
        "max": max(values),
    }


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_time(text):
    """RFC 3339 (a Z or an offset, microseconds at most) as integer microseconds since the epoch."""
    text = text.replace("Z", "+00:00")
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def load_kpis(path):
    with open(path, "rb") as f:
        data = f.read()
    first = data.index(b"\n")
    assert data[:first] == b"dagctl-load-calls 1", data[:first]
    second = data.index(b"\n", first + 1)
    meta = json.loads(data[first + 1:second])
    body = data[second + 1:]
    whole = len(body) // 32 * 32
    kinds = meta["kinds"]
    sending = set(meta.get("sending_kinds", []))
    latency = defaultdict(list)
    calls = 0
    failed = 0
    errors = defaultdict(int)
    sent_times = []
    last_done = 0
    reads = 0
    tx = []
    for i in range(0, whole, 32):
        r = body[i:i + 32]
        tag = r[31]
        if tag == 0:
            intended, sent, lat = struct.unpack_from("<III", r, 0)
            kind, outcome = r[12], r[13]
            code = struct.unpack_from("<i", r, 16)[0]
            calls += 1
            name = response_name(outcome, code)
            latency[(kinds[kind], name)].append(max(lat, 1))
            if name != "dropped":
                sent_times.append(sent)
                last_done = max(last_done, sent + lat)
            if name == "ok":
                if kinds[kind] not in sending:
                    reads += 1
            else:
                failed += 1
                errors[name] += 1
        elif tag == 1:
            inclusion, confirmation, pool, sent = struct.unpack_from("<IIII", r, 8)
            tx.append((sent, None if inclusion == NONE32 else inclusion, None if confirmation == NONE32 else confirmation))
    first_sent = min(sent_times) if sent_times else 0
    last_sent = max(sent_times) if sent_times else 0
    answered = len(sent_times)

    def rate(count, seconds):
        return count / seconds if seconds > 0 else 0.0

    rows = []
    for (kind, name), values in sorted(latency.items()):
        rows.append({
            "kind": kind,
            "response": name,
            "count": len(values),
            "min_ms": min(values) / 1000,
            "p50_ms": nearest_rank(values, 0.5) / 1000,
            "p90_ms": nearest_rank(values, 0.9) / 1000,
            "p99_ms": nearest_rank(values, 0.99) / 1000,
            "max_ms": max(values) / 1000,
        })
    result = {
        "started_at": parse_time(meta["started_at"]),
        "calls": calls,
        "failed": failed,
        "errors": dict(errors),
        "send_rate": rate(answered, (last_sent - first_sent) / 1e6),
        "throughput": rate(answered, (last_done - first_sent) / 1e6),
        "reads_per_second": rate(reads, (last_done - first_sent) / 1e6),
        "latency": rows,
    }
    if tx:
        included = [t for t in tx if t[1] is not None]
        confirmed = [t for t in tx if t[2] is not None]
        tx_first = min(t[0] for t in tx)
        result["tx"] = {
            "sent": len(tx),
            "included": len(included),
            "confirmed": len(confirmed),
            "tps_sent": rate(len(tx), (max(t[0] for t in tx) - tx_first) / 1e6),
            "tps_included": rate(len(included), (max(t[0] + t[1] for t in included) - tx_first) / 1e6) if included else 0.0,
            "inclusion_p50_ms": nearest_rank([max(t[1], 1) for t in included], 0.5) / 1000 if included else None,
            "inclusion_p99_ms": nearest_rank([max(t[1], 1) for t in included], 0.99) / 1000 if included else None,
        }
    # From the load's start to its last event, in microseconds.
    result["end_us"] = max([last_done] + [t[0] + t[1] for t in tx if t[1] is not None]
                           + [t[0] + t[2] for t in tx if t[2] is not None])
    return result


def network_kpis(samples, load_from, load_to, load_rate):
    by = defaultdict(list)  # (node, metric) -> [(t, value)]
    for s in samples:
        by[(s["node"], s["metric"])].append((parse_time(s["at"]), s["value"]))
    for v in by.values():
        v.sort()
    nodes = sorted({n for (n, _) in by})
    # Blocks: (number, hash48) per node arrival; canonical per number = most nodes, then earliest.
    arrivals = {}
    for (node, metric), points in by.items():
        if metric in ("block_arrival", "block_hash48"):
            for t, v in points:
                slot = arrivals.setdefault((node, t), [None, None])
                slot[0 if metric == "block_arrival" else 1] = int(v)
    blocks = defaultdict(dict)
    for (node, t), (number, h) in arrivals.items():
        if number is None:
            continue
        seen = blocks[(number, h)]
        seen[node] = min(seen.get(node, t), t)
    canonical = {}
    for (number, h), seen in blocks.items():
        key = (len(seen), -min(seen.values()))
        if number not in canonical or key > canonical[number][0]:
            canonical[number] = (key, seen)
    firsts = sorted((n, min(seen.values())) for n, (_, seen) in canonical.items())
    block_times = [(b[1] - a[1]) / 1e6 / (b[0] - a[0]) for a, b in zip(firsts, firsts[1:])]
    delays = defaultdict(list)
    for _, seen in canonical.values():
        if len(seen) >= 2:
            first = min(seen.values())
            for node, t in seen.items():
                delays[node].append((t - first) / 1000)
    gas = defaultdict(dict)
    for (node, metric), points in by.items():
        if metric in ("block_gas_used", "block_gas_limit", "block_empty"):
            for t, v in points:
                gas[(node, t)][metric] = v
    ratios = [g["block_gas_used"] / g["block_gas_limit"] for g in gas.values()
              if "block_gas_used" in g and g.get("block_gas_limit", 0) > 0]
    empties = [g["block_empty"] for g in gas.values() if "block_empty" in g]
    out_nodes = {}
    for node in nodes:
        values = lambda m: [v for _, v in by.get((node, m), [])]
        peers = values("peers")
        up = values("up")
        node_out = {
            "up_share": sum(up) / len(up) if up else None,
            "propagation": spread(delays.get(node, [])),
            "peers": {"min": min(peers), "max": max(peers),
                      "changes": sum(1 for a, b in zip(peers, peers[1:]) if a != b)} if peers else None,
            "txpool_pending_peak": max(values("txpool_pending")) if values("txpool_pending") else None,
            "resources": {},
            "per_1000_tps": {},
        }
        for m in ("cpu_percent", "rss_bytes", "disk_write_bytes_per_second"):
            vs = values(m)
            if vs:
                node_out["resources"][m] = {"mean": sum(vs) / len(vs), "peak": max(vs)}
                inside = [v for t, v in by[(node, m)] if load_from <= t <= load_to]
                if inside and load_rate > 0:
                    node_out["per_1000_tps"][m] = (sum(inside) / len(inside)) / (load_rate / 1000)
        out_nodes[node] = node_out
    return {
        "blocks": len(canonical),
        "block_time": spread(block_times),
        "empty_share": sum(empties) / len(empties) if empties else None,
        "gas_ratio_mean": sum(ratios) / len(ratios) if ratios else None,
        "gas_ratio_peak": max(ratios) if ratios else None,
        "nodes": out_nodes,
    }


def main():
    records, samples_path = sys.argv[1], sys.argv[2]
    load = load_kpis(records)
    with open(samples_path) as f:
        samples = json.load(f)
    rate = load["tx"]["tps_included"] if load.get("tx", {}).get("included") else load["throughput"]
    # The load's span on the wall clock, in microseconds (rounded as dagctl rounds it).
    start = load["started_at"]
    load_to = start + round(load["end_us"])
    print(json.dumps({"load": load, "network": network_kpis(samples, start, load_to, rate)}))


if __name__ == "__main__":
    main()
