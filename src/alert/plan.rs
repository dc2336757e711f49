//! Alertmanager-style notification policy: alerts grouped per route and workload, a group sent when an
//! alert starts, changes or resolves, or when the repeat interval has passed; silences; the weekly savings
//! digest. Pure: takes the alerts and the stored state, returns the state to write and the messages to send.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::render::{self, DigestEntry, GroupMessage, ResolvedAlert};
use super::rules::{Alert, Rule, Severity, WorkloadRef, fingerprint};
use crate::config::{AlertSettings, PayloadFormat};

/// One row of `alert_state` as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    pub fingerprint: String,
    pub rule: String,
    pub severity: Severity,
    pub workload_id: Option<i64>,
    pub firing: bool,
    pub summary: String,
    /// Hash of what was last sent.
    pub content_hash: String,
    pub started_at: i64,
    pub last_sent_at: Option<i64>,
    pub route: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A silence: matching workloads get no message until `ends_at`. Empty fields match anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: i64,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub ends_at: i64,
}

impl Silence {
    pub fn matches(&self, w: &WorkloadRef, now: i64) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|x| x == have);
        now < self.ends_at
            && eq(&self.cluster, &w.cluster)
            && eq(&self.namespace, &w.namespace)
            && eq(&self.workload, &w.name)
    }
}

/// The row to write for one alert: its state, and when it resolved if it just did.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    pub state: StoredState,
    pub resolved_at: Option<i64>,
}

/// A message for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The group's fingerprint (route and workload, or route and digest).
    pub fingerprint: String,
    pub route: String,
    pub format: PayloadFormat,
    pub payload: Value,
}

/// What one evaluation decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<StateWrite>,
    pub messages: Vec<Outgoing>,
    /// Alerts held back by a silence.
    pub silenced: usize,
    /// Alerts no route accepts: kept in state, never sent.
    pub unrouted: usize,
    /// Alerts that stopped holding in this evaluation.
    pub resolved: usize,
}

/// What the policy needs from the configuration.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub alerts: &'a AlertSettings,
    pub public_url: &'a str,
    pub currency: &'a str,
}

#[derive(Default)]
struct Group<'a> {
    workload: Option<WorkloadRef>,
    firing: Vec<(&'a Alert, Option<&'a StoredState>)>,
    resolved: Vec<&'a StoredState>,
}

/// Decides state and messages from the alerts holding now, the stored state of the alerts that were
/// firing (and of the digests), the active silences and the savings digest entries.
pub fn plan(
    alerts: &[Alert],
    states: &[StoredState],
    silences: &[Silence],
    digest: &[DigestEntry],
    policy: &Policy,
    now: i64,
) -> Plan {
    let by_fp: HashMap<&str, &StoredState> =
        states.iter().map(|s| (s.fingerprint.as_str(), s)).collect();
    let current: HashSet<&str> = alerts.iter().map(|a| a.fingerprint.as_str()).collect();
    let mut plan = Plan::default();

    // Group key: (route, workload). A resolved alert goes to the route its firing went to.
    let mut groups: BTreeMap<(Option<String>, i64), Group> = BTreeMap::new();
    for a in alerts {
        let route = policy
            .alerts
            .route_for(&a.workload.namespace, &a.workload.labels)
            .map(|r| r.name.clone());
        let prev = by_fp
            .get(a.fingerprint.as_str())
            .copied()
            .filter(|s| s.firing);
        let g = groups.entry((route, a.workload.id)).or_default();
        g.workload = Some(a.workload.clone());
        g.firing.push((a, prev));
    }
    for s in states {
        if s.firing
            && s.rule != Rule::SavingsDigest.as_str()
            && !current.contains(s.fingerprint.as_str())
        {
            let key = (s.route.clone(), s.workload_id.unwrap_or(0));
            let g = groups.entry(key).or_default();
            g.resolved.push(s);
        }
    }

    for ((route_name, _), g) in &groups {
        let workload = g.workload.clone().unwrap_or_else(|| {
            workload_from_labels(&g.resolved[0].labels, g.resolved[0].workload_id)
        });
        let silenced = silences.iter().any(|s| s.matches(&workload, now));
        let route = route_name
            .as_deref()
            .and_then(|n| policy.alerts.routes.iter().find(|r| r.name == n));
        let last_sent = g
            .firing
            .iter()
            .filter_map(|(_, p)| p.and_then(|p| p.last_sent_at))
            .max();
        let news = g.firing.iter().any(|(a, prev)| match prev {
            None => true,
            Some(p) => p.last_sent_at.is_none() || p.content_hash != a.content_hash,
        }) || g.resolved.iter().any(|s| s.last_sent_at.is_some());
        let due = !g.firing.is_empty()
            && last_sent.is_none_or(|t| now - t >= policy.alerts.repeat_interval_secs as i64);
        let send = route.is_some() && !silenced && (news || due);
        if silenced {
            plan.silenced += g.firing.len();
        } else if route.is_none() {
            plan.unrouted += g.firing.len();
        }
        plan.resolved += g.resolved.len();

        for (a, prev) in &g.firing {
            plan.writes.push(StateWrite {
                resolved_at: None,
                state: StoredState {
                    fingerprint: a.fingerprint.clone(),
                    rule: a.rule.as_str().into(),
                    severity: a.severity,
                    workload_id: Some(a.workload.id),
                    firing: true,
                    summary: a.summary.clone(),
                    // Unsent changes stay news: the hash records what was said, not what holds.
                    content_hash: match (send, prev) {
                        (false, Some(p)) if p.last_sent_at.is_some() => p.content_hash.clone(),
                        _ => a.content_hash.clone(),
                    },
                    started_at: prev.map_or(now, |p| p.started_at),
                    last_sent_at: if send {
                        Some(now)
                    } else {
                        prev.and_then(|p| p.last_sent_at)
                    },
                    route: route_name.clone(),
                    labels: render::alert_labels(a),
                },
            });
        }
        for s in &g.resolved {
            plan.writes.push(StateWrite {
                state: StoredState {
                    firing: false,
                    last_sent_at: if send { Some(now) } else { s.last_sent_at },
                    ..(*s).clone()
                },
                resolved_at: Some(now),
            });
        }
        let Some(route) = route.filter(|_| send) else {
            continue;
        };
        let resolved: Vec<ResolvedAlert> = g
            .resolved
            .iter()
            .filter(|s| s.last_sent_at.is_some())
            .map(|s| ResolvedAlert {
                fingerprint: s.fingerprint.clone(),
                rule: s.rule.clone(),
                severity: s.severity,
                summary: s.summary.clone(),
                labels: s.labels.clone(),
                started_at: s.started_at,
            })
            .collect();
        let message = GroupMessage {
            receiver: &route.name,
            workload: &workload,
            firing: g
                .firing
                .iter()
                .map(|(a, p)| (*a, p.map_or(now, |p| p.started_at)))
                .collect(),
            resolved: resolved.iter().collect(),
            public_url: policy.public_url,
            currency: policy.currency,
            now,
        };
        let payload = match route.format {
            PayloadFormat::Slack => render::slack_group(&message),
            PayloadFormat::Alertmanager => render::alertmanager_group(&message),
        };
        plan.messages.push(Outgoing {
            fingerprint: fingerprint(&["group", &route.name, &workload.id.to_string()]),
            route: route.name.clone(),
            format: route.format,
            payload,
        });
    }

    plan_digests(&mut plan, &by_fp, silences, digest, policy, now);
    plan
}

