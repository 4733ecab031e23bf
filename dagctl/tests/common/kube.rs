//! A namespace on the local Kubernetes control plane that `scripts/test.sh` starts (etcd, kube-apiserver,
//! controller manager, scheduler and kwok; `DAGCTL_TEST_KUBECONFIG` names its admin kubeconfig), and a test
//! kubelet: kwok marks scheduled pods Running but runs no container, so this harness runs each pod's command on
//! this machine with the pod's environment, keeps its output as a CRI log file that kwok serves through the pod
//! log API (a `Logs` object), and sets the pod's end (phase, exit code, reason) in its status, as a kubelet
//! would. An annotation `dagctl-test/kubelet` plays the endings no process can: `oom` (OOMKilled, 137),
//! `evict` (Evicted), `image-pull-fails` (ImagePullBackOff), `crash` (the container prints and exits 139).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

pub const BEHAVIOUR: &str = "dagctl-test/kubelet";

/// What the test kubelet saw of one pod.
#[derive(Debug, Clone, Default)]
pub struct SeenPod {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: serde_json::Value,
    /// Times a pod of this name had its command started (one per pod object: a pod made again under the same
    /// name would run again).
    pub starts: u32,
    /// The uids of the pod objects seen under this name.
    pub uids: std::collections::BTreeSet<String>,
}

pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    kubelet: Option<tokio::task::JoinHandle<()>>,
    /// Runner processes the kubelet started (process group ids), stopped at the end.
    children: Arc<Mutex<HashSet<i32>>>,
    pub seen: Arc<Mutex<HashMap<String, SeenPod>>>,
    logs: tempfile::TempDir,
}

fn kubeconfig() -> PathBuf {
    match std::env::var("DAGCTL_TEST_KUBECONFIG") {
        Ok(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "DAGCTL_TEST_KUBECONFIG does not name a kubeconfig: the Kubernetes tests need the local control plane that scripts/test.sh starts (scripts/ensure-kube.sh builds it, scripts/kube-local/start.sh starts it)"
        ),
    }
}

