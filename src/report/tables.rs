//! The report's tables and prose as plain text cells, shared by the HTML and Markdown renderers so both
//! say the same thing in the same words.

use super::data::{ReportData, RiskItem};
use super::text::{amount, datetime, money, number, percent, small_amount};
use crate::domain::Resource;

/// A table: a title, column headers and rows of text cells.
pub struct Table {
    pub title: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Said instead of an empty table.
    pub empty: &'static str,
    /// Said under the table (rows left out, for example).
    pub footer: Option<String>,
}

fn opt_amount(r: Resource, x: Option<f64>) -> String {
    x.map(|v| amount(r, v)).unwrap_or_else(|| "n/a".into())
}

pub fn totals(d: &ReportData) -> Table {
    Table {
        title: "Requested, used and recommended",
        headers: vec![
            "resource",
            "requested",
            "limits",
            "used (mean)",
            "used (peak hour)",
            "recommended",
            "utilisation (mean)",
            "utilisation (peak)",
        ],
        rows: d
            .resources
            .iter()
            .map(|t| {
                vec![
                    t.resource.to_string(),
                    amount(t.resource, t.requested),
                    amount(t.resource, t.limits),
                    amount(t.resource, t.used_mean),
                    amount(t.resource, t.used_peak),
                    amount(t.resource, t.recommended),
                    percent(t.utilisation),
                    percent(t.peak_utilisation),
                ]
            })
            .collect(),
        empty: "No container in this scope has been assessed yet.",
        footer: None,
    }
}

pub fn cost(d: &ReportData) -> Table {
    let c = &d.cost;
    let m = |x: f64| money(&d.currency, x);
    Table {
        title: "Cost per month",
        headers: vec![
            "requested",
            "used",
            "recommended",
            "saving from the recommendations",
        ],
        rows: vec![vec![
            m(c.requested_per_month),
            m(c.used_per_month),
            m(c.recommended_per_month),
            m(c.saving_per_month),
        ]],
        empty: "",
        footer: None,
    }
}

pub fn projections(d: &ReportData) -> Table {
    Table {
        title: "Projected demand",
        headers: vec![
            "resource",
            "lead",
            "date",
            "total usage (median)",
            "total usage (interval)",
            "sum of peak forecasts",
            "if all peak together",
            "if independent",
            "forecasts reaching",
        ],
        rows: d
            .projections
            .iter()
            .map(|p| {
                let r = p.resource;
                vec![
                    r.to_string(),
                    format!("+{}d", p.lead_days),
                    super::text::date(p.at),
                    opt_amount(r, p.total_p50),
                    match (p.total_lower, p.total_upper) {
                        (Some(lo), Some(hi)) => format!("{} – {}", amount(r, lo), amount(r, hi)),
                        _ => "n/a".into(),
                    },
                    opt_amount(r, p.peaks_p50),
                    opt_amount(r, p.peaks_upper_together),
                    opt_amount(r, p.peaks_upper_independent),
                    format!("{} of {}", p.forecasts_reaching, p.forecasts),
                ]
            })
            .collect(),
        empty: "No forecast: not enough history in this scope.",
        footer: None,
    }
}

pub fn risk_label(r: &RiskItem) -> String {
    let name = if r.container == r.workload {
        r.workload.clone()
    } else {
        format!("{}/{}", r.workload, r.container)
    };
    let label = format!("{} {}/{} ({})", r.cluster, r.namespace, name, r.resource);
    // Long names would run off the chart; the end of the name is the part that tells rows apart.
    match label.char_indices().rev().nth(47) {
        Some((i, _)) => format!("…{}", &label[i + 1..]),
        None => label,
    }
}

/// Rows of the at-risk table in the human formats; CSV and JSON list every one.
pub const RISK_ROWS: usize = 40;

pub fn at_risk(d: &ReportData) -> Table {
    let more = d.at_risk.len().saturating_sub(RISK_ROWS);
    Table {
        title: "Services at risk of exhaustion",
        headers: vec![
            "cluster",
            "namespace",
            "workload",
            "container",
            "resource",
            "reaches its",
            "threshold",
            "when",
            "range",
            "probability",
        ],
        rows: d
            .at_risk
            .iter()
            .take(RISK_ROWS)
            .map(|r| {
                vec![
                    r.cluster.clone(),
                    r.namespace.clone(),
                    r.workload.clone(),
                    r.container.clone(),
                    r.resource.to_string(),
                    r.threshold_kind.clone(),
                    small_amount(r.resource, r.threshold),
                    match r.eta {
                        None => "already over".into(),
                        Some(t) => datetime(t),
                    },
                    match (r.eta, r.eta_early, r.eta_late) {
                        (Some(_), Some(a), Some(b)) => {
                            format!("{} – {}", super::text::date(a), super::text::date(b))
                        }
                        _ => String::new(),
                    },
                    percent(Some(r.probability)),
                ]
            })
            .collect(),
        empty: "No container is over, or expected to reach, its request or limit in the period.",
        footer: (more > 0)
            .then(|| format!("… and {more} more, listed in the CSV and JSON formats.")),
    }
}