/// One digest per route with the workloads it accepts, sent at most once per digest interval; it never
/// "resolves" with a message, it just stops.
fn plan_digests(
    plan: &mut Plan,
    by_fp: &HashMap<&str, &StoredState>,
    silences: &[Silence],
    digest: &[DigestEntry],
    policy: &Policy,
    now: i64,
) {
    let interval = policy.alerts.savings_digest_interval_days as i64 * 86_400;
    for route in &policy.alerts.routes {
        let fp = fingerprint(&[Rule::SavingsDigest.as_str(), &route.name]);
        let prev = by_fp.get(fp.as_str()).copied();
        let entries: Vec<DigestEntry> = digest
            .iter()
            .filter(|e| {
                policy
                    .alerts
                    .route_for(&e.workload.namespace, &e.workload.labels)
                    .is_some_and(|r| r.name == route.name)
                    && !silences.iter().any(|s| s.matches(&e.workload, now))
            })
            .cloned()
            .collect();
        if entries.is_empty() {
            if let Some(p) = prev.filter(|p| p.firing) {
                plan.writes.push(StateWrite {
                    state: StoredState {
                        firing: false,
                        ..p.clone()
                    },
                    resolved_at: Some(now),
                });
            }
            continue;
        }
        let last = prev.and_then(|p| p.last_sent_at);
        let send = last.is_none_or(|t| now - t >= interval);
        let total: f64 = entries.iter().map(|e| e.saving_money).sum();
        let summary = format!(
            "{} workload(s) could save {total:.0} {}/month",
            entries.len(),
            policy.currency
        );
        plan.writes.push(StateWrite {
            resolved_at: None,
            state: StoredState {
                fingerprint: fp.clone(),
                rule: Rule::SavingsDigest.as_str().into(),
                severity: Severity::Info,
                workload_id: None,
                firing: true,
                summary,
                content_hash: String::new(),
                started_at: prev.filter(|p| p.firing).map_or(now, |p| p.started_at),
                last_sent_at: if send { Some(now) } else { last },
                route: Some(route.name.clone()),
                labels: BTreeMap::from([("alertname".into(), Rule::SavingsDigest.as_str().into())]),
            },
        });
        if send {
            let payload = match route.format {
                PayloadFormat::Slack => {
                    render::slack_digest(&entries, policy.public_url, policy.currency)
                }
                PayloadFormat::Alertmanager => render::alertmanager_digest(
                    &entries,
                    &route.name,
                    policy.public_url,
                    policy.currency,
                    now,
                ),
            };
            plan.messages.push(Outgoing {
                fingerprint: fp,
                route: route.name.clone(),
                format: route.format,
                payload,
            });
        }
    }
}

