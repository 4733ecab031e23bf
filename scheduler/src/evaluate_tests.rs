//! Planner tests: trigger rules, retries, timeouts, depends_on_past, mapped tasks.
use super::*;
use engine::parse::parse_text;
use engine::store::RunType;
use engine::trigger::TriggerRule;

fn dag(text: &str) -> DagSpec {
    let parsed = parse_text("t.yml", text, &[], &OperatorRegistry::builtin());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.dags.into_iter().next().unwrap()
}

fn run(state: RunState) -> RunRow {
    RunRow {
        id: 1,
        dag_id: "d".into(),
        run_id: "r".into(),
        run_type: RunType::Manual,
        state,
        logical_date: None,
        data_interval_start: None,
        data_interval_end: None,
        run_after: Utc::now(),
        queued_at: None,
        start_date: Some(Utc::now()),
        end_date: None,
        conf: Default::default(),
        version_hash: String::new(),
        triggered_by: "test".into(),
        triggering_user: None,
        note: None,
        updated_at: Utc::now(),
    }
}

fn tis(dag: &DagSpec, states: &[(&str, TaskState)]) -> Vec<TiRow> {
    dag.tasks
        .iter()
        .enumerate()
        .map(|(i, task)| TiRow {
            id: i as i64 + 1,
            uuid: String::new(),
            run_pk: 1,
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: task.task_id.clone(),
            map_index: -1,
            state: states
                .iter()
                .find(|(id, _)| *id == task.task_id)
                .map(|(_, s)| *s)
                .unwrap_or(TaskState::None),
            try_number: 0,
            max_tries: 0,
            operator: task.operator.clone(),
            pool: task.pool.clone(),
            pool_slots: 1,
            priority_weight: 1,
            queued_at: None,
            start_date: None,
            end_date: None,
            hostname: None,
            pid: None,
            scheduler_id: None,
            heartbeat_at: None,
            next_retry_at: None,
            message: None,
            updated_at: Utc::now(),
        })
        .collect()
}

fn after(plan: &RunPlan, tis: &[TiRow]) -> HashMap<String, TaskState> {
    let mut out: HashMap<String, TaskState> = tis.iter().map(|ti| (ti.task_id.clone(), ti.state)).collect();
    for change in &plan.changes {
        let ti = tis.iter().find(|ti| ti.id == change.ti_id).unwrap();
        out.insert(ti.task_id.clone(), change.to);
    }
    out
}

#[test]
fn mapped_tasks_expand_once_their_upstream_is_done_and_again_after_a_clear() {
    let d = dag("d:\n  tasks:\n    make: {operator: bash, bash_command: 'true'}\n    each: {operator: bash, bash_command: 'true', expand: {env: make.output}}\n    after: {operator: bash, bash_command: 'true', dependencies: [each]}\n");
    assert_eq!(
        d.task("each").unwrap().upstream,
        ["make"],
        "task.output makes it upstream"
    );
    let registry = OperatorRegistry::builtin();
    let mut t = tis(&d, &[("make", TaskState::Success)]);
    let mut xcoms = HashMap::new();
    xcoms.insert(
        ("make".to_string(), "return_value".to_string()),
        serde_json::json!([{"A": "1"}, {"A": "2"}, {"A": "3"}]),
    );
    let inputs = RunInputs {
        past: None,
        xcoms: Some(&xcoms),
    };
    // Without the upstream's XCom loaded nothing could expand; with it: the unexpanded instance becomes 0,
    // instances 1 and 2 are made, all scheduled; `after` waits.
    let plan = plan_run_after(&d, &run(RunState::Running), &t, &inputs, &registry, Utc::now());
    let each = t.iter().find(|ti| ti.task_id == "each").unwrap().id;
    assert_eq!(
        plan.expansions,
        vec![Expansion {
            renumber: Some(each),
            template_ti: each,
            create: vec![1, 2],
            max_tries: 0,
        }]
    );
    assert_eq!(after(&plan, &t)["each"], TaskState::Scheduled);
    assert_eq!(after(&plan, &t)["after"], TaskState::None);
    assert!(plan.run_event.is_none());

    // Cleared after an expansion to 3 while the upstream now pushes 2: instance 2 is removed, 0 and 1 run.
    let template = t.iter().find(|ti| ti.task_id == "each").unwrap().clone();
    t.retain(|ti| ti.task_id != "each");
    for i in 0..3 {
        t.push(TiRow {
            id: 100 + i,
            map_index: i,
            ..template.clone()
        });
    }
    xcoms.insert(
        ("make".to_string(), "return_value".to_string()),
        serde_json::json!([{"A": "1"}, {"A": "2"}]),
    );
    let inputs = RunInputs {
        past: None,
        xcoms: Some(&xcoms),
    };
    let plan = plan_run_after(&d, &run(RunState::Running), &t, &inputs, &registry, Utc::now());
    let to = |id: i64| plan.changes.iter().find(|c| c.ti_id == id).map(|c| c.to);
    assert_eq!(
        (to(100), to(101), to(102)),
        (
            Some(TaskState::Scheduled),
            Some(TaskState::Scheduled),
            Some(TaskState::Removed)
        )
    );
    assert_eq!(plan.expansions[0].create, Vec::<i64>::new());
    assert_eq!(plan.expansions[0].renumber, None);

    // A finished mapped task decides by its worst instance: one failed instance fails `after` upstream
    // and the run.
    for ti in t.iter_mut() {
        ti.state = match (ti.task_id.as_str(), ti.map_index) {
            ("each", 1) => TaskState::Failed,
            ("after", _) => TaskState::None,
            _ => TaskState::Success,
        };
    }
    let plan = plan_run(&d, &run(RunState::Running), &t, &registry, Utc::now());
    assert_eq!(after(&plan, &t)["after"], TaskState::UpstreamFailed);
    let mut t2 = t.clone();
    for ti in t2.iter_mut().filter(|ti| ti.task_id == "after") {
        ti.state = TaskState::UpstreamFailed;
    }
    let plan = plan_run(&d, &run(RunState::Running), &t2, &registry, Utc::now());
    assert_eq!(
        plan.run_event,
        Some((RunState::Running, RunEvent::Finish { success: false }))
    );
}

