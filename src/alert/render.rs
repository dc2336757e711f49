//! Message rendering: a workload's alert group (or the savings digest) as Slack Block Kit JSON or as
//! Alertmanager's webhook JSON (version 4), plus the dates and amounts people read in them. Pure.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::rules::{Alert, Recommendation, ResourceFacts, Severity, Trigger, WorkloadRef};
use crate::domain::Resource;

/// An alert that stopped holding, as alert state remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAlert {
    pub fingerprint: String,
    pub rule: String,
    pub severity: Severity,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub started_at: i64,
}

/// Everything one notification of one workload's group says.
#[derive(Debug, Clone)]
pub struct GroupMessage<'a> {
    /// The route's name (Alertmanager's `receiver`).
    pub receiver: &'a str,
    pub workload: &'a WorkloadRef,
    /// Firing alerts with the time each started.
    pub firing: Vec<(&'a Alert, i64)>,
    pub resolved: Vec<&'a ResolvedAlert>,
    pub public_url: &'a str,
    pub currency: &'a str,
    pub now: i64,
}

/// One workload of the savings digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestEntry {
    pub workload: WorkloadRef,
    /// Per month, in the configured currency.
    pub saving_money: f64,
    /// One line per container and resource: the change that saves.
    pub changes: Vec<String>,
}

/// Slack refuses more than 50 blocks; a group or digest longer than this ends with "and N more".
const MAX_ITEMS: usize = 20;

/// The labels an alert carries in Alertmanager payloads and in alert state.
pub fn alert_labels(a: &Alert) -> BTreeMap<String, String> {
    let w = &a.workload;
    BTreeMap::from([
        ("alertname".into(), a.rule.as_str().into()),
        ("severity".into(), a.severity.as_str().into()),
        ("cluster".into(), w.cluster.clone()),
        ("namespace".into(), w.namespace.clone()),
        ("kind".into(), w.kind.clone()),
        ("workload".into(), w.name.clone()),
        ("workload_id".into(), w.id.to_string()),
        ("container".into(), a.container.clone()),
        ("resource".into(), a.resource.as_str().into()),
    ])
}

pub fn workload_url(public_url: &str, id: i64) -> String {
    format!("{}/workloads/{id}", public_url.trim_end_matches('/'))
}

/// Slack Block Kit for one workload's group.
pub fn slack_group(m: &GroupMessage) -> Value {
    let w = m.workload;
    let worst = m.firing.iter().map(|(a, _)| a.severity).min();
    let (icon, state) = match worst {
        Some(Severity::Critical) => (":red_circle:", "Critical"),
        Some(Severity::Warning) => (":large_orange_circle:", "Warning"),
        Some(Severity::Info) => (":large_blue_circle:", "Info"),
        None => (":white_check_mark:", "Resolved"),
    };
    let headline = m
        .firing
        .first()
        .map(|(a, _)| a.summary.clone())
        .or_else(|| {
            m.resolved
                .first()
                .map(|r| format!("resolved: {}", r.summary))
        })
        .unwrap_or_default();
    let fallback = format!(
        "[{}] {}/{}: {headline}",
        if m.firing.is_empty() {
            "RESOLVED".to_string()
        } else {
            format!("FIRING:{}", m.firing.len())
        },
        w.namespace,
        w.name
    );
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": format!("{icon} {state}: {}/{}", w.namespace, w.name), "emoji": true}
    })];
    for (a, _) in m.firing.iter().take(MAX_ITEMS) {
        blocks.push(section(&firing_text(a, m.now, m.currency)));
    }
    for r in m
        .resolved
        .iter()
        .take(MAX_ITEMS.saturating_sub(m.firing.len()))
    {
        blocks.push(section(&format!(
            ":white_check_mark: *Resolved* ({}, since {}): {}",
            r.severity.as_str(),
            date(r.started_at),
            r.summary
        )));
    }
    let shown = m.firing.len().min(MAX_ITEMS)
        + m.resolved
            .len()
            .min(MAX_ITEMS.saturating_sub(m.firing.len()));
    let total = m.firing.len() + m.resolved.len();
    if total > shown {
        blocks.push(section(&format!("…and {} more", total - shown)));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!(
            "cluster *{}* · namespace *{}* · {} *{}*", w.cluster, w.namespace, w.kind, w.name)}]
    }));
    blocks.push(json!({
        "type": "actions",
        "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open in Headroom"},
                      "url": workload_url(m.public_url, w.id)}]
    }));
    json!({"text": fallback, "blocks": blocks})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The body of one firing alert: what runs out, when, how likely, where usage stands, what to do.
