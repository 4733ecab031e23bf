//! The store test suite, run against SQLite and against a real PostgreSQL (a fresh database per test).

use super::*;
use crate::operators::OperatorRegistry;
use crate::parse::parse_text;
use crate::state::{RunState, TaskEvent, TaskState};
use crate::store::runs::{NewRun, RunType};

use crate::each_backend;
use crate::testing::TestDb;

fn spec(text: &str) -> crate::spec::DagSpec {
    let parsed = parse_text("t.yml", text, &[], &OperatorRegistry::builtin());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.dags.into_iter().next().unwrap()
}

fn manual<'a>(spec: &'a crate::spec::DagSpec, run_id: &str) -> NewRun<'a> {
    NewRun {
        spec,
        run_id: Some(run_id.to_string()),
        run_type: RunType::Manual,
        logical_date: None,
        data_interval: None,
        run_after: Utc::now(),
        conf: Default::default(),
        triggered_by: "cli".into(),
        triggering_user: None,
        note: None,
    }
}

async fn dag_versions_and_pause(db: TestDb) {
    let store = &db.store;
    let v1 = spec("d:\n  tasks: {a: {operator: empty}}\n");
    let hash1 = store.put_dag(&v1, true).await.unwrap();
    assert_eq!(
        store.put_dag(&v1, true).await.unwrap(),
        hash1,
        "same content, same version"
    );
    let v2 = spec("d:\n  description: two\n  tasks: {a: {operator: empty}}\n");
    let hash2 = store.put_dag(&v2, true).await.unwrap();
    assert_ne!(hash1, hash2);
    let dag = store.get_dag("d").await.unwrap();
    assert_eq!(
        (dag.version_hash.as_str(), dag.version_number, dag.is_paused),
        (hash2.as_str(), 2, true)
    );
    store.set_paused("d", false, None).await.unwrap();
    assert!(!store.get_dag("d").await.unwrap().is_paused);
    assert!(matches!(
        store.set_paused("nope", true, None).await,
        Err(Error::NotFound(_))
    ));
    let (old, number, _) = store.dag_version(&hash1).await.unwrap();
    assert_eq!((old.description, number), (None, 1));
    assert!(store.events(10).await.unwrap().iter().any(|e| e.event == "unpaused"));
}

