//! The content of a capacity planning report as plain data: what every format renders and what the JSON
//! format serialises as is. Amounts are totals over replicas: cores for CPU, bytes for memory.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::domain::Resource;

/// Which workloads a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Scope {
    Fleet,
    Cluster(String),
    Namespace(String),
    /// Workloads whose team label (the key is configured) has this value.
    Team(String),
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("unknown scope {s:?}: write fleet, cluster:NAME, namespace:NAME or team:VALUE")
        };
        if s == "fleet" {
            return Ok(Scope::Fleet);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(format!("scope {s:?} names no {kind}"));
        }
        let name = name.to_string();
        match kind {
            "cluster" => Ok(Scope::Cluster(name)),
            "namespace" => Ok(Scope::Namespace(name)),
            "team" => Ok(Scope::Team(name)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Fleet => f.write_str("fleet"),
            Scope::Cluster(n) => write!(f, "cluster:{n}"),
            Scope::Namespace(n) => write!(f, "namespace:{n}"),
            Scope::Team(n) => write!(f, "team:{n}"),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One self-contained page: inline SVG charts, no external assets, print styles for PDF.
    Html,
    #[value(name = "md")]
    Markdown,
    /// One long table with a `section` column (see docs/reports.md).
    Csv,
    Json,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Html, Format::Markdown, Format::Csv, Format::Json];

    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Markdown => "md",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Everything a report says.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub scope: Scope,
    /// The label key `team:` scopes select on.
    pub team_label: String,
    pub period_start: i64,
    pub period_end: i64,
    pub generated_at: i64,
    pub currency: String,
    pub cpu_core_hour: f64,
    pub memory_gib_hour: f64,
    /// Central probability of every interval in the report.
    pub level: f64,
    pub clusters: usize,
    pub namespaces: usize,
    pub workloads: usize,
    pub containers: usize,
    /// Containers with a recommendation from the latest assessment (the totals below cover these).
    pub assessed_containers: usize,
    /// CPU then memory.
    pub resources: Vec<ResourceTotals>,
    pub cost: CostTotals,
    pub projections: Vec<Projection>,
    pub at_risk: Vec<RiskItem>,
    /// Workloads by saving, largest first (at most `top` of them).
    pub savings: Vec<SavingItem>,
    pub savings_by_namespace: Vec<NamespaceSaving>,
    pub accuracy: Accuracy,
    /// Scope totals over the period, one point per `history_step` seconds.
    pub history: Vec<HistoryPoint>,
    pub history_step: i64,
    /// Forecast of the scope totals from the end of the period, per resource.
    pub outlook: Vec<Outlook>,
    /// Why parts of the report are empty or partial, in plain words.
    pub notes: Vec<String>,
}

/// Requested, used and recommended amounts of one resource over the scope.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceTotals {
    pub resource: Resource,
    /// "cores" or "bytes".
    pub unit: &'static str,
    /// Current requests times replicas, at the latest assessment.
    pub requested: f64,
    pub limits: f64,
    /// Mean of the scope's total usage over the period.
    pub used_mean: f64,
    /// Highest hourly total usage in the period.
    pub used_peak: f64,
    /// Recommended requests times replicas (the current request where there is no recommendation).
    pub recommended: f64,
    /// `used_mean / requested` (`None` without requests).
    pub utilisation: Option<f64>,
    pub peak_utilisation: Option<f64>,
}

/// Monthly cost at the configured prices (730 hours a month).
#[derive(Debug, Clone, Serialize)]
pub struct CostTotals {
    pub requested_per_month: f64,
    pub used_per_month: f64,
    pub recommended_per_month: f64,
    /// Sum of the recommendations' savings (negative: more must be bought).
    pub saving_per_month: f64,
}

