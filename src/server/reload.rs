//! Configuration reload on SIGHUP: the same layers (built-in defaults, file, environment) are read again.
//! An invalid configuration is refused: the running one stays in effect and the error names the key. A
//! valid one replaces the running settings, the loops pick it up at their next step, and keys that only
//! a restart applies (listen address, database, API token, log format) are named in a warning.

use std::sync::Arc;

use tokio::sync::watch;

use super::AppState;
use crate::config::{Settings, Sources};
use crate::domain::unix_now;
use crate::metrics::ResultLabels;
use crate::telemetry::{self, FilterChange};

/// Reloads on every SIGHUP until shutdown.
pub async fn on_sighup(state: AppState, sources: Sources, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; configuration reload disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            reload(&state, &sources);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (state, sources);
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Reads the configuration again and applies what can change live; `false` when it was refused.
pub fn reload(state: &AppState, sources: &Sources) -> bool {
    let count = |result: &str| {
        state
            .metrics
            .config_reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    };
    let new = match Settings::load(sources) {
        Ok(s) => s,
        Err(e) => {
            count("error");
            tracing::error!(
                key = e.key().unwrap_or("unknown"),
                error = %e,
                "configuration reload refused; the running configuration stays in effect"
            );
            return false;
        }
    };
    let (running, plan) = state.current().reloaded(new);
    if plan.applied.contains(&"telemetry.filter") {
        match telemetry::set_filter(&running.telemetry.filter) {
            Ok(FilterChange::Applied) => {}
            Ok(FilterChange::NotReloadable) => tracing::warn!(
                "telemetry.filter changed but RUST_LOG sets the log filter of this process; it stays"
            ),
            Err(e) => tracing::warn!(error = %e, "the new telemetry.filter could not be applied"),
        }
    }
    if !plan.needs_restart.is_empty() {
        tracing::warn!(
            keys = %plan.needs_restart.join(", "),
            "changed settings take effect only after a restart; their running values stay in effect"
        );
    }
    state.live.send_replace(Arc::new(running));
    count("ok");
    state.metrics.config_last_reload_success.set(unix_now());
    tracing::info!(
        applied = %plan.applied.join(", "),
        needs_restart = %plan.needs_restart.join(", "),
        "configuration reloaded"
    );
    true
}
