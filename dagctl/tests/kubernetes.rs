//! The Kubernetes executor against a real API server (the local control plane `scripts/test.sh` starts; kwok
//! plays the node and a test kubelet in `common/kube.rs` runs each pod's command here): pods made from the
//! template and `executor_config`, their labels, the watch, failure reasons in the try's log, clean-up by
//! policy, adoption after a scheduler SIGKILL, and bad input.

mod common;
#[path = "common/kube.rs"]
mod kube_harness;

use std::time::Duration;

use common::{free_port, http_get, wait_for, Home};
use kube_harness::{Cluster, BEHAVIOUR};
use serde_json::Value;

fn run_state(home: &Home, dag_id: &str, run_id: &str) -> Option<String> {
    let runs = home.try_json(&["dags", "list-runs", dag_id])?;
    runs.as_array()?
        .iter()
        .find(|r| r["run_id"] == run_id)
        .and_then(|r| r["state"].as_str().map(str::to_string))
}

fn state_of(home: &Home, dag_id: &str, run_id: &str, task_id: &str) -> Value {
    home.states(dag_id, run_id)
        .into_iter()
        .find(|s| s["task_id"] == task_id)
        .unwrap_or(Value::Null)
}

/// A home whose engine runs tries as pods in `cluster`'s namespace with the rights of the shipped scheduler
/// Role only (`deploy/helm/dagctl/files/scheduler-role.yaml`), and the cluster's kubelet running them.
fn kube_home(cluster: &mut Cluster, port: u16, extra: &str) -> Home {
    let home = Home::new();
    let role = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/dagctl/files/scheduler-role.yaml");
    let kubeconfig = cluster.service_account_kubeconfig("dagctl-scheduler", &role, home.path());
    for (verb, resource, ns, allowed) in [
        ("create", "pods", cluster.namespace.as_str(), true),
        ("get", "pods/log", cluster.namespace.as_str(), true),
        ("create", "pods", "default", false),
        ("list", "secrets", cluster.namespace.as_str(), false),
        ("create", "pods/exec", cluster.namespace.as_str(), false),
    ] {
        assert_eq!(
            cluster.may(&kubeconfig, verb, resource, ns),
            allowed,
            "{verb} {resource} in {ns}"
        );
    }
    std::fs::write(
        home.path().join("dagctl.toml"),
        format!(
            "executor = \"kubernetes\"\nexecution_api_url = \"http://127.0.0.1:{port}\"\n[kubernetes]\nkubeconfig = \"{}\"\nnamespace = \"{}\"\nimage = \"registry.example/dagctl@sha256:0123\"\nkeep_failed_pods = \"1h\"\nworker_pods_pending_timeout = \"4s\"\n{extra}",
            kubeconfig.display(),
            cluster.namespace
        ),
    )
    .unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    cluster.play_kubelet(
        vec![("dagctl".into(), env!("CARGO_BIN_EXE_dagctl").into())],
        vec![
            ("PATH".into(), path),
            ("HOME".into(), home.path().display().to_string()),
        ],
    );
    home
}

