//! The Helm chart (`deploy/helm/dagctl`): `helm lint` and `helm template` (helm 4.3.2, built from the Go module
//! proxy by `scripts/ensure-helm.sh`; `DAGCTL_TEST_HELM` names it), every rendered object applied to the real
//! API server of the local control plane (server-side apply, so the server validates them), and each
//! ServiceAccount's rights checked by the API server's own authorizer.

mod common;
#[path = "common/kube.rs"]
mod kube_harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube_harness::Cluster;
use serde_json::Value;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn helm() -> PathBuf {
    match std::env::var("DAGCTL_TEST_HELM") {
        Ok(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!("DAGCTL_TEST_HELM does not name helm: scripts/test.sh builds it (scripts/ensure-helm.sh)"),
    }
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/dagctl")
}

fn helm_run(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm())
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm")
}

fn render(namespace: &str, sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "qa", chart.to_str().unwrap(), "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = helm_run(&args);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let text = common::stdout(&output);
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("helm's output is YAML")
        .into_iter()
        .filter(|doc| doc.is_object())
        .collect()
}

#[test]
fn the_chart_lints_renders_by_digest_only_and_refuses_a_tag() {
    let chart = chart();
    let digest = format!("image.digest={DIGEST}");
    let lint = helm_run(&["lint", chart.to_str().unwrap(), "--set", &digest]);
    assert!(
        lint.status.success(),
        "{}{}",
        common::stdout(&lint),
        common::stderr(&lint)
    );
    for bad in ["", "image.digest=latest", "image.digest=sha256:abc"] {
        let mut args = vec!["template", "qa", chart.to_str().unwrap()];
        if !bad.is_empty() {
            args.extend(["--set", bad]);
        }
        let output = helm_run(&args);
        assert!(!output.status.success(), "{bad}");
        assert!(
            common::stderr(&output).contains("image.digest must be the image's digest"),
            "{bad}: {}",
            common::stderr(&output)
        );
    }
    let objects = render("dagctl", &[&digest]);
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Deployment/qa-dagctl-scheduler",
        "Deployment/qa-dagctl-webserver",
        "Role/qa-dagctl-scheduler",
        "PodDisruptionBudget/qa-dagctl-webserver",
        "NetworkPolicy/qa-dagctl-task",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "{expected} in {kinds:?}");
    }
    for object in &objects {
        let text = object.to_string();
        assert!(!text.contains(":latest"), "no mutable tag: {text}");
        if object["kind"] == "Deployment" {
            let pod = &object["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            assert_eq!(container["image"], format!("ghcr.io/dagctl/dagctl@{DIGEST}"));
            assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(container["securityContext"]["runAsNonRoot"], true);
            assert_eq!(object["spec"]["replicas"], 2);
        }
    }
    // The executor's base pod and config, as the scheduler will read them.
    let config = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "qa-dagctl-config")
        .unwrap();
    let template = config["data"]["pod-template.yaml"].as_str().unwrap();
    let pod = worker::executor::kubernetes::pod::parse_template(template).expect("the chart's pod template is a Pod");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.service_account_name.as_deref(), Some("qa-dagctl-task"));
    let toml = config["data"]["scheduler.toml"].as_str().unwrap();
    assert!(
        toml.contains("execution_api_url = \"http://qa-dagctl-scheduler.dagctl.svc:8793\""),
        "{toml}"
    );
    assert!(toml.contains("executor = \"kubernetes\""), "{toml}");
    assert!(
        toml.contains("task_logs = \"database\""),
        "every server reads the same logs: {toml}"
    );
    assert!(
        !toml.contains("database_url") && !toml.contains("postgres") && !toml.contains("secret_key"),
        "no secret in the ConfigMap: {toml}"
    );
}

#[test]
fn git_synced_dags_render_a_config_dagctl_accepts_and_mount_only_the_credentials() {
    let digest = format!("image.digest={DIGEST}");
    let sets = [
        digest.as_str(),
        "dags.git.enabled=true",
        "dags.git.url=https://git.example/team/dags.git",
        "dags.git.subdir=dags",
        "dags.git.auth=token",
        "dags.git.credentialsSecret=dags-repo",
    ];
    let objects = render("dagctl", &sets);
    let config = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "qa-dagctl-config")
        .unwrap();
    let toml = config["data"]["scheduler.toml"].as_str().unwrap();
    assert!(!toml.contains("dags_folder"), "the checkout is the DAGs folder: {toml}");
    assert!(toml.contains("token_file = \"/etc/dagctl/git/token\""), "{toml}");
    // dagctl's own loader reads the rendered file.
    let mut home = common::Home::new();
    home.unset.push("DAGCTL_DAGS_FOLDER");
    std::fs::write(home.path().join("dagctl.toml"), toml).unwrap();
    let out = home.run(&["dags", "list-import-errors"]);
    assert!(out.status.success(), "{toml}\n{}", common::stderr(&out));
    let scheduler = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "qa-dagctl-scheduler")
        .unwrap();
    let pod = &scheduler["spec"]["template"]["spec"];
    let volumes = pod["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"dags-repo\"") && !volumes.contains("qa-dagctl-dags"),
        "{volumes}"
    );
    let mounts = pod["containers"][0]["volumeMounts"].to_string();
    assert!(
        mounts.contains("/etc/dagctl/git") && !mounts.contains("/opt/dagctl/dags"),
        "{mounts}"
    );

    // A token without its Secret, or an unknown auth, is refused when rendering.
    let chart = chart();
    for (bad, message) in [
        ("dags.git.credentialsSecret=", "dags.git.credentialsSecret is required"),
        ("dags.git.auth=password", "dags.git.auth must be none, token or ssh"),
    ] {
        let mut args = vec!["template", "qa", chart.to_str().unwrap()];
        for set in sets.iter().copied().chain([bad]) {
            args.extend(["--set", set]);
        }
        let output = helm_run(&args);
        assert!(!output.status.success(), "{bad}");
        assert!(
            common::stderr(&output).contains(message),
            "{bad}: {}",
            common::stderr(&output)
        );
    }
}