pub fn savings(d: &ReportData) -> Table {
    Table {
        title: "Largest savings",
        headers: vec![
            "cluster",
            "namespace",
            "workload",
            "CPU freed",
            "memory freed",
            "per month",
        ],
        rows: d
            .savings
            .iter()
            .map(|s| {
                vec![
                    s.cluster.clone(),
                    s.namespace.clone(),
                    s.workload.clone(),
                    amount(Resource::Cpu, s.cpu_cores),
                    amount(Resource::Memory, s.memory_bytes),
                    money(&d.currency, s.money_per_month),
                ]
            })
            .collect(),
        empty: "No recommendation frees resources in this scope.",
        footer: None,
    }
}

pub fn backtest(d: &ReportData) -> Table {
    let a = &d.accuracy;
    let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
    Table {
        title: "Backtest error of the latest forecasts (MASE)",
        headers: vec![
            "forecasts",
            "p10",
            "median",
            "p90",
            "better than yesterday's repeat",
            "models chosen",
        ],
        rows: if a.backtest_forecasts == 0 {
            vec![]
        } else {
            vec![vec![
                a.backtest_forecasts.to_string(),
                f(a.mase_p10),
                f(a.mase_p50),
                f(a.mase_p90),
                percent(a.share_better_than_naive),
                a.models
                    .iter()
                    .map(|(m, n)| format!("{m} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]]
        },
        empty: "No forecast in this scope yet.",
        footer: None,
    }
}

pub fn realised(d: &ReportData) -> Table {
    Table {
        title: "Earlier forecasts against what happened",
        headers: vec![
            "resource",
            "forecasts",
            "points",
            "median age",
            "error (WAPE)",
            "bias",
            "inside the interval",
            "nominal",
        ],
        rows: d
            .accuracy
            .realised
            .iter()
            .map(|r| {
                vec![
                    r.resource.to_string(),
                    r.forecasts.to_string(),
                    r.points.to_string(),
                    format!("{} d", number(r.median_age_days)),
                    percent(Some(r.wape)),
                    format!("{:+.1} %", r.bias * 100.0),
                    percent(Some(r.coverage)),
                    percent(Some(d.level)),
                ]
            })
            .collect(),
        empty: "No forecast made earlier in the period has an outcome yet (history builds up with each assessment).",
        footer: None,
    }
}

/// The methods section: how each number was made, in a few sentences.
pub fn methods(d: &ReportData) -> Vec<String> {
    let level = format!("{:.0} %", d.level * 100.0);
    vec![
        format!(
            "Scope: {} ({} clusters, {} namespaces, {} workloads, {} containers, {} with a current assessment). \
             Team scopes select workloads whose label `{}` has the given value.",
            d.scope, d.clusters, d.namespaces, d.workloads, d.containers, d.assessed_containers, d.team_label
        ),
        "Requested, limits and recommended are per-replica values of the latest assessment times the workload's \
         replicas. Used is the scope's total usage (per-replica mean usage times replicas, summed over containers) \
         averaged over the period; the peak is its highest hourly mean. Utilisation is used over requested."
            .into(),
        format!(
            "Cost uses the configured prices ({c} {} per core-hour, {c} {} per GiB-hour) over 730 hours a month. The \
             saving is the sum of the recommendations' own savings; it is negative where more must be requested.",
            d.cpu_core_hour,
            d.memory_gib_hour,
            c = d.currency
        ),
        format!(
            "Projected demand comes two ways. Total usage: the scope's total usage series is forecast directly by the \
             same engine as every service (candidate models chosen by rolling-origin backtest, {level} intervals from \
             the backtest residuals at each lead time, widening with the square root of the lead past the backtested \
             range). Peak forecasts: each service's stored forecast of its per-replica peak, times its replicas, summed. \
             The interval of a sum is not the sum of intervals: adding the upper bounds is right only if every service \
             peaks at the same time, so both that bound and the independent-services bound (half-widths added in \
             quadrature) are shown; the truth for correlated services lies between them. Leads beyond a stored \
             forecast's horizon are left out and counted in 'forecasts reaching'."
        ),
        "At risk: the latest assessment's exhaustion estimates that are already over, or expected to reach the \
         request or limit before the end of the next period: the first time the forecast peak reaches the \
         threshold, with an early and a late bound and the probability of crossing within the horizon."
            .into(),
        "Accuracy: the backtest MASE of the chosen model (mean absolute error over that of repeating the previous \
         day; below 1 beats it). Earlier forecasts are the oldest stored forecast of each sampled peak series made \
         in the period, scored against the samples that arrived since, reduced as the forecast was made (the peak \
         of each fitting slot): WAPE is the sum of absolute errors of the median over the sum of actuals, bias the \
         signed version, and coverage the share of actuals inside the interval."
            .into(),
    ]
}
