//! The shell of the reports: reads the scope's containers, latest assessment and samples through the
//! store, hands them to the pure arithmetic in `compute`, forecasts the scope totals, and stores the
//! rendered reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::compute::{self, ContainerSamples, Outcome, Thinned};
use super::data::*;
use crate::config::Settings;
use crate::domain::{Resource, Span};
use crate::forecast::{self, ForecastOptions};
use crate::store::{ScopeContainer, ScopeFilter, Store, StoreError};

const HOURS_PER_MONTH: f64 = 730.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAY: i64 = 86_400;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A cluster, namespace or team that matches no workload (a typo, usually).
    #[error("no workload matches scope {0}")]
    EmptyScope(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How reports are made; `from_settings` gives the configured defaults.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The workload label key that `team:VALUE` scopes select on.
    pub team_label: String,
    pub currency: String,
    pub cpu_core_hour: f64,
    pub memory_gib_hour: f64,
    pub level: f64,
    /// The assessment's fitting grid: earlier forecasts are scored on the same grid.
    pub fit_step_secs: i64,
    /// Projection lead times, in days.
    pub leads_days: Vec<i64>,
    /// Workloads listed under the largest savings.
    pub top: usize,
    /// At most this many peak series have their earlier forecasts scored (reads their samples).
    pub accuracy_series: i64,
    /// Containers whose samples are read per round trip.
    pub batch: usize,
}

impl ReportOptions {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            team_label: s.reports.team_label.clone(),
            currency: s.pricing.currency.clone(),
            cpu_core_hour: s.pricing.cpu_core_hour,
            memory_gib_hour: s.pricing.memory_gib_hour,
            level: s.assess.forecast_level,
            fit_step_secs: crate::assess::AssessOptions::from_settings(s)
                .map(|o| o.fit_step_secs)
                .unwrap_or(1_800),
            leads_days: vec![30, 60, 90],
            top: 15,
            accuracy_series: 400,
            batch: 200,
        }
    }

    fn filter(&self, scope: &Scope) -> ScopeFilter {
        match scope {
            Scope::Fleet => ScopeFilter::default(),
            Scope::Cluster(c) => ScopeFilter {
                cluster: Some(c.clone()),
                ..Default::default()
            },
            Scope::Namespace(n) => ScopeFilter {
                namespace: Some(n.clone()),
                ..Default::default()
            },
            Scope::Team(t) => ScopeFilter {
                label: Some((self.team_label.clone(), t.clone())),
                ..Default::default()
            },
        }
    }

    fn monthly_cost(&self, cores: f64, bytes: f64) -> f64 {
        (cores * self.cpu_core_hour + bytes / GIB * self.memory_gib_hour) * HOURS_PER_MONTH
    }
}

/// The chart and history resolution: hourly up to 30 days, then coarser so a period keeps about 720 points.
fn history_step(period: i64) -> i64 {
    (period / 720).div_euclid(3_600).max(1) * 3_600
}

fn resource_of(metric: &str) -> Resource {
    if metric.starts_with("cpu") {
        Resource::Cpu
    } else {
        Resource::Memory
    }
}

/// Gathers the report of `scope` over the `period` ending at `now`, with the configured options.
pub async fn build(
    store: &Store,
    settings: &Settings,
    scope: &Scope,
    period: Span,
    now: i64,
) -> Result<ReportData, ReportError> {
    build_with(
        store,
        &ReportOptions::from_settings(settings),
        scope,
        period,
        now,
    )
    .await
}