/// Projected demand of one resource at one lead time.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    pub resource: Resource,
    pub lead_days: i64,
    pub at: i64,
    /// Forecast of the scope's total usage series itself (interval from its own backtest).
    pub total_p50: Option<f64>,
    pub total_lower: Option<f64>,
    pub total_upper: Option<f64>,
    /// Sum of the per-service peak forecasts times replicas (what requests must cover).
    pub peaks_p50: Option<f64>,
    /// Sum of the upper bounds: right if every service peaks at once, wider than needed otherwise.
    pub peaks_upper_together: Option<f64>,
    /// Half-widths added in quadrature: right if services vary independently.
    pub peaks_upper_independent: Option<f64>,
    /// How many forecasts reach this lead time, of how many in the scope.
    pub forecasts_reaching: usize,
    pub forecasts: usize,
}

/// A container resource that is over or expected to reach its request or limit.
#[derive(Debug, Clone, Serialize)]
pub struct RiskItem {
    pub cluster: String,
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub resource: Resource,
    /// "request" or "limit".
    pub threshold_kind: String,
    /// Per replica, cores or bytes.
    pub threshold: f64,
    /// "already_over" or "within_horizon".
    pub status: String,
    pub eta: Option<i64>,
    pub eta_early: Option<i64>,
    pub eta_late: Option<i64>,
    pub probability: f64,
}

/// What rightsizing one workload saves.
#[derive(Debug, Clone, Serialize)]
pub struct SavingItem {
    pub cluster: String,
    pub namespace: String,
    pub workload: String,
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    pub money_per_month: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceSaving {
    pub cluster: String,
    pub namespace: String,
    pub money_per_month: f64,
}

/// How accurate forecasts turned out.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Accuracy {
    /// Backtest MASE of the latest forecasts (below 1: better than repeating yesterday).
    pub backtest_forecasts: usize,
    pub mase_p10: Option<f64>,
    pub mase_p50: Option<f64>,
    pub mase_p90: Option<f64>,
    pub share_better_than_naive: Option<f64>,
    /// Models chosen, with how many forecasts chose each.
    pub models: Vec<(String, usize)>,
    /// Forecasts made earlier in the period, checked against the samples that arrived since.
    pub realised: Vec<Realised>,
}

/// One earlier forecast set against what happened, per resource.
#[derive(Debug, Clone, Serialize)]
pub struct Realised {
    pub resource: Resource,
    pub forecasts: usize,
    /// Points compared (one per forecast slot that has samples).
    pub points: usize,
    /// Median age of the forecasts at report time, in days.
    pub median_age_days: f64,
    /// Sum of absolute errors of the median over the sum of actuals.
    pub wape: f64,
    /// Sum of (median - actual) over the sum of actuals: positive means over-forecast.
    pub bias: f64,
    /// Share of actuals inside the interval (nominally `level`).
    pub coverage: f64,
}

/// The scope's totals at one time.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct HistoryPoint {
    pub t: i64,
    pub cpu_used: f64,
    pub cpu_requested: f64,
    pub memory_used: f64,
    pub memory_requested: f64,
}

/// The forecast of a scope total: its band for the chart.
#[derive(Debug, Clone, Serialize)]
pub struct Outlook {
    pub resource: Resource,
    pub model: String,
    pub backtest_mase: Option<f64>,
    pub start: i64,
    pub step: i64,
    pub p50: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

impl ReportData {
    pub fn totals(&self, r: Resource) -> Option<&ResourceTotals> {
        self.resources.iter().find(|t| t.resource == r)
    }

    pub fn outlook(&self, r: Resource) -> Option<&Outlook> {
        self.outlook.iter().find(|o| o.resource == r)
    }

    /// Workloads with at least one container resource at risk.
    pub fn workloads_at_risk(&self) -> usize {
        let names = self
            .at_risk
            .iter()
            .map(|r| (&r.cluster, &r.namespace, &r.workload));
        names.collect::<std::collections::BTreeSet<_>>().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_as_they_are_written() {
        for s in [
            "fleet",
            "cluster:prod-eu",
            "namespace:payments",
            "team:search",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn scope_errors_name_the_bad_text() {
        let e = "region:eu".parse::<Scope>().unwrap_err();
        assert!(e.contains("region:eu") && e.contains("team:VALUE"), "{e}");
        assert!(
            "cluster:"
                .parse::<Scope>()
                .unwrap_err()
                .contains("names no cluster")
        );
        assert!("everything".parse::<Scope>().is_err());
    }
}
