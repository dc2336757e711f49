//! Typed configuration: the layered loader (built-in defaults, an environment file, `HEADROOM_*` variables),
//! validation that names the offending key, and secrets that are read from the environment or a file and
//! never print.

mod alerts;
mod reload;
mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub use alerts::{AlertRoute, AlertSettings, PayloadFormat};
pub use reload::ReloadPlan;
pub use secret::{Secret, SecretRef};

/// The defaults, compiled in so the binary also works where `config/` is not beside it.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Why the configuration cannot be used. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {message}")]
    Parse {
        /// The dotted key at fault, when the parser knows it.
        key: Option<String>,
        message: String,
    },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

impl ConfigError {
    /// The dotted key at fault (`scrape.interval_secs`), when known; the message names it as well.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::File { .. } => None,
        }
    }

    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub scrape: ScrapeSettings,
    pub assess: AssessSettings,
    pub retention: RetentionSettings,
    pub pricing: PricingSettings,
    pub alerts: AlertSettings,
    pub reports: ReportSettings,
    #[serde(default)]
    pub sources: Vec<SourceSettings>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Where the API, dashboard and `/metrics` listen.
    pub listen_addr: String,
    /// Base of every link Headroom hands out (Slack, reports).
    pub public_url: String,
    /// Bearer token for mutating endpoints; empty disables them.
    pub api_token: SecretRef,
    /// Whether read endpoints need the token as well.
    pub protect_reads: bool,
    /// Memory for rendered workload details (MiB); 0 turns that cache off.
    pub detail_cache_mib: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// A secret because it may carry a password.
    pub url: SecretRef,
    pub max_connections: u32,
    /// Bounds how long a request waits for a connection, so an outage becomes a 503 quickly.
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeSettings {
    pub interval_secs: u64,
    /// Resolution of stored history; also the `step` of range queries.
    pub step_secs: u64,
    /// History fetched on a source's first scrape.
    pub backfill_days: u64,
    /// Bound on concurrent queries per source.
    pub max_in_flight: usize,
    pub timeout_secs: u64,
    /// Range queries are split so no series exceeds this many points.
    pub max_points_per_query: u64,
    /// Remote read: evaluated values one answer may hold (an answer that outgrows it is dropped and its
    /// window halved); bounds the memory a window takes, 8 bytes a value.
    pub max_samples_per_read: u64,
    /// Recent samples younger than this are left for the next scrape.
    pub settle_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessSettings {
    pub interval_secs: u64,
    pub horizon_days: u64,
    /// Central probability of prediction intervals, strictly between 0 and 1.
    pub forecast_level: f64,
    pub planning_horizon_days: u64,
    pub default_policy: String,
    /// Containers per claimed batch: the unit replicas share the assessment in.
    pub batch_size: u64,
    /// How long a claimed batch stays with a replica before another may take it over.
    pub lease_secs: u64,
    /// Wait after start-up before the first assessment, so the first scrape can bring data.
    pub initial_delay_secs: u64,
    /// Rightsizing policy per namespace or workload, first match wins; `default_policy` otherwise.
    #[serde(default)]
    pub policy_rules: Vec<PolicyRule>,
}

/// `match` is a namespace pattern (`payments`, `team-*`) or `namespace/workload` (`shop/checkout*`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// The workload label whose values are teams (`team:VALUE` report scopes).
    pub team_label: String,
    /// How often the daemon generates and stores the scheduled report; 0 disables it.
    pub interval_secs: u64,
    /// Scope of the scheduled report: fleet, cluster:NAME, namespace:NAME or team:VALUE.
    pub scope: String,
    /// Period the scheduled report covers.
    pub period_days: u64,
    /// How often the daemon checks whether a report is due and retries pending file exports.
    pub check_interval_secs: u64,
    /// Where each scheduled report is also written as files (every format); unset keeps reports only in
    /// Postgres. Never created by Headroom: a missing directory (an unmounted volume) is an error that is
    /// retried on the next check.
    #[serde(default)]
    pub directory: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub raw_days: u64,
    pub rollup_days: u64,
    /// Assessment results (forecasts, exhaustion estimates, recommendations) kept this long; the newest
    /// of each series or container is kept whatever its age.
    pub results_days: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSettings {
    pub currency: String,
    pub cpu_core_hour: f64,
    pub memory_gib_hour: f64,
}

/// One Prometheus-compatible endpoint, standing for one cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// The cluster's name in Headroom; unique.
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub tls: TlsSettings,
    /// Extra headers on every request (a tenant header for Mimir or Thanos, for example).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub queries: QueryOverrides,
    /// How history is read: PromQL range queries (any Prometheus-compatible API), or Prometheus'
    /// remote-read API (raw samples, evaluated by Headroom; Prometheus 2.13+ and Mimir).
    #[serde(default)]
    pub read: ReadApi,
    /// With remote read: the source's `--query.lookback-delta`, how long an instant selector still
    /// sees a series after its last sample. Range queries use the source's own.
    #[serde(default = "default_lookback_secs")]
    pub lookback_secs: u64,
}

