//! The daemon: the HTTP server and the periodic tasks, started together and stopped together on
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::store::Store;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
}

/// Runs the daemon until a shutdown signal arrives.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
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
    let app = Application::build(listener, AppState { store })?;
    tracing::info!(addr = %app.addr, "listening");
    app.run_until(shutdown_signal()).await
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

/// Every route, in one place.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .with_state(state)
}

async fn get_healthz() -> &'static str {
    "ok"
}

async fn get_readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
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
