//! The assessment: for every container, reads its stored history (never Prometheus), forecasts the peak
//! CPU and memory usage across replicas, estimates when usage reaches the request and the limit, recommends
//! requests and limits, and stores all of it with the time and the model. `plan` is the pure part; `run`
//! reads and writes through the store and keeps the fitting off the async threads.

use std::collections::HashMap;

use crate::domain::Resource;
use crate::forecast::{self, ExhaustionStatus, ForecastOptions};
use crate::recommend::{self, History, Policy, Prices, Unit};
use crate::store::{
    AssessTarget, ContainerResult, ExhaustionRow, ForecastRow, RecommendationRow, ResourceNow,
    Store, StoreError,
};

/// How an assessment runs.
#[derive(Debug, Clone)]
pub struct AssessOptions {
    /// Forecast and exhaustion horizon.
    pub horizon_secs: i64,
    pub level: f64,
    /// History read per series.
    pub history_secs: i64,
    /// Peaks are forecast on this grid (the max of each slot), fine enough for daily cycles and cheap
    /// enough for 100,000 containers.
    pub fit_step_secs: i64,
    /// Stored forecasts keep at most this many points over the horizon.
    pub stored_points: usize,
    /// The default rightsizing policy.
    pub policy: Policy,
    /// Policies by namespace or `namespace/workload` pattern, first match wins.
    pub rules: Vec<(String, Policy)>,
    pub prices: Prices,
    /// Containers assessed per database round trip.
    pub batch: usize,
}

impl AssessOptions {
    pub fn from_settings(s: &crate::config::Settings) -> Result<Self, recommend::PolicyError> {
        Ok(Self {
            horizon_secs: s.assess.horizon_days as i64 * 86_400,
            level: s.assess.forecast_level,
            history_secs: 28 * 86_400,
            fit_step_secs: 1_800,
            stored_points: 360,
            policy: Policy::load(&s.assess.default_policy)?,
            rules: s
                .assess
                .policy_rules
                .iter()
                .map(|r| Ok((r.pattern.clone(), Policy::load(&r.policy)?)))
                .collect::<Result<_, recommend::PolicyError>>()?,
            prices: Prices {
                core_hour: s.pricing.cpu_core_hour,
                gib_hour: s.pricing.memory_gib_hour,
            },
            batch: s.assess.batch_size as usize,
        })
    }
}

impl AssessOptions {
    /// The policy for a workload: the first rule matching its namespace (pattern without `/`) or
    /// `namespace/name`, else the default.
    pub fn policy_for(&self, namespace: &str, workload: &str) -> &Policy {
        let full = format!("{namespace}/{workload}");
        self.rules
            .iter()
            .find(|(pattern, _)| {
                if pattern.contains('/') {
                    recommend::policy::glob_match(pattern, &full)
                } else {
                    recommend::policy::glob_match(pattern, namespace)
                }
            })
            .map_or(&self.policy, |(_, p)| p)
    }
}

/// What one assessment did.
#[derive(Debug, Clone, Default)]
pub struct AssessReport {
    pub containers: u64,
    pub forecasts: u64,
    pub not_enough_history: u64,
    pub seconds: f64,
}

/// The samples of one container's series, by metric name.
pub type ContainerHistory = HashMap<String, Vec<(i64, f64)>>;

fn resource_metrics(r: Resource) -> (&'static str, &'static str, &'static str, &'static str) {
    match r {
        Resource::Cpu => ("cpu_usage", "cpu_usage_max", "cpu_request", "cpu_limit"),
        Resource::Memory => (
            "memory_usage",
            "memory_usage_max",
            "memory_request",
            "memory_limit",
        ),
    }
}

/// Max of each `step`-wide slot: peaks survive the coarser grid.
fn downsample_max(points: &[(i64, f64)], step: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for &(t, v) in points {
        let slot = t.div_euclid(step) * step;
        match out.last_mut() {
            Some(last) if last.0 == slot => last.1 = last.1.max(v),
            _ => out.push((slot, v)),
        }
    }
    out
}

fn last_value(points: Option<&Vec<(i64, f64)>>) -> Option<f64> {
    points.and_then(|p| p.last()).map(|p| p.1)
}