fn default_lookback_secs() -> u64 {
    300
}

/// The API a source's history is read through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadApi {
    /// `/api/v1/query_range` with the (overridable) default PromQL.
    #[default]
    QueryRange,
    /// `/api/v1/read` with streamed XOR chunks; the default queries' semantics evaluated in Headroom.
    RemoteRead,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretRef,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Extra CA bundle (PEM) trusted for this source.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate; for lab clusters only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Per-source replacements for the default PromQL, for clusters that relabel or rename.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOverrides {
    pub cpu_usage: Option<String>,
    pub memory_usage: Option<String>,
    pub requests: Option<String>,
    pub limits: Option<String>,
    pub pod_owner: Option<String>,
    pub replicaset_owner: Option<String>,
    pub oom_kills: Option<String>,
    pub restarts: Option<String>,
    pub throttled_periods: Option<String>,
    pub cfs_periods: Option<String>,
}

/// Where to read configuration from, beyond the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// An explicit file (`--config`); takes the place of `config/<HEADROOM_ENV>.toml`.
    pub file: Option<PathBuf>,
    /// The environment name (`HEADROOM_ENV`), selecting `config/<env>.toml`.
    pub env_name: Option<String>,
    /// The directory holding environment files.
    pub dir: PathBuf,
}

impl Sources {
    /// Reads `HEADROOM_ENV` and `HEADROOM_CONFIG_DIR` from the process environment.
    pub fn from_env(file: Option<PathBuf>) -> Self {
        Self {
            file,
            env_name: std::env::var("HEADROOM_ENV").ok().filter(|s| !s.is_empty()),
            dir: std::env::var_os("HEADROOM_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("config")),
        }
    }
}

impl Settings {
    /// Loads every layer and validates the result; the error names the key at fault.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = &sources.file {
            figment = figment.merge(Toml::string(&read_file(file)?));
        } else if let Some(env) = &sources.env_name {
            let path = sources.dir.join(format!("{env}.toml"));
            if !path.exists() {
                return Err(ConfigError::invalid(
                    "HEADROOM_ENV",
                    format!("no file {} for environment {env:?}", path.display()),
                ));
            }
            figment = figment.merge(Toml::string(&read_file(&path)?));
        }
        figment = figment.merge(
            Env::prefixed("HEADROOM_")
                .ignore(&["env", "config_dir", "config"])
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Loads the defaults overlaid with one TOML document; for tests and tools.
    pub fn from_toml(overlay: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(overlay)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|e| {
            // figment's message carries the key path ("for key `scrape.interval_secs`"); keep the
            // first error, which is the one a person fixes first.
            let first = e.into_iter().next();
            ConfigError::Parse {
                key: first
                    .as_ref()
                    .filter(|e| !e.path.is_empty())
                    .map(|e| e.path.join(".")),
                message: first.map(|e| e.to_string()).unwrap_or_default(),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.server
            .listen_addr
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("server.listen_addr", e.to_string()))?;
        check_url("server.public_url", &self.server.public_url)?;
        self.server.api_token.check("server.api_token")?;
        if self.server.protect_reads && matches!(self.server.api_token, SecretRef::Empty) {
            return Err(ConfigError::invalid(
                "server.protect_reads",
                "needs server.api_token: reads would be refused to everyone",
            ));
        }
        self.database.url.check("database.url")?;
        positive(
            "database.max_connections",
            self.database.max_connections as u64,
        )?;
        positive(
            "database.acquire_timeout_secs",
            self.database.acquire_timeout_secs,
        )?;
        tracing_subscriber::EnvFilter::try_new(&self.telemetry.filter)
            .map_err(|e| ConfigError::invalid("telemetry.filter", e.to_string()))?;

        let s = &self.scrape;
        positive("scrape.interval_secs", s.interval_secs)?;
        positive("scrape.step_secs", s.step_secs)?;
        positive("scrape.backfill_days", s.backfill_days)?;
        positive("scrape.max_in_flight", s.max_in_flight as u64)?;
        positive("scrape.timeout_secs", s.timeout_secs)?;
        if !(2..=11_000).contains(&s.max_points_per_query) {
            return Err(ConfigError::invalid(
                "scrape.max_points_per_query",
                "must be between 2 and 11000 (Prometheus' limit per series)",
            ));
        }

        if s.max_samples_per_read < 1_000 {
            return Err(ConfigError::invalid(
                "scrape.max_samples_per_read",
                "must be at least 1000",
            ));
        }

        let a = &self.assess;
        positive("assess.interval_secs", a.interval_secs)?;
        positive("assess.horizon_days", a.horizon_days)?;
        positive("assess.planning_horizon_days", a.planning_horizon_days)?;
        if !(a.forecast_level > 0.0 && a.forecast_level < 1.0) {
            return Err(ConfigError::invalid(
                "assess.forecast_level",
                format!("must be strictly between 0 and 1, got {}", a.forecast_level),
            ));
        }
        positive("assess.batch_size", a.batch_size)?;
        positive("assess.lease_secs", a.lease_secs)?;
        crate::recommend::Policy::load(&a.default_policy)
            .map_err(|e| ConfigError::invalid("assess.default_policy", e.to_string()))?;
        for (i, rule) in a.policy_rules.iter().enumerate() {
            if rule.pattern.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("assess.policy_rules[{i}].match"),
                    "must not be empty",
                ));
            }
            crate::recommend::Policy::load(&rule.policy).map_err(|e| {
                ConfigError::invalid(format!("assess.policy_rules[{i}].policy"), e.to_string())
            })?;
        }