#[test]
fn the_rendered_chart_is_accepted_by_the_api_server_and_grants_least_privilege() {
    let cluster = Cluster::new("chart");
    let digest = format!("image.digest={DIGEST}");
    let objects = render(
        &cluster.namespace,
        &[
            &digest,
            "webserver.ingress.enabled=true",
            "webserver.ingress.host=dagctl.example.test",
            "oidc.enabled=true",
            "oidc.issuer=https://idp.example.test",
            "oidc.clientId=dagctl",
        ],
    );
    let kubeconfig = cluster.kubeconfig.clone();
    let namespace = cluster.namespace.clone();
    cluster.block_on(async move {
        let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
            let (resource, _) = kube::discovery::pinned_kind(&client, &gvk)
                .await
                .unwrap_or_else(|err| panic!("the API server knows {gvk:?}: {err}"));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let dynamic: DynamicObject = serde_json::from_value(object).unwrap();
            api.patch(
                &name,
                &PatchParams::apply("dagctl-chart-test").force(),
                &Patch::Apply(&dynamic),
            )
            .await
            .unwrap_or_else(|err| panic!("the API server refused {name}: {err}"));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let scheduler = cluster.token_kubeconfig("qa-dagctl-scheduler", dir.path());
    let webserver = cluster.token_kubeconfig("qa-dagctl-webserver", dir.path());
    let ns = cluster.namespace.as_str();
    for (who, kubeconfig, verb, resource, namespace, allowed) in [
        ("scheduler", &scheduler, "create", "pods", ns, true),
        ("scheduler", &scheduler, "watch", "pods", ns, true),
        ("scheduler", &scheduler, "get", "pods/log", ns, true),
        ("scheduler", &scheduler, "create", "pods", "default", false),
        ("scheduler", &scheduler, "get", "secrets", ns, false),
        ("scheduler", &scheduler, "create", "pods/exec", ns, false),
        ("scheduler", &scheduler, "create", "deployments", ns, false),
        ("webserver", &webserver, "get", "pods", ns, false),
        ("webserver", &webserver, "get", "pods/log", ns, false),
        ("webserver", &webserver, "get", "secrets", ns, false),
    ] {
        assert_eq!(
            cluster.may(kubeconfig, verb, resource, namespace),
            allowed,
            "{who}: {verb} {resource} in {namespace}"
        );
    }
}

#[test]
fn chain_networks_on_the_cluster_render_a_config_dagctl_accepts_and_a_chain_account_with_the_chain_role_only() {
    let digest = format!("image.digest={DIGEST}");
    let image = format!("chain.kubernetes.images.geth.1\\.13\\.15=ethereum/client-go:v1.13.15@{DIGEST}");
    let sets = [digest.as_str(), "chain.kubernetes.enabled=true", image.as_str()];
    let objects = render("dagctl", &sets);
    let config = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "qa-dagctl-config")
        .unwrap();
    let toml = config["data"]["scheduler.toml"].as_str().unwrap();
    assert!(toml.contains("[[chain.kubernetes.regions]]"), "{toml}");
    assert!(toml.contains("task_service_accounts = [\"qa-dagctl-chain\"]"), "{toml}");
    let mut home = common::Home::new();
    home.unset.push("DAGCTL_DAGS_FOLDER");
    std::fs::write(home.path().join("dagctl.toml"), toml).unwrap();
    let out = home.run(&["dags", "list-import-errors"]);
    assert!(out.status.success(), "{toml}\n{}", common::stderr(&out));

    let role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "qa-dagctl-chain")
        .unwrap();
    let file = std::fs::read_to_string(chart().join("files/chain-role.yaml")).unwrap();
    let wanted: Value = serde_saphyr::from_str(&file).unwrap();
    assert_eq!(role["rules"], wanted["rules"]);
    let account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "qa-dagctl-chain")
        .unwrap();
    assert_eq!(account["automountServiceAccountToken"], true);
    let binding = objects
        .iter()
        .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "qa-dagctl-chain")
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "qa-dagctl-chain");
    // Off by default: no chain account, no chain rights.
    let plain = render("dagctl", &[digest.as_str()]);
    assert!(!plain.iter().any(|o| o["metadata"]["name"] == "qa-dagctl-chain"));
}
