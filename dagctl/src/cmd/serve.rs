//! `dagctl standalone` and `dagctl scheduler`: the long-running processes, with /health and /metrics.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use engine::store::Store;
use scheduler::Metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::runtime::{build_scheduler, open_store, scheduler_options};

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
    serve(config, host, port.or(Some(8080)), true).await
}

pub async fn scheduler(config: Config, port: Option<u16>) -> Result<ExitCode> {
    serve(config, None, port, false).await
}

async fn serve(config: Config, host: Option<String>, port: Option<u16>, standalone: bool) -> Result<ExitCode> {
    init_tracing();
    let store = open_store(&config).await?;
    std::fs::create_dir_all(&config.dags_folder)
        .with_context(|| format!("cannot create DAGs folder {}", config.dags_folder.display()))?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = shutdown_token();
    let mut http = None;
    if let Some(port) = port.or(if standalone { Some(config.port) } else { None }) {
        let host = host.unwrap_or_else(|| config.host.clone());
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("`{host}:{port}` is not an address to listen on"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        info!(address = %bound, "http server listening");
        println!(
            "dagctl {} listening on http://{bound} (health: /health, metrics: /metrics)",
            if standalone { "standalone" } else { "scheduler" }
        );
        let app = router(AppState {
            store: store.clone(),
            metrics: Arc::clone(&metrics),
        });
        let token = shutdown.clone();
        http = Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        }));
    }
    println!("dags folder: {}", config.dags_folder.display());
    println!("database:    {}", engine::store::redact_url(&config.database_url));
    let networks = tokio::spawn(watch_networks(config.clone(), store.clone(), shutdown.clone()));
    let scheduler = build_scheduler(&config, &store, scheduler_options(&config), metrics)?;
    scheduler.run(shutdown.clone()).await?;
    shutdown.cancel();
    let _ = networks.await;
    if let Some(http) = http {
        let _ = http.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds this host's networks again after a restart (re-attaching live ones, cleaning up broken ones), then
/// tears down networks past their TTL once a minute.
async fn watch_networks(config: Config, store: Store, shutdown: CancellationToken) {
    let backend = crate::runtime::chain_backend(&config);
    let progress = |line: &str| info!("{line}");
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
        match chain::lifecycle::reap(&store, &backend, Utc::now(), &progress).await {
            Ok(reaped) if !reaped.is_empty() => info!(networks = ?reaped, "tore down networks past their TTL"),
            Ok(_) => {}
            Err(err) => warn!(error = %err, "cannot reap networks"),
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v2/monitor/health", get(health))
        .route("/api/v2/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    let db_ok = state.store.ping().await.is_ok();
    let heartbeat = state.store.latest_scheduler_heartbeat().await.ok().flatten();
    let scheduler_ok = heartbeat
        .map(|hb| Utc::now() - hb < chrono::Duration::seconds(30))
        .unwrap_or(false);
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    let body = json!({
        "metadatabase": {"status": status(db_ok)},
        "scheduler": {"status": status(scheduler_ok), "latest_scheduler_heartbeat": heartbeat.map(|hb| hb.to_rfc3339_opts(SecondsFormat::Micros, true))},
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": {"status": status(scheduler_ok), "latest_dag_processor_heartbeat": heartbeat.map(|hb| hb.to_rfc3339_opts(SecondsFormat::Micros, true))},
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "git_version": null}))
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
    let body = state.metrics.render(&pools, &states);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
