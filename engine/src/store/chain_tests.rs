//! The store's tables of the chain's work (monitor samples, alerts, run KPIs, chaos faults), tested against
//! SQLite and against a real PostgreSQL (a fresh database per test).

use crate::each_backend;
use crate::testing::TestDb;

async fn samples_are_written_in_batches_read_by_series_and_pruned(db: TestDb) {
    use super::{NodeSample, SampleFilter};
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let mut batch = Vec::new();
    // 3 nodes x 2 metrics x 120 seconds: several INSERT statements in one transaction.
    for second in 0..120 {
        for node in ["validator-1", "validator-2", "validator-3"] {
            for (metric, value) in [("head", second as f64), ("cpu_percent", 0.25)] {
                batch.push(NodeSample {
                    network: "net".into(),
                    node: node.into(),
                    metric: metric.into(),
                    at: t0 + chrono::Duration::seconds(second),
                    value,
                    run_id: Some("r".into()),
                    task_id: Some("monitor".into()),
                });
            }
        }
    }
    assert_eq!(db.store.insert_samples(&batch).await.unwrap(), 720);
    assert_eq!(db.store.insert_samples(&[]).await.unwrap(), 0);
    let head = db
        .store
        .samples(&SampleFilter {
            network: "net",
            metric: Some("head"),
            node: Some("validator-2"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(head.len(), 120);
    assert_eq!(head[0].value, 0.0);
    assert_eq!(head[119].value, 119.0);
    assert!(head.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert_eq!(
        head[5].at.timestamp_micros(),
        (t0 + chrono::Duration::seconds(5)).timestamp_micros()
    );
    assert_eq!(head[5].task_id.as_deref(), Some("monitor"));
    let window = db
        .store
        .samples(&SampleFilter {
            network: "net",
            from: Some(t0 + chrono::Duration::seconds(100)),
            to: Some(t0 + chrono::Duration::seconds(110)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 10 * 3 * 2);
    let other = db
        .store
        .samples(&SampleFilter {
            network: "other",
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    // Paged in pages of 7 (which cut through the 6 samples sharing each time): every sample once, in order.
    let mut page = super::SamplePage {
        network: "net",
        from: t0 + chrono::Duration::seconds(10),
        to: t0 + chrono::Duration::seconds(20),
        cursor: None,
        skip: 0,
        limit: 7,
    };
    let mut paged = Vec::new();
    for _ in 0..100 {
        let got = db.store.samples_page(&page).await.unwrap();
        paged.extend(got.iter().map(|s| (s.at, s.node.clone(), s.metric.clone())));
        if !page.advance(&got) {
            break;
        }
    }
    assert_eq!(paged.len(), 10 * 3 * 2);
    let mut unique = paged.clone();
    unique.dedup();
    assert_eq!(unique.len(), paged.len(), "no sample twice");
    assert!(paged.windows(2).all(|w| w[0] < w[1]), "in order");
    // The newest sample per series, only for running networks.
    assert!(
        db.store.latest_samples_of_running(t0).await.unwrap().is_empty(),
        "no such network yet"
    );
    let new = super::NewNetwork {
        name: "net",
        backend: "local",
        host: "h",
        spec: "{}",
        dag_id: None,
        run_id: None,
        task_id: None,
        ttl_seconds: None,
    };
    db.store.claim_network(&new, chrono::Utc::now()).await.unwrap();
    assert!(
        db.store.latest_samples_of_running(t0).await.unwrap().is_empty(),
        "starting is not running"
    );
    db.store
        .transition_network("net", &["starting"], "running", None, chrono::Utc::now())
        .await
        .unwrap();
    let latest = db.store.latest_samples_of_running(t0).await.unwrap();
    assert_eq!(latest.len(), 3 * 2, "{latest:?}");
    assert!(
        latest.iter().filter(|s| s.metric == "head").all(|s| s.value == 119.0),
        "{latest:?}"
    );
    let later = db
        .store
        .latest_samples_of_running(t0 + chrono::Duration::seconds(200))
        .await
        .unwrap();
    assert!(later.is_empty(), "nothing that recent");
    let pruned = db
        .store
        .prune_samples(t0 + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(pruned, 60 * 3 * 2);
    let left = db
        .store
        .samples(&SampleFilter {
            network: "net",
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 60 * 3 * 2);
}

async fn alerts_add_up_by_pattern(db: TestDb) {
    use super::NodeAlert;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(5);
    let alert = |node: &str, pattern: &str, count: i64, first: i64, last: i64| NodeAlert {
        network: "net".into(),
        node: node.into(),
        level: "warn".into(),
        pattern: pattern.into(),
        message: format!("WARN {pattern} (first seen as written)"),
        count,
        first_at: t0 + chrono::Duration::seconds(first),
        last_at: t0 + chrono::Duration::seconds(last),
        run_id: Some("r".into()),
        task_id: Some("monitor".into()),
    };
    db.store
        .add_alerts(&[alert("n1", "Served #", 3, 0, 10), alert("n2", "Served #", 1, 5, 5)])
        .await
        .unwrap();
    db.store
        .add_alerts(&[alert("n1", "Served #", 2, 20, 30)])
        .await
        .unwrap();
    db.store.add_alerts(&[]).await.unwrap();
    let alerts = db.store.alerts("net", 100).await.unwrap();
    assert_eq!(alerts.len(), 2);
    let n1 = &alerts[0];
    assert_eq!((n1.node.as_str(), n1.count), ("n1", 5), "counts add up; newest first");
    assert_eq!(n1.first_at.timestamp(), t0.timestamp(), "first seen kept");
    assert_eq!(n1.last_at.timestamp(), (t0 + chrono::Duration::seconds(30)).timestamp());
    assert_eq!(alerts[1].count, 1);
    assert!(db.store.alerts("other", 100).await.unwrap().is_empty());
}

async fn run_kpis_are_kept_per_task_and_listed_per_dag(db: TestDb) {
    use super::RunKpiRow;
    let t0 = chrono::Utc::now();
    let row = |run: &str, task: &str, seconds: i64, kpis: &str| RunKpiRow {
        dag_id: "d".into(),
        run_id: run.into(),
        task_id: task.into(),
        computed_at: t0 + chrono::Duration::seconds(seconds),
        kpis: kpis.into(),
    };
    db.store.put_run_kpis(&row("r1", "k", 1, "{\"a\":1}")).await.unwrap();
    db.store.put_run_kpis(&row("r2", "k", 2, "{\"a\":2}")).await.unwrap();
    db.store.put_run_kpis(&row("r2", "k", 3, "{\"a\":3}")).await.unwrap();
    db.store.put_run_kpis(&row("r3", "k", 4, "{\"a\":4}")).await.unwrap();
    let listed = db.store.dag_kpis("d", Some("r3"), 10).await.unwrap();
    let runs: Vec<(&str, &str)> = listed.iter().map(|r| (r.run_id.as_str(), r.kpis.as_str())).collect();
    assert_eq!(
        runs,
        vec![("r2", "{\"a\":3}"), ("r1", "{\"a\":1}")],
        "newest first, replaced, one run left out"
    );
    assert_eq!(db.store.dag_kpis("d", None, 1).await.unwrap()[0].run_id, "r3");
    assert_eq!(db.store.run_kpis("d", "r2").await.unwrap().unwrap().kpis, "{\"a\":3}");
    assert!(db.store.run_kpis("d", "nope").await.unwrap().is_none());
    assert!(db.store.dag_kpis("other", None, 10).await.unwrap().is_empty());
}

async fn chaos_faults_stay_open_until_undone(db: TestDb) {
    use super::ChaosFaultRow;
    let t0 = chrono::Utc::now();
    let row = |id: &str, part: &str, network: &str, seconds: i64| ChaosFaultRow {
        id: id.into(),
        part: part.into(),
        network: network.into(),
        kind: "pause".into(),
        undo: format!("{{\"resume\":\"{part}\"}}"),
        owner_host: "h".into(),
        owner_pid: 42,
        owner_started: 7,
        dag_id: Some("d".into()),
        run_id: None,
        task_id: None,
        applied_at: super::from_micros(super::micros(t0 + chrono::Duration::seconds(seconds))),
        undone_at: None,
        undo_error: None,
    };
    db.store.record_chaos_fault(&row("f1", "n1", "net", 1)).await.unwrap();
    db.store.record_chaos_fault(&row("f1", "n2", "net", 2)).await.unwrap();
    db.store.record_chaos_fault(&row("f2", "n1", "other", 3)).await.unwrap();
    let open = db.store.open_chaos_faults(None).await.unwrap();
    let parts: Vec<(&str, &str)> = open.iter().map(|r| (r.id.as_str(), r.part.as_str())).collect();
    assert_eq!(parts, vec![("f1", "n1"), ("f1", "n2"), ("f2", "n1")], "oldest first");
    assert_eq!(open[0], row("f1", "n1", "net", 1), "read back as written");
    assert_eq!(db.store.open_chaos_faults(Some("other")).await.unwrap().len(), 1);
    // A failed undo keeps the part open with its reason; a done one closes it, once.
    assert!(db
        .store
        .close_chaos_fault("f1", "n1", t0, Some("no such process"))
        .await
        .unwrap());
    let open = db.store.open_chaos_faults(Some("net")).await.unwrap();
    assert_eq!(open[0].undo_error.as_deref(), Some("no such process"));
    assert!(db.store.close_chaos_fault("f1", "n1", t0, None).await.unwrap());
    assert!(
        !db.store.close_chaos_fault("f1", "n1", t0, None).await.unwrap(),
        "closed once"
    );
    let open = db.store.open_chaos_faults(Some("net")).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].part, "n2");
    let all = db.store.chaos_fault("f1").await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].undone_at.is_some() && all[0].undo_error.is_none());
    // Recorded again (applied again), it is open again.
    db.store.record_chaos_fault(&row("f1", "n1", "net", 4)).await.unwrap();
    assert_eq!(db.store.open_chaos_faults(Some("net")).await.unwrap().len(), 2);
}

each_backend!(samples_are_written_in_batches_read_by_series_and_pruned);
each_backend!(alerts_add_up_by_pattern);
each_backend!(chaos_faults_stay_open_until_undone);
each_backend!(run_kpis_are_kept_per_task_and_listed_per_dag);