impl Cluster {
    /// A fresh namespace `<prefix>-<random>`, deleted when this is dropped.
    pub fn new(prefix: &str) -> Cluster {
        let kubeconfig = kubeconfig();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let namespace = format!("{prefix}-{}", &uuid_hex()[..8]);
        let client = rt.block_on(async {
            let file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .expect("kubeconfig");
            let client = kube::Client::try_from(config).expect("client");
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .expect("create the test namespace");
            // The controller manager makes the namespace's default ServiceAccount; pods are refused before it.
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
            for _ in 0..300 {
                if accounts.get_opt("default").await.ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            client
        });
        Cluster {
            kubeconfig,
            namespace,
            rt,
            client,
            kubelet: None,
            children: Default::default(),
            seen: Default::default(),
            logs: tempfile::tempdir().unwrap(),
        }
    }

    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(future)
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The pods in the namespace now (name -> phase).
    pub fn pods(&self) -> BTreeMap<String, String> {
        let api = self.pods_api();
        self.block_on(async move {
            api.list(&Default::default())
                .await
                .expect("list pods")
                .items
                .into_iter()
                .map(|pod| {
                    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                    (pod.metadata.name.unwrap_or_default(), phase)
                })
                .collect()
        })
    }

    /// A kubeconfig for ServiceAccount `name` of this namespace, bound to the Role manifest `role_file` and
    /// nothing else, with a token from the TokenRequest API (an hour long), written into `dir`.
    pub fn service_account_kubeconfig(&self, name: &str, role_file: &Path, dir: &Path) -> PathBuf {
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let client = self.client.clone();
        let ns = self.namespace.clone();
        let role_text = std::fs::read_to_string(role_file).expect("the Role manifest");
        let role: Role = serde_saphyr::from_str(&role_text).expect("a Role");
        let role_name = role.metadata.name.clone().expect("the Role's name");
        self.block_on(async move {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
            let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            accounts
                .create(&PostParams::default(), &account)
                .await
                .expect("create the ServiceAccount");
            let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
            roles
                .create(&PostParams::default(), &role)
                .await
                .expect("create the Role");
            let binding: RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            }))
            .unwrap();
            let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
            bindings
                .create(&PostParams::default(), &binding)
                .await
                .expect("bind the Role");
        });
        self.token_kubeconfig(name, dir)
    }

    /// A kubeconfig for the existing ServiceAccount `name` of this namespace, with a token from the TokenRequest
    /// API (an hour long), written into `dir`.
    pub fn token_kubeconfig(&self, name: &str, dir: &Path) -> PathBuf {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let account = name.to_string();
        let token = self.block_on(async move {
            let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}});
            let issued: TokenRequest = accounts
                .create_subresource("token", &account, &PostParams::default(), &request)
                .await
                .expect("a token for the ServiceAccount");
            issued.status.and_then(|status| status.token).expect("an issued token")
        });
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let field = |key: &str| {
            admin
                .lines()
                .find_map(|line| line.trim().strip_prefix(key).map(str::to_string))
                .unwrap_or_else(|| panic!("{key} in the admin kubeconfig"))
        };
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{}', certificate-authority: '{}'}}\nusers:\n- name: {name}\n  user: {{token: '{token}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {name}, namespace: {}}}\ncurrent-context: c\n",
                field("server: "),
                field("certificate-authority: "),
                self.namespace
            ),
        )
        .unwrap();
        path
    }

    /// Whether the holder of `kubeconfig` may `verb` `resource` in `namespace` (a SelfSubjectAccessReview,
    /// answered by the API server's own authorizer).
    pub fn may(&self, kubeconfig: &Path, verb: &str, resource: &str, namespace: &str) -> bool {
        use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
        let kubeconfig = kubeconfig.to_path_buf();
        let review: SelfSubjectAccessReview = serde_json::from_value(json!({
            "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb,
                "resource": resource.split('/').next().unwrap_or(resource),
                "subresource": resource.split_once('/').map(|(_, sub)| sub).unwrap_or("")}}
        }))
        .unwrap();
        self.block_on(async move {
            let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let api: Api<SelfSubjectAccessReview> = Api::all(client);
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .expect("an access review");
            answer.status.is_some_and(|status| status.allowed)
        })
    }

    /// Starts playing the kubelet for this namespace's pods; `programs` maps a command's first word (as the
    /// pod names it, e.g. `dagctl`) to a binary here; `env` is added to each pod's own environment.
    pub fn play_kubelet(&mut self, programs: Vec<(String, PathBuf)>, env: Vec<(String, String)>) {
        let kubelet = Kubelet {
            pods: self.pods_api(),
            logs_api: Api::namespaced_with(self.client.clone(), &self.namespace, &logs_resource()),
            programs: programs.into_iter().collect(),
            env,
            logs_dir: self.logs.path().to_path_buf(),
            children: Arc::clone(&self.children),
            seen: Arc::clone(&self.seen),
            running: Default::default(),
        };
        self.kubelet = Some(self.rt.spawn(kubelet.run()));
    }
}

fn uuid_hex() -> String {
    let mut bytes = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes).unwrap();
    hex::encode(bytes)
}

fn logs_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs"), "logs")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.abort();
        }
        for pgid in self.children.lock().unwrap().drain() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.namespace.clone();
        self.rt.block_on(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                namespaces.delete(&name, &DeleteParams::default()),
            )
            .await;
        });
    }
}

struct Kubelet {
    pods: Api<Pod>,
    logs_api: Api<DynamicObject>,
    programs: HashMap<String, PathBuf>,
    env: Vec<(String, String)>,
    logs_dir: PathBuf,
    children: Arc<Mutex<HashSet<i32>>>,
    seen: Arc<Mutex<HashMap<String, SeenPod>>>,
    /// Pods whose command runs now: name -> process group.
    running: Arc<Mutex<HashMap<String, i32>>>,
}

impl Kubelet {
    async fn run(self) {
        let this = Arc::new(self);
        let stream = watcher(this.pods.clone(), watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        let mut handled: HashSet<String> = HashSet::new();
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                Ok(Event::Delete(pod)) => {
                    // The pod is gone: its container is stopped, as a kubelet would (SIGTERM to the group).
                    let name = pod.metadata.name.unwrap_or_default();
                    if let Some(pgid) = this.running.lock().unwrap().remove(&name) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pgid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            {
                let mut seen = this.seen.lock().unwrap();
                let entry = seen.entry(name.clone()).or_default();
                entry.labels = pod.metadata.labels.clone().unwrap_or_default();
                entry.annotations = pod.metadata.annotations.clone().unwrap_or_default();
                entry.spec = serde_json::to_value(&pod.spec).unwrap_or_default();
                entry.uids.extend(pod.metadata.uid.clone());
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if phase != "Running" || pod.metadata.deletion_timestamp.is_some() || !handled.insert(uid) {
                continue;
            }
            let this = Arc::clone(&this);
            tokio::spawn(async move { this.play(pod).await });
        }
    }

    async fn set_status(&self, name: &str, status: serde_json::Value) {
        let _ = self
            .pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await;
    }

    async fn end(&self, name: &str, code: i32, reason: &str, started: &str) {
        let now = now();
        self.set_status(
            name,
            json!({
                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
                "containerStatuses": [{"name": "base", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now}}}],
            }),
        )
        .await;
    }