/// Pure: the assessment of one container from its history, at `now`.
pub fn plan(
    target: &AssessTarget,
    history: &ContainerHistory,
    opts: &AssessOptions,
    now: i64,
) -> ContainerResult {
    let mut result = ContainerResult {
        container_id: target.container_id,
        workload_id: target.workload_id,
        ..Default::default()
    };
    let fopts = {
        let mut f = ForecastOptions::new(opts.horizon_secs, opts.level);
        f.step_secs = Some(opts.fit_step_secs);
        f.max_origins = 5;
        f
    };
    for resource in Resource::ALL {
        let (usage_m, peak_m, req_m, lim_m) = resource_metrics(resource);
        let usage = history.get(usage_m);
        let peaks = history.get(peak_m);
        let request = last_value(history.get(req_m));
        let limit = last_value(history.get(lim_m));
        if usage.is_none() && peaks.is_none() {
            continue;
        }
        let empty = Vec::new();
        let replicas = history.get("replicas").unwrap_or(&empty);
        let recent_oom = history
            .get("oom_kills")
            .is_some_and(|p| p.iter().any(|&(t, v)| v > 0.0 && t >= now - 86_400));
        result.usage.push(ResourceNow {
            resource,
            usage: last_value(usage),
            request,
            limit,
        });

        // Forecast of the peak across replicas: what reaches a per-container request or limit first.
        if let (Some(series_id), Some(peaks)) = (target.series.get(peak_m), peaks) {
            match forecast::forecast(&downsample_max(peaks, opts.fit_step_secs), &fopts) {
                Ok(f) => {
                    result.forecasts.push(ForecastRow::from_forecast(
                        *series_id,
                        &f,
                        opts.stored_points,
                    ));
                    for (kind, threshold) in [("request", request), ("limit", limit)] {
                        let Some(threshold) = threshold.filter(|t| *t > 0.0) else {
                            continue;
                        };
                        let mut e = forecast::exhaustion(&f, threshold);
                        // The kernel kills at the limit, so sampled usage never quite shows it: a recent OOM
                        // kill is the proof that the memory limit was reached.
                        if resource == Resource::Memory && kind == "limit" && recent_oom {
                            e.status = ExhaustionStatus::AlreadyOver;
                            e.probability = 1.0;
                        }
                        result.exhaustions.push(ExhaustionRow {
                            series_id: *series_id,
                            resource,
                            model: f.model.clone(),
                            threshold_kind: kind,
                            threshold,
                            status: match e.status {
                                ExhaustionStatus::AlreadyOver => "already_over",
                                ExhaustionStatus::Within => "within_horizon",
                                ExhaustionStatus::NotWithinHorizon => "not_within_horizon",
                            },
                            eta: e.eta,
                            eta_early: e.eta_early,
                            eta_late: e.eta_late,
                            probability: e.probability,
                            horizon_secs: opts.horizon_secs,
                        });
                    }
                }
                Err(_) => result.not_enough_history += 1,
            }
        }

        // Rightsizing from per-replica usage and the peaks, OOM kills and throttling.
        let Some(usage) = usage else { continue };
        let day_ago = now - 86_400;
        let oom_kills: Vec<i64> = history
            .get("oom_kills")
            .map(|p| {
                p.iter()
                    .filter(|(_, v)| *v > 0.0)
                    .map(|(t, _)| *t)
                    .collect()
            })
            .unwrap_or_default();
        let throttled = history.get("cpu_throttled_ratio").map(|p| {
            let recent: Vec<f64> = p
                .iter()
                .filter(|(t, _)| *t >= day_ago)
                .map(|(_, v)| *v)
                .collect();
            if recent.is_empty() {
                0.0
            } else {
                recent.iter().sum::<f64>() / recent.len() as f64
            }
        });
        let week_ago = now - 7 * 86_400;
        let recent_replicas = replicas
            .iter()
            .filter(|(t, _)| *t >= week_ago)
            .map(|(_, v)| *v);
        let (lo, hi) =
            recent_replicas.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let mut h = History::new(
            resource,
            match resource {
                Resource::Cpu => Unit::Cores(1.0),
                Resource::Memory => Unit::Bytes(1.0),
            },
            usage,
        );
        // The usage series are already per replica; the replica count only tells whether an autoscaler
        // is at work (it changed within the week).
        h.peaks = peaks.map(|p| p.as_slice()).unwrap_or(&[]);
        h.oom_kills = &oom_kills;
        h.throttled_ratio = if resource == Resource::Cpu {
            throttled
        } else {
            None
        };
        h.current_request = request;
        h.current_limit = limit;
        h.hpa_scaled = hi > lo;
        let policy = opts.policy_for(&target.namespace, &target.workload);
        h.growth_ratio = recommend::policy_growth(policy, resource, usage);
        let rec = recommend::recommend(&h, policy, Some(opts.prices));
        let replicas_now = last_value(Some(replicas)).unwrap_or(1.0).max(1.0);
        result.replicas = result.replicas.max(replicas_now);
        result.recommendations.push(RecommendationRow {
            usage: last_value(Some(usage)),
            ..RecommendationRow::from_recommendation(
                target.container_id,
                &rec,
                &policy.name,
                request,
                limit,
                replicas_now,
            )
        });
    }
    result
}

