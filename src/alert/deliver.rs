//! Delivery from the outbox: claim a due message per webhook (with a lease, paced to one a second), post
//! it, and record the outcome under the same claim; failures back off exponentially, a 429 waits for its
//! Retry-After. Which outcome a response deserves is decided by the pure `classify`.

use std::time::Duration;

use futures_util::future::join_all;

use crate::config::{AlertSettings, ConfigError, Secret};
use crate::store::{ClaimedMessage, Completion, Store, StoreError};

/// Slack's documented limit for incoming webhooks.
const MIN_SEND_INTERVAL_SECS: i64 = 1;
/// When a 429 carries no usable Retry-After.
const DEFAULT_RETRY_AFTER_SECS: i64 = 30;

/// The delivery side of the configuration, with webhook URLs resolved once.
#[derive(Debug, Clone)]
pub struct Deliverer {
    routes: Vec<(String, Secret)>,
    policy: RetryPolicy,
    timeout: Duration,
    lease_secs: i64,
}

/// How failed sends are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base_secs: i64,
    pub max_secs: i64,
    pub max_attempts: i32,
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    /// Failed sends that will be tried again (including 429s).
    pub retried: usize,
    /// Messages set aside after their last attempt.
    pub failed: usize,
    /// Sends whose claim another sender had taken over by the time they finished.
    pub lost_claims: usize,
}

impl DeliveryReport {
    /// Whether anything was claimed: the loop may come back after the pacing second instead of its tick.
    pub fn busy(&self) -> bool {
        self.delivered + self.retried + self.failed + self.lost_claims > 0
    }
}

impl Deliverer {
    pub fn from_settings(a: &AlertSettings) -> Result<Self, ConfigError> {
        let routes = a
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = format!("alerts.routes[{i}].webhook_url");
                let url = r.webhook_url.resolve(&key)?.ok_or(ConfigError::Invalid {
                    key,
                    reason: "must not be empty".into(),
                })?;
                Ok((r.name.clone(), url))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self {
            routes,
            policy: RetryPolicy {
                base_secs: a.retry_base_secs as i64,
                max_secs: a.retry_max_secs as i64,
                max_attempts: a.max_attempts as i32,
            },
            timeout: Duration::from_secs(a.delivery_timeout_secs),
            lease_secs: a.delivery_lease_secs as i64,
        })
    }

    /// The same deliverer restricted to one route; `None` when no route has that name.
    pub fn only(&self, route: &str) -> Option<Self> {
        let r = self.routes.iter().find(|(n, _)| n == route)?.clone();
        Some(Self {
            routes: vec![r],
            ..self.clone()
        })
    }

    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(n, _)| n.as_str())
    }

    /// One pass: at most one due message per route (the pacing allows one a second), all routes at once.
    /// The daemon calls it every second while it is busy and on its tick otherwise.
    pub async fn deliver_due(
        &self,
        store: &Store,
        http: &reqwest::Client,
        now: i64,
    ) -> Result<DeliveryReport, StoreError> {
        let mut claimed = Vec::new();
        for (name, url) in &self.routes {
            if let Some(m) = store
                .claim_alert(name, now, self.lease_secs, MIN_SEND_INTERVAL_SECS)
                .await?
            {
                claimed.push((m, url));
            }
        }
        let sends = claimed.iter().map(|(m, url)| self.send(http, m, url, now));
        let outcomes = join_all(sends).await;
        let mut report = DeliveryReport::default();
        for ((m, _), outcome) in claimed.iter().zip(outcomes) {
            if !store.complete_alert(m, &outcome, now).await? {
                tracing::warn!(alert.outbox_id = m.id, alert.route = %m.route,
                    "alert send finished after its lease ran out; another sender owns it now");
                report.lost_claims += 1;
                continue;
            }
            match &outcome {
                Completion::Delivered => report.delivered += 1,
                Completion::Retry { error, at, .. } => {
                    tracing::warn!(alert.outbox_id = m.id, alert.route = %m.route, alert.attempts = m.attempts,
                        alert.retry_in_secs = at - now, error = %error, "alert send failed; will retry");
                    report.retried += 1;
                }
                Completion::Failed { error } => {
                    tracing::error!(alert.outbox_id = m.id, alert.route = %m.route, alert.attempts = m.attempts,
                        error = %error, "alert send failed for the last time; set aside");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        m: &ClaimedMessage,
        url: &Secret,
        now: i64,
    ) -> Completion {
        let response = http
            .post(url.expose())
            .timeout(self.timeout)
            .json(&m.payload)
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = if r.status().is_success() {
                    String::new()
                } else {
                    r.text().await.unwrap_or_default()
                };
                classify(
                    Ok((status, retry_after.as_deref(), &body)),
                    m.attempts,
                    &self.policy,
                    now,
                )
            }
            // The URL is a credential: errors are logged and stored without it.
            Err(e) => classify(
                Err(&e.without_url().to_string()),
                m.attempts,
                &self.policy,
                now,
            ),
        }
    }
}

