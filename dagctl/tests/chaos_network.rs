//! Network faults (`dagctl chaos netem|partition`) on a real four-signer geth 1.13 Clique network, and faults
//! undone after the process that applied them is SIGKILLed. Checks that can fail: a 500 ms delay on what a member
//! node receives raises how late it sees blocks by about that much, and it goes back after; a 2/2 partition stalls both
//! halves (a Clique signer may seal one block in three) and the network converges on one head after healing;
//! a partition and a pause whose `dagctl chaos` was SIGKILLed stay in place until `dagctl chaos recover` (or an
//! engine start) undoes them. geth comes from `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{rpc, section, stderr, wait_for, Home};
use serde_json::{json, Value};

/// `(name, rpc, pid)` of every node.
fn nodes(home: &Home, network: &str) -> Vec<(String, String, u64)> {
    let shown = home.json(&["net", "show", network]);
    shown["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["rpc"].as_str().unwrap().to_string(),
                n["pid"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn head(url: &str) -> Option<(u64, String)> {
    let block = rpc(url, "eth_getBlockByNumber", json!(["latest", false]))?;
    let number = u64::from_str_radix(block["number"].as_str()?.trim_start_matches("0x"), 16).ok()?;
    Some((number, block["hash"].as_str()?.to_string()))
}

/// When each node first reported each head (by hash: a signer's own fork blocks are seen by it alone), polling
/// every 50 ms for `long`.
fn first_seen(urls: &[String], long: Duration) -> Vec<HashMap<String, Instant>> {
    let handles: Vec<_> = urls
        .iter()
        .cloned()
        .map(|url| {
            std::thread::spawn(move || {
                let mut seen = HashMap::new();
                let end = Instant::now() + long;
                while Instant::now() < end {
                    if let Some((_, hash)) = head(&url) {
                        seen.entry(hash).or_insert_with(Instant::now);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                seen
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The median of how much later node `slow` saw a block than the first of the others did, in seconds.
fn median_lag(urls: &[String], slow: usize, long: Duration) -> f64 {
    let seen = first_seen(urls, long);
    let mut lags: Vec<f64> = seen[slow]
        .iter()
        .filter_map(|(hash, at)| {
            let first = seen
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != slow)
                .filter_map(|(_, s)| s.get(hash))
                .min()?;
            Some(at.duration_since(*first).as_secs_f64() - first.duration_since(*at).as_secs_f64())
        })
        .collect();
    let sizes: Vec<usize> = seen.iter().map(HashMap::len).collect();
    assert!(
        lags.len() >= 3,
        "too few blocks seen by validator-{} and another: {lags:?}; heads seen per node: {sizes:?}",
        slow + 1
    );
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lags[lags.len() / 2]
}

/// Waits until every node is on one chain (the block at the lowest head is the same on all) past `past`.
fn converged(urls: &[String], past: u64, limit: Duration) -> u64 {
    try_converge(urls, past, limit).unwrap_or_else(|seen| panic!("{seen}"))
}

/// [`converged`], or what the nodes were at when `limit` passed.
fn try_converge(urls: &[String], past: u64, limit: Duration) -> Result<u64, String> {
    let began = Instant::now();
    let mut seen = String::new();
    while began.elapsed() < limit {
        let heads: Option<Vec<(u64, String)>> = urls.iter().map(|u| head(u)).collect();
        if let Some(heads) = heads {
            let (lowest, hash) = heads.iter().min_by_key(|h| h.0).cloned().unwrap_or_default();
            let same = urls.iter().all(|u| {
                rpc(u, "eth_getBlockByNumber", json!([format!("0x{lowest:x}"), false]))
                    .is_some_and(|b| b["hash"].as_str() == Some(hash.as_str()))
            });
            if same && lowest > past {
                return Ok(lowest);
            }
            seen = heads
                .iter()
                .zip(urls)
                .map(|((n, h), u)| format!("{n} {} ({} peers)", &h[..h.len().min(10)], peer_count(u)))
                .collect::<Vec<_>>()
                .join(", ");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "not on one chain past block {past} after {limit:?}: heads {seen}"
    ))
}

fn peer_count(url: &str) -> usize {
    rpc(url, "admin_peers", json!([]))
        .and_then(|p| p.as_array().map(Vec::len))
        .unwrap_or(0)
}

fn wait_in_place(proc: &common::Proc) {
    wait_for(Duration::from_secs(90), "the fault to be in place", || {
        proc.output().contains("fault in place").then_some(())
    });
}

#[test]
fn delays_and_partitions_shape_real_peer_links_and_are_undone() {
    let home = Home::new();
    // Four signers and a member: the member seals nothing, so when it sees a block is propagation alone.
    common::geth_clique_network_with_members(&home, "links", 4, 1);
    let urls: Vec<String> = nodes(&home, "links").into_iter().map(|n| n.1).collect();
    assert_eq!(urls.len(), 5);
    let before = median_lag(&urls, 4, Duration::from_secs(8));
    assert!(
        before < 0.25,
        "member-1 sees blocks late before any fault: {before:.2}s"
    );

    // pumba's seed example, shorter, 500 ms and on what member-1 receives (ingress).
    let mut delay = home.spawn(&[
        "chaos",
        "--network",
        "links",
        "netem",
        "--duration",
        "25s",
        "--interface",
        "eth1",
        "--direction",
        "ingress",
        "delay",
        "--time",
        "500",
        "--jitter",
        "30",
        "--correlation",
        "20",
        "--target",
        "member-1",
    ]);
    wait_in_place(&delay);
    let during = median_lag(&urls, 4, Duration::from_secs(12));
    assert!(
        (0.3..1.5).contains(&during),
        "a 500 ms delay into member-1 should make it see blocks about 0.5 s late: {during:.2}s (before {before:.2}s); {}",
        delay.output()
    );
    let open = home.json(&["chaos", "faults"]);
    assert_eq!(
        open.as_array().unwrap().len(),
        4,
        "member-1's four links are recorded: {open}"
    );
    wait_for(Duration::from_secs(60), "the delay to end", || {
        (!common::pid_alive(delay.pid())).then_some(())
    });
    let out = delay.output();
    assert_eq!(out.matches("back on its direct path").count(), 4, "{out}");
    delay.stop();
    assert_eq!(home.json(&["chaos", "faults"]), json!([]), "nothing left in place");
    // geth redials a peer at most once in 35 s.
    wait_for(Duration::from_secs(60), "full mesh again", || {
        urls.iter().all(|u| peer_count(u) == 4).then_some(())
    });
    // A block only announced to member-1 (geth sends whole blocks to the square root of its peers) is fetched
    // after geth's 500 ms arrival timer, so a run of unlucky blocks can hold the median near 0.5 s for a while
    // (seen once in CI at 0.49 s): up to three windows are measured, and one must be clean.
    std::thread::sleep(Duration::from_secs(5));
    let mut afters: Vec<f64> = Vec::new();
    while afters.len() < 3 && afters.last().is_none_or(|a| *a >= 0.3) {
        afters.push(median_lag(&urls, 4, Duration::from_secs(8)));
    }
    assert!(
        afters.iter().any(|a| *a < 0.3),
        "member-1 catches up once the delay ends: medians {afters:.2?} (during the delay {during:.2}s)"
    );

    // A 2/2 partition: each half has two of four signers, so it seals at most two blocks, then stalls.
    let start = converged(&urls, 0, Duration::from_secs(60));
    let partition = home.spawn(&[
        "chaos",
        "--network",
        "links",
        "partition",
        "--duration",
        "20s",
        "--target",
        "validator-1,validator-2",
    ]);
    wait_in_place(&partition);
    std::thread::sleep(Duration::from_secs(8));
    let stalled: Vec<u64> = urls.iter().map(|u| head(u).unwrap().0).collect();
    std::thread::sleep(Duration::from_secs(4));
    let later: Vec<u64> = urls.iter().map(|u| head(u).unwrap().0).collect();
    assert_eq!(stalled, later, "both halves stall");
    let (one, other) = (head(&urls[0]).unwrap(), head(&urls[2]).unwrap());
    assert_ne!(one, other, "the halves hold different heads");
    wait_for(Duration::from_secs(60), "the partition to end", || {
        (!common::pid_alive(partition.pid())).then_some(())
    });
    // After healing the halves reconnect; the fork with more total difficulty wins. Two forks of equal total
    // difficulty never exchange blocks (geth syncs only from a peer with more), and each half's signers have
    // all signed within the recency limit: Clique stays split for good. Either outcome is checked.
    match try_converge(&urls, *later.iter().max().unwrap(), Duration::from_secs(90)) {
        Ok(healed) => assert!(healed > start),
        Err(seen) => {
            let tds: std::collections::BTreeSet<String> = urls
                .iter()
                .map(|u| {
                    rpc(u, "eth_getBlockByNumber", json!(["latest", false])).unwrap()["totalDifficulty"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let frozen: Vec<u64> = urls.iter().map(|u| head(u).unwrap().0).collect();
            std::thread::sleep(Duration::from_secs(5));
            let still: Vec<u64> = urls.iter().map(|u| head(u).unwrap().0).collect();
            assert!(
                tds.len() == 1 && frozen == still && urls.iter().all(|u| peer_count(u) == 4),
                "neither one chain nor Clique's equal-difficulty deadlock (every node peered, one total \
                 difficulty, no head moving): total difficulties {tds:?}, heads {frozen:?} then {still:?}; {seen}"
            );
            eprintln!("Clique's equal-difficulty deadlock after the 2/2 partition: {seen}");
        }
    }
    home.ok(&["net", "down", "links"]);
}

#[test]
fn faults_of_a_killed_chaos_process_are_undone_by_recover_and_by_an_engine_start() {
    let home = Home::new();
    common::geth_clique_network(&home, "orphan", 4);
    let all = nodes(&home, "orphan");
    let urls: Vec<String> = all.iter().map(|n| n.1.clone()).collect();
    converged(&urls, 0, Duration::from_secs(60));

    // A 5-minute partition whose chaos process is SIGKILLed: the links stay cut (the proxies died with it).
    let mut partition = home.spawn(&[
        "chaos",
        "--network",
        "orphan",
        "partition",
        "--duration",
        "5m",
        "--target",
        "validator-1",
        "--mode",
        "reset",
    ]);
    wait_in_place(&partition);
    partition.kill9();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(peer_count(&urls[0]), 0, "validator-1 is still cut off");
    let open = home.json(&["chaos", "faults"]);
    assert_eq!(open.as_array().unwrap().len(), 3, "{open}");
    let output = home.run(&["chaos", "recover"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        common::stdout(&output).contains("undid 3 fault part(s)"),
        "{}",
        common::stdout(&output)
    );
    wait_for(Duration::from_secs(60), "validator-1 to rejoin", || {
        (peer_count(&urls[0]) == 3).then_some(())
    });
    assert_eq!(home.json(&["chaos", "faults"]), json!([]));

    // A pause whose chaos process is SIGKILLed: the node stays stopped until an engine starts.
    let pid = all[1].2;
    let mut pause = home.spawn(&[
        "chaos",
        "--network",
        "orphan",
        "pause",
        "--duration",
        "5m",
        "--target",
        "validator-2",
    ]);
    let state = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.trim().chars().next()))
    };
    wait_for(Duration::from_secs(20), "validator-2 to be paused", || {
        (state(pid) == Some('T')).then_some(())
    });
    pause.kill9();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(pid), Some('T'), "still paused: its undo died with the process");
    let port = common::free_port().to_string();
    let mut engine = home.spawn(&["scheduler", "--port", &port]);
    wait_for(Duration::from_secs(30), "the engine to resume validator-2", || {
        (state(pid) == Some('S') || state(pid) == Some('R')).then_some(())
    });
    wait_for(Duration::from_secs(10), "the ledger to close", || {
        (home.json(&["chaos", "faults"]) == json!([])).then_some(())
    });
    assert!(
        engine.output().contains("undid chaos faults left by dead processes"),
        "{}",
        engine.output()
    );
    engine.stop();
    let status: Value = home.json(&["net", "show", "orphan"]);
    assert_eq!(status["status"], "running", "the network was kept: {status}");
    converged(&urls, 0, Duration::from_secs(60));
    home.ok(&["net", "down", "orphan"]);
}

/// The `chaos-clique` example as shipped, its durations shortened: delay, partition and crash each run under
/// load, are undone and judged, then KPIs and teardown.
#[test]
fn the_chaos_clique_example_passes_its_verdicts_end_to_end() {
    let home = Home::new();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags/chaos-clique.yaml");
    let text = std::fs::read_to_string(source).unwrap();
    let short = text
        .replace("duration: 2m", "duration: 20s")
        .replace("duration: 1m}", "duration: 15s}")
        .replace("duration: 6m", "duration: 90s")
        .replace("restart_after: 20s", "restart_after: 12s")
        .replace("baseline: 10s", "baseline: 5s")
        // Each verdict waits up to `grace` for the nodes to agree and as long again for a new block: with the
        // file's 2 minutes, three phases that leave geth on two forks (it happens, see the DAG file) need 12
        // minutes. 30 s bounds the whole run well inside the test's time while still judging every criterion.
        .replace("grace: 2m", "grace: 30s");
    assert_eq!(short.matches("grace: 30s").count(), 3, "{short}");
    std::fs::write(home.dags().join("chaos-clique.yaml"), short).unwrap();
    let output = home
        .command()
        .env("DAGCTL_GETH", common::client_binary("geth", "DAGCTL_GETH"))
        .args(["dags", "test", "chaos-clique"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", common::stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    // Every phase runs, is undone and judged on all five criteria (reported, not enforced: see the DAG file).
    for task in ["delay", "partition", "crash"] {
        let log = section(&text, "chaos-clique", task);
        assert!(log.contains("try 1: success ---"), "{task}: {log}");
        for criterion in ["progress", "blocks_missed", "converged", "fork_depth", "recovered"] {
            assert!(
                log.contains(&format!("PASS {criterion}: ")) || log.contains(&format!("FAIL {criterion}: ")),
                "{task} {criterion}: {log}"
            );
        }
    }
    assert!(
        section(&text, "chaos-clique", "delay").contains("{chaos} INFO - validator-1|validator-2: rerouted through"),
        "{text}"
    );
    assert!(
        section(&text, "chaos-clique", "crash").contains("validator-3: started again"),
        "{text}"
    );
    assert!(text.contains("--- chaos-clique.teardown try 1: success ---"), "{text}");
    // The run's KPIs hold each chaos task: its faults, verdict, and KPIs during them against the span before.
    let kpis = section(&text, "chaos-clique", "kpis");
    for task in ["delay", "partition", "crash"] {
        assert!(kpis.contains(&format!("chaos {task} (")), "{task}: {kpis}");
    }
    let line = kpis
        .lines()
        .skip_while(|l| !l.contains("chaos partition ("))
        .find(|l| l.contains("during vs before: blocks/s"))
        .unwrap_or_else(|| panic!("{kpis}"));
    let rates: Vec<f64> = line
        .split("blocks/s ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .map(|r| r.split(" vs ").filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(rates.len(), 2, "{line}");
    // A 2/2 Clique split seals at most two blocks a side, then stalls: far fewer blocks than before it.
    assert!(rates[0] < 0.6 * rates[1], "partition: {line}");
}
