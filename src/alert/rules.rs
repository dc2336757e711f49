//! The alert rules: from what the assessment and the history say about each container (the facts) to the
//! alerts that hold now, with the warning inhibited where a critical alert covers the same resource.
//! Pure: plain data in, plain data out.

use std::collections::{BTreeMap, HashSet};

use crate::config::AlertSettings;
use crate::domain::Resource;

/// A workload as alerts name it and routes match it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRef {
    pub id: i64,
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Which capacity an exhaustion estimate is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    Request,
    Limit,
}

impl ThresholdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdKind::Request => "request",
            ThresholdKind::Limit => "limit",
        }
    }
}

/// The latest exhaustion estimate of one container, resource and threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhaustion {
    pub threshold_kind: ThresholdKind,
    pub threshold: f64,
    /// Usage is over the threshold already.
    pub already_over: bool,
    /// Unix seconds; `None` when not reached within the horizon.
    pub eta: Option<i64>,
    pub eta_early: Option<i64>,
    pub eta_late: Option<i64>,
    pub probability: f64,
}

/// The latest rightsizing recommendation of one container and resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub request: Option<f64>,
    pub limit: Option<f64>,
    pub reason: String,
    pub risk: String,
    /// Per month, in the configured currency; positive when the change frees resources.
    pub saving_money: f64,
}

/// What is known about one resource of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceFacts {
    pub resource: Resource,
    /// The latest per-replica peak usage (cores or bytes).
    pub usage: Option<f64>,
    pub request: Option<f64>,
    pub limit: Option<f64>,
    pub exhaustion: Vec<Exhaustion>,
    pub recommendation: Option<Recommendation>,
}

/// What is known about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFacts {
    pub name: String,
    pub resources: Vec<ResourceFacts>,
    /// OOM kills over the configured window.
    pub oom_kills: f64,
    /// Throttled-period ratio samples (Unix seconds, 0..1) covering at least the throttling window.
    pub throttled: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadFacts {
    pub workload: WorkloadRef,
    pub containers: Vec<ContainerFacts>,
}

/// The thresholds of the rules, in seconds where they are durations.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub limit_within_secs: i64,
    pub request_within_secs: i64,
    pub min_probability: f64,
    pub oom_window_secs: i64,
    pub throttling_ratio: f64,
    pub throttling_for_secs: i64,
    pub savings_digest_min_money: f64,
}

impl Rules {
    pub fn from_settings(a: &AlertSettings) -> Self {
        Self {
            limit_within_secs: a.limit_within_days as i64 * 86_400,
            request_within_secs: a.request_within_days as i64 * 86_400,
            min_probability: a.min_probability,
            oom_window_secs: a.oom_window_hours as i64 * 3_600,
            throttling_ratio: a.throttling_ratio,
            throttling_for_secs: a.throttling_for_secs as i64,
            savings_digest_min_money: a.savings_digest_min_money,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    LimitExhaustion,
    RequestExhaustion,
    OomKills,
    CpuThrottling,
    SavingsDigest,
}

impl Rule {
    /// The stable name, stored in `alert_state.rule` and used as Alertmanager's `alertname`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LimitExhaustion => "LimitExhaustion",
            Rule::RequestExhaustion => "RequestExhaustion",
            Rule::OomKills => "OomKills",
            Rule::CpuThrottling => "CpuThrottling",
            Rule::SavingsDigest => "SavingsDigest",
        }
    }
}

/// Why an alert fires, with what its message shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Exhaustion(Exhaustion),
    OomKills { kills: f64, window_secs: i64 },
    Throttled { mean_ratio: f64, for_secs: i64 },
}

/// One alert that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: Rule,
    pub severity: Severity,
    pub workload: WorkloadRef,
    pub container: String,
    pub resource: Resource,
    pub trigger: Trigger,
    /// Usage, request, limit and recommendation of the resource, for the message.
    pub facts: ResourceFacts,
    /// One line: what runs out and when.
    pub summary: String,
    /// Hash of what the message says, coarse enough that a forecast moving by an hour is not news.
    pub content_hash: String,
}