/// The outcome a response (status, Retry-After, body) or a transport error deserves after `attempts`.
pub fn classify(
    response: Result<(u16, Option<&str>, &str), &str>,
    attempts: i32,
    policy: &RetryPolicy,
    now: i64,
) -> Completion {
    let error = match response {
        Ok((200..=299, _, _)) => return Completion::Delivered,
        Ok((429, retry_after, _)) if attempts < policy.max_attempts => {
            let wait = retry_after
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
                .clamp(
                    MIN_SEND_INTERVAL_SECS,
                    policy.max_secs.max(MIN_SEND_INTERVAL_SECS),
                );
            return Completion::Retry {
                at: now + wait,
                error: format!("HTTP 429: rate limited, retry after {wait}s"),
                pause_route_until: Some(now + wait),
            };
        }
        Ok((status, _, body)) => {
            let body: String = body.chars().take(200).collect();
            format!("HTTP {status}: {}", body.trim())
        }
        Err(e) => e.to_string(),
    };
    if attempts >= policy.max_attempts {
        return Completion::Failed { error };
    }
    Completion::Retry {
        at: now + backoff(attempts, policy),
        error,
        pause_route_until: None,
    }
}

/// `base * 2^(attempts-1)`, capped.
pub fn backoff(attempts: i32, policy: &RetryPolicy) -> i64 {
    let exp = (attempts - 1).clamp(0, 30) as u32;
    policy
        .base_secs
        .saturating_mul(1_i64 << exp)
        .min(policy.max_secs)
}

/// The one client for webhooks: a connect timeout and Headroom's user agent; each send sets its own
/// timeout, shorter than the claim's lease.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        base_secs: 5,
        max_secs: 3600,
        max_attempts: 4,
    };

    #[test]
    fn success_is_delivered_and_a_server_error_backs_off_exponentially() {
        assert_eq!(
            classify(Ok((204, None, "")), 1, &P, 0),
            Completion::Delivered
        );
        let at = |n| match classify(Ok((500, None, "oops")), n, &P, 100) {
            Completion::Retry { at, error, .. } => {
                assert_eq!(error, "HTTP 500: oops");
                at
            }
            other => panic!("{other:?}"),
        };
        assert_eq!((at(1), at(2), at(3)), (105, 110, 120));
        assert_eq!(backoff(20, &P), 3600);
    }

    #[test]
    fn too_many_requests_waits_for_retry_after_and_pauses_the_route() {
        match classify(Ok((429, Some("7"), "")), 1, &P, 100) {
            Completion::Retry {
                at,
                pause_route_until,
                ..
            } => assert_eq!((at, pause_route_until), (107, Some(107))),
            other => panic!("{other:?}"),
        }
        match classify(
            Ok((429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), "")),
            1,
            &P,
            0,
        ) {
            Completion::Retry { at, .. } => assert_eq!(at, DEFAULT_RETRY_AFTER_SECS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_attempt_sets_the_message_aside() {
        assert!(matches!(
            classify(Err("connection refused"), 4, &P, 0),
            Completion::Failed { .. }
        ));
        assert!(matches!(
            classify(Ok((404, None, "no_service")), 4, &P, 0),
            Completion::Failed { .. }
        ));
    }
}