        if self.reports.team_label.trim().is_empty() {
            return Err(ConfigError::invalid(
                "reports.team_label",
                "must not be empty",
            ));
        }
        positive("reports.period_days", self.reports.period_days)?;
        positive(
            "reports.check_interval_secs",
            self.reports.check_interval_secs,
        )?;
        if self
            .reports
            .directory
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid(
                "reports.directory",
                "must not be empty (leave it out to keep reports only in the database)",
            ));
        }
        let scope = &self.reports.scope;
        if !(scope == "fleet"
            || ["cluster:", "namespace:", "team:"]
                .iter()
                .any(|p| scope.strip_prefix(p).is_some_and(|v| !v.is_empty())))
        {
            return Err(ConfigError::invalid(
                "reports.scope",
                format!("{scope:?}: write fleet, cluster:NAME, namespace:NAME or team:VALUE"),
            ));
        }
        positive("retention.raw_days", self.retention.raw_days)?;
        positive("retention.results_days", self.retention.results_days)?;
        if self.retention.rollup_days < self.retention.raw_days {
            return Err(ConfigError::invalid(
                "retention.rollup_days",
                "must be at least retention.raw_days",
            ));
        }
        non_negative("pricing.cpu_core_hour", self.pricing.cpu_core_hour)?;
        non_negative("pricing.memory_gib_hour", self.pricing.memory_gib_hour)?;
        self.alerts.validate()?;

        let mut names = std::collections::HashSet::new();
        for (i, src) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            if src.name.trim().is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            if !names.insert(src.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("{:?} is used by two sources", src.name),
                ));
            }
            check_url(&key("url"), &src.url)?;
            if let Some(token) = &src.bearer_token {
                token.check(&key("bearer_token"))?;
            }
            if let Some(auth) = &src.basic_auth {
                auth.password.check(&key("basic_auth.password"))?;
                if src.bearer_token.is_some() {
                    return Err(ConfigError::invalid(
                        key("basic_auth"),
                        "set either bearer_token or basic_auth, not both",
                    ));
                }
            }
            if let Some(ca) = &src.tls.ca_file
                && !ca.exists()
            {
                return Err(ConfigError::invalid(
                    key("tls.ca_file"),
                    format!("{} does not exist", ca.display()),
                ));
            }
            if !(1..=86_400).contains(&src.lookback_secs) {
                return Err(ConfigError::invalid(
                    key("lookback_secs"),
                    "must be between 1 and 86400 seconds",
                ));
            }
            if src.read == ReadApi::RemoteRead && src.queries != QueryOverrides::default() {
                return Err(ConfigError::invalid(
                    key("queries"),
                    "query overrides need read = \"query_range\": remote_read reads raw series and evaluates the default queries itself",
                ));
            }
            for name in src.headers.keys() {
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::invalid(key("headers"), format!("{name:?} is not a header name"))
                })?;
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}

fn non_negative(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number >= 0, got {value}"),
        ));
    }
    Ok(())
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ConfigError::invalid(key, format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(
            key,
            format!("{url:?}: must be http or https"),
        ));
    }
    Ok(())
}