/// Alerts that hold at `now`, after inhibition, and how many warnings a critical alert inhibited.
pub fn evaluate(facts: &[WorkloadFacts], rules: &Rules, now: i64) -> (Vec<Alert>, usize) {
    let mut alerts = Vec::new();
    for w in facts {
        for c in &w.containers {
            for r in &c.resources {
                for e in &r.exhaustion {
                    let (rule, severity, within) = match e.threshold_kind {
                        ThresholdKind::Limit => (
                            Rule::LimitExhaustion,
                            Severity::Critical,
                            rules.limit_within_secs,
                        ),
                        ThresholdKind::Request => (
                            Rule::RequestExhaustion,
                            Severity::Warning,
                            rules.request_within_secs,
                        ),
                    };
                    let soon = e.eta.is_some_and(|eta| eta <= now + within)
                        && e.probability >= rules.min_probability;
                    if e.already_over || soon {
                        alerts.push(alert(
                            w,
                            c,
                            r,
                            rule,
                            severity,
                            Trigger::Exhaustion(e.clone()),
                            now,
                        ));
                    }
                }
            }
            if c.oom_kills > 0.0
                && let Some(mem) = c.resources.iter().find(|r| r.resource == Resource::Memory)
            {
                let trigger = Trigger::OomKills {
                    kills: c.oom_kills,
                    window_secs: rules.oom_window_secs,
                };
                alerts.push(alert(
                    w,
                    c,
                    mem,
                    Rule::OomKills,
                    Severity::Critical,
                    trigger,
                    now,
                ));
            }
            if let Some(mean_ratio) = sustained_above(
                &c.throttled,
                rules.throttling_ratio,
                rules.throttling_for_secs,
                now,
            ) && let Some(cpu) = c.resources.iter().find(|r| r.resource == Resource::Cpu)
            {
                let trigger = Trigger::Throttled {
                    mean_ratio,
                    for_secs: rules.throttling_for_secs,
                };
                alerts.push(alert(
                    w,
                    c,
                    cpu,
                    Rule::CpuThrottling,
                    Severity::Warning,
                    trigger,
                    now,
                ));
            }
        }
    }
    inhibit(alerts)
}

/// Drops each warning whose workload, container and resource carry a critical alert: the critical one
/// already says the same thing louder.
fn inhibit(alerts: Vec<Alert>) -> (Vec<Alert>, usize) {
    let critical: HashSet<(i64, String, Resource)> = alerts
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .map(|a| (a.workload.id, a.container.clone(), a.resource))
        .collect();
    let before = alerts.len();
    let kept: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| {
            a.severity != Severity::Warning
                || !critical.contains(&(a.workload.id, a.container.clone(), a.resource))
        })
        .collect();
    let inhibited = before - kept.len();
    (kept, inhibited)
}

/// How long the throttling samples may have a hole (or lag behind `now`) and still count as continuous.
const MAX_SAMPLE_GAP_SECS: i64 = 900;

/// The mean ratio when every sample of the last `for_secs` is above `threshold` and the samples cover
/// that window without a long hole, like a Prometheus rule with `for: 1h`.
pub fn sustained_above(
    samples: &[(i64, f64)],
    threshold: f64,
    for_secs: i64,
    now: i64,
) -> Option<f64> {
    let last = samples.last()?.0;
    if now - last > MAX_SAMPLE_GAP_SECS {
        return None;
    }
    let start = last - for_secs;
    let first_in = samples.iter().position(|(t, _)| *t >= start)?;
    // The window must begin with the condition already true: a sample at or just after its start.
    if samples[first_in].0 - start > MAX_SAMPLE_GAP_SECS {
        return None;
    }
    let window = &samples[first_in..];
    if window.len() < 2 || !window.iter().all(|(_, v)| *v > threshold) {
        return None;
    }
    if window
        .windows(2)
        .any(|p| p[1].0 - p[0].0 > MAX_SAMPLE_GAP_SECS)
    {
        return None;
    }
    Some(window.iter().map(|(_, v)| v).sum::<f64>() / window.len() as f64)
}