#[test]
fn tries_run_as_pods_and_pod_failures_end_them_with_their_reason() {
    let mut cluster = Cluster::new("exec");
    let port = free_port();
    let home = kube_home(&mut cluster, port, "");
    home.write_dag(
        "pods.yml",
        &format!(
            "pods:
  default_args: {{retries: 0}}
  tasks:
    hello:
      operator: bash
      bash_command: 'echo hello from a pod; echo \"{{{{ ti.try_number }}}}\"'
      executor_config:
        resources: {{requests: {{cpu: 100m}}, limits: {{memory: 64Mi}}}}
        labels: {{team: qa}}
        annotations: {{note: any text}}
        node_selector: {{type: kwok}}
        tolerations: [{{key: dedicated, operator: Exists, effect: NoSchedule}}]
    after: {{operator: bash, bash_command: 'echo after', dependencies: [hello]}}
    oom: {{operator: bash, bash_command: 'true', executor_config: {{annotations: {{{b}: oom}}}}}}
    evicted: {{operator: bash, bash_command: 'true', executor_config: {{annotations: {{{b}: evict}}}}}}
    pull: {{operator: bash, bash_command: 'true', executor_config: {{annotations: {{{b}: image-pull-fails}}}}}}
    crash: {{operator: bash, bash_command: 'true', executor_config: {{annotations: {{{b}: crash}}}}}}
    nowhere: {{operator: bash, bash_command: 'true', executor_config: {{node_selector: {{pool: none-such}}}}}}
    fails: {{operator: bash, bash_command: 'echo failing on purpose; exit 3'}}
    secret: {{operator: bash, bash_command: 'true', executor_config: {{env_from_secrets: [dagctl]}}}}
    escape: {{operator: bash, bash_command: 'true', executor_config: {{pod_template_file: ../../etc/pod.yaml}}}}
",
            b = BEHAVIOUR
        ),
    );
    let _engine = home.spawn(&["scheduler", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "the scheduler", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "pods", "--run-id", "k-1"]);
    wait_for(Duration::from_secs(90), "run k-1 to end", || {
        run_state(&home, "pods", "k-1").filter(|s| s == "failed" || s == "success")
    });
    let state = |task: &str| {
        state_of(&home, "pods", "k-1", task)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(state("hello"), "success");
    assert_eq!(state("after"), "success");
    let hello_log = home.ok(&["tasks", "logs", "pods", "k-1", "hello"]);
    assert!(hello_log.contains("hello from a pod"), "{hello_log}");

    // Every pod-level failure ended its try, with the pod's reason where people look: the try's log.
    for (task, reason) in [
        ("oom", "OOMKilled (exit code 137)"),
        ("evicted", "Evicted: The node was low on resource: memory"),
        ("pull", "cannot start its container: ImagePullBackOff"),
        ("crash", "exit code 139"),
        ("nowhere", "was still pending after 4s (Unschedulable"),
        (
            "secret",
            "names `dagctl`, which [kubernetes] task_secrets does not allow",
        ),
        ("escape", "must be a path inside the DAGs folder"),
    ] {
        assert_eq!(state(task), "failed", "{task}");
        let log = home.ok(&["tasks", "logs", "pods", "k-1", task]);
        assert!(log.contains(reason), "{task}: {log}");
    }
    // The crashed container's own output reached the try's log through the pod log API (kwok serves it).
    let crash_log = home.ok(&["tasks", "logs", "pods", "k-1", "crash"]);
    assert!(
        crash_log.contains("runner crashed before it could report"),
        "{crash_log}"
    );

    // The pod carried the try's labels, the task's executor_config, the runner command and no API token
    // mount; the token for its try only.
    let seen = cluster.seen.lock().unwrap().clone();
    let (name, hello) = seen
        .iter()
        .find(|(_, pod)| pod.labels.get("dagctl.io/task-id").map(String::as_str) == Some("hello"))
        .expect("hello's pod");
    assert!(name.starts_with("pods-hello-"), "{name}");
    assert_eq!(hello.labels["app.kubernetes.io/managed-by"], "dagctl");
    assert_eq!(hello.labels["dagctl.io/dag-id"], "pods");
    assert_eq!(hello.labels["dagctl.io/run-id"], "k-1");
    assert_eq!(hello.labels["dagctl.io/try-number"], "1");
    assert_eq!(hello.labels["team"], "qa");
    assert_eq!(hello.annotations["note"], "any text");
    assert_eq!(hello.starts, 1, "the pod ran once");
    let base = &hello.spec["containers"][0];
    assert_eq!(base["name"], "base");
    assert_eq!(base["image"], "registry.example/dagctl@sha256:0123");
    assert_eq!(base["command"], serde_json::json!(["dagctl"]));
    assert_eq!(
        base["args"],
        serde_json::json!([
            "tasks",
            "run",
            "pods",
            "k-1",
            "hello",
            "--try",
            "1",
            "--map-index",
            "-1",
            "--log-to-stdout"
        ])
    );
    assert_eq!(base["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(hello.spec["restartPolicy"], "Never");
    assert_eq!(hello.spec["automountServiceAccountToken"], false);
    assert_eq!(hello.spec["nodeSelector"]["type"], "kwok");
    assert_eq!(hello.spec["tolerations"][0]["key"], "dedicated");
    let env: Vec<&str> = base["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        ["DAGCTL_EXECUTION_API_URL", "DAGCTL_TASK_TOKEN"],
        "nothing of the engine's environment"
    );

    // Clean-up policy: succeeded pods are deleted, failed ones kept (keep_failed_pods = 1h).
    wait_for(Duration::from_secs(20), "succeeded pods to be deleted", || {
        (!cluster.pods().values().any(|phase| phase == "Succeeded")).then_some(())
    });
    assert_eq!(state("fails"), "failed");
    // Kept past the scheduler's heartbeat (which stops tries whose state changed) and its clean-up sweep.
    std::thread::sleep(Duration::from_secs(6));
    let pods = cluster.pods();
    let failed = pods.values().filter(|phase| *phase == "Failed").count();
    assert_eq!(
        failed, 4,
        "oom, evicted, crash and fails (its runner reported) are kept: {pods:?}"
    );
    let kept = pods
        .keys()
        .find(|name| name.starts_with("pods-fails-"))
        .unwrap_or_else(|| panic!("{pods:?}"))
        .clone();
    // The runner printed the try's log on the pod's own output too: the pod log API (`kubectl logs`) has it.
    let own = cluster
        .block_on(cluster.pods_api().logs(&kept, &Default::default()))
        .expect("the kept pod's log");
    assert!(
        own.contains("failing on purpose") && own.contains("starting try 1"),
        "{own}"
    );
    assert!(
        !pods
            .keys()
            .any(|name| name.starts_with("pods-pull-") || name.starts_with("pods-nowhere-")),
        "pods that never started are deleted with their try: {pods:?}"
    );
}

#[test]
fn a_killed_scheduler_s_pods_are_adopted_and_no_try_runs_twice() {
    let mut cluster = Cluster::new("adopt");
    let port = free_port();
    let home = kube_home(&mut cluster, port, "");
    let marks = home.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    home.write_dag(
        "hold.yml",
        &format!(
            "hold:\n  tasks:\n    wait: {{operator: bash, bash_command: 'touch {m}/started; for i in $(seq 600); do [ -e {m}/release ] && exit 0; sleep 0.1; done; exit 1'}}\n    after: {{operator: bash, bash_command: 'echo after', dependencies: [wait]}}\n",
            m = marks.display()
        ),
    );
    let mut first = home.spawn(&["scheduler", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "the scheduler", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "hold", "--run-id", "a-1"]);
    wait_for(Duration::from_secs(60), "the pod of `wait` to run", || {
        marks.join("started").exists().then_some(())
    });
    first.kill9();

    // The pod runs on; a new scheduler takes it over from the watch, and the run ends with try 1 everywhere.
    let second = home.spawn(&["scheduler", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "the second scheduler", || {
        http_get(port, "/health")
    });
    std::fs::write(marks.join("release"), "").unwrap();
    wait_for(Duration::from_secs(90), "run a-1 to succeed", || {
        (run_state(&home, "hold", "a-1").as_deref() == Some("success")).then_some(())
    });
    assert_eq!(
        state_of(&home, "hold", "a-1", "wait")["try_number"],
        1,
        "no try was repeated"
    );
    let seen = cluster.seen.lock().unwrap().clone();
    let wait_pods: Vec<_> = seen
        .iter()
        .filter(|(_, pod)| pod.labels.get("dagctl.io/task-id").map(String::as_str) == Some("wait"))
        .collect();
    assert_eq!(wait_pods.len(), 1, "one pod for the try: {seen:?}");
    assert_eq!(wait_pods[0].1.uids.len(), 1, "one pod object: {wait_pods:?}");
    assert_eq!(wait_pods[0].1.starts, 1, "its command ran once");
    let log = home.ok(&["tasks", "logs", "hold", "a-1", "wait"]);
    assert!(!log.contains("ended without reporting"), "{log}");
    assert!(
        second.output().contains("adopted a running task"),
        "{}",
        second.output()
    );
    wait_for(Duration::from_secs(20), "no pod left running", || {
        (!cluster
            .pods()
            .values()
            .any(|phase| phase == "Running" || phase == "Pending"))
        .then_some(())
    });
}

#[test]
fn bad_kubernetes_settings_are_clear_errors_and_an_unreachable_api_server_fails_tries() {
    let mut cluster = Cluster::new("bad");
    let port = free_port();

    // A pod template that is not a valid Pod: the scheduler does not start, and says why in one line.
    let home = kube_home(&mut cluster, port, "pod_template_file = \"template.yaml\"\n");
    let template = home.path().join("template.yaml");
    std::fs::write(&template, "spec:\n  containers:\n  - name: base\n    imagee: x\n").unwrap();
    let toml = std::fs::read_to_string(home.path().join("dagctl.toml")).unwrap();
    std::fs::write(
        home.path().join("dagctl.toml"),
        toml.replace("\"template.yaml\"", &format!("\"{}\"", template.display())),
    )
    .unwrap();
    let output = home.run(&["scheduler", "--port", &port.to_string()]);
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("is not a valid Pod: unknown field `spec.containers[0].imagee`"),
        "{err}"
    );

    // An unknown executor_config key is an import error at its line.
    home.write_dag(
        "typo.yml",
        "typo:\n  tasks:\n    a:\n      operator: bash\n      bash_command: 'true'\n      executor_config: {imagee: x}\n",
    );
    let output = home.run(&["dags", "validate"]);
    assert!(!output.status.success());
    let text = format!("{}{}", common::stdout(&output), common::stderr(&output));
    assert!(
        text.contains("typo.yml:6") && text.contains("unknown key `imagee` in executor_config"),
        "{text}"
    );

    // An API server that cannot be reached, or that refuses the engine's credentials: the try fails (its
    // retries would try again), nothing stays queued or running.
    let closed = free_port();
    let kubeconfig = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    for (name, text) in [
        ("unreachable", kubeconfig.replace(&server, &format!("https://127.0.0.1:{closed}"))),
        (
            "revoked",
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: revoked-or-never-issued}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
            ),
        ),
    ] {
        let port = free_port();
        let home = Home::new();
        let path = home.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        std::fs::write(
            home.path().join("dagctl.toml"),
            format!(
                "executor = \"kubernetes\"\nexecution_api_url = \"http://127.0.0.1:{port}\"\n[kubernetes]\nkubeconfig = \"{}\"\nnamespace = \"{}\"\nimage = \"x@sha256:00\"\n",
                path.display(),
                cluster.namespace
            ),
        )
        .unwrap();
        home.write_dag("one.yml", "one:\n  tasks:\n    a: {operator: bash, bash_command: 'true'}\n");
        let _engine = home.spawn(&["scheduler", "--port", &port.to_string()]);
        wait_for(Duration::from_secs(30), "the scheduler", || http_get(port, "/health"));
        home.ok(&["dags", "trigger", "one", "--run-id", "r-1"]);
        wait_for(Duration::from_secs(60), "the run to fail", || {
            (run_state(&home, "one", "r-1").as_deref() == Some("failed")).then_some(())
        });
        let log = home.ok(&["tasks", "logs", "one", "r-1", "a"]);
        let expected = if name == "unreachable" { "did not take the try's pod" } else { "Unauthorized" };
        assert!(log.contains(expected), "{name}: {log}");
    }
    assert!(cluster.pods().is_empty(), "no pod was made");
}

#[test]
fn bench_k8s_reports_pods_per_second_against_bare_pods() {
    let cluster = Cluster::new("benchk");
    let home = Home::new();
    let output = home.run(&[
        "bench",
        "k8s",
        "--kubeconfig",
        cluster.kubeconfig.to_str().unwrap(),
        "--pods",
        "10",
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let rows: Value = serde_json::from_str(&common::stdout(&output)).unwrap();
    let figure = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["figure"] == name)
            .cloned()
            .unwrap()
    };
    let rate = figure("pods per second");
    assert!(
        rate["value"].as_f64().unwrap() > 0.0 && rate["baseline_value"].as_f64().unwrap() > 0.0,
        "{rows}"
    );
    assert!(
        figure("task claimed to pod seen, median")["value"].as_f64().unwrap() > 0.0,
        "{rows}"
    );
    assert!(
        figure("API server pod create, median")["value"].as_f64().unwrap() > 0.0,
        "{rows}"
    );
}
