//! The `[alerts]` section: rule thresholds, delivery pacing and the routes that send a workload's alerts
//! to a webhook. Validated once at start-up like the rest, with errors naming the key.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{ConfigError, SecretRef, non_negative, positive};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// A firing group is sent again after this long, even when nothing changed.
    pub repeat_interval_secs: u64,
    /// Limit reached within this many days: critical.
    pub limit_within_days: u64,
    /// Request reached within this many days: warning.
    pub request_within_days: u64,
    /// An exhaustion inside the window still needs this probability of happening to alert.
    pub min_probability: f64,
    /// OOM kills counted over this many hours.
    pub oom_window_hours: u64,
    /// Share of throttled CPU periods that counts as throttled.
    pub throttling_ratio: f64,
    /// How long throttling must last before it alerts.
    pub throttling_for_secs: u64,
    /// A workload enters the savings digest when its recommendations save at least this much a month
    /// (in `pricing.currency`); 0 turns the digest off.
    pub savings_digest_min_money: f64,
    /// The digest is a summary, not a page: sent at most once per this many days.
    pub savings_digest_interval_days: u64,
    /// Timeout of one webhook request; shorter than the lease so a live sender always finishes first.
    pub delivery_timeout_secs: u64,
    /// How long a claimed message stays reserved for its sender before another sender may take it.
    pub delivery_lease_secs: u64,
    /// First retry delay; doubled on each failed attempt up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// After this many failed attempts a message is set aside as failed.
    pub max_attempts: u32,
    /// Where alerts go; the first route whose matchers accept a workload receives its alerts.
    #[serde(default)]
    pub routes: Vec<AlertRoute>,
}

/// One receiver: a Slack incoming webhook or an Alertmanager-compatible webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRoute {
    /// Unique; `headroom alert test --route NAME` and the outbox refer to it.
    pub name: String,
    /// A secret: webhook URLs carry their own credential.
    pub webhook_url: SecretRef,
    #[serde(default)]
    pub format: PayloadFormat,
    /// Namespaces this route takes; empty means any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Workload labels that must all be equal (`team = "payments"`); empty means any.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// The shape of the JSON posted to a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// Slack Block Kit, for incoming webhooks.
    #[default]
    Slack,
    /// Alertmanager's webhook JSON, version 4.
    Alertmanager,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Slack => "slack",
            PayloadFormat::Alertmanager => "alertmanager",
        }
    }
}

impl AlertSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("alerts.repeat_interval_secs", self.repeat_interval_secs)?;
        positive("alerts.limit_within_days", self.limit_within_days)?;
        positive("alerts.request_within_days", self.request_within_days)?;
        if !(0.0..=1.0).contains(&self.min_probability) {
            return Err(ConfigError::invalid(
                "alerts.min_probability",
                "must be between 0 and 1",
            ));
        }
        positive("alerts.oom_window_hours", self.oom_window_hours)?;
        if !(0.0..=1.0).contains(&self.throttling_ratio) {
            return Err(ConfigError::invalid(
                "alerts.throttling_ratio",
                "must be between 0 and 1",
            ));
        }
        positive("alerts.throttling_for_secs", self.throttling_for_secs)?;
        non_negative(
            "alerts.savings_digest_min_money",
            self.savings_digest_min_money,
        )?;
        positive(
            "alerts.savings_digest_interval_days",
            self.savings_digest_interval_days,
        )?;
        positive("alerts.delivery_timeout_secs", self.delivery_timeout_secs)?;
        if self.delivery_lease_secs <= self.delivery_timeout_secs {
            return Err(ConfigError::invalid(
                "alerts.delivery_lease_secs",
                "must be longer than alerts.delivery_timeout_secs, or a slow send could be taken over and sent twice",
            ));
        }
        positive("alerts.retry_base_secs", self.retry_base_secs)?;
        if self.retry_max_secs < self.retry_base_secs {
            return Err(ConfigError::invalid(
                "alerts.retry_max_secs",
                "must be at least alerts.retry_base_secs",
            ));
        }
        positive("alerts.max_attempts", self.max_attempts as u64)?;

        let mut names = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("alerts.routes[{i}].{k}");
            if route.name.trim().is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            if !names.insert(route.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("{:?} is used by two routes", route.name),
                ));
            }
            let url = route
                .webhook_url
                .resolve(&key("webhook_url"))?
                .ok_or_else(|| ConfigError::invalid(key("webhook_url"), "must not be empty"))?;
            // The URL is a credential: the error says what is wrong with it, never what it is.
            match reqwest::Url::parse(url.expose()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => {
                    return Err(ConfigError::invalid(
                        key("webhook_url"),
                        "must be an http or https URL",
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::invalid(
                        key("webhook_url"),
                        format!("not a URL ({e})"),
                    ));
                }
            }
            if route.namespaces.iter().any(|n| n.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    key("namespaces"),
                    "must not contain an empty name",
                ));
            }
        }
        Ok(())
    }

    /// The route that receives alerts of a workload: the first whose matchers all accept it.
    pub fn route_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&AlertRoute> {
        self.routes.iter().find(|r| r.accepts(namespace, labels))
    }
}

impl AlertRoute {
    pub fn accepts(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && self
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }
}