fn alert(
    w: &WorkloadFacts,
    c: &ContainerFacts,
    r: &ResourceFacts,
    rule: Rule,
    severity: Severity,
    trigger: Trigger,
    now: i64,
) -> Alert {
    let fingerprint = fingerprint(&[
        rule.as_str(),
        &w.workload.id.to_string(),
        &c.name,
        r.resource.as_str(),
    ]);
    let what = format!(
        "{} of container {} in {}/{}",
        r.resource.as_str(),
        c.name,
        w.workload.namespace,
        w.workload.name
    );
    let (summary, news) = match &trigger {
        Trigger::Exhaustion(e) if e.already_over => (
            format!("{what} is over its {} already", e.threshold_kind.as_str()),
            "over".to_string(),
        ),
        Trigger::Exhaustion(e) => {
            let eta = e.eta.unwrap_or(now);
            (
                format!(
                    "{what} reaches its {} {} ({}), probability {:.0} %",
                    e.threshold_kind.as_str(),
                    super::render::relative(eta, now),
                    super::render::date(eta),
                    e.probability * 100.0
                ),
                // The day of the crossing and the probability in tenths: a forecast that moves by an
                // hour, or by one percent, is not worth a new message.
                format!(
                    "{}|{}",
                    super::render::date(eta),
                    (e.probability * 10.0).round()
                ),
            )
        }
        Trigger::OomKills { kills, window_secs } => (
            format!(
                "{what}: {kills:.0} OOM kill(s) in the last {}",
                crate::domain::Span::from_secs(*window_secs)
            ),
            // More kills is not news for the same alert; the repeat interval reminds.
            String::new(),
        ),
        Trigger::Throttled {
            mean_ratio,
            for_secs,
        } => (
            format!(
                "{what}: {:.0} % of CPU periods throttled over the last {}",
                mean_ratio * 100.0,
                crate::domain::Span::from_secs(*for_secs)
            ),
            String::new(),
        ),
    };
    let content_hash = fingerprint_of(&format!("{}|{}|{news}", rule.as_str(), severity.as_str()));
    Alert {
        fingerprint,
        rule,
        severity,
        workload: w.workload.clone(),
        container: c.name.clone(),
        resource: r.resource,
        trigger,
        facts: r.clone(),
        summary,
        content_hash,
    }
}

/// A stable identity from parts: FNV-1a 64, hex. Stable across builds and versions, unlike std's hasher,
/// because fingerprints are stored.
pub fn fingerprint(parts: &[&str]) -> String {
    fingerprint_of(&parts.join("\u{1f}"))
}