/// `build` with explicit options.
pub async fn build_with(
    store: &Store,
    opts: &ReportOptions,
    scope: &Scope,
    period: Span,
    now: i64,
) -> Result<ReportData, ReportError> {
    let filter = opts.filter(scope);
    let start = now - period.secs();
    let containers = store.scope_containers(&filter).await?;
    if containers.is_empty() && *scope != Scope::Fleet {
        return Err(ReportError::EmptyScope(scope.to_string()));
    }
    let by_id: HashMap<i64, &ScopeContainer> =
        containers.iter().map(|c| (c.container_id, c)).collect();
    let replicas = |id: i64| {
        by_id
            .get(&id)
            .and_then(|c| c.replicas)
            .unwrap_or(1.0)
            .max(1.0)
    };
    let mut notes = Vec::new();

    // Scope totals over time, a batch of containers at a time.
    let step = history_step(period.secs());
    let mut totals: BTreeMap<i64, HistoryPoint> = BTreeMap::new();
    const METRICS: [&str; 5] = [
        "cpu_usage",
        "memory_usage",
        "replicas",
        "cpu_request",
        "memory_request",
    ];
    for batch in containers.chunks(opts.batch.max(1)) {
        let ids: Vec<i64> = batch
            .iter()
            .flat_map(|c| METRICS.iter().filter_map(|m| c.series.get(*m).copied()))
            .collect();
        let samples = store.read_samples_many(&ids, start, now + 1).await?;
        let empty = Vec::new();
        for c in batch {
            let get = |m: &str| {
                c.series
                    .get(m)
                    .and_then(|id| samples.get(id))
                    .unwrap_or(&empty)
                    .as_slice()
            };
            compute::add_container(
                &mut totals,
                step,
                &ContainerSamples {
                    cpu_usage: get("cpu_usage"),
                    memory_usage: get("memory_usage"),
                    replicas: get("replicas"),
                    cpu_request: get("cpu_request"),
                    memory_request: get("memory_request"),
                },
            );
        }
    }
    let history: Vec<HistoryPoint> = totals.into_values().collect();

    // Forecast of the totals themselves, out to the longest lead.
    let max_lead = opts.leads_days.iter().copied().max().unwrap_or(90) * DAY;
    let mut outlook = Vec::new();
    for r in Resource::ALL {
        let points: Vec<(i64, f64)> = history
            .iter()
            .map(|p| match r {
                Resource::Cpu => (p.t, p.cpu_used),
                Resource::Memory => (p.t, p.memory_used),
            })
            .collect();
        // One step more than the longest lead, so that lead's point exists whatever the last bucket.
        let mut fo = ForecastOptions::new(max_lead + step, opts.level);
        fo.step_secs = Some(step);
        match forecast::forecast(&points, &fo) {
            Ok(f) => outlook.push(Outlook {
                resource: r,
                model: f.model.clone(),
                backtest_mase: f.backtest_mase,
                start: f.start,
                step: f.step,
                p50: f.p50,
                lower: f.lower,
                upper: f.upper,
            }),
            Err(e) => notes.push(format!("No forecast of the total {r} usage: {e}.")),
        }
    }

    // The latest assessment: requests, limits, recommendations, savings.
    let recs = store.latest_recommendations(&filter).await?;
    let assessed: BTreeSet<i64> = recs.iter().map(|r| r.container_id).collect();
    if recs.is_empty() {
        notes.push("No assessment has run for this scope yet: requests, recommendations and savings are empty.".into());
    }
    let mut resources = Vec::new();
    let mut saving_money = 0.0;
    for r in Resource::ALL {
        let (mut requested, mut limits, mut recommended) = (0.0, 0.0, 0.0);
        for x in recs.iter().filter(|x| x.resource == r.as_str()) {
            let n = replicas(x.container_id);
            requested += x.current_request.unwrap_or(0.0) * n;
            limits += x.current_limit.unwrap_or(0.0) * n;
            recommended += x.request.or(x.current_request).unwrap_or(0.0) * n;
        }
        let used: Vec<f64> = history
            .iter()
            .map(|p| match r {
                Resource::Cpu => p.cpu_used,
                Resource::Memory => p.memory_used,
            })
            .collect();
        let used_mean = if used.is_empty() {
            0.0
        } else {
            used.iter().sum::<f64>() / used.len() as f64
        };
        let used_peak = used.iter().copied().fold(0.0, f64::max);
        let ratio = |x: f64| (requested > 0.0).then(|| x / requested);
        resources.push(ResourceTotals {
            resource: r,
            unit: match r {
                Resource::Cpu => "cores",
                Resource::Memory => "bytes",
            },
            requested,
            limits,
            used_mean,
            used_peak,
            recommended,
            utilisation: ratio(used_mean),
            peak_utilisation: ratio(used_peak),
        });
    }
    let pick = |r: Resource, f: fn(&ResourceTotals) -> f64| {
        resources
            .iter()
            .find(|t| t.resource == r)
            .map(f)
            .unwrap_or(0.0)
    };
    let cost_of = |f: fn(&ResourceTotals) -> f64| {
        opts.monthly_cost(pick(Resource::Cpu, f), pick(Resource::Memory, f))
    };
    let mut per_workload: BTreeMap<i64, SavingItem> = BTreeMap::new();
    for x in &recs {
        saving_money += x.saving_money;
        let Some(c) = by_id.get(&x.container_id) else {
            continue;
        };
        let w = per_workload
            .entry(c.workload_id)
            .or_insert_with(|| SavingItem {
                cluster: c.cluster.clone(),
                namespace: c.namespace.clone(),
                workload: c.workload.clone(),
                cpu_cores: 0.0,
                memory_bytes: 0.0,
                money_per_month: 0.0,
            });
        match resource_of(&x.resource) {
            Resource::Cpu => w.cpu_cores += x.saving_amount,
            Resource::Memory => w.memory_bytes += x.saving_amount,
        }
        w.money_per_month += x.saving_money;
    }
    let cost = CostTotals {
        requested_per_month: cost_of(|t| t.requested),
        used_per_month: cost_of(|t| t.used_mean),
        recommended_per_month: cost_of(|t| t.recommended),
        saving_per_month: saving_money,
    };
    let mut by_namespace: BTreeMap<(String, String), f64> = BTreeMap::new();
    for w in per_workload.values() {
        *by_namespace
            .entry((w.cluster.clone(), w.namespace.clone()))
            .or_default() += w.money_per_month;
    }
    let mut savings_by_namespace: Vec<NamespaceSaving> = by_namespace
        .into_iter()
        .map(|((cluster, namespace), money_per_month)| NamespaceSaving {
            cluster,
            namespace,
            money_per_month,
        })
        .collect();
    savings_by_namespace.sort_by(|a, b| b.money_per_month.total_cmp(&a.money_per_month));
    let mut savings: Vec<SavingItem> = per_workload
        .into_values()
        .filter(|w| w.money_per_month > 0.0)
        .collect();
    savings.sort_by(|a, b| b.money_per_month.total_cmp(&a.money_per_month));
    savings.truncate(opts.top);

    // At risk: over now, or expected to cross before the end of the next period.
    let mut at_risk: Vec<RiskItem> = store
        .latest_exhaustions(&filter)
        .await?
        .into_iter()
        .filter(|e| e.status == "already_over" || e.eta.is_some_and(|t| t <= now + period.secs()))
        .filter_map(|e| {
            let c = by_id.get(&e.container_id)?;
            Some(RiskItem {
                cluster: c.cluster.clone(),
                namespace: c.namespace.clone(),
                workload: c.workload.clone(),
                container: c.container.clone(),
                resource: resource_of(&e.metric),
                threshold_kind: e.threshold_kind,
                threshold: e.threshold,
                eta: if e.status == "already_over" {
                    None
                } else {
                    e.eta
                },
                eta_early: e.eta_early,
                eta_late: e.eta_late,
                status: e.status,
                probability: e.probability,
            })
        })
        .collect();
    // Limits first (crossing one kills or throttles), then what is over, then by expected time.
    at_risk.sort_by_key(|r| (r.threshold_kind != "limit", r.eta.is_some(), r.eta));

    // Projections: the totals' own forecast, and the sum of the services' peak forecasts.
    let leads: Vec<i64> = opts.leads_days.iter().map(|d| now + d * DAY).collect();
    let stored = store.latest_forecasts_at(&filter, &leads).await?;
    let mut projections = Vec::new();
    for r in Resource::ALL {
        let mine: Vec<_> = stored
            .iter()
            .filter(|f| resource_of(&f.metric) == r)
            .collect();
        let o = outlook.iter().find(|o| o.resource == r);
        for (k, (&days, &at)) in opts.leads_days.iter().zip(&leads).enumerate() {
            let total = o.and_then(|o| {
                let i = usize::try_from((at - o.start + o.step / 2).div_euclid(o.step)).ok()?;
                Some((*o.p50.get(i)?, *o.lower.get(i)?, *o.upper.get(i)?))
            });
            let summed = compute::sum_forecasts(mine.iter().map(|f| {
                (
                    f.p50.get(k).copied().flatten(),
                    f.upper.get(k).copied().flatten(),
                    replicas(f.container_id),
                )
            }));
            projections.push(Projection {
                resource: r,
                lead_days: days,
                at,
                total_p50: total.map(|t| t.0),
                total_lower: total.map(|t| t.1),
                total_upper: total.map(|t| t.2),
                peaks_p50: summed.map(|s| s.p50),
                peaks_upper_together: summed.map(|s| s.upper_together),
                peaks_upper_independent: summed.map(|s| s.upper_independent),
                forecasts_reaching: summed.map(|s| s.reaching).unwrap_or(0),
                forecasts: mine.len(),
            });
        }
    }
    if projections
        .iter()
        .any(|p| p.forecasts_reaching < p.forecasts)
    {
        notes.push(
            "Some services' stored forecasts end before a projection's lead time (assess.horizon_days): those \
             sums of peak forecasts cover only the forecasts that reach it; the total-usage projection covers \
             every lead."
                .into(),
        );
    }

    // Accuracy: backtest errors of the latest forecasts, and earlier forecasts against what happened.
    let mut mase: Vec<f64> = stored
        .iter()
        .filter_map(|f| f.backtest_mase)
        .filter(|m| m.is_finite())
        .collect();
    mase.sort_by(f64::total_cmp);
    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    for f in &stored {
        *models.entry(f.model.clone()).or_default() += 1;
    }
    let mut models: Vec<(String, usize)> = models.into_iter().collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let past = store
        .past_forecasts(&filter, start, now - DAY, opts.accuracy_series)
        .await?;
    let mut realised = Vec::new();
    if !past.is_empty() {
        let ids: Vec<i64> = past.iter().map(|p| p.series_id).collect();
        let from = past.iter().map(|p| p.start).min().unwrap_or(start);
        let samples = store.read_samples_many(&ids, from, now + 1).await?;
        for r in Resource::ALL {
            let (mut sum, mut n, mut ages) = (Outcome::default(), 0usize, Vec::new());
            for p in past.iter().filter(|p| resource_of(&p.metric) == r) {
                let Some(s) = samples.get(&p.series_id) else {
                    continue;
                };
                let thinned = Thinned {
                    start: p.start,
                    step: p.step,
                    p50: &p.p50,
                    lower: &p.lower,
                    upper: &p.upper,
                };
                let o = compute::score_forecast(&thinned, s, opts.fit_step_secs, now);
                if o.points > 0 {
                    sum.add(&o);
                    n += 1;
                    ages.push((now - p.computed_at) as f64 / DAY as f64);
                }
            }
            if n > 0 && sum.actual > 0.0 && sum.checked > 0 {
                ages.sort_by(f64::total_cmp);
                realised.push(Realised {
                    resource: r,
                    forecasts: n,
                    points: sum.points,
                    median_age_days: compute::quantile(&ages, 0.5).unwrap_or(0.0),
                    wape: sum.abs_error / sum.actual,
                    bias: sum.signed_error / sum.actual,
                    coverage: sum.inside as f64 / sum.checked as f64,
                });
            }
        }
    }
    let accuracy = Accuracy {
        backtest_forecasts: stored.len(),
        mase_p10: compute::quantile(&mase, 0.1),
        mase_p50: compute::quantile(&mase, 0.5),
        mase_p90: compute::quantile(&mase, 0.9),
        share_better_than_naive: (!mase.is_empty())
            .then(|| mase.iter().filter(|m| **m < 1.0).count() as f64 / mase.len() as f64),
        models,
        realised,
    };

    let distinct =
        |f: fn(&ScopeContainer) -> String| containers.iter().map(f).collect::<BTreeSet<_>>().len();
    Ok(ReportData {
        scope: scope.clone(),
        team_label: opts.team_label.clone(),
        period_start: start,
        period_end: now,
        generated_at: now,
        currency: opts.currency.clone(),
        cpu_core_hour: opts.cpu_core_hour,
        memory_gib_hour: opts.memory_gib_hour,
        level: opts.level,
        clusters: distinct(|c| c.cluster.clone()),
        namespaces: distinct(|c| format!("{}/{}", c.cluster, c.namespace)),
        workloads: containers
            .iter()
            .map(|c| c.workload_id)
            .collect::<BTreeSet<_>>()
            .len(),
        containers: containers.len(),
        assessed_containers: assessed.len(),
        resources,
        cost,
        projections,
        at_risk,
        savings,
        savings_by_namespace,
        accuracy,
        history,
        history_step: step,
        outlook,
        notes,
    })
}

