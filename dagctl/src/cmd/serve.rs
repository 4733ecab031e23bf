//! `dagctl standalone` and `dagctl scheduler`: the long-running processes, with /health and /metrics.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use engine::store::Store;
use scheduler::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::runtime::{
    bind, build_scheduler, execution_state, keys, open_engine_store, open_store, scheduler_options, task_logs,
};

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Arc<Metrics>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAGCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        on_signal.cancel();
    });
    token
}

pub async fn standalone(config: Config, host: Option<String>, port: Option<u16>) -> Result<ExitCode> {
    let port = port.unwrap_or(config.port);
    serve(config, host, Some(port), true).await
}

/// The web UI and API without a scheduler (for deployments where schedulers run elsewhere).
pub async fn webserver(config: Config, host: Option<String>, port: Option<u16>) -> Result<ExitCode> {
    init_tracing();
    let store = open_store(&config).await?;
    let host = host.unwrap_or_else(|| config.host.clone());
    let listener = bind(&host, port.unwrap_or(config.port)).await?;
    let bound = listener.local_addr()?;
    let keys = keys(&config)?;
    let state = web_state(&config, &store, bound, &keys).await?;
    let metrics = Arc::new(Metrics::default());
    // Runners may report here too (set `execution_api_url` to this server's URL).
    let extra = metrics_router(AppState {
        store: store.clone(),
        metrics,
    })
    .merge(web::execution::router(execution_state(&config, &store, &keys).await?));
    let app = web::router(state, extra);
    println!("dagctl webserver listening on http://{bound}");
    let shutdown = shutdown_token();
    crate::runtime::raise_open_files_limit();
    web::serve::serve(
        listener,
        app,
        config.web_limits,
        async move { shutdown.cancelled().await },
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(config: Config, port: Option<u16>) -> Result<ExitCode> {
    serve(config, None, port, false).await
}

/// A scheduler with its HTTP server: for standalone the whole web face, for `scheduler` /health and /metrics;
/// both serve the task execution API that the scheduler's runners report to. Without a port, `scheduler`
/// listens on an ephemeral loopback port (runners then outlive a restart only with a stable
/// `execution_api_url`, e.g. a webserver's).
async fn serve(config: Config, host: Option<String>, port: Option<u16>, standalone: bool) -> Result<ExitCode> {
    init_tracing();
    let store = open_engine_store(&config).await?;
    let shutdown = shutdown_token();
    let git_sync = match &config.git {
        // The folder is the checkout: synced once before the first read, then every interval.
        Some(settings) => {
            let sync = scheduler::git_sync::GitSync::new(settings.clone());
            let checked_out = sync.has_checkout();
            if checked_out {
                // The last checkout serves at once while the loop syncs in the background.
                println!(
                    "dags from git: {} {} (last checkout; syncing every {:?})",
                    settings.url, settings.branch, settings.interval
                );
            } else {
                // Nothing to read yet: one sync first, bounded by git's time limit and a stop.
                let first = tokio::select! {
                    first = sync.sync_once() => Some(first),
                    _ = shutdown.cancelled() => None,
                };
                match first {
                    Some(Ok(synced)) => {
                        println!(
                            "dags from git: {} {} at {}",
                            settings.url, settings.branch, synced.commit
                        )
                    }
                    Some(Err(err)) => {
                        warn!(url = %err.source, "git sync failed (no DAGs until a sync works): {}", err.message)
                    }
                    None => return Ok(ExitCode::SUCCESS),
                }
            }
            Some(tokio::spawn(sync.run(shutdown.clone(), checked_out)))
        }
        None => {
            std::fs::create_dir_all(&config.dags_folder)
                .with_context(|| format!("cannot create DAGs folder {}", config.dags_folder.display()))?;
            None
        }
    };
    let metrics = Arc::new(Metrics::default());
    let keys = keys(&config)?;
    let host = host.unwrap_or_else(|| config.host.clone());
    let port = port.or(if standalone { Some(config.port) } else { None });
    let listener = match port {
        Some(port) => bind(&host, port).await?,
        None => bind("127.0.0.1", 0).await?,
    };
    let bound = listener.local_addr()?;
    info!(address = %bound, "http server listening");
    println!(
        "dagctl {} listening on http://{bound} (health: /health, metrics: /metrics, task execution API: /execution)",
        if standalone { "standalone" } else { "scheduler" }
    );
    let api_url = config
        .execution_api_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let scheduler = build_scheduler(
        &config,
        &store,
        scheduler_options(&config),
        Arc::clone(&metrics),
        &keys,
        &api_url,
    )
    .await?;
    let extra = metrics_router(AppState {
        store: store.clone(),
        metrics: Arc::clone(&metrics),
    })
    .merge(web::execution::router(execution_state(&config, &store, &keys).await?));
    let app = if standalone {
        web::router(web_state(&config, &store, bound, &keys).await?, extra)
    } else {
        web::health_router(store.clone()).merge(extra)
    };
    let token = shutdown.clone();
    crate::runtime::raise_open_files_limit();
    let limits = config.web_limits;
    let http =
        tokio::spawn(
            async move { web::serve::serve(listener, app, limits, async move { token.cancelled().await }).await },
        );
    println!("dags folder: {}", config.dags_folder.display());
    println!("database:    {}", engine::store::redact_url(&config.database_url));
    let networks = tokio::spawn(watch_networks(config.clone(), store.clone(), shutdown.clone()));
    if let Err(err) = crate::link::serve(&config, store.clone(), shutdown.clone()).await {
        warn!(error = %err, "cannot serve the engine link (other dagctl processes then reach this engine on timers)");
    }
    scheduler.run(shutdown.clone()).await?;
    shutdown.cancel();
    let _ = networks.await;
    if let Some(sync) = git_sync {
        let _ = sync.await;
    }
    let _ = http.await;
    Ok(ExitCode::SUCCESS)
}

/// The web server's state; for standalone also makes sure the local `admin` user exists.
async fn web_state(config: &Config, store: &Store, bound: SocketAddr, keys: &web::auth::Keys) -> Result<web::WebState> {
    match web::ensure_admin(store, &config.home, config.admin_password.as_deref()).await? {
        web::AdminPassword::Generated(path, password) => {
            println!("created user `admin` with password: {password}");
            println!(
                "(also written to {}; set DAGCTL_ADMIN_PASSWORD to choose it)",
                path.display()
            );
        }
        web::AdminPassword::FromEnv => println!("user `admin`: password from DAGCTL_ADMIN_PASSWORD"),
        web::AdminPassword::Existing => println!(
            "user `admin`: existing password (see {})",
            config.home.join("standalone_admin_password.txt").display()
        ),
    }
    let mut web_config = web::WebConfig::new(config.home.clone());
    let base_url = config
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"))
        .trim_end_matches('/')
        .to_string();
    web_config.secure_cookies = base_url.starts_with("https://");
    if let Some(oidc) = &config.oidc {
        let role_map =
            web::oidc::OidcConfig::parse_role_map(&oidc.role_map).map_err(|e| anyhow::anyhow!("OIDC role map: {e}"))?;
        web_config.oidc = Some(web::oidc::OidcConfig {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret: oidc.client_secret.clone(),
            scopes: oidc.scopes.clone(),
            groups_claim: oidc.groups_claim.clone(),
            role_map,
            redirect_url: format!("{base_url}/auth/oidc/callback"),
            display_name: oidc.display_name.clone(),
        });
        println!(
            "single sign-on: {} (callback {base_url}/auth/oidc/callback)",
            oidc.issuer
        );
    }
    Ok(web::WebState::new(
        store.clone(),
        keys.clone(),
        web_config,
        task_logs(config, store),
        crate::runtime::vault(config, store)?,
    )
    .with_reports(crate::reports::KpiReports::new(store.clone())))
}

/// Finds this host's networks again after a restart (re-attaching live ones, cleaning up broken ones), then
/// tears down networks past their TTL once a minute.
async fn watch_networks(config: Config, store: Store, shutdown: CancellationToken) {
    let backend = match crate::runtime::chain_backend(&config) {
        Ok(backend) => backend,
        Err(err) => {
            warn!(error = %err, "cannot watch networks");
            return;
        }
    };
    let progress = |line: &str| info!("{line}");
    // Faults first: a node a dead chaos process left stopped would otherwise count as lost.
    undo_orphan_faults(&store, &backend, &progress).await;
    match chain::lifecycle::recover(&store, &backend, &progress).await {
        Ok(recovery) if !recovery.attached.is_empty() || !recovery.cleaned.is_empty() => {
            info!(attached = ?recovery.attached, cleaned = ?recovery.cleaned, "networks recovered after start")
        }
        Ok(_) => {}
        Err(err) => warn!(error = %err, "cannot recover networks"),
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => return,
        }
        undo_orphan_faults(&store, &backend, &progress).await;
        match chain::lifecycle::reap(&store, &backend, Utc::now(), &progress).await {
            Ok(reaped) if !reaped.is_empty() => info!(networks = ?reaped, "tore down networks past their TTL"),
            Ok(_) => {}
            Err(err) => warn!(error = %err, "cannot reap networks"),
        }
    }
}

/// Undoes chaos faults whose owner process died mid-fault (see `chain::chaos::ledger`).
async fn undo_orphan_faults<B: chain::backend::NodeBackend>(
    store: &Store,
    backend: &B,
    progress: chain::backend::Progress<'_>,
) {
    match chain::chaos::ledger::recover(store, backend, false, progress).await {
        Ok(undone) if !undone.is_empty() => info!(faults = ?undone, "undid chaos faults left by dead processes"),
        Ok(_) => {}
        Err(err) => warn!(error = %err, "cannot undo chaos faults left by dead processes"),
    }
}

fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let pools: Vec<(String, i64, i64, i64)> = state
        .store
        .list_pools()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.clone(), p.open_slots(), p.running_slots, p.queued_slots))
        .collect();
    let states: Vec<(String, i64)> = state
        .store
        .ti_state_counts()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let mut body = state.metrics.render(&pools, &states);
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    if let Ok(samples) = state.store.latest_samples_of_running(since).await {
        body.push_str(&render_samples(&samples));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The newest monitor sample of every node metric of the running networks (of the last 5 minutes), as one
/// gauge family whose labels are bounded by what runs: `network`, `node` and `metric`.
fn render_samples(samples: &[engine::store::NodeSample]) -> String {
    use std::fmt::Write;
    if samples.is_empty() {
        return String::new();
    }
    let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::from(
        "# HELP dagctl_network_node_value The newest sample of a node metric of a running network (dagctl net samples).\n# TYPE dagctl_network_node_value gauge\n",
    );
    for sample in samples {
        let _ = writeln!(
            out,
            "dagctl_network_node_value{{network=\"{}\",node=\"{}\",metric=\"{}\"}} {}",
            escape(&sample.network),
            escape(&sample.node),
            escape(&sample.metric),
            sample.value
        );
    }
    out
}
