//! `dagctl bench k8s`: what the Kubernetes executor adds to making pods, against the API server's own pod
//! creation measured in the same run on the same cluster.
//!
//! - **baseline**: `--pods` bare pods created at once by a plain client (the API server's create latency, and
//!   the time until a watch has seen them all);
//! - **dagctl**: a run of `--pods` independent tasks on a scratch SQLite store, launched by a scheduler with the
//!   Kubernetes executor: the time from the scheduler's start until a watch has seen every try's pod, and from
//!   each task's claim (`queued_at`) until its pod was seen. No pod needs to run: the figures end at creation.
//!
//! The bench makes its own namespace and deletes it at the end (the kubeconfig needs the rights to).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ExecutorKind, KubeSettings};
use crate::output::{print_rows, Format};

/// Flags of `dagctl bench k8s`.
#[derive(clap::Args, Debug, Clone)]
pub struct K8sBenchArgs {
    /// The cluster's kubeconfig (default: `[kubernetes] kubeconfig`)
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Pods made in each part
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Sees pods of a namespace appear: the instant each name was first seen.
struct Seen {
    times: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Seen {
    fn start(api: Api<Pod>, labels: &str) -> Seen {
        let config = watcher::Config::default().labels(labels);
        let times: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
        let into = Arc::clone(&times);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, config));
            while let Some(event) = stream.next().await {
                if let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event {
                    if let (Some(name), Ok(mut times)) = (pod.metadata.name, into.lock()) {
                        times.entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        });
        Seen { times, task }
    }

    fn count(&self) -> usize {
        self.times.lock().map(|t| t.len()).unwrap_or(0)
    }

    async fn wait_for(&self, count: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.count() < count {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {count} pods were seen within {}s",
                    self.count(),
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

pub async fn k8s(config: &Config, args: &K8sBenchArgs) -> Result<ExitCode> {
    if args.pods == 0 || args.pods > 5000 {
        bail!("--pods must be from 1 to 5000");
    }
    let kubeconfig = args
        .kubeconfig
        .clone()
        .or_else(|| match &config.executor {
            ExecutorKind::Kubernetes(kube) => kube.kubeconfig.clone(),
            ExecutorKind::Local => None,
        })
        .ok_or_else(|| anyhow!("give the cluster's kubeconfig: --kubeconfig PATH (or [kubernetes] kubeconfig)"))?;
    let client = worker::executor::kubernetes::client(Some(&kubeconfig), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let namespace = format!("dagctl-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("cannot create the bench's namespace {namespace}"))?;
    let result = measure(config, args, &client, &kubeconfig, &namespace).await;
    let _ = namespaces.delete(&namespace, &DeleteParams::default()).await;
    let rows = result?;
    print_rows(args.output, super::bench::FIGURE_COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    config: &Config,
    args: &K8sBenchArgs,
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    namespace: &str,
) -> Result<Vec<serde_json::Value>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // Pods are refused until the controller manager made the namespace's default ServiceAccount.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), namespace);
    for _ in 0..300 {
        if accounts.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limit = Duration::from_secs(120 + args.pods as u64);

    eprintln!("baseline: {} bare pods created at once ...", args.pods);
    let seen = Seen::start(pods.clone(), "bench=bare");
    let started = Instant::now();
    let creates = (0..args.pods).map(|i| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("bare-{i}"), "labels": {"bench": "bare"}},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": false,
                    "containers": [{"name": "base", "image": "bench.invalid/none:1", "command": ["true"]}]},
            }))
            .unwrap();
            let at = Instant::now();
            pods.create(&PostParams::default(), &pod)
                .await
                .map(|_| at.elapsed().as_secs_f64())
        }
    });
    let mut create_latencies: Vec<f64> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("creating the baseline's pods")?;
    seen.wait_for(args.pods, limit).await?;
    let baseline_wall = started.elapsed().as_secs_f64();
    let mut baseline_seen: Vec<f64> = seen
        .times
        .lock()
        .map(|t| t.values().map(|at| (*at - started).as_secs_f64()).collect())
        .unwrap_or_default();
    drop(seen);
    pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=bare"))
        .await
        .context("deleting the baseline's pods")?;

