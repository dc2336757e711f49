//! The tracing subscriber: human-readable by default, JSON lines for log collectors; its filter can be
//! replaced while the daemon runs (configuration reload).

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's filter; set once by `init` when the filter came from the
/// configuration (not from `RUST_LOG`, which then stays in charge).
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global subscriber. Logs go to stderr so that offline commands keep stdout for their data.
/// Calling it twice is harmless (the second call is ignored), which tests rely on.
pub fn init(format: LogFormat, filter: &str) {
    let from_env = EnvFilter::try_from_env("RUST_LOG").ok();
    let configured = from_env.is_none();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed: Option<Reload> = match format {
        LogFormat::Human => {
            let b = builder.with_filter_reloading();
            let handle = b.reload_handle();
            b.try_init()
                .ok()
                .map(|()| Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload)
        }
        LogFormat::Json => {
            let b = builder.json().flatten_event(true).with_filter_reloading();
            let handle = b.reload_handle();
            b.try_init()
                .ok()
                .map(|()| Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload)
        }
    };
    if let (Some(reload), true) = (installed, configured) {
        let _ = RELOAD.set(reload);
    }
}

/// What `set_filter` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterChange {
    Applied,
    /// `RUST_LOG` set the filter at start-up and keeps precedence (or this process installed no
    /// subscriber of its own).
    NotReloadable,
}

/// Replaces the log filter of the running process with `directives` (already validated by the
/// configuration).
pub fn set_filter(directives: &str) -> Result<FilterChange, String> {
    let Some(reload) = RELOAD.get() else {
        return Ok(FilterChange::NotReloadable);
    };
    let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
    reload(filter)?;
    Ok(FilterChange::Applied)
}