/// A workload as its alerts' stored labels name it, for groups whose workload no longer reports.
fn workload_from_labels(labels: &BTreeMap<String, String>, id: Option<i64>) -> WorkloadRef {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    WorkloadRef {
        id: id.unwrap_or(0),
        cluster: get("cluster"),
        namespace: get("namespace"),
        kind: get("kind"),
        name: get("workload"),
        labels: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rules::{Rules, evaluate};
    use crate::config::Settings;

    const NOW: i64 = 1_700_000_000;

    fn settings() -> Settings {
        Settings::from_toml(
            "[alerts]\n[[alerts.routes]]\nname = \"team\"\nwebhook_url = \"http://127.0.0.1:1/hook\"\n",
        )
        .unwrap()
    }

    fn alerts(now: i64) -> Vec<Alert> {
        let s = settings();
        evaluate(
            &[crate::alert::sample_facts(now)],
            &Rules::from_settings(&s.alerts),
            now,
        )
        .0
    }

    fn stored(writes: &[StateWrite]) -> Vec<StoredState> {
        writes
            .iter()
            .filter(|w| w.state.firing)
            .map(|w| w.state.clone())
            .collect()
    }

    fn run(
        s: &Settings,
        alerts: &[Alert],
        states: &[StoredState],
        sil: &[Silence],
        now: i64,
    ) -> Plan {
        let policy = Policy {
            alerts: &s.alerts,
            public_url: "http://h",
            currency: "USD",
        };
        plan(alerts, states, sil, &[], &policy, now)
    }

    #[test]
    fn a_group_fires_once_repeats_after_the_interval_and_resolves() {
        let s = settings();
        let first = run(&s, &alerts(NOW), &[], &[], NOW);
        assert_eq!(first.messages.len(), 1);
        let st = stored(&first.writes);
        let quiet = run(&s, &alerts(NOW + 600), &st, &[], NOW + 600);
        assert!(
            quiet.messages.is_empty(),
            "nothing changed within the repeat interval"
        );
        let st = stored(&quiet.writes);
        let later = NOW + s.alerts.repeat_interval_secs as i64;
        let repeat = run(&s, &alerts(NOW), &st, &[], later);
        assert_eq!(repeat.messages.len(), 1);
        let st = stored(&repeat.writes);
        let resolved = run(&s, &[], &st, &[], later + 60);
        assert_eq!(resolved.messages.len(), 1);
        assert_eq!(resolved.resolved, 1);
        assert!(
            resolved.messages[0].payload["text"]
                .as_str()
                .unwrap()
                .starts_with("[RESOLVED]")
        );
        assert!(stored(&resolved.writes).is_empty());
    }

    #[test]
    fn a_silenced_workload_gets_no_message_until_the_silence_ends() {
        let s = settings();
        let silence = Silence {
            id: 1,
            cluster: None,
            namespace: Some("shop".into()),
            workload: None,
            ends_at: NOW + 3_600,
        };
        let during = run(&s, &alerts(NOW), &[], std::slice::from_ref(&silence), NOW);
        assert!(during.messages.is_empty());
        assert_eq!(during.silenced, 1);
        let after = run(
            &s,
            &alerts(NOW),
            &stored(&during.writes),
            &[silence],
            NOW + 3_600,
        );
        assert_eq!(
            after.messages.len(),
            1,
            "never sent, so sent when the silence ends"
        );
    }

    #[test]
    fn a_workload_no_route_accepts_is_kept_but_not_sent() {
        let s = Settings::from_toml(
            "[alerts]\n[[alerts.routes]]\nname = \"other\"\nwebhook_url = \"http://127.0.0.1:1/h\"\nnamespaces = [\"other\"]\n",
        )
        .unwrap();
        let p = run(&s, &alerts(NOW), &[], &[], NOW);
        assert!(p.messages.is_empty());
        assert_eq!(p.unrouted, 1);
        assert_eq!(p.writes.len(), 1);
    }

    #[test]
    fn the_savings_digest_is_sent_at_most_once_per_interval() {
        let s = settings();
        let policy = Policy {
            alerts: &s.alerts,
            public_url: "http://h",
            currency: "USD",
        };
        let entry = DigestEntry {
            workload: crate::alert::sample_facts(NOW).workload,
            saving_money: 250.0,
            changes: vec!["app cpu: request 2 → 1 cores".into()],
        };
        let first = plan(&[], &[], &[], std::slice::from_ref(&entry), &policy, NOW);
        assert_eq!(first.messages.len(), 1);
        let st = stored(&first.writes);
        let next_day = plan(
            &[],
            &st,
            &[],
            std::slice::from_ref(&entry),
            &policy,
            NOW + 86_400,
        );
        assert!(next_day.messages.is_empty());
        let next_week = plan(&[], &st, &[], &[entry], &policy, NOW + 7 * 86_400);
        assert_eq!(next_week.messages.len(), 1);
    }
}