    eprintln!("dagctl: {} independent tasks launched as pods ...", args.pods);
    let store = engine::scratch::ScratchDb::sqlite().await?;
    let home = std::env::temp_dir().join(format!("dagctl-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&home)?;
    let mut bench_config = config.clone();
    bench_config.home = home.clone();
    bench_config.parallelism = args.pods;
    bench_config.execution_api_url = Some("http://127.0.0.1:9".into());
    bench_config.executor = ExecutorKind::Kubernetes(Box::new(KubeSettings {
        namespace: namespace.to_string(),
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: None,
        pod_template_file: None,
        image: Some("bench.invalid/dagctl:1".into()),
        command: vec!["dagctl".into()],
        execution_api_url: None,
        delete_worker_pods: true,
        keep_failed_pods: Duration::from_secs(3600),
        worker_pods_pending_timeout: Duration::from_secs(3600),
        task_secrets: Vec::new(),
        task_service_accounts: Vec::new(),
    }));
    let header = format!("k8s_bench:\n  max_active_tasks: {}\n  tasks:\n", args.pods);
    let dag: String = (0..args.pods).fold(header, |mut text, i| {
        text.push_str(&format!("    t{i}: {{operator: bash, bash_command: 'true'}}\n"));
        text
    });
    let parsed = engine::parse::parse_text("bench.yml", &dag, &[], &engine::operators::OperatorRegistry::builtin());
    let spec = parsed
        .dags
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the bench DAG did not parse"))?;
    store.store.put_dag(&spec, false).await?;
    let run = store
        .store
        .create_run(engine::store::runs::NewRun {
            spec: &spec,
            run_id: Some("bench".into()),
            run_type: engine::store::RunType::Manual,
            logical_date: None,
            data_interval: None,
            run_after: Utc::now(),
            conf: Default::default(),
            triggered_by: "bench".into(),
            triggering_user: None,
            note: None,
        })
        .await?;
    let mut options = crate::runtime::scheduler_options(&bench_config);
    options.dags_folder = None;
    options.scope = Some(vec![run.id]);
    options.create_scheduled_runs = false;
    let stop = CancellationToken::new();
    let (scheduler, server) = crate::runtime::scoped_scheduler_with_executor(
        &bench_config,
        &store.store,
        options,
        Arc::new(scheduler::Metrics::default()),
        stop.clone(),
    )
    .await?;
    let seen = Seen::start(pods.clone(), "app.kubernetes.io/managed-by=dagctl");
    let started = Instant::now();
    let started_at = Utc::now();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(shutdown.clone()));
    let waited = seen.wait_for(args.pods, limit).await;
    let dagctl_wall = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    stop.cancel();
    let _ = server.await;
    waited?;
    // From each task's claim (its queued_at) to its pod seen by the watch.
    let times = seen.times.lock().map(|t| t.clone()).unwrap_or_default();
    let tis = store.store.tis_of_run(run.id).await?;
    let mut claim_to_pod = Vec::new();
    for ti in &tis {
        let name = worker::executor::kubernetes::pod::pod_name(ti);
        if let (Some(queued), Some(at)) = (ti.queued_at, times.get(&name)) {
            let queued_s = (queued - started_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            claim_to_pod.push((*at - started).as_secs_f64() - queued_s);
        }
    }
    drop(seen);
    let _ = std::fs::remove_dir_all(&home);
    let n = args.pods as f64;
    let overhead_ms = (dagctl_wall - baseline_wall) * 1000.0 / n;
    Ok(vec![
        json!({"figure": "pods per second", "value": round(n / dagctl_wall, 1), "unit": "pods/s",
            "baseline": "bare pods created at once", "baseline_value": round(n / baseline_wall, 1),
            "ratio_to_baseline": round(baseline_wall / dagctl_wall, 2),
            "note": format!("{} pods, until a watch saw them all", args.pods)}),
        json!({"figure": "wall until every pod was seen", "value": round(dagctl_wall * 1000.0, 1), "unit": "ms",
            "baseline": "bare pods created at once", "baseline_value": round(baseline_wall * 1000.0, 1),
            "ratio_to_baseline": round(dagctl_wall / baseline_wall.max(1e-9), 2),
            "note": format!("dagctl's own overhead: {:.2} ms per pod", overhead_ms)}),
        json!({"figure": "task claimed to pod seen, median", "value": round(percentile(&mut claim_to_pod, 0.5) * 1000.0, 1),
            "unit": "ms", "baseline": "bare: batch start to pod seen, median",
            "baseline_value": round(percentile(&mut baseline_seen, 0.5) * 1000.0, 1),
            "ratio_to_baseline": serde_json::Value::Null, "note": format!("p95 {:.1} ms", percentile(&mut claim_to_pod, 0.95) * 1000.0)}),
        json!({"figure": "API server pod create, median", "value": round(percentile(&mut create_latencies, 0.5) * 1000.0, 1),
            "unit": "ms", "baseline": "", "baseline_value": serde_json::Value::Null, "ratio_to_baseline": serde_json::Value::Null,
            "note": format!("p95 {:.1} ms, {} at once", percentile(&mut create_latencies, 0.95) * 1000.0, args.pods)}),
    ])
}