fn firing_text(a: &Alert, now: i64, currency: &str) -> String {
    let res = a.resource.as_str();
    let mut lines = Vec::new();
    match &a.trigger {
        Trigger::Exhaustion(e) if e.already_over => lines.push(format!(
            "*{} {res} usage is over its {}* in container `{}`",
            a.severity.as_str().to_uppercase(),
            e.threshold_kind.as_str(),
            a.container
        )),
        Trigger::Exhaustion(e) => {
            lines.push(format!(
                "*{} {res} will reach its {}* in container `{}`",
                a.severity.as_str().to_uppercase(),
                e.threshold_kind.as_str(),
                a.container
            ));
            if let Some(eta) = e.eta {
                let mut when = format!("*When:* {}, {}", date(eta), relative(eta, now));
                if let (Some(lo), Some(hi)) = (e.eta_early, e.eta_late) {
                    when.push_str(&format!(" (between {} and {})", date(lo), date(hi)));
                }
                lines.push(when);
            }
            lines.push(format!(
                "*Probability:* {:.0} % within the horizon",
                e.probability * 100.0
            ));
        }
        Trigger::OomKills { kills, window_secs } => lines.push(format!(
            "*{} {kills:.0} OOM kill(s)* of container `{}` in the last {}",
            a.severity.as_str().to_uppercase(),
            a.container,
            crate::domain::Span::from_secs(*window_secs)
        )),
        Trigger::Throttled {
            mean_ratio,
            for_secs,
        } => lines.push(format!(
            "*{} CPU throttled* in container `{}`: {:.0} % of periods over the last {}",
            a.severity.as_str().to_uppercase(),
            a.container,
            mean_ratio * 100.0,
            crate::domain::Span::from_secs(*for_secs)
        )),
    }
    lines.push(format!("*Now:* {}", now_line(&a.facts)));
    if let Some(rec) = &a.facts.recommendation {
        lines.push(format!(
            "*Recommendation:* {}",
            recommendation_line(a.resource, rec, currency)
        ));
    }
    lines.join("\n")
}

fn now_line(f: &ResourceFacts) -> String {
    let amount = |v: Option<f64>| v.map_or("none".to_string(), |v| amount(f.resource, v));
    format!(
        "usage {} · request {} · limit {}",
        amount(f.usage),
        amount(f.request),
        amount(f.limit)
    )
}

fn recommendation_line(resource: Resource, rec: &Recommendation, currency: &str) -> String {
    let amount = |v: Option<f64>| v.map_or("none".to_string(), |v| amount(resource, v));
    let mut line = format!(
        "request {}, limit {} ({}; risk {})",
        amount(rec.request),
        amount(rec.limit),
        rec.reason,
        rec.risk
    );
    if rec.saving_money > 0.0 {
        line.push_str(&format!(", saves {:.0} {currency}/month", rec.saving_money));
    }
    line
}