#[test]
fn a_mapped_task_waits_for_what_it_maps_over_and_follows_its_failure_or_skip() {
    let d = dag("d:\n  tasks:\n    make: {operator: bash, bash_command: 'true'}\n    other: {operator: bash, bash_command: 'true'}\n    each: {operator: bash, bash_command: 'true', expand: {env: make.output}, dependencies: [other], trigger_rule: one_success}\n");
    let registry = OperatorRegistry::builtin();
    let each = |plan: &RunPlan, t: &[TiRow]| after(plan, t)["each"];
    // `other` succeeded (one_success says run) but `make` still runs: wait, do not fail.
    let t = tis(&d, &[("other", TaskState::Success), ("make", TaskState::Running)]);
    let plan = plan_run(&d, &run(RunState::Running), &t, &registry, Utc::now());
    assert_eq!(each(&plan, &t), TaskState::None);
    assert!(plan.expansions.is_empty());
    let t = tis(&d, &[("other", TaskState::Success), ("make", TaskState::Failed)]);
    let plan = plan_run(&d, &run(RunState::Running), &t, &registry, Utc::now());
    assert_eq!(each(&plan, &t), TaskState::UpstreamFailed);
    let t = tis(&d, &[("other", TaskState::Success), ("make", TaskState::Skipped)]);
    let plan = plan_run(&d, &run(RunState::Running), &t, &registry, Utc::now());
    assert_eq!(each(&plan, &t), TaskState::Skipped);
}

#[test]
fn chain_of_empty_tasks_completes_in_one_pass() {
    let d = dag("d:\n  tasks:\n    a: {operator: empty}\n    b: {operator: empty, dependencies: [a]}\n    c: {operator: empty, dependencies: [b]}\n");
    let t = tis(&d, &[]);
    let plan = plan_run(
        &d,
        &run(RunState::Running),
        &t,
        &OperatorRegistry::builtin(),
        Utc::now(),
    );
    assert!(after(&plan, &t).values().all(|s| *s == TaskState::Success));
    assert_eq!(
        plan.run_event,
        Some((RunState::Running, RunEvent::Finish { success: true }))
    );
}

