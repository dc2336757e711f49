//! Headroom's own health as Prometheus metrics: one registry built at start, typed label sets, and the
//! families every part of the daemon records into. Rendered at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceErrorLabels {
    pub source: String,
    /// timeout, connect, http_5xx, http_4xx, prometheus_error, garbage, too_many_samples, database
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok or error
    pub result: String,
}

/// Every metric family, shared by reference.
pub struct Metrics {
    pub registry: Registry,
    pub scrape_requests: Family<SourceLabels, Counter>,
    pub scrape_errors: Family<SourceErrorLabels, Counter>,
    pub scrape_retries: Family<SourceLabels, Counter>,
    pub scrape_samples: Family<SourceLabels, Counter>,
    pub scrape_dropped_samples: Family<SourceLabels, Counter>,
    pub scrape_request_seconds: Family<SourceLabels, Histogram>,
    pub scrape_last_success: Family<SourceLabels, Gauge>,
    /// Configuration reloads (SIGHUP) by outcome.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Unix time the running configuration was last loaded successfully (start-up or reload).
    pub config_last_reload_success: Gauge,
    /// Report files written to `reports.directory`.
    pub report_files_written: Counter,
    /// Exports of a stored report to `reports.directory` that failed and wait for the next check.
    pub report_export_errors: Counter,
    /// Runs of the report loop's check (report due? exports pending?).
    pub report_checks: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("headroom");
        let scrape_requests = Family::<SourceLabels, Counter>::default();
        let scrape_errors = Family::<SourceErrorLabels, Counter>::default();
        let scrape_retries = Family::<SourceLabels, Counter>::default();
        let scrape_samples = Family::<SourceLabels, Counter>::default();
        let scrape_dropped_samples = Family::<SourceLabels, Counter>::default();
        let scrape_request_seconds =
            Family::<SourceLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        let scrape_last_success = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "scrape_requests",
            "HTTP requests sent to Prometheus sources",
            scrape_requests.clone(),
        );
        registry.register(
            "scrape_errors",
            "Failed requests to Prometheus sources, by kind of failure",
            scrape_errors.clone(),
        );
        registry.register(
            "scrape_retries",
            "Requests retried after a retryable failure",
            scrape_retries.clone(),
        );
        registry.register(
            "scrape_samples",
            "Samples received from sources and stored",
            scrape_samples.clone(),
        );
        registry.register(
            "scrape_dropped_samples",
            "Samples dropped because they were NaN, infinite or stale markers",
            scrape_dropped_samples.clone(),
        );
        registry.register(
            "scrape_request_duration_seconds",
            "Duration of one request to a source",
            scrape_request_seconds.clone(),
        );
        registry.register(
            "scrape_last_success_timestamp_seconds",
            "Unix time of the last complete scrape of a source",
            scrape_last_success.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let config_last_reload_success = Gauge::default();
        let report_files_written = Counter::default();
        let report_export_errors = Counter::default();
        let report_checks = Counter::default();
        registry.register(
            "config_reloads",
            "Configuration reloads on SIGHUP, by result (ok, error: the running configuration was kept)",
            config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration was last loaded successfully",
            config_last_reload_success.clone(),
        );
        registry.register(
            "report_files_written",
            "Report files written to reports.directory",
            report_files_written.clone(),
        );
        registry.register(
            "report_export_errors",
            "Failed exports of stored reports to reports.directory (retried on the next check)",
            report_export_errors.clone(),
        );
        registry.register(
            "report_checks",
            "Checks of the report loop: report due, file exports pending",
            report_checks.clone(),
        );
        Arc::new(Self {
            registry,
            config_reloads,
            config_last_reload_success,
            report_files_written,
            report_export_errors,
            report_checks,
            scrape_requests,
            scrape_errors,
            scrape_retries,
            scrape_samples,
            scrape_dropped_samples,
            scrape_request_seconds,
            scrape_last_success,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn error_count(&self, source: &str, kind: &str) -> u64 {
        self.scrape_errors
            .get_or_create(&SourceErrorLabels {
                source: source.into(),
                kind: kind.into(),
            })
            .get()
    }
}
