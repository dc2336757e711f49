//! `headroom recommend`: reads a usage CSV (and optionally a capacity CSV with current requests and
//! limits), runs the rightsizing core per container and resource, and prints a table or Kubernetes patches.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::{CliResult, Failure};
use crate::domain::Resource;
use crate::offline::{self, CapacityTable, Cell, Table, UsageSeries};
use crate::recommend::{self, History, Policy, Prices, Recommendation, Unit, patch};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Usage CSV: `series_id,timestamp_unix,resource,value,unit`. Besides `cpu` and `memory` it may hold
    /// `cpu_max`/`memory_max` (window peaks), `replicas`, `oom_kills` and `cpu_throttled_ratio`.
    #[arg(long)]
    pub input: PathBuf,
    /// Capacity CSV with `cpu_request`, `cpu_limit`, `memory_request`, `memory_limit` step functions
    /// (and `cpu_hpa_target`/`memory_hpa_target` where an autoscaler scales on that resource).
    #[arg(long)]
    pub capacity: Option<PathBuf>,
    /// A built-in policy (balanced, cautious, aggressive, guaranteed, burstable) or a policy .toml file;
    /// defaults to the configuration's `assess.default_policy`.
    #[arg(long)]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t = OutFormat::Csv)]
    pub format: OutFormat,
    /// Price of one core for one hour (defaults to the configuration's `pricing.cpu_core_hour`).
    #[arg(long)]
    pub core_hour_price: Option<f64>,
    /// Price of one GiB of memory for one hour (defaults to `pricing.memory_gib_hour`).
    #[arg(long)]
    pub gib_hour_price: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Csv,
    Json,
    /// Kubernetes strategic-merge patches, one YAML document per workload.
    YamlPatch,
}

pub const COLUMNS: [&str; 16] = [
    "series_id",
    "resource",
    "request",
    "limit",
    "request_lower",
    "request_upper",
    "unit",
    "rule",
    "risk",
    "reason",
    "current_request",
    "current_limit",
    "saving",
    "saving_quantity",
    "saving_money_per_month",
    "policy",
];