fn fingerprint_of(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn rules() -> Rules {
        Rules {
            limit_within_secs: 7 * DAY,
            request_within_secs: 3 * DAY,
            min_probability: 0.5,
            oom_window_secs: DAY,
            throttling_ratio: 0.25,
            throttling_for_secs: 3_600,
            savings_digest_min_money: 100.0,
        }
    }

    fn exhaustion(kind: ThresholdKind, eta_days: Option<i64>, p: f64) -> Exhaustion {
        Exhaustion {
            threshold_kind: kind,
            threshold: 1.0,
            already_over: false,
            eta: eta_days.map(|d| NOW + d * DAY),
            eta_early: None,
            eta_late: None,
            probability: p,
        }
    }

    fn facts(resource: Resource, ex: Vec<Exhaustion>) -> WorkloadFacts {
        WorkloadFacts {
            workload: WorkloadRef {
                id: 7,
                cluster: "c".into(),
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "api".into(),
                labels: BTreeMap::new(),
            },
            containers: vec![ContainerFacts {
                name: "app".into(),
                resources: vec![ResourceFacts {
                    resource,
                    usage: Some(0.8),
                    request: Some(1.0),
                    limit: Some(2.0),
                    exhaustion: ex,
                    recommendation: None,
                }],
                oom_kills: 0.0,
                throttled: vec![],
            }],
        }
    }

    #[test]
    fn limit_reached_within_the_window_is_critical_and_later_is_nothing() {
        let soon = facts(
            Resource::Memory,
            vec![exhaustion(ThresholdKind::Limit, Some(5), 0.8)],
        );
        let (alerts, _) = evaluate(&[soon], &rules(), NOW);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, Rule::LimitExhaustion);
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert!(
            alerts[0].summary.contains("in 5 days"),
            "{}",
            alerts[0].summary
        );

        let late = facts(
            Resource::Memory,
            vec![exhaustion(ThresholdKind::Limit, Some(9), 0.8)],
        );
        assert!(evaluate(&[late], &rules(), NOW).0.is_empty());
        let unlikely = facts(
            Resource::Memory,
            vec![exhaustion(ThresholdKind::Limit, Some(2), 0.3)],
        );
        assert!(evaluate(&[unlikely], &rules(), NOW).0.is_empty());
    }

    #[test]
    fn request_warning_is_inhibited_while_the_limit_critical_fires() {
        let both = facts(
            Resource::Cpu,
            vec![
                exhaustion(ThresholdKind::Request, Some(1), 0.9),
                exhaustion(ThresholdKind::Limit, Some(2), 0.9),
            ],
        );
        let (alerts, inhibited) = evaluate(&[both], &rules(), NOW);
        assert_eq!(inhibited, 1);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, Rule::LimitExhaustion);

        let only_request = facts(
            Resource::Cpu,
            vec![exhaustion(ThresholdKind::Request, Some(1), 0.9)],
        );
        let (alerts, inhibited) = evaluate(&[only_request], &rules(), NOW);
        assert_eq!((alerts.len(), inhibited), (1, 0));
        assert_eq!(alerts[0].severity, Severity::Warning);
    }

    #[test]
    fn already_over_fires_whatever_the_probability() {
        let mut e = exhaustion(ThresholdKind::Request, None, 0.0);
        e.already_over = true;
        let (alerts, _) = evaluate(&[facts(Resource::Memory, vec![e])], &rules(), NOW);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].summary.contains("already"));
    }

    #[test]
    fn oom_kills_fire_a_critical_memory_alert() {
        let mut w = facts(Resource::Memory, vec![]);
        w.containers[0].oom_kills = 2.0;
        let (alerts, _) = evaluate(&[w], &rules(), NOW);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, Rule::OomKills);
        assert!(alerts[0].summary.contains("2 OOM kill(s) in the last 1d"));
    }

    #[test]
    fn throttling_must_hold_for_the_whole_hour() {
        let hour: Vec<(i64, f64)> = (0..=60).map(|i| (NOW - 3600 + i * 60, 0.4)).collect();
        assert!(sustained_above(&hour, 0.25, 3600, NOW).is_some());
        let mut dip = hour.clone();
        dip[30].1 = 0.1;
        assert!(sustained_above(&dip, 0.25, 3600, NOW).is_none());
        let half: Vec<(i64, f64)> = hour[30..].to_vec();
        assert!(sustained_above(&half, 0.25, 3600, NOW).is_none());
        assert!(sustained_above(&hour, 0.25, 3600, NOW + 3 * 3600).is_none());
        let mut w = facts(Resource::Cpu, vec![]);
        w.containers[0].throttled = hour;
        let (alerts, _) = evaluate(&[w], &rules(), NOW);
        assert_eq!(alerts[0].rule, Rule::CpuThrottling);
        assert!(alerts[0].summary.contains("40 %"), "{}", alerts[0].summary);
    }

    #[test]
    fn content_hash_ignores_an_hour_of_drift_but_not_a_day() {
        let at = |hours: i64| {
            let mut e = exhaustion(ThresholdKind::Limit, Some(5), 0.8);
            e.eta = Some(NOW - NOW % DAY + 5 * DAY + hours * 3600);
            evaluate(&[facts(Resource::Memory, vec![e])], &rules(), NOW).0[0].clone()
        };
        assert_eq!(at(1).content_hash, at(2).content_hash);
        assert_eq!(at(1).fingerprint, at(30).fingerprint);
        assert_ne!(at(1).content_hash, at(30).content_hash);
    }

    #[test]
    fn fingerprints_are_stable_across_versions() {
        assert_eq!(fingerprint_of(""), "cbf29ce484222325");
        assert_eq!(fingerprint_of("a"), "af63dc4c8601ec8c");
    }
}