    async fn play(&self, pod: Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let behaviour = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BEHAVIOUR))
            .cloned()
            .unwrap_or_default();
        let started = now();
        match behaviour.as_str() {
            "oom" => return self.end(&name, 137, "OOMKilled", &started).await,
            "evict" => {
                return self
                    .set_status(
                        &name,
                        json!({"phase": "Failed", "reason": "Evicted",
                        "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 12Mi."}),
                    )
                    .await
            }
            "image-pull-fails" => {
                return self
                    .set_status(
                        &name,
                        json!({"phase": "Pending", "containerStatuses": [{"name": "base", "image": "", "imageID": "",
                        "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                        "message": "Back-off pulling image \"registry.invalid/nope:1\""}}}]}),
                    )
                    .await
            }
            _ => {}
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(base) = spec.containers.iter().find(|c| c.name == "base") else {
            return self.end(&name, 128, "ContainerCannotRun", &started).await;
        };
        let mut argv: Vec<String> = base.command.clone().unwrap_or_default();
        argv.extend(base.args.clone().unwrap_or_default());
        if behaviour == "crash" {
            argv = vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo 'runner crashed before it could report: fatal runtime error' >&2; exit 139".into(),
            ];
        }
        let Some(first) = argv.first().cloned() else {
            return self.end(&name, 128, "ContainerCannotRun", &started).await;
        };
        let program = self
            .programs
            .get(&first)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(&first));
        let mut command = tokio::process::Command::new(program);
        command.args(&argv[1..]).env_clear().envs(self.env.iter().cloned());
        for var in base.env.iter().flatten() {
            if let Some(value) = &var.value {
                command.env(&var.name, value);
            }
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(_) => return self.end(&name, 127, "ContainerCannotRun", &started).await,
        };
        let pgid = child.id().map(|id| id as i32).unwrap_or_default();
        self.children.lock().unwrap().insert(pgid);
        self.running.lock().unwrap().insert(name.clone(), pgid);
        if let Some(seen) = self.seen.lock().unwrap().get_mut(&name) {
            seen.starts += 1;
        }
        // Its output as a CRI log file, served by kwok through the pod log API.
        let log_path = self.logs_dir.join(format!("{name}.log"));
        let file = Arc::new(Mutex::new(std::fs::File::create(&log_path).unwrap()));
        let logs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {"name": name},
            "spec": {"logs": [{"containers": ["base"], "logsFile": log_path, "follow": true}]},
        }))
        .unwrap();
        let _ = self.logs_api.create(&PostParams::default(), &logs).await;
        let copy = |reader: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, stream: &'static str| {
            let file = Arc::clone(&file);
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let Some(reader) = reader else { return };
                let mut lines = tokio::io::BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut file = file.lock().unwrap();
                    let _ = std::io::Write::write_all(&mut *file, format!("{} {stream} F {line}\n", now()).as_bytes());
                }
            })
        };
        let out = copy(child.stdout.take().map(|r| Box::new(r) as _), "stdout");
        let err = copy(child.stderr.take().map(|r| Box::new(r) as _), "stderr");
        let status = child.wait().await;
        let _ = out.await;
        let _ = err.await;
        self.children.lock().unwrap().remove(&pgid);
        if self.running.lock().unwrap().remove(&name).is_none() {
            return; // deleted meanwhile: there is no pod to set an end on
        }
        let (code, reason) = match status {
            Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(0), _) => (0, "Completed"),
                (Some(code), _) => (code, "Error"),
                (None, Some(signal)) => (128 + signal, "Error"),
                (None, None) => (1, "Error"),
            },
            Err(_) => (1, "Error"),
        };
        self.end(&name, code, reason, &started).await;
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