/// Alertmanager's webhook payload, version 4, for one workload's group.
pub fn alertmanager_group(m: &GroupMessage) -> Value {
    let url = workload_url(m.public_url, m.workload.id);
    let mut alerts: Vec<Value> = m
        .firing
        .iter()
        .map(|(a, started)| {
            let mut annotations = BTreeMap::from([
                ("summary".to_string(), a.summary.clone()),
                ("description".into(), firing_text(a, m.now, m.currency)),
                ("dashboard_url".into(), url.clone()),
            ]);
            if let Trigger::Exhaustion(e) = &a.trigger {
                annotations.insert("probability".into(), format!("{:.2}", e.probability));
                if let Some(eta) = e.eta {
                    annotations.insert("eta".into(), rfc3339(eta));
                }
            }
            json!({
                "status": "firing",
                "labels": alert_labels(a),
                "annotations": annotations,
                "startsAt": rfc3339(*started),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": url,
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    alerts.extend(m.resolved.iter().map(|r| {
        json!({
            "status": "resolved",
            "labels": r.labels,
            "annotations": {"summary": r.summary, "dashboard_url": url},
            "startsAt": rfc3339(r.started_at),
            "endsAt": rfc3339(m.now),
            "generatorURL": url,
            "fingerprint": r.fingerprint,
        })
    }));
    let labels: Vec<BTreeMap<String, String>> = m
        .firing
        .iter()
        .map(|(a, _)| alert_labels(a))
        .chain(m.resolved.iter().map(|r| r.labels.clone()))
        .collect();
    let common = common_labels(&labels);
    let w = m.workload;
    let group_labels = BTreeMap::from([
        ("cluster", w.cluster.as_str()),
        ("namespace", w.namespace.as_str()),
        ("workload", w.name.as_str()),
    ]);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{cluster=\"{}\", namespace=\"{}\", workload=\"{}\"}}", w.cluster, w.namespace, w.name),
        "truncatedAlerts": 0,
        "status": if m.firing.is_empty() { "resolved" } else { "firing" },
        "receiver": m.receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": m.public_url,
        "alerts": alerts,
    })
}

fn common_labels(all: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = all.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|l| l.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The weekly savings digest as Slack Block Kit.
pub fn slack_digest(entries: &[DigestEntry], public_url: &str, currency: &str) -> Value {
    let total: f64 = entries.iter().map(|e| e.saving_money).sum();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true, "text": format!(
            ":moneybag: Savings available: {total:.0} {currency}/month in {} workload(s)", entries.len())}}),
    ];
    for e in entries.iter().take(MAX_ITEMS) {
        let w = &e.workload;
        blocks.push(section(&format!(
            "*<{}|{}/{}>* ({} in {}): saves *{:.0} {currency}/month*\n{}",
            workload_url(public_url, w.id),
            w.namespace,
            w.name,
            w.kind,
            w.cluster,
            e.saving_money,
            e.changes.join("\n")
        )));
    }
    if entries.len() > MAX_ITEMS {
        blocks.push(section(&format!(
            "…and {} more workloads",
            entries.len() - MAX_ITEMS
        )));
    }
    json!({
        "text": format!("Savings digest: {total:.0} {currency}/month available in {} workload(s)", entries.len()),
        "blocks": blocks,
    })
}