#[test]
fn depends_on_past_and_wait_for_downstream_wait_for_the_run_before() {
    use TaskState::{Failed as F, Running as R, Scheduled, Skipped as K, Success as S};
    let d = dag("d:\n  tasks:\n    a: {operator: bash, bash_command: x, wait_for_downstream: true}\n    b: {operator: bash, bash_command: x, dependencies: [a], depends_on_past: true}\n    c: {operator: bash, bash_command: x}\n");
    assert!(
        d.tasks[0].depends_on_past,
        "wait_for_downstream implies depends_on_past"
    );
    let t = tis(&d, &[]);
    let registry = OperatorRegistry::builtin();
    let now = Utc::now();
    let plan = |past: Option<&[(&str, TaskState)]>| {
        let past: Option<HashMap<String, TaskState>> =
            past.map(|p| p.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        let inputs = RunInputs {
            past: past.as_ref(),
            xcoms: None,
        };
        plan_run_after(&d, &run(RunState::Running), &t, &inputs, &registry, now)
    };
    // No run before (or no logical date): as without the flags.
    assert_eq!(after(&plan(None), &t)["a"], Scheduled);
    for (past, a) in [
        (vec![("a", S), ("b", S)], Scheduled),
        (vec![("a", S), ("b", K)], Scheduled),
        (vec![("a", K), ("b", S)], Scheduled),
        // The task did not exist before: nothing to wait for.
        (vec![("b", S)], Scheduled),
        (vec![("a", F), ("b", S)], TaskState::None),
        (vec![("a", R), ("b", S)], TaskState::None),
        // `a` itself succeeded but `b` after it did not: wait_for_downstream holds it.
        (vec![("a", S), ("b", F)], TaskState::None),
        (vec![("a", S), ("b", TaskState::UpstreamFailed)], TaskState::None),
    ] {
        let p = plan(Some(&past));
        assert_eq!(after(&p, &t)["a"], a, "{past:?}");
        // `c` has no flags: it runs whatever the past.
        assert_eq!(after(&p, &t)["c"], Scheduled);
        if a == TaskState::None {
            assert_eq!(
                p.next_eval_at,
                Some(now + PAST_POLL),
                "a waiting run is looked at again"
            );
        }
    }
}

#[test]
fn failure_propagates_and_an_all_done_leaf_still_runs() {
    let d = dag(
        "d:\n  tasks:\n    deploy: {operator: bash, bash_command: x}\n    load: {operator: bash, bash_command: x, dependencies: [deploy]}\n    teardown: {operator: bash, bash_command: x, dependencies: [load], trigger_rule: all_done}\n",
    );
    let t = tis(&d, &[("deploy", TaskState::Failed)]);
    let plan = plan_run(
        &d,
        &run(RunState::Running),
        &t,
        &OperatorRegistry::builtin(),
        Utc::now(),
    );
    let states = after(&plan, &t);
    assert_eq!(states["load"], TaskState::UpstreamFailed);
    assert_eq!(states["teardown"], TaskState::Scheduled);
    assert!(plan.run_event.is_none());
}

/// The run's state once every task has ended, as Airflow's `DagRun.update_state` gives it (its
/// `_tis_for_dagrun_state`: leaves not counting teardowns without `on_failure_fail_dagrun`).
#[test]
fn run_state_as_airflow_decides_it() {
    use TaskState::{Failed as F, Skipped as K, Success as S, UpstreamFailed as U};
    /// What the case shows, the tasks, their final states, whether the run succeeded.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, TaskState)], bool);
    let cases: &[Case] = &[
        (
            "a plain all_done leaf decides: it succeeded, so the run did although an inner task failed",
            "    a: {operator: bash, bash_command: x}\n    b: {operator: bash, bash_command: x, dependencies: [a]}\n    c: {operator: bash, bash_command: x, dependencies: [b], trigger_rule: all_done}\n",
            &[("a", F), ("b", U), ("c", S)],
            true,
        ),
        (
            "a failing all_done leaf fails the run",
            "    a: {operator: bash, bash_command: x}\n    c: {operator: bash, bash_command: x, dependencies: [a], trigger_rule: all_done}\n",
            &[("a", S), ("c", F)],
            false,
        ),
        (
            "a teardown does not decide: the work before it does",
            "    a: {operator: bash, bash_command: x}\n    b: {operator: bash, bash_command: x, dependencies: [a]}\n    down: {operator: bash, bash_command: x, dependencies: [b], is_teardown: true}\n",
            &[("a", F), ("b", U), ("down", S)],
            false,
        ),
        (
            "a teardown that fails does not fail a run whose work succeeded",
            "    a: {operator: bash, bash_command: x}\n    down: {operator: bash, bash_command: x, dependencies: [a], is_teardown: true}\n",
            &[("a", S), ("down", F)],
            true,
        ),
        (
            "unless it says on_failure_fail_dagrun",
            "    a: {operator: bash, bash_command: x}\n    down: {operator: bash, bash_command: x, dependencies: [a], as_teardown: {on_failure_fail_dagrun: true}}\n",
            &[("a", S), ("down", F)],
            false,
        ),
        (
            "leaves and skips: skipped leaves count as success",
            "    a: {operator: bash, bash_command: x}\n    b: {operator: bash, bash_command: x, dependencies: [a]}\n    c: {operator: bash, bash_command: x}\n",
            &[("a", S), ("b", K), ("c", S)],
            true,
        ),
        (
            "a DAG of teardowns only is decided by its plain leaves",
            "    down: {operator: bash, bash_command: x, is_teardown: true}\n",
            &[("down", F)],
            false,
        ),
        (
            "a setup that failed: the work and the teardown are failed upstream, the run fails",
            "    up: {operator: bash, bash_command: x, is_setup: true}\n    work: {operator: bash, bash_command: x, dependencies: [up]}\n    down: {operator: bash, bash_command: x, as_teardown: {setups: [up]}, dependencies: [work]}\n",
            &[("up", F), ("work", U), ("down", U)],
            false,
        ),
    ];
    for (what, tasks, states, success) in cases {
        let d = dag(&format!("d:\n  tasks:\n{tasks}"));
        let states: HashMap<&str, TaskState> = states.iter().copied().collect();
        assert_eq!(run_succeeded(&d, &states), *success, "{what}");
    }
}

#[test]
fn a_teardown_runs_when_one_of_its_setups_succeeded_and_not_otherwise() {
    let d = dag(
        "d:\n  tasks:\n    up: {operator: bash, bash_command: x, is_setup: true}\n    work: {operator: bash, bash_command: x, dependencies: [up]}\n    down: {operator: bash, bash_command: x, dependencies: [work], as_teardown: {setups: [up]}}\n",
    );
    let down = d.task("down").unwrap();
    assert!(down.is_teardown);
    assert_eq!(down.trigger_rule, TriggerRule::AllDoneSetupSuccess);
    assert!(down.upstream.contains(&"up".to_string()), "{:?}", down.upstream);
    let decide = |states: &[(&str, TaskState)]| {
        let t = tis(&d, states);
        after(
            &plan_run(
                &d,
                &run(RunState::Running),
                &t,
                &OperatorRegistry::builtin(),
                Utc::now(),
            ),
            &t,
        )["down"]
    };
    assert_eq!(
        decide(&[("up", TaskState::Success), ("work", TaskState::Failed)]),
        TaskState::Scheduled
    );
    assert_eq!(
        decide(&[("up", TaskState::Failed), ("work", TaskState::UpstreamFailed)]),
        TaskState::UpstreamFailed
    );
    assert_eq!(
        decide(&[("up", TaskState::Skipped), ("work", TaskState::Skipped)]),
        TaskState::Skipped
    );
}

#[test]
fn retries_wait_for_their_time_and_runs_time_out() {
    let d = dag("d:\n  dagrun_timeout: 60\n  tasks:\n    a: {operator: bash, bash_command: x}\n");
    let mut t = tis(&d, &[("a", TaskState::UpForRetry)]);
    let now = Utc::now();
    t[0].next_retry_at = Some(now + chrono::Duration::seconds(5));
    let plan = plan_run(&d, &run(RunState::Running), &t, &OperatorRegistry::builtin(), now);
    assert!(plan.changes.is_empty());
    assert_eq!(plan.next_eval_at, Some(now + chrono::Duration::seconds(5)));
    let plan = plan_run(
        &d,
        &run(RunState::Running),
        &t,
        &OperatorRegistry::builtin(),
        now + chrono::Duration::seconds(6),
    );
    assert_eq!(after(&plan, &t)["a"], TaskState::Scheduled);
    let t = tis(&d, &[("a", TaskState::Running)]);
    let plan = plan_run(
        &d,
        &run(RunState::Running),
        &t,
        &OperatorRegistry::builtin(),
        now + chrono::Duration::seconds(61),
    );
    assert_eq!(after(&plan, &t)["a"], TaskState::Failed);
    assert_eq!(plan.run_event, Some((RunState::Running, RunEvent::TimedOut)));
}

#[test]
fn skips_cascade_by_rule() {
    let d = dag("d:\n  tasks:\n    a: {operator: bash, bash_command: x}\n    b: {operator: empty, dependencies: [a]}\n    c: {operator: empty, dependencies: [b], trigger_rule: none_failed}\n    d: {operator: empty, dependencies: [b], trigger_rule: all_skipped}\n");
    let t = tis(&d, &[("a", TaskState::Skipped)]);
    let plan = plan_run(
        &d,
        &run(RunState::Running),
        &t,
        &OperatorRegistry::builtin(),
        Utc::now(),
    );
    let states = after(&plan, &t);
    assert_eq!(
        (states["b"], states["c"], states["d"]),
        (TaskState::Skipped, TaskState::Success, TaskState::Success)
    );
    assert_eq!(
        plan.run_event,
        Some((RunState::Running, RunEvent::Finish { success: true }))
    );
}
