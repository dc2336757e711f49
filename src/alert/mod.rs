//! Slack (and Alertmanager-webhook) alerts driven by the assessment results. The pure core decides:
//! `rules` (what holds), `plan` (grouping, repeats, resolves, silences, digest), `render` (payloads).
//! The shell acts: `evaluate_and_enqueue` writes state and outbox in one transaction, `deliver` sends.

pub mod deliver;
pub mod plan;
pub mod render;
pub mod rules;

use std::collections::BTreeMap;

pub use deliver::{Deliverer, DeliveryReport, http_client};
pub use plan::{Outgoing, Silence};
pub use rules::{Alert, Rules, Severity, WorkloadFacts, WorkloadRef};

use crate::config::Settings;
use crate::domain::Resource;
use crate::store::{FactWindows, Store, StoreError};
use render::DigestEntry;
use rules::{ContainerFacts, Exhaustion, Recommendation, ResourceFacts, ThresholdKind};

/// What one evaluation found and queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalReport {
    /// Alerts holding now (after inhibition).
    pub firing: usize,
    /// Warnings dropped because a critical alert covers the same resource.
    pub inhibited: usize,
    pub silenced: usize,
    /// Alerts no route accepts.
    pub unrouted: usize,
    /// Alerts that stopped holding.
    pub resolved: usize,
    /// Messages queued in the outbox.
    pub enqueued: usize,
}

/// Assessment rows older than this many assessment intervals are stale: their workload is gone or the
/// assessment stopped, and an alert on them would never resolve.
const STALE_AFTER_INTERVALS: u64 = 3;

/// One evaluation: reads the facts, applies the rules and the notification policy, and writes alert state
/// and the outbox in one transaction (so a crash leaves either both or neither).
pub async fn evaluate_and_enqueue(
    store: &Store,
    settings: &Settings,
    now: i64,
) -> Result<EvalReport, StoreError> {
    let a = &settings.alerts;
    let rules = Rules::from_settings(a);
    let stale = (settings.assess.interval_secs * STALE_AFTER_INTERVALS).max(3_600) as i64;
    let facts = store
        .alert_facts(&FactWindows {
            since: now - stale,
            now,
            oom_window_secs: rules.oom_window_secs,
            throttling_for_secs: rules.throttling_for_secs,
        })
        .await?;
    let (alerts, inhibited) = rules::evaluate(&facts, &rules, now);
    let digest = savings_digest(&facts, &rules);
    let mut round = store.begin_alert_round().await?;
    let states = round.open_states().await?;
    let silences = round.active_silences(now).await?;
    let policy = plan::Policy {
        alerts: a,
        public_url: &settings.server.public_url,
        currency: &settings.pricing.currency,
    };
    let plan = plan::plan(&alerts, &states, &silences, &digest, &policy, now);
    round.apply(&plan, now).await?;
    let report = EvalReport {
        firing: alerts.len(),
        inhibited,
        silenced: plan.silenced,
        unrouted: plan.unrouted,
        resolved: plan.resolved,
        enqueued: plan.messages.len(),
    };
    tracing::info!(
        alert.firing = report.firing,
        alert.inhibited = report.inhibited,
        alert.silenced = report.silenced,
        alert.unrouted = report.unrouted,
        alert.resolved = report.resolved,
        alert.enqueued = report.enqueued,
        "alerts evaluated"
    );
    Ok(report)
}

/// Workloads whose recommendations together save at least the configured money a month, largest first.
pub fn savings_digest(facts: &[WorkloadFacts], rules: &Rules) -> Vec<DigestEntry> {
    if rules.savings_digest_min_money <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<DigestEntry> = facts
        .iter()
        .filter_map(|w| {
            let mut total = 0.0;
            let mut changes = Vec::new();
            for c in &w.containers {
                for r in &c.resources {
                    let Some(rec) = r.recommendation.as_ref().filter(|x| x.saving_money > 0.0)
                    else {
                        continue;
                    };
                    total += rec.saving_money;
                    let amt = |v: Option<f64>| {
                        v.map_or("none".to_string(), |v| render::amount(r.resource, v))
                    };
                    changes.push(format!(
                        "`{}` {}: request {} → {}, limit {} → {} ({:.0}/month)",
                        c.name,
                        r.resource,
                        amt(r.request),
                        amt(rec.request),
                        amt(r.limit),
                        amt(rec.limit),
                        rec.saving_money
                    ));
                }
            }
            (total >= rules.savings_digest_min_money).then(|| DigestEntry {
                workload: w.workload.clone(),
                saving_money: total,
                changes,
            })
        })
        .collect();
    out.sort_by(|a, b| b.saving_money.total_cmp(&a.saving_money));
    out
}

/// A made-up workload whose memory reaches its limit in five days: the sample message of
/// `headroom alert test` and the fixture of the unit tests.
pub fn sample_facts(now: i64) -> WorkloadFacts {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    WorkloadFacts {
        workload: WorkloadRef {
            id: 42,
            cluster: "example".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "checkout".into(),
            labels: BTreeMap::new(),
        },
        containers: vec![ContainerFacts {
            name: "app".into(),
            resources: vec![ResourceFacts {
                resource: Resource::Memory,
                usage: Some(1.6 * GIB),
                request: Some(GIB),
                limit: Some(2.0 * GIB),
                exhaustion: vec![Exhaustion {
                    threshold_kind: ThresholdKind::Limit,
                    threshold: 2.0 * GIB,
                    already_over: false,
                    eta: Some(now + 5 * 86_400),
                    eta_early: Some(now + 3 * 86_400),
                    eta_late: Some(now + 8 * 86_400),
                    probability: 0.82,
                }],
                recommendation: Some(Recommendation {
                    request: Some(2.5 * GIB),
                    limit: Some(3.0 * GIB),
                    reason: "memory grows 4 % a week; sized for the 30-day peak".into(),
                    risk: "low".into(),
                    saving_money: 0.0,
                }),
            }],
            oom_kills: 0.0,
            throttled: Vec::new(),
        }],
    }
}

/// The sample message of `headroom alert test`, rendered for one route.
pub fn sample_message(settings: &Settings, route: &str, now: i64) -> Option<Outgoing> {
    let r = settings.alerts.routes.iter().find(|r| r.name == route)?;
    let rules = Rules {
        limit_within_secs: i64::MAX / 4,
        ..Rules::from_settings(&settings.alerts)
    };
    let (mut alerts, _) = rules::evaluate(&[sample_facts(now)], &rules, now);
    let mut alert = alerts.pop()?;
    alert.summary = format!("[test of route {route}] {}", alert.summary);
    let m = render::GroupMessage {
        receiver: &r.name,
        workload: &alert.workload,
        firing: vec![(&alert, now)],
        resolved: vec![],
        public_url: &settings.server.public_url,
        currency: &settings.pricing.currency,
        now,
    };
    let payload = match r.format {
        crate::config::PayloadFormat::Slack => render::slack_group(&m),
        crate::config::PayloadFormat::Alertmanager => render::alertmanager_group(&m),
    };
    Some(Outgoing {
        fingerprint: rules::fingerprint(&["test", route, &now.to_string()]),
        route: route.to_string(),
        format: r.format,
        payload,
    })
}