/// The savings digest as an Alertmanager webhook (one `info` alert per workload).
pub fn alertmanager_digest(
    entries: &[DigestEntry],
    receiver: &str,
    public_url: &str,
    currency: &str,
    now: i64,
) -> Value {
    let alerts: Vec<Value> = entries
        .iter()
        .map(|e| {
            let w = &e.workload;
            let url = workload_url(public_url, w.id);
            json!({
                "status": "firing",
                "labels": {"alertname": "SavingsDigest", "severity": "info", "cluster": w.cluster,
                           "namespace": w.namespace, "kind": w.kind, "workload": w.name},
                "annotations": {"summary": format!("{}/{} saves {:.0} {currency}/month", w.namespace, w.name, e.saving_money),
                                "description": e.changes.join("\n"), "dashboard_url": url},
                "startsAt": rfc3339(now),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": url,
                "fingerprint": super::rules::fingerprint(&["SavingsDigest", &w.id.to_string()]),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"SavingsDigest\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {"alertname": "SavingsDigest"},
        "commonLabels": {"alertname": "SavingsDigest", "severity": "info"},
        "commonAnnotations": {},
        "externalURL": public_url,
        "alerts": alerts,
    })
}

/// A resource amount as people read it: cores for CPU, binary units for memory.
pub fn amount(resource: Resource, v: f64) -> String {
    match resource {
        Resource::Cpu if v < 1.0 => format!("{:.0}m cores", v * 1000.0),
        Resource::Cpu => format!("{v:.2} cores"),
        Resource::Memory => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB"];
            let mut x = v;
            let mut i = 0;
            while x.abs() >= 1024.0 && i + 1 < units.len() {
                x /= 1024.0;
                i += 1;
            }
            if i == 0 {
                format!("{x:.0} B")
            } else {
                format!("{x:.1} {}", units[i])
            }
        }
    }
}

/// "in 9 days", "in 5 hours", "in 20 minutes" or "now".
pub fn relative(at: i64, now: i64) -> String {
    let d = at - now;
    if d <= 0 {
        "now".into()
    } else if d < 3_600 {
        plural((d + 59) / 60, "minute")
    } else if d < 2 * 86_400 {
        plural((d + 1_800) / 3_600, "hour")
    } else {
        plural((d + 43_200) / 86_400, "day")
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("in 1 {unit}")
    } else {
        format!("in {n} {unit}s")
    }
}

/// The UTC calendar date of a Unix time, `2024-05-12`.
pub fn date(ts: i64) -> String {
    let (y, m, d) = civil(ts.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 in UTC, `2024-05-12T08:30:00Z`, as Alertmanager writes times.
pub fn rfc3339(ts: i64) -> String {
    let secs = ts.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(ts),
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rules::{Rule, evaluate, fingerprint as fp};

    #[test]
    fn dates_match_known_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(-86_400), "1969-12-31");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn relative_times_read_like_people_say_them() {
        assert_eq!(relative(100, 200), "now");
        assert_eq!(relative(1_000 + 20 * 60, 1_000), "in 20 minutes");
        assert_eq!(relative(5 * 3_600, 0), "in 5 hours");
        assert_eq!(relative(9 * 86_400 + 3_600, 0), "in 9 days");
        assert_eq!(relative(86_400 * 30, 0), "in 30 days");
    }

    #[test]
    fn amounts_use_cores_and_binary_units() {
        assert_eq!(amount(Resource::Cpu, 0.25), "250m cores");
        assert_eq!(amount(Resource::Cpu, 1.5), "1.50 cores");
        assert_eq!(
            amount(Resource::Memory, 1.5 * 1024.0 * 1024.0 * 1024.0),
            "1.5 GiB"
        );
        assert_eq!(amount(Resource::Memory, 512.0), "512 B");
    }

    fn sample_alert(now: i64) -> Alert {
        let facts = crate::alert::sample_facts(now);
        let rules = crate::alert::rules::Rules {
            limit_within_secs: 30 * 86_400,
            request_within_secs: 3 * 86_400,
            min_probability: 0.5,
            oom_window_secs: 86_400,
            throttling_ratio: 0.25,
            throttling_for_secs: 3_600,
            savings_digest_min_money: 0.0,
        };
        evaluate(&[facts], &rules, now).0.remove(0)
    }

    #[test]
    fn slack_message_says_what_when_how_likely_and_links_the_workload() {
        let now = 1_700_000_000;
        let a = sample_alert(now);
        assert_eq!(a.rule, Rule::LimitExhaustion);
        let m = GroupMessage {
            receiver: "team",
            workload: &a.workload,
            firing: vec![(&a, now)],
            resolved: vec![],
            public_url: "https://headroom.example/",
            currency: "USD",
            now,
        };
        let v = slack_group(&m);
        let text = v.to_string();
        for expected in [
            "memory will reach its limit",
            "in 5 days",
            &date(now + 5 * 86_400),
            "Probability:* 82 %",
            "usage 1.6 GiB",
            "request 1.0 GiB",
            "limit 2.0 GiB",
            "Recommendation:* request 2.5 GiB",
            "https://headroom.example/workloads/42",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        assert!(v["text"].as_str().unwrap().starts_with("[FIRING:1]"));
    }

    #[test]
    fn alertmanager_payload_is_version_4_with_resolved_alerts_ending_now() {
        let now = 1_700_000_000;
        let a = sample_alert(now);
        let gone = ResolvedAlert {
            fingerprint: fp(&["x"]),
            rule: "OomKills".into(),
            severity: Severity::Critical,
            summary: "old".into(),
            labels: BTreeMap::from([("alertname".into(), "OomKills".into())]),
            started_at: now - 3_600,
        };
        let m = GroupMessage {
            receiver: "team",
            workload: &a.workload,
            firing: vec![(&a, now - 60)],
            resolved: vec![&gone],
            public_url: "https://headroom.example",
            currency: "USD",
            now,
        };
        let v = alertmanager_group(&m);
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "team");
        assert_eq!(v["alerts"][0]["labels"]["alertname"], "LimitExhaustion");
        assert_eq!(v["alerts"][0]["startsAt"], rfc3339(now - 60));
        assert_eq!(v["alerts"][1]["status"], "resolved");
        assert_eq!(v["alerts"][1]["endsAt"], rfc3339(now));
        assert_eq!(v["commonLabels"], json!({}));
    }
}