async fn runs_with_their_task_instances(db: TestDb) {
    let store = &db.store;
    let mut text = String::from("big:\n  tasks:\n");
    for i in 0..120 {
        text.push_str(&format!("    t{i}: {{operator: empty}}\n"));
    }
    let dag = spec(&text);
    store.put_dag(&dag, false).await.unwrap();
    let run = store.create_run(manual(&dag, "r1")).await.unwrap();
    assert_eq!(run.state, RunState::Queued);
    let tis = store.tis_of_run(run.id).await.unwrap();
    assert_eq!(tis.len(), 120);
    assert!(tis.iter().all(|ti| ti.state == TaskState::None && ti.try_number == 0));
    // A duplicate id is a conflict and writes nothing.
    assert!(matches!(
        store.create_run(manual(&dag, "r1")).await,
        Err(Error::Conflict(_))
    ));
    let (runs, total) = store
        .list_runs(&RunFilter {
            dag_id: Some("big".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((runs.len(), total), (1, 1));
    assert_eq!(store.start_runs(&[run.id], Utc::now()).await.unwrap(), vec![run.id]);
    assert!(
        store.start_runs(&[run.id], Utc::now()).await.unwrap().is_empty(),
        "start is compare-and-set"
    );
}

async fn claim_respects_pools_and_compare_and_set(db: TestDb) {
    let store = &db.store;
    let dag = spec("p:\n  tasks:\n    a: {operator: bash, bash_command: 'true', pool: small, priority_weight: 1}\n    b: {operator: bash, bash_command: 'true', pool: small, priority_weight: 5}\n    c: {operator: bash, bash_command: 'true', pool: missing}\n");
    store.put_dag(&dag, false).await.unwrap();
    store.put_pool("small", 1, Some("one slot"), None).await.unwrap();
    let run = store.create_run(manual(&dag, "r")).await.unwrap();
    store.start_runs(&[run.id], Utc::now()).await.unwrap();
    let batch = store.lock_runs_for_eval(Utc::now(), 10, None).await.unwrap();
    let plans: Vec<runs::RunPlan> = batch
        .runs
        .iter()
        .map(|(run, tis)| runs::RunPlan {
            run_pk: run.id,
            changes: tis
                .iter()
                .map(|ti| runs::TiChange {
                    ti_id: ti.id,
                    from: TaskState::None,
                    to: TaskState::Scheduled,
                    message: None,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    assert_eq!(batch.apply(&plans, Utc::now()).await.unwrap(), 3);
    let claim = store
        .claim_and_start("s1", "host", 10, &Default::default(), None, Utc::now())
        .await
        .unwrap();
    let claimed: Vec<&str> = claim.queued.iter().map(|ti| ti.task_id.as_str()).collect();
    assert_eq!(claimed, vec!["b"], "one slot in `small`, highest priority first");
    assert_eq!(claim.missing_pool.len(), 1);
    assert_eq!(
        claim.missing_pool[0].state,
        TaskState::Queued,
        "no pool: queued, not started"
    );
    assert_eq!(claim.versions.get(&run.id), Some(&run.version_hash));
    let again = store
        .claim_and_start("s2", "host", 10, &Default::default(), None, Utc::now())
        .await
        .unwrap();
    assert!(again.queued.is_empty(), "the pool is full and b is taken");
    // Claimed and started at once: try 1 runs on `host`, as the row says.
    let stored = store.get_ti_by_id(claim.queued[0].id).await.unwrap();
    for ti in [&claim.queued[0], &stored] {
        assert_eq!(
            (
                ti.state,
                ti.try_number,
                ti.hostname.as_deref(),
                ti.scheduler_id.as_deref()
            ),
            (TaskState::Running, 1, Some("host"), Some("s1"))
        );
    }
    assert_eq!(stored.start_date, stored.queued_at);
    let done = FinishedTry {
        outlets: Vec::new(),
        ti_id: claim.queued[0].id,
        run_pk: run.id,
        try_number: 1,
        event: TaskEvent::Succeed,
        message: None,
        xcoms: vec![("return_value".into(), serde_json::json!({"ok": true}))],
        next_retry_at: None,
        ended_at: Utc::now(),
    };
    assert_eq!(
        store.finish_tries(std::slice::from_ref(&done)).await.unwrap(),
        vec![(done.ti_id, TaskState::Success)]
    );
    assert!(
        store.finish_tries(&[done]).await.unwrap().is_empty(),
        "a try is recorded once"
    );
    let xcoms = store.xcoms_of_run(run.id).await.unwrap();
    assert_eq!(xcoms[&("b".to_string(), "return_value".to_string())]["ok"], true);
    let b = store.get_ti("p", "r", "b", -1).await.unwrap();
    assert_eq!(store.tries(b.id).await.unwrap().len(), 1);
    let pools = store.list_pools().await.unwrap();
    let small = pools.iter().find(|p| p.name == "small").unwrap();
    assert_eq!(small.open_slots(), 1);
    assert!(store.delete_pool("default_pool", None).await.is_err());
}

async fn mapped_instances_keep_their_own_xcom(db: TestDb) {
    let store = &db.store;
    let dag =
        spec("m:\n  tasks:\n    each: {operator: bash, expand: {bash_command: ['echo a', 'echo b', 'echo c']}}\n");
    store.put_dag(&dag, false).await.unwrap();
    let run = store.create_run(manual(&dag, "r")).await.unwrap();
    store.start_runs(&[run.id], Utc::now()).await.unwrap();
    let placeholder = store.get_ti("m", "r", "each", -1).await.unwrap();
    // The unexpanded instance becomes 0; 1 and 2 are made from it, scheduled.
    let batch = store.lock_runs_for_eval(Utc::now(), 10, None).await.unwrap();
    let plan = runs::RunPlan {
        run_pk: run.id,
        expansions: vec![runs::Expansion {
            renumber: Some(placeholder.id),
            template_ti: placeholder.id,
            create: vec![1, 2],
            max_tries: 2,
        }],
        changes: vec![runs::TiChange {
            ti_id: placeholder.id,
            from: TaskState::None,
            to: TaskState::Scheduled,
            message: None,
        }],
        ..Default::default()
    };
    assert_eq!(batch.apply(&[plan], Utc::now()).await.unwrap(), 3);
    let tis = store.task_tis(run.id, "each").await.unwrap();
    let shape: Vec<(i64, TaskState, i64)> = tis.iter().map(|t| (t.map_index, t.state, t.max_tries)).collect();
    assert_eq!(
        shape,
        [
            (0, TaskState::Scheduled, 0),
            (1, TaskState::Scheduled, 2),
            (2, TaskState::Scheduled, 2)
        ]
    );
    assert!(
        store.get_ti("m", "r", "each", -1).await.is_err(),
        "no instance -1 once expanded"
    );
    let claim = store
        .claim_and_start("s1", "host", 10, &Default::default(), None, Utc::now())
        .await
        .unwrap();
    assert_eq!(claim.queued.len(), 3);
    // Instances end in reverse order; each keeps its own XCom, pulled as one list in map_index order.
    let done: Vec<FinishedTry> = tis
        .iter()
        .rev()
        .map(|ti| FinishedTry {
            outlets: Vec::new(),
            ti_id: ti.id,
            run_pk: run.id,
            try_number: 1,
            event: TaskEvent::Succeed,
            message: None,
            xcoms: vec![("return_value".into(), serde_json::json!(format!("v{}", ti.map_index)))],
            next_retry_at: None,
            ended_at: Utc::now(),
        })
        .collect();
    assert_eq!(store.finish_tries(&done).await.unwrap().len(), 3);
    let xcoms = store.xcoms_of_run(run.id).await.unwrap();
    assert_eq!(
        xcoms[&("each".to_string(), "return_value".to_string())],
        serde_json::json!(["v0", "v1", "v2"])
    );
    let one = store.xcom_entries(run.id, "each", Some(1)).await.unwrap();
    assert_eq!(
        (one.len(), one[0].map_index, one[0].value.clone()),
        (1, 1, serde_json::json!("v1"))
    );
    assert_eq!(store.xcom_entries(run.id, "each", None).await.unwrap().len(), 3);
    // Clearing the task clears every instance and their XCom.
    let cleared = store
        .clear_tis("m", "r", Some(&["each".to_string()]), false, None)
        .await
        .unwrap();
    assert_eq!(cleared, ["each"]);
    assert!(store
        .task_tis(run.id, "each")
        .await
        .unwrap()
        .iter()
        .all(|t| t.state == TaskState::None));
    assert!(store.xcom_entries(run.id, "each", None).await.unwrap().is_empty());
}

async fn clear_restarts_and_requeues_the_run(db: TestDb) {
    let store = &db.store;
    let dag = spec("c:\n  tasks:\n    a: {operator: bash, bash_command: 'true', retries: 1}\n    b: {operator: bash, bash_command: 'true', dependencies: [a]}\n");
    store.put_dag(&dag, false).await.unwrap();
    let run = store.create_run(manual(&dag, "r")).await.unwrap();
    let a = store.get_ti("c", "r", "a", -1).await.unwrap();
    store
        .mark_ti("c", "r", "a", -1, TaskState::Failed, Some("alice"))
        .await
        .unwrap();
    store.mark_run("c", "r", RunState::Failed, None).await.unwrap();
    let cleared = store.clear_tis("c", "r", None, true, Some("alice")).await.unwrap();
    assert_eq!(cleared, vec!["a"]);
    assert_eq!(store.get_ti_by_id(a.id).await.unwrap().state, TaskState::None);
    assert_eq!(store.get_run_by_pk(run.id).await.unwrap().state, RunState::Queued);
    assert!(matches!(
        store.clear_tis("c", "r", Some(&["zzz".to_string()]), false, None).await,
        Err(Error::NotFound(_))
    ));
    let events: Vec<String> = store.events(20).await.unwrap().into_iter().map(|e| e.event).collect();
    assert!(
        events.contains(&"clear".to_string()) && events.contains(&"mark_task".to_string()),
        "{events:?}"
    );
}

async fn sync_tracks_import_errors_and_stale_dags(db: TestDb) {
    let store = &db.store;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yml"), "a:\n  tasks: {x: {operator: empty}}\n").unwrap();
    std::fs::write(dir.path().join("b.yml"), "b:\n  tasks: {x: {operator: empty}}\n").unwrap();
    let registry = OperatorRegistry::builtin();
    let files = crate::parse::load_folder(dir.path(), &Default::default(), &registry);
    let report = store.sync_dags(&files, true, None, true, Utc::now()).await.unwrap();
    assert_eq!(report.new_versions.len(), 2);
    // b breaks: it keeps its last version and is not stale; a's file goes away: a is stale.
    std::fs::write(dir.path().join("b.yml"), "b:\n  tasks: {x: {operator: nope}}\n").unwrap();
    std::fs::remove_file(dir.path().join("a.yml")).unwrap();
    let files = crate::parse::load_folder(dir.path(), &Default::default(), &registry);
    let report = store.sync_dags(&files, true, None, true, Utc::now()).await.unwrap();
    assert_eq!(report.stale, vec!["a"]);
    assert_eq!(report.import_errors, 1);
    let errors = store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(2));
    assert!(store.list_dags(false).await.unwrap().iter().any(|d| d.dag_id == "b"));
    assert!(!store.list_dags(false).await.unwrap().iter().any(|d| d.dag_id == "a"));
    // Fixed again: errors go away.
    std::fs::write(dir.path().join("b.yml"), "b:\n  tasks: {x: {operator: empty}}\n").unwrap();
    let files = crate::parse::load_folder(dir.path(), &Default::default(), &registry);
    store.sync_dags(&files, true, None, true, Utc::now()).await.unwrap();
    assert!(store.import_errors().await.unwrap().is_empty());
}

async fn users_tokens_and_pools(db: TestDb) {
    let store = &db.store;
    let now = chrono::Utc::now();
    let user = UserRow {
        username: "alice".into(),
        password_hash: None,
        role: "Admin".into(),
        source: "oidc".into(),
        email: Some("alice@example.test".into()),
        external_id: Some("http://idp alice-sub".into()),
        created_at: now,
        last_login_at: None,
    };
    store.put_user(&user).await.unwrap();
    let back = store.get_user("alice").await.unwrap();
    assert_eq!(back.external_id.as_deref(), Some("http://idp alice-sub"));
    assert_eq!(back.role, "Admin");
    let mut demoted = user.clone();
    demoted.role = "Viewer".into();
    store.put_user(&demoted).await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap().role, "Viewer");
    store.touch_login("alice", now).await.unwrap();
    assert!(store.get_user("alice").await.unwrap().last_login_at.is_some());
    assert!(matches!(store.get_user("nobody").await, Err(Error::NotFound(_))));
    assert_eq!(store.list_users().await.unwrap().len(), 1);

    assert!(!store.token_revoked("jti-1").await.unwrap());
    store
        .revoke_token("jti-1", now + chrono::Duration::hours(1))
        .await
        .unwrap();
    store
        .revoke_token("jti-1", now + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(store.token_revoked("jti-1").await.unwrap());
    // An expired revocation is dropped by the next one.
    store
        .revoke_token("old", now - chrono::Duration::hours(1))
        .await
        .unwrap();
    store
        .revoke_token("jti-2", now + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(!store.token_revoked("old").await.unwrap());

    store.create_pool("p", 2, None, Some("alice")).await.unwrap();
    assert!(matches!(
        store.create_pool("p", 9, None, None).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.create_pool("", 1, None, None).await.is_err());
    let pool = store
        .list_pools()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "p")
        .unwrap();
    assert_eq!(pool.slots, 2, "a conflicting create changes nothing");
}

async fn schedulers_name_their_execution_api(db: TestDb) {
    let store = &db.store;
    let now = Utc::now();
    store
        .register_job(
            "a",
            "h",
            1,
            Some("http://127.0.0.1:1"),
            now - chrono::Duration::seconds(120),
        )
        .await
        .unwrap();
    store
        .register_job("b", "h", 2, Some("http://127.0.0.1:2"), now)
        .await
        .unwrap();
    store.register_job("c", "h", 3, None, now).await.unwrap();
    store
        .register_job(
            "d",
            "h",
            4,
            Some("http://127.0.0.1:4"),
            now - chrono::Duration::seconds(5),
        )
        .await
        .unwrap();
    let since = now - chrono::Duration::seconds(60);
    assert_eq!(
        store.live_api_urls(since).await.unwrap(),
        vec!["http://127.0.0.1:2".to_string(), "http://127.0.0.1:4".to_string()]
    );
    store.set_job_state("b", "dead").await.unwrap();
    assert_eq!(
        store.live_api_urls(since).await.unwrap(),
        vec!["http://127.0.0.1:4".to_string()]
    );
}

each_backend!(mapped_instances_keep_their_own_xcom);
each_backend!(schedulers_name_their_execution_api);
each_backend!(users_tokens_and_pools);
each_backend!(dag_versions_and_pause);
each_backend!(runs_with_their_task_instances);
each_backend!(claim_respects_pools_and_compare_and_set);
each_backend!(clear_restarts_and_requeues_the_run);
each_backend!(sync_tracks_import_errors_and_stale_dags);

/// Only a migration's version is recorded as applied, so the SQL of a released version must stay byte for byte
/// what databases already ran (whichever folder its file is in); a schema change is a new version.
#[test]
fn released_migrations_never_change() {
    use sha2::{Digest, Sha256};
    const RELEASED: &[(i64, &str, &str)] = &[
        (
            1,
            "857a79961f9d5262c3686006db4bc418ff1b344cbbdb2af4b6cc0b1eb1eef110",
            "4c026cbbec9602ba17bc5eaee10cc2befde344a522825657abd6d0cdfcfbc92b",
        ),
        (
            2,
            "9b02d8b5dac1ec9ee414295ff87f287210754e60fe1bb8699c8567569ffb1d00",
            "9b02d8b5dac1ec9ee414295ff87f287210754e60fe1bb8699c8567569ffb1d00",
        ),
        (
            3,
            "1dd5505d54717d5a9b99567bb4c4390a853ab8d2279418d94dd3057624535a29",
            "1dd5505d54717d5a9b99567bb4c4390a853ab8d2279418d94dd3057624535a29",
        ),
        (
            4,
            "f79613f282096aac35dd9cf0358a4b4772bcb85fe6d0b75cc635eb0f3d0d5eca",
            "f79613f282096aac35dd9cf0358a4b4772bcb85fe6d0b75cc635eb0f3d0d5eca",
        ),
        (
            5,
            "46fe0b7a2da23a65ad66d3f206baf99da8c9c96ad340139e0be5117fcaec1f9f",
            "46fe0b7a2da23a65ad66d3f206baf99da8c9c96ad340139e0be5117fcaec1f9f",
        ),
        (
            6,
            "d63d8ea6c25754e469e645ccf78255a219b3e683241cbde808ba19fd0f45bb0f",
            "d63d8ea6c25754e469e645ccf78255a219b3e683241cbde808ba19fd0f45bb0f",
        ),
        (
            7,
            "1200eb85ea8e7601a1ba8d2a8c30421cdfffb7b2a481eebd8ab5fb0711bdc08b",
            "1200eb85ea8e7601a1ba8d2a8c30421cdfffb7b2a481eebd8ab5fb0711bdc08b",
        ),
        (
            8,
            "41238db398b7e85780693569622928e0a2b6d5df929ad2417c6d7775950fe32b",
            "41238db398b7e85780693569622928e0a2b6d5df929ad2417c6d7775950fe32b",
        ),
        (
            9,
            "b6f28eb437aba49a7958dd3439257762251a84e0139e2d739c6a61372de14a98",
            "b6f28eb437aba49a7958dd3439257762251a84e0139e2d739c6a61372de14a98",
        ),
        (
            10,
            "6f27a740935b2a9386f23503efc28de3128037da3f67e8ae3566f80fbd8ad39e",
            "6f27a740935b2a9386f23503efc28de3128037da3f67e8ae3566f80fbd8ad39e",
        ),
        (
            12,
            "c8aa266bbcaa4ed45f79cd1b5bbcc2e9cd47c3c532d107b756020f7f01d378a0",
            "c8aa266bbcaa4ed45f79cd1b5bbcc2e9cd47c3c532d107b756020f7f01d378a0",
        ),
        (
            13,
            "32b3f007657f345c6968f8a2554ace52b3fbedb1ba84c3322a3134dfd33b6444",
            "388fe566aba8c8ccea686ff9bf02ab6e805d8a3c509c6221c8b84dde4b48ba04",
        ),
        (
            14,
            "69f178581e423e08cd8d969abf6a52374bfaf294cb1612567388cb77d694a06f",
            "a8484d419ada7b5c0ea4818447194b8af6003a68b4bf650b8204c17978e2e241",
        ),
    ];
    let sha = |script: &str| hex::encode(Sha256::digest(script.as_bytes()));
    let versions: Vec<i64> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
    assert_eq!(
        versions,
        (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>(),
        "versions in order, none skipped"
    );
    for (version, sqlite, postgres) in RELEASED {
        let (_, sql) = MIGRATIONS
            .iter()
            .find(|(v, _)| v == version)
            .expect("a released version is kept");
        assert_eq!(
            sha(sql.for_backend(Backend::Sqlite)),
            *sqlite,
            "SQLite script of version {version}"
        );
        assert_eq!(
            sha(sql.for_backend(Backend::Postgres)),
            *postgres,
            "PostgreSQL script of version {version}"
        );
    }
}