/// Assesses a batch of containers off the async threads.
async fn assess_targets(
    store: &Store,
    targets: Vec<AssessTarget>,
    opts: &AssessOptions,
    now: i64,
) -> Result<Vec<ContainerResult>, StoreError> {
    let ids: Vec<i64> = targets
        .iter()
        .flat_map(|t| t.series.values().copied())
        .collect();
    let samples = store
        .read_samples_many(&ids, now - opts.history_secs, now + 1)
        .await?;
    let opts = opts.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let by_id: HashMap<i64, &Vec<(i64, f64)>> = samples.iter().map(|(k, v)| (*k, v)).collect();
        targets
            .iter()
            .map(|t| {
                let history: ContainerHistory = t
                    .series
                    .iter()
                    .filter_map(|(m, id)| by_id.get(id).map(|p| (m.clone(), (*p).clone())))
                    .collect();
                plan(t, &history, &opts, now)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))
}

fn tally(report: &mut AssessReport, results: &[ContainerResult]) {
    report.containers += results.len() as u64;
    report.forecasts += results
        .iter()
        .map(|r| r.forecasts.len() as u64)
        .sum::<u64>();
    report.not_enough_history += results.iter().map(|r| r.not_enough_history).sum::<u64>();
}

/// Assesses every container in one process, batch after batch, and stores the results at `now`.
pub async fn run(
    store: &Store,
    opts: &AssessOptions,
    now: i64,
) -> Result<AssessReport, StoreError> {
    let started = std::time::Instant::now();
    let mut report = AssessReport::default();
    let mut after = 0i64;
    loop {
        let targets = store.assess_targets(after, opts.batch as i64).await?;
        let Some(last) = targets.last() else { break };
        after = last.container_id;
        let results = assess_targets(store, targets, opts, now).await?;
        tally(&mut report, &results);
        store.save_assessment(&results, now).await?;
    }
    store.refresh_workload_summaries(now).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One replica's share of the assessment cycle that starts at `cycle_start`: claims open batches until none
/// is left, stores each batch's results only while its claim holds, and takes over batches whose lease ran
/// out (a replica that died). Whoever sees the cycle finished refreshes the workload summaries. `stop`
/// hands the current batch back at once.
pub async fn run_share(
    store: &Store,
    opts: &AssessOptions,
    cycle_start: i64,
    me: &str,
    lease_secs: i64,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<AssessReport, StoreError> {
    let started = std::time::Instant::now();
    let mut report = AssessReport::default();
    let batch = opts.batch as i64;
    store.open_cycle(cycle_start, batch).await?;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(claim) = store.claim_batch(cycle_start, me, lease_secs).await? else {
            if store.open_batches(cycle_start).await? == 0 {
                store.refresh_workload_summaries(cycle_start).await?;
                break;
            }
            // Others hold the rest; wait for them to finish or for a dead one's lease to expire.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            continue;
        };
        let targets = store.batch_targets(claim.batch_start, batch).await?;
        let mut stop_rx = stop.clone();
        let outcome = tokio::select! {
            r = assess_targets(store, targets, opts, cycle_start) => Some(r),
            _ = stop_rx.wait_for(|s| *s) => None,
        };
        match outcome {
            None => {
                store.release_batch(&claim).await?;
                break;
            }
            Some(Err(e)) => {
                let _ = store.release_batch(&claim).await;
                return Err(e);
            }
            Some(Ok(results)) => {
                if store.complete_batch(&claim, &results, cycle_start).await? {
                    tally(&mut report, &results);
                } else {
                    tracing::warn!(
                        batch = claim.batch_start,
                        "claim expired before the batch was stored; another replica has it"
                    );
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
