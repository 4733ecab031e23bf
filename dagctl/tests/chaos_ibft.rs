//! The `chaos-ibft` example as shipped, shortened, on a 4-validator GoQuorum 24.4.1 IBFT network: one validator
//! of four partitioned away leaves a quorum and the others keep making blocks; a 2/2 split leaves none and every
//! head stops, then the network heals; the crash of f = 1 validator does not stop it. Every verdict passes.
//! GoQuorum comes from `DAGCTL_QUORUM` or `DAGCTL_CLIENTS_BIN`; without it the test fails.

mod common;

use common::{section, stderr, Home};

#[test]
fn the_chaos_ibft_example_keeps_going_without_f_and_stops_without_a_quorum() {
    let home = Home::new();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags/chaos-ibft.yaml");
    let text = std::fs::read_to_string(source).unwrap();
    let short = text
        .replace("duration: 2m", "duration: 20s")
        .replace("duration: 1m}", "duration: 15s}")
        .replace("duration: 8m", "duration: 2m")
        .replace("restart_after: 20s", "restart_after: 12s")
        .replace("baseline: 10s", "baseline: 5s");
    assert_ne!(short, text);
    std::fs::write(home.dags().join("chaos-ibft.yaml"), short).unwrap();
    let output = home
        .command()
        .env("DAGCTL_QUORUM", common::client_binary("quorum", "DAGCTL_QUORUM"))
        .args(["dags", "test", "chaos-ibft"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", common::stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("- FAIL "), "{text}");
    // Which untargeted heads advanced once the faults were in place: all three without validator-4, none
    // without a quorum (a round whose messages were all delivered may still commit one block).
    let progress = |task: &str| -> Vec<i64> {
        let log = section(&text, "chaos-ibft", task);
        assert!(log.contains("try 1: success ---"), "{task}: {log}");
        let line = log
            .lines()
            .find(|l| l.contains("PASS progress: from block") && l.contains("heads of untargeted nodes advanced by"))
            .unwrap_or_else(|| panic!("no progress line for {task}: {log}"));
        line.rsplit("advanced by ")
            .next()
            .unwrap()
            .split(", ")
            .map(|part| part.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let without_f = progress("partition_f");
    assert_eq!(without_f.len(), 3);
    assert!(
        without_f.iter().all(|a| *a > 3),
        "three of four keep making blocks: {without_f:?}"
    );
    let without_quorum = progress("partition_quorum");
    assert_eq!(without_quorum.len(), 2);
    assert!(
        without_quorum.iter().all(|a| *a <= 1),
        "no quorum, no blocks: {without_quorum:?}"
    );
    assert!(text.contains("--- chaos-ibft.teardown try 1: success ---"), "{text}");
}
