//! `dagctl certify` and `chain.certify` on a real four-signer geth 1.13 Clique network: a short profile of
//! hostile JSON-RPC requests, a pause under load, a JSON-RPC flood, low-fee spam, a signer's clock skewed under
//! dagctl's clock supervisor and the exposure audit, scored, sealed, signed and verified; a changed report or another key fails verification.
//! Checks that can fail: every scenario's status and criteria, the 16 MiB request refused with 413, the load's
//! calls counted, the score recomputed here from the criteria, no fault left in place. geth comes from
//! `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`; without it the test fails.

mod common;

use common::{stderr, stdout, Home};
use serde_json::Value;
use sha2::Digest;

const PROFILE: &str = r#"# A short profile for the test.
profile: short
version: 1
scenarios:
  - name: malformed-rpc
    weight: 20
    attack: {target: validator-1, malformed_rpc: {}}
    pass: {baseline: 4s, grace: 30s}
  - name: pause
    weight: 20
    faults:
      - {pause: {duration: 8s}, target: "validators:1"}
    load: {rate: 20, max_error_rate: 0.5}
    pass: {baseline: 4s, grace: 40s, max_missed: 0.9}
  - name: flood
    weight: 20
    attack: {target: validator-2, rpc_flood: {rate: 200, duration: 4s}}
    pass: {baseline: 3s, grace: 30s, max_missed: 0.9}
  - name: spam
    weight: 20
    attack: {target: validator-3, low_fee_spam: {rate: 30, duration: 14s, funder_key: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"}}
    pass: {baseline: 3s, grace: 30s, max_missed: 0.9}
  - name: clock-skew
    weight: 20
    faults:
      - {clock: {offset: +30s, duration: 12s}, target: "validators:1"}
    pass: {baseline: 3s, grace: 60s, max_missed: 0.9}
  - name: exposure
    weight: 20
    audit: {fail_on: high}
"#;

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name}: {report:#}"))
}

fn criterion<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no criterion {name}: {s:#}"))
}

#[test]
fn a_network_is_certified_scored_signed_and_verified() {
    let home = Home::new();
    // Four signers, and the well-known first dev key of Hardhat funded for the spam (a private test network).
    common::geth_clique_network_with(
        &home,
        "certnet",
        4,
        &[
            "--account",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266=1000000000000000000000000",
        ],
    );
    let profile = home.path().join("short.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    let key = home.path().join("operator.key");
    std::fs::write(&key, "4f".repeat(32)).unwrap();
    let report_file = home.path().join("report.json");
    let out = home
        .command()
        .args(["certify", "--network", "certnet", "--seed", "5", "--profile"])
        .arg(&profile)
        .arg("--key")
        .arg(&key)
        .arg("--report")
        .arg(&report_file)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();

    // Inputs: the profile's hash, the network as its nodes say.
    assert_eq!(
        report["profile"]["sha256"],
        hex::encode(sha2::Sha256::digest(PROFILE.as_bytes())),
    );
    assert_eq!(report["network"]["client"], "geth");
    assert!(
        report["network"]["client_version"]
            .as_str()
            .unwrap()
            .starts_with("Geth/"),
        "{report:#}"
    );
    assert_eq!(report["network"]["validators"], 4);

    // Hostile requests: refused, the node alive after each; the 16 MiB body refused by size.
    let malformed = scenario(&report, "malformed-rpc");
    assert_eq!(
        criterion(malformed, "survives_hostile_requests")["passed"],
        true,
        "{malformed:#}"
    );
    assert_eq!(
        criterion(malformed, "refuses_hostile_requests")["passed"],
        true,
        "{malformed:#}"
    );
    let answers = malformed["evidence"]["attack"]["detail"]["answers"]["validator-1"]
        .as_array()
        .unwrap();
    assert_eq!(answers.len(), 11);
    let oversized = answers.iter().find(|a| a["request"] == "oversized_16mib").unwrap();
    assert_eq!(oversized["status"], 413, "{oversized}");
    for c in ["progress", "converged", "recovered"] {
        assert_eq!(criterion(malformed, c)["passed"], true, "{malformed:#}");
    }

    // A pause under load: the fault's report, the load's calls, the verdict.
    let pause = scenario(&report, "pause");
    assert_eq!(
        pause["evidence"]["faults"][0]["nodes"].as_array().map(Vec::len),
        Some(1),
        "{pause:#}"
    );
    assert!(
        pause["evidence"]["load"]["calls"].as_u64().is_some_and(|c| c > 40),
        "{pause:#}"
    );
    for c in ["progress", "converged", "recovered", "load_errors"] {
        assert_eq!(criterion(pause, c)["passed"], true, "{pause:#}");
    }

    // A flood of 200 calls/s for 4 s at validator-2, which answers after it.
    let flood = scenario(&report, "flood");
    let calls = flood["evidence"]["attack"]["detail"]["load"]["calls"].as_u64().unwrap();
    assert!((600..=900).contains(&calls), "{flood:#}");
    assert_eq!(criterion(flood, "attacked_nodes_answer")["passed"], true, "{flood:#}");

    // Lowest-fee spam: the spam ran, and normal-fee transfers sent during it were still included.
    let spam = scenario(&report, "spam");
    assert_eq!(
        criterion(spam, "normal_fee_transfers_included")["passed"],
        true,
        "{spam:#}"
    );
    assert!(
        spam["evidence"]["attack"]["detail"]["spam"]["calls"].as_u64().unwrap() > 200,
        "{spam:#}"
    );
    assert!(
        spam["evidence"]["attack"]["detail"]["probes"].as_array().unwrap().len() >= 3,
        "{spam:#}"
    );

    // A signer 30 s ahead: restarted under the clock supervisor and back; the others carry on, and the network
    // agrees on one chain afterwards.
    let clock = scenario(&report, "clock-skew");
    assert!(clock["status"] == "passed" || clock["status"] == "failed", "{clock:#}");
    let steps: Vec<&str> = clock["evidence"]["faults"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "started again, its clock +30 s off",
            "started again on the host's clock"
        ],
        "{clock:#}"
    );
    for c in ["progress", "converged", "recovered"] {
        assert_eq!(criterion(clock, c)["passed"], true, "{clock:#}");
    }

    let exposure = scenario(&report, "exposure");
    assert!(criterion(exposure, "exposure")["detail"]
        .as_str()
        .unwrap()
        .contains("finding(s)"));

    // The score follows from the criteria: points = weight x passed / judged over the weight that ran.
    let (mut points, mut ran) = (0.0, 0.0);
    for s in report["scenarios"].as_array().unwrap() {
        let criteria = s["criteria"].as_array().unwrap();
        if s["status"] == "not_run" {
            continue;
        }
        let passed = criteria.iter().filter(|c| c["passed"] == true).count() as f64;
        points += 20.0 * passed / criteria.len() as f64;
        ran += 20.0;
    }
    let expected = (1000.0 * points / ran).round() / 10.0;
    assert_eq!(report["score"].as_f64().unwrap(), expected, "{report:#}");
    assert_eq!(report["coverage"], 100.0);
    assert!(
        stdout(&out).contains(&format!(
            "score {} / 100 at 100% coverage",
            report["score"].as_f64().unwrap()
        )),
        "{text}"
    );
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");

    // Verification: the digest and the signature with the operator's public key, the profile that ran.
    let public = report["signature"]["public_key"].as_str().unwrap().to_string();
    let verify = |file: &std::path::Path, extra: &[&str]| {
        home.command()
            .args(["certify", "verify"])
            .arg(file)
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = verify(
        &report_file,
        &["--public-key", &public, "--profile", profile.to_str().unwrap()],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("ok: signed with ed25519 key"), "{}", stdout(&ok));
    let other = verify(&report_file, &["--public-key", &"ab".repeat(32)]);
    assert!(!other.status.success());
    let wrong_profile = verify(&report_file, &["--profile", "gos-v1"]);
    assert!(!wrong_profile.status.success());
    assert!(
        stderr(&wrong_profile).contains("ran a profile with SHA-256"),
        "{}",
        stderr(&wrong_profile)
    );
    let mut changed = report.clone();
    changed["scenarios"][0]["points"] = serde_json::json!(20.0);
    changed["scenarios"][1]["criteria"][0]["detail"] = serde_json::json!("edited");
    let changed_file = home.path().join("changed.json");
    std::fs::write(&changed_file, serde_json::to_string(&changed).unwrap()).unwrap();
    let tampered = verify(&changed_file, &[]);
    assert!(!tampered.status.success());
    assert!(
        stderr(&tampered).contains("digest does not match"),
        "{}",
        stderr(&tampered)
    );

    // chain.certify in a DAG on the same network: the report pushed and written, its digest verifying.
    home.write_dag(
        "certify.yaml",
        &format!(
            "certify_dag:\n  schedule: null\n  tasks:\n    certify:\n      operator: chain.certify\n      network: certnet\n      profile: {}\n      scenarios: [exposure]\n      seed: 3\n",
            profile.display()
        ),
    );
    let dag = home.command().args(["dags", "test", "certify_dag"]).output().unwrap();
    let log = format!("{}{}", stdout(&dag), stderr(&dag));
    assert!(dag.status.success(), "{log}");
    assert!(log.contains("score ") && log.contains("at 100% coverage"), "{log}");
    let written = log
        .split("report ")
        .last()
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let ok = verify(std::path::Path::new(&written), &[]);
    assert!(ok.status.success(), "{written}: {}", stderr(&ok));

    home.ok(&["net", "down", "certnet"]);
}

#[test]
fn bad_profiles_and_arguments_are_one_line_errors() {
    let home = Home::new();
    let bad = home.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "profile: t\nversion: 1\nscenarios:\n  - name: a\n    weight: 1\n    faults:\n      - {pause: {duration: 5s}, target: 'random:0'}\n",
    )
    .unwrap();
    for (args, needle) in [
        (
            vec!["certify", "profile", bad.to_str().unwrap()],
            "bad.yaml:7: scenarios.0.faults.0.target",
        ),
        (
            vec!["certify", "--profile", "nothing.yaml", "--network", "n"],
            "bundled profiles: gos-v1",
        ),
        (vec!["certify", "--profile", "gos-v1"], "--network: which network?"),
        (vec!["certify", "--profile", "gos-v1", "--network", "nope"], "nope"),
        (
            vec!["certify", "--profile", "gos-v1", "--network", "n", "--min-score", "120"],
            "0 to 100",
        ),
    ] {
        let out = home.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let listed = home.ok(&["certify", "profile"]);
    assert!(listed.starts_with("gos v1 (gos-v1 (bundled)), sha256 "), "{listed}");
    assert_eq!(listed.lines().count(), 14, "{listed}");
    // A DAG naming a scenario the profile lacks is refused at import, naming the key.
    home.write_dag(
        "c.yaml",
        "c:\n  tasks:\n    certify: {operator: chain.certify, network: n, profile: gos-v1, scenarios: [nope]}\n",
    );
    let out = home.run(&["dags", "validate"]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("scenarios") && text.contains("no scenario `nope`"),
        "{text}"
    );
}
