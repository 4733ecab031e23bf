//! KPIs of real runs: the `nightly-benchmark` example as shipped (shortened by `--conf`) on a geth 1.13 Clique
//! network of three signers and a member, monitored while loaded, then `chain.log_etl` and `dagctl kpi`. Every KPI
//! is recomputed from the raw data (the records file, the stored samples) by an independent Python script
//! (`tests/kpi/recompute.py`) and compared. geth comes from `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`, Python from
//! `DAGCTL_PYTHON`; without them the tests fail.

mod common;

use std::process::Command;

use common::{stderr, stdout, Home};
use serde_json::Value;

/// `a` within `rel` (relative) plus `abs` of `b`.
fn close(what: &str, a: f64, b: f64, rel: f64, abs: f64) {
    assert!(
        (a - b).abs() <= b.abs() * rel + abs,
        "{what}: dagctl says {a}, the recomputation {b}"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_nightly_benchmark_s_kpis_match_an_independent_recomputation() {
    let home = Home::new();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags/nightly-benchmark.yaml");
    std::fs::copy(&source, home.dags().join("nightly-benchmark.yaml")).unwrap();
    let output = home
        .command()
        .env("DAGCTL_GETH", common::client_binary("geth", "DAGCTL_GETH"))
        .args([
            "dags",
            "test",
            "nightly-benchmark",
            "--conf",
            r#"{"rate": 60, "length": "12s"}"#,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    // The monitor watched until the teardown stopped it; the ETL ran before the teardown.
    assert!(
        text.contains("--- nightly-benchmark.monitor try 1: success ---"),
        "{text}"
    );
    assert!(
        text.contains("--- nightly-benchmark.teardown try 1: success ---"),
        "{text}"
    );
    // The operator's report is a file the task names.
    let report = text
        .lines()
        .find_map(|l| l.split_once("{kpi} INFO - report: ").map(|(_, p)| p.trim().to_string()))
        .unwrap_or_else(|| panic!("no report line: {text}"));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"), "{report}");

    let runs = home.json(&["dags", "list-runs", "nightly-benchmark"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let kpis = home.json(&["kpi", "nightly-benchmark", &run_id]);
    assert_eq!(kpis["run"]["state"], "success", "{kpis}");
    let network = kpis["network"].as_str().unwrap().to_string();
    let load = &kpis["loads"][0];
    assert_eq!(load["task_id"], "load");
    let records = load["file"].as_str().unwrap().to_string();

    // The raw data, and the recomputation.
    let samples = home.ok(&["net", "samples", &network, "--limit", "1000000", "-o", "json"]);
    let samples_file = home.path().join("samples.json");
    std::fs::write(&samples_file, &samples).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kpi/recompute.py");
    let out = Command::new(common::python())
        .arg(&script)
        .arg(&records)
        .arg(&samples_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (el, en) = (&expected["load"], &expected["network"]);

    // Calls: counts exact, rates to rounding, percentiles within the HDR histograms' 0.1%.
    assert_eq!(load["errors"]["calls"], el["calls"], "{load}");
    assert_eq!(load["errors"]["failed"], el["failed"]);
    assert_eq!(load["errors"]["by_response"], el["errors"]);
    for key in ["send_rate", "throughput", "reads_per_second"] {
        close(key, f(&load["throughput"][key]), f(&el[key]), 1e-6, 1e-9);
    }
    let rows = load["latency"].as_array().unwrap();
    let expected_rows = el["latency"].as_array().unwrap();
    assert_eq!(rows.len(), expected_rows.len(), "{rows:?} vs {expected_rows:?}");
    for (row, want) in rows.iter().zip(expected_rows) {
        assert_eq!(
            (&row["kind"], &row["response"], &row["count"]),
            (&want["kind"], &want["response"], &want["count"])
        );
        for (ours, theirs) in [
            ("min", "min_ms"),
            ("p50", "p50_ms"),
            ("p90", "p90_ms"),
            ("p99", "p99_ms"),
            ("max", "max_ms"),
        ] {
            close(
                &format!("{} {} {ours}", row["kind"], row["response"]),
                f(&row["latency_ms"][ours]),
                f(&want[theirs]),
                0.002,
                0.002,
            );
        }
    }
    // Transactions.
    let tx = &load["transactions"];
    let etx = &el["tx"];
    for key in ["sent", "included", "confirmed"] {
        assert_eq!(tx[key], etx[key], "{key}");
    }
    assert!(f(&tx["included"]) > 100.0, "{tx}");
    for key in ["tps_sent", "tps_included"] {
        close(key, f(&load["throughput"][key]), f(&etx[key]), 1e-6, 1e-9);
    }
    close(
        "inclusion p50",
        f(&tx["inclusion_ms"]["p50"]),
        f(&etx["inclusion_p50_ms"]),
        0.002,
        0.002,
    );
    close(
        "inclusion p99",
        f(&tx["inclusion_ms"]["p99"]),
        f(&etx["inclusion_p99_ms"]),
        0.002,
        0.002,
    );

    // Blocks: from arrivals, Clique at 2 s.
    let blocks = &kpis["blocks"];
    assert_eq!(blocks["blocks"], en["blocks"]);
    assert!(f(&blocks["blocks"]) >= 5.0, "{blocks}");
    let bt = &blocks["block_time_s"];
    let ebt = &en["block_time"];
    for key in ["count", "mean", "stddev", "p50", "p99", "max"] {
        close(&format!("block time {key}"), f(&bt[key]), f(&ebt[key]), 1e-9, 1e-9);
    }
    close("block time near 2 s", f(&bt["mean"]), 2.0, 0.1, 0.0);
    close(
        "empty share",
        f(&blocks["empty_share"]),
        f(&en["empty_share"]),
        1e-9,
        1e-12,
    );
    close(
        "gas mean",
        f(&blocks["gas_used_ratio"]["mean"]),
        f(&en["gas_ratio_mean"]),
        1e-9,
        1e-12,
    );
    close(
        "gas peak",
        f(&blocks["gas_used_ratio"]["peak"]),
        f(&en["gas_ratio_peak"]),
        1e-9,
        1e-12,
    );

    // Nodes.
    let nodes = kpis["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    for node in nodes {
        let name = node["node"].as_str().unwrap();
        let want = &en["nodes"][name];
        close(
            &format!("{name} up"),
            f(&node["up_share"]),
            f(&want["up_share"]),
            1e-9,
            1e-12,
        );
        let (p, ep) = (&node["propagation_ms"], &want["propagation"]);
        for key in ["count", "p50", "p99", "max"] {
            close(
                &format!("{name} propagation {key}"),
                f(&p[key]),
                f(&ep[key]),
                1e-6,
                1e-3,
            );
        }
        assert!(f(&p["p99"]) < 5000.0, "{name}: {p}");
        assert_eq!(node["peers"]["changes"], want["peers"]["changes"], "{name}");
        assert_eq!(node["peers"]["max"], want["peers"]["max"], "{name}");
        assert_eq!(f(&node["peers"]["max"]), 3.0, "{name} peers with the three others");
        close(
            &format!("{name} pool peak"),
            f(&node["txpool_pending_peak"]),
            f(&want["txpool_pending_peak"]),
            0.0,
            0.0,
        );
        for metric in ["cpu_percent", "rss_bytes", "disk_write_bytes_per_second"] {
            for key in ["mean", "peak"] {
                close(
                    &format!("{name} {metric} {key}"),
                    f(&node["resources"][metric][key]),
                    f(&want["resources"][metric][key]),
                    1e-9,
                    1e-9,
                );
            }
            close(
                &format!("{name} {metric} per 1,000 TPS"),
                f(&node["per_1000_tps"][metric]),
                f(&want["per_1000_tps"][metric]),
                1e-6,
                1e-9,
            );
        }
        assert!(
            f(&node["resources"]["rss_bytes"]["peak"]) > 10e6,
            "{name}: geth uses memory"
        );
    }
    // The recommendation used windows of the load, with every node's use in each.
    let windows = kpis["recommendation"]["windows"].as_array().unwrap();
    assert!(
        windows.len() >= 2 && windows.len() <= 3,
        "12 s in slices of 5 s: {windows:?}"
    );
    assert!(
        windows.iter().all(|w| w["nodes"].as_object().unwrap().len() == 4),
        "{windows:?}"
    );
    assert!(kpis["recommendation"]["bottleneck"]["text"].is_string(), "{kpis}");

    // The HTML report from the command: self-contained, with drawn charts.
    let html = home.ok(&["kpi", &run_id, "-o", "html"]);
    assert!(
        !html.contains("<script") && !html.contains(" src=") && !html.contains("href=\"http"),
        "not self-contained"
    );
    assert!(html.matches("<path d=\"M").count() >= 8, "charts with lines");
    assert!(html.contains("Block time (s, from arrivals)") && html.contains("class=\"bar\""));
    assert!(html.contains(&network));

    // A records file cut short: the KPIs say so and keep every whole record.
    let bytes = std::fs::read(&records).unwrap();
    std::fs::write(&records, &bytes[..bytes.len() - 7]).unwrap();
    let cut = home.json(&["kpi", &run_id]);
    let notes = cut["loads"][0]["notes"].to_string();
    assert!(notes.contains("25 bytes of a record cut short"), "{notes}");
    assert_eq!(f(&cut["loads"][0]["records"]), f(&load["records"]) - 1.0);
    // A records file gone: a reason, not a failure.
    std::fs::remove_file(&records).unwrap();
    let gone = home.json(&["kpi", &run_id]);
    let reasons = gone["not_computed"].to_string();
    assert!(
        reasons.contains("cannot read") && reasons.contains("throughput, latency, errors"),
        "{reasons}"
    );
    assert!(
        gone["blocks"]["blocks"].as_u64().unwrap() >= 5,
        "what was there is still computed"
    );
}

/// Runs that give little: no load and no network, an unknown run, bad flags.
#[test]
fn a_run_without_load_or_network_says_what_it_could_not_compute() {
    let home = Home::new();
    home.write_dag(
        "plain.yaml",
        "plain:\n  default_args: {owner: qa, start_date: 2026-11-01}\n  tasks:\n    hello:\n      operator: bash\n      bash_command: echo hi\n",
    );
    home.ok(&["dags", "test", "plain"]);
    let runs = home.json(&["dags", "list-runs", "plain"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let kpis = home.json(&["kpi", &run_id]);
    assert!(kpis["loads"].as_array().unwrap().is_empty());
    assert!(kpis["blocks"].is_null() && kpis["nodes"].as_array().unwrap().is_empty());
    let reasons: Vec<&str> = kpis["not_computed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kpi"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["throughput, latency, errors", "blocks, propagation, resources"]
    );
    let table = home.ok(&["kpi", "plain", &run_id]);
    assert!(
        table.contains("not computed: blocks, propagation, resources: the run has no network"),
        "{table}"
    );
    let html = home.ok(&["kpi", &run_id, "-o", "html"]);
    assert!(html.contains("Not computed") && html.ends_with("</html>\n"));
    for (args, expected) in [
        (vec!["kpi", "nope"], "no run `nope`"),
        (vec!["kpi", "plain", "nope"], "no run `nope` of DAG `plain`"),
        (
            vec!["kpi", &run_id, "--target-tps", "0"],
            "--target-tps: must be a positive number",
        ),
        (
            vec!["kpi", &run_id, "--max-error-rate", "2"],
            "--max-error-rate: must be between 0 and 1",
        ),
    ] {
        let output = home.run(&args);
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // The operator's arguments are checked when the file is loaded.
    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    k:\n      operator: chain.log_etl\n      max_error_rate: 3\n    k2:\n      operator: chain.log_etl\n      target: 1\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success());
    assert!(
        text.contains("bad.yaml:5: dag `bad`, task `k`, key `max_error_rate`"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:8: dag `bad`, task `k2`, key `target`: unknown argument"),
        "{text}"
    );
}

/// `dagctl bench kpi` on a small run: both figures with their baselines, and the ETL read what was written.
#[test]
fn bench_kpi_reports_each_figure_with_a_baseline() {
    let home = Home::new();
    let rows = home.json(&["bench", "kpi", "--calls", "200000", "--minutes", "3"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0]["figure"]
            .as_str()
            .unwrap()
            .starts_with("KPIs of 200000 calls + 3 min of 4 nodes"),
        "{rows:?}"
    );
    assert_eq!(rows[0]["baseline"], "reading every record and sample once");
    assert_eq!(rows[1]["baseline"], "records file size");
    for row in rows {
        assert!(f(&row["value"]) > 0.0 && f(&row["baseline_value"]) > 0.0, "{row}");
        assert!(f(&row["ratio_to_baseline"]) > 0.0, "{row}");
    }
    let output = home.run(&["bench", "kpi", "--calls", "0"]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim(),
        "error: --calls, --minutes and --nodes must be more than zero"
    );
}
