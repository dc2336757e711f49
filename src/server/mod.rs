//! The daemon: the HTTP API, `/metrics`, and the periodic tasks (scrape, assessment), started together and
//! stopped together on Ctrl-C or SIGTERM; SIGHUP reloads the configuration. Every route is listed in
//! `router`.

pub mod api;
mod api_ops;
mod cache;
mod dashboard;
pub mod detail;
pub mod error;
mod reload;
mod results;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::{Secret, Settings, Sources};
use crate::domain::unix_now;
use crate::metrics::Metrics;
use crate::store::Store;

/// Wakes a loop before its next tick.
#[derive(Default)]
pub struct Triggers {
    pub scrape: Notify,
    pub assess: Notify,
}

/// State shared by every handler and task.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The configuration as loaded at start-up: what the process bound and opened (listen address,
    /// database pool, API token). Everything else reads `current()`, which a reload replaces.
    pub settings: Arc<Settings>,
    /// The running configuration, replaced by a successful reload (SIGHUP); loops subscribe to it.
    pub live: Arc<watch::Sender<Arc<Settings>>>,
    pub metrics: Arc<Metrics>,
    /// `None`: mutating endpoints are disabled.
    pub api_token: Option<Secret>,
    pub triggers: Arc<Triggers>,
    /// Rendered workload details, kept in step with the database by `detail::keep_in_sync`.
    pub details: Arc<detail::DetailCache>,
}

impl AppState {
    pub fn new(store: Store, settings: Settings) -> anyhow::Result<Self> {
        let api_token = settings.server.api_token.resolve("server.api_token")?;
        Ok(Self {
            store,
            details: detail::DetailCache::new(settings.server.detail_cache_mib << 20),
            live: Arc::new(watch::Sender::new(Arc::new(settings.clone()))),
            settings: Arc::new(settings),
            metrics: Metrics::new(),
            api_token,
            triggers: Arc::default(),
        })
    }
}

impl AppState {
    /// The running configuration (the start-up one until a reload replaces it).
    pub fn current(&self) -> Arc<Settings> {
        self.live.borrow().clone()
    }
}

/// Runs the daemon until a shutdown signal arrives; SIGHUP reloads the configuration from `sources`.
pub async fn serve(settings: Settings, sources: Sources) -> anyhow::Result<()> {
    let store = crate::cli::connect(&settings).map_err(|e| match e {
        crate::cli::Failure::BadInput(e) | crate::cli::Failure::Failed(e) => e,
    })?;
    store
        .migrate()
        .await
        .context("while migrating the database at start-up")?;
    let listener = TcpListener::bind(&settings.server.listen_addr)
        .await
        .with_context(|| format!("while binding {}", settings.server.listen_addr))?;
    let state = AppState::new(store, settings)?;
    state.metrics.config_last_reload_success.set(unix_now());
    let app = Application::build(listener, state.clone())?;
    tracing::info!(addr = %app.addr, url = %state.settings.server.public_url, "listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tasks::spawn_all(state.clone(), stop_rx.clone());
    tasks.push(tokio::spawn(reload::on_sighup(
        state,
        sources,
        stop_rx.clone(),
    )));
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(app.run_until(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    server.await.context("while stopping the HTTP server")??;
    tracing::info!("stopped");
    Ok(())
}

/// The server bound to its listener, so tests can bind port 0 and read the address before running it.
pub struct Application {
    pub addr: SocketAddr,
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub fn build(listener: TcpListener, state: AppState) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        Ok(Self {
            addr,
            listener,
            router: router(state),
        })
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("while serving HTTP")
    }
}

/// Every route, grouped by who uses it.
pub fn router(state: AppState) -> Router {
    let probes = Router::new()
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .route("/metrics", get(get_metrics))
        .route("/api/v1/openapi.json", get(get_openapi));
    let api = Router::new()
        // Dashboards and reports: reads.
        .route("/api/v1/workloads/{id}", get(detail::get_workload))
        .route(
            "/api/v1/workloads/{id}/history",
            get(api::get_workload_history),
        )
        .route(
            "/api/v1/workloads/{id}/forecasts",
            get(api::get_forecast_history),
        )
        .route("/api/v1/patches", get(api::get_patches))
        // Capacity planners: reports.
        .route("/api/v1/report", get(api_ops::get_report))
        .route("/api/v1/reports", get(api_ops::list_reports))
        .route("/api/v1/reports/{id}", get(api_ops::get_stored_report))
        .route(
            "/api/v1/silences",
            get(api_ops::list_silences).post(api_ops::post_silence),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(api_ops::delete_silence),
        )
        // Operators: token-protected triggers.
        .route("/api/v1/scrape", post(api::post_scrape))
        .route("/api/v1/assess", post(api::post_assess));
    // Dashboards: the lists every open dashboard polls, answered from memory for a few seconds.
    let lists = Router::new()
        .route("/api/v1/workloads", get(api::list_workloads))
        .route("/api/v1/at-risk", get(api::list_at_risk))
        .route("/api/v1/recommendations", get(api::list_recommendations))
        .route_layer(axum::middleware::from_fn_with_state(
            cache::ResponseCache::new(std::time::Duration::from_secs(5), 1_000),
            cache::serve_cached,
        ));
    // People: dashboard pages.
    let pages = Router::new()
        .route("/", get(dashboard::get_index))
        .route("/workloads/{id}", get(dashboard::get_workload_page));
    // With `server.protect_reads`, everything but the probes, `/metrics` and the API's own description
    // needs the bearer token; the check runs before any cached answer is served.
    let guarded = api
        .merge(lists)
        .merge(pages)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_reads,
        ));
    probes
        .merge(guarded)
        .fallback(|| async { error::ApiError::NotFound("route".into()) })
        .with_state(state)
}

/// Asks for the bearer token on every request when reads are protected (`server.protect_reads`, read at
/// start-up: changing it needs a restart).
async fn guard_reads(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.settings.server.protect_reads
        && let Err(e) = api::authorize(&state, request.headers())
    {
        return e.into_response();
    }
    next.run(request).await
}

async fn get_healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers; also reports how old the newest stored sample is.
async fn get_readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => {
            let newest = state.store.newest_sample_time().await.ok().flatten();
            let age = newest.map(|t| unix_now() - t);
            (
                StatusCode::OK,
                Json(json!({ "database": "ok", "newest_sample_age_secs": age })),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "database": "unreachable" })),
            )
        }
    }
}

/// Headroom's own health, then the assessment results as gauges.
async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render();
    // The registry ends with "# EOF"; results go before it.
    if let Some(stripped) = body.strip_suffix("# EOF\n") {
        body = stripped.to_string();
    }
    let (entries, bytes) = state.details.usage();
    body.push_str(&format!(
        "# HELP headroom_detail_cache_entries Workload details held in memory.\n\
         # TYPE headroom_detail_cache_entries gauge\n\
         headroom_detail_cache_entries {entries}\n\
         # HELP headroom_detail_cache_bytes Memory those details take.\n\
         # TYPE headroom_detail_cache_bytes gauge\n\
         headroom_detail_cache_bytes {bytes}\n"
    ));
    match results::render(&state.store).await {
        Ok(text) => body.push_str(&text),
        Err(e) => tracing::warn!(error = %e, "results missing from /metrics: database unavailable"),
    }
    body.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn get_openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