/// A report that was built and stored in every format.
#[derive(Debug, Clone)]
pub struct Generated {
    pub data: ReportData,
    /// The stored report's id per format (the HTML one is what a Slack link should open).
    pub ids: Vec<(Format, i64)>,
}

impl Generated {
    pub fn id(&self, format: Format) -> Option<i64> {
        self.ids
            .iter()
            .find(|(f, _)| *f == format)
            .map(|(_, id)| *id)
    }
}

/// Builds the report of `scope` over `period` ending at `now` and keeps it in the `report` table in every
/// format, all in one transaction; for the daemon's scheduled reports. With `reports.directory` set, the
/// stored reports wait for their file export (`report::export_pending`).
pub async fn generate_and_store(
    store: &Store,
    settings: &Settings,
    scope: &Scope,
    period: Span,
    now: i64,
) -> Result<Generated, ReportError> {
    let data = build(store, settings, scope, period, now).await?;
    let renderings: Vec<(&str, Vec<u8>)> = Format::ALL
        .iter()
        .map(|&f| (f.as_str(), super::render(&data, f)))
        .collect();
    let ids = store
        .insert_report_set(
            &data.scope.to_string(),
            (data.period_start, data.period_end),
            now,
            &renderings,
            settings.reports.directory.is_some(),
        )
        .await?;
    Ok(Generated {
        data,
        ids: Format::ALL.into_iter().zip(ids).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_hourly_up_to_a_month_and_coarser_beyond() {
        assert_eq!(history_step(7 * DAY), 3_600);
        assert_eq!(history_step(30 * DAY), 3_600);
        assert_eq!(history_step(90 * DAY), 3 * 3_600);
    }
}