pub fn run(settings: &crate::config::Settings, args: &Args) -> CliResult {
    let bad = |e: String| Failure::BadInput(anyhow::anyhow!(e));
    let policy_name = args
        .policy
        .clone()
        .unwrap_or_else(|| settings.assess.default_policy.clone());
    let policy = Policy::load(&policy_name).map_err(|e| bad(e.to_string()))?;
    for (flag, v) in [
        ("--core-hour-price", args.core_hour_price),
        ("--gib-hour-price", args.gib_hour_price),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(bad(format!(
                "{flag}: must be a non-negative number, got {v}"
            )));
        }
    }
    let prices = Prices {
        core_hour: args
            .core_hour_price
            .unwrap_or(settings.pricing.cpu_core_hour),
        gib_hour: args
            .gib_hour_price
            .unwrap_or(settings.pricing.memory_gib_hour),
    };
    let usage = offline::read_usage(&args.input).map_err(|e| bad(e.to_string()))?;
    let capacity = match &args.capacity {
        Some(p) => offline::read_capacity(p).map_err(|e| bad(e.to_string()))?,
        None => CapacityTable::default(),
    };
    let results = recommend_all(&usage, &capacity, &policy, prices);
    if results.is_empty() {
        return Err(bad(format!(
            "{}: no cpu or memory series to size (resources found: {})",
            args.input.display(),
            resource_names(&usage)
        )));
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutFormat::YamlPatch => {
            let mut by_series: BTreeMap<&str, Vec<(&Recommendation, Unit)>> = BTreeMap::new();
            for r in &results {
                by_series
                    .entry(r.series_id.as_str())
                    .or_default()
                    .push((&r.rec, r.unit));
            }
            let containers: Vec<patch::ContainerPatch<'_>> = by_series
                .into_iter()
                .map(|(series_id, recommendations)| patch::ContainerPatch {
                    series_id,
                    recommendations,
                })
                .collect();
            out.write_all(patch::render(&containers).as_bytes())?;
        }
        OutFormat::Csv | OutFormat::Json => {
            let table = to_table(&results, &policy.name);
            let format = if args.format == OutFormat::Json {
                offline::Format::Json
            } else {
                offline::Format::Csv
            };
            table.write(format, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One row of output: a recommendation and what it was made from.
pub struct Row {
    pub series_id: String,
    pub unit: Unit,
    pub unit_text: Option<String>,
    pub current_request: Option<f64>,
    pub current_limit: Option<f64>,
    pub rec: Recommendation,
}

/// Sizes every `(series_id, cpu|memory)` pair in `usage`, using the companion series (peaks, replicas,
/// OOM kills, throttling) and the current request and limit where they are given.
pub fn recommend_all(
    usage: &[UsageSeries],
    capacity: &CapacityTable,
    policy: &Policy,
    prices: Prices,
) -> Vec<Row> {
    let find = |id: &str, res: &str| {
        usage
            .iter()
            .find(|s| s.series_id == id && s.resource == res)
    };
    let mut rows = Vec::new();
    for s in usage {
        let Ok(resource) = s.resource.parse::<Resource>() else {
            continue;
        };
        let Some(&(last, _)) = s.points.last() else {
            continue;
        };
        let r = resource.as_str();
        let unit = s.unit.as_deref().map_or(Unit::Unknown, Unit::parse);
        let peaks = find(&s.series_id, &format!("{r}_max"));
        let replicas = find(&s.series_id, "replicas");
        let kills: Vec<i64> = find(&s.series_id, "oom_kills")
            .map(|k| k.points.iter().filter(|p| p.1 > 0.0).map(|p| p.0).collect())
            .unwrap_or_default();
        let throttled = find(&s.series_id, "cpu_throttled_ratio").and_then(|t| {
            (!t.points.is_empty())
                .then(|| t.points.iter().map(|p| p.1).sum::<f64>() / t.points.len() as f64)
        });
        let current_request = capacity.value_at(&s.series_id, &format!("{r}_request"), last);
        let current_limit = capacity.value_at(&s.series_id, &format!("{r}_limit"), last);
        let mut h = History::new(resource, unit, &s.points);
        h.peaks = peaks.map_or(&[], |p| p.points.as_slice());
        h.replicas = replicas.map_or(&[], |p| p.points.as_slice());
        h.oom_kills = &kills;
        h.throttled_ratio = throttled;
        h.current_request = current_request;
        h.current_limit = current_limit;
        h.growth_ratio = recommend::policy_growth(policy, resource, h.usage);
        h.hpa_scaled = capacity
            .steps(&s.series_id, &format!("{r}_hpa_target"))
            .is_some();
        let rec = recommend::recommend(&h, policy, Some(prices));
        rows.push(Row {
            series_id: s.series_id.clone(),
            unit,
            unit_text: s.unit.clone(),
            current_request,
            current_limit,
            rec,
        });
    }
    rows.sort_by(|a, b| {
        (a.series_id.as_str(), a.rec.resource).cmp(&(b.series_id.as_str(), b.rec.resource))
    });
    rows
}

fn to_table(rows: &[Row], policy: &str) -> Table {
    let mut t = Table::new(&COLUMNS);
    for r in rows {
        let saving = r.rec.saving;
        t.push(vec![
            r.series_id.clone().into(),
            r.rec.resource.as_str().into(),
            r.rec.request.into(),
            r.rec.limit.into(),
            r.rec.request_lower.into(),
            r.rec.request_upper.into(),
            r.unit_text.clone().into(),
            r.rec.rule.clone().into(),
            r.rec.risk.clone().into(),
            r.rec.reason.clone().into(),
            r.current_request.into(),
            r.current_limit.into(),
            saving.map(|s| s.units).into(),
            saving.and_then(|s| s.quantity).into(),
            saving.and_then(|s| s.money_per_month).into(),
            Cell::from(policy),
        ]);
    }
    t
}

fn resource_names(usage: &[UsageSeries]) -> String {
    let mut names: Vec<&str> = usage.iter().map(|s| s.resource.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}
