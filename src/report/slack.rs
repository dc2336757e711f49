//! The Slack summary of a report: Block Kit JSON with the headline numbers, the most urgent risks, the
//! largest savings and a link to the full report. Delivery belongs to the alert engine.

use serde_json::{Value, json};

use super::data::ReportData;
use super::text::{amount, date, datetime, money, percent};
use crate::domain::Resource;

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Block Kit message for `d`; `link` is where the full report can be read.
pub fn summary(d: &ReportData, link: &str) -> Value {
    let mut fields = Vec::new();
    for r in Resource::ALL {
        if let Some(t) = d.totals(r) {
            fields.push(json!({
                "type": "mrkdwn",
                "text": format!(
                    "*{}*\nrequested {} · used {} ({})\nrecommended {}",
                    r.as_str().to_uppercase(),
                    amount(r, t.requested),
                    amount(r, t.used_mean),
                    percent(t.utilisation),
                    amount(r, t.recommended)
                ),
            }));
        }
    }
    fields.push(json!({
        "type": "mrkdwn",
        "text": format!(
            "*Cost per month*\n{} requested · {} used",
            money(&d.currency, d.cost.requested_per_month),
            money(&d.currency, d.cost.used_per_month)
        ),
    }));
    fields.push(json!({
        "type": "mrkdwn",
        "text": format!("*Saving per month*\n{}", money(&d.currency, d.cost.saving_per_month)),
    }));

    let risks = if d.at_risk.is_empty() {
        "*At risk:* nothing is over or expected to reach its request or limit.".to_string()
    } else {
        let mut s = format!(
            "*At risk:* {} workloads ({} container resources)",
            d.workloads_at_risk(),
            d.at_risk.len()
        );
        for r in d.at_risk.iter().take(5) {
            s.push_str(&format!(
                "\n• `{}/{}/{}` {} {}: {}",
                esc(&r.namespace),
                esc(&r.workload),
                esc(&r.container),
                r.resource,
                r.threshold_kind,
                r.eta.map(datetime).unwrap_or_else(|| "already over".into())
            ));
        }
        s
    };
    let savings = if d.savings.is_empty() {
        "*Largest savings:* none.".to_string()
    } else {
        let mut s = "*Largest savings:*".to_string();
        for w in d.savings.iter().take(5) {
            s.push_str(&format!(
                "\n• `{}/{}` {} a month",
                esc(&w.namespace),
                esc(&w.workload),
                money(&d.currency, w.money_per_month)
            ));
        }
        s
    };
    let title = format!("Capacity report: {}", d.scope);
    json!({
        "text": format!("{title}: {} saving a month, {} at risk", money(&d.currency, d.cost.saving_per_month), d.workloads_at_risk()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "Period {} to {} · {} workloads · {} containers",
                date(d.period_start), date(d.period_end), d.workloads, d.containers
            )}]},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": risks}},
            {"type": "section", "text": {"type": "mrkdwn", "text": savings}},
            {"type": "actions", "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open the report"},
                "url": link,
            }]},
        ],
    })
}
