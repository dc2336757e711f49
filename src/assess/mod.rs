//! The assessment: for every container, reads its stored history (never Prometheus), forecasts the peak
//! CPU and memory usage across replicas, estimates when usage reaches the request and the limit, recommends
//! requests and limits, and stores all of it with the time and the model. `plan` is the pure part; `run`
//! reads and writes through the store and keeps the fitting off the async threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::domain::Resource;
use crate::forecast::{self, ExhaustionStatus, ForecastOptions};
use crate::recommend::{self, History, Policy, Prices, Unit};
use crate::store::{
    AssessTarget, Claim, ContainerResult, ExhaustionRow, ForecastRow, RecommendationRow,
    ResourceNow, Store, StoreError,
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
    /// Wall time of each stage, summed over batches; the stages overlap, so these add up to more than
    /// `seconds` when the pipeline keeps every stage busy.
    pub read_secs: f64,
    pub fit_secs: f64,
    pub save_secs: f64,
}

/// The samples of one container's series, by metric name.
pub type ContainerHistory<'a> = HashMap<&'a str, &'a [(i64, f64)]>;

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

fn last_value(points: Option<&[(i64, f64)]>) -> Option<f64> {
    points.and_then(|p| p.last()).map(|p| p.1)
}

/// Pure: the assessment of one container from its history, at `now`.
pub fn plan(
    target: &AssessTarget,
    history: &ContainerHistory<'_>,
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
    let get = |metric: &str| history.get(metric).copied();
    for resource in Resource::ALL {
        let (usage_m, peak_m, req_m, lim_m) = resource_metrics(resource);
        let usage = get(usage_m);
        let peaks = get(peak_m);
        let request = last_value(get(req_m));
        let limit = last_value(get(lim_m));
        if usage.is_none() && peaks.is_none() {
            continue;
        }
        let replicas = get("replicas").unwrap_or(&[]);
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
        let throttled = get("cpu_throttled_ratio").map(|p| {
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
        h.peaks = peaks.unwrap_or(&[]);
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

/// Assesses a batch's containers on `workers` threads (blocking: call it off the async threads). Work is
/// handed out one container at a time, since containers differ a lot in history; results keep the
/// targets' order.
fn plan_batch(
    targets: &[AssessTarget],
    samples: &BTreeMap<i64, Vec<(i64, f64)>>,
    opts: &AssessOptions,
    now: i64,
    workers: usize,
) -> Vec<ContainerResult> {
    let one = |t: &AssessTarget| {
        let history: ContainerHistory = t
            .series
            .iter()
            .filter_map(|(m, id)| samples.get(id).map(|p| (m.as_str(), p.as_slice())))
            .collect();
        plan(t, &history, opts, now)
    };
    let workers = workers.clamp(1, targets.len().max(1));
    if workers == 1 {
        return targets.iter().map(one).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, ContainerResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(t) = targets.get(i) else { break };
                        mine.push((i, one(t)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker that panicked re-raises its panic here, as the sequential loop would.
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn tally(report: &mut AssessReport, results: &[ContainerResult]) {
    report.containers += results.len() as u64;
    report.forecasts += results
        .iter()
        .map(|r| r.forecasts.len() as u64)
        .sum::<u64>();
    report.not_enough_history += results.iter().map(|r| r.not_enough_history).sum::<u64>();
}

/// One batch on its way through the pipeline: its claim (in a shared cycle), its containers and their
/// samples.
struct Loaded {
    claim: Option<Claim>,
    targets: Vec<AssessTarget>,
    samples: BTreeMap<i64, Vec<(i64, f64)>>,
}

/// A batch's results, waiting to be stored.
struct Fitted {
    claim: Option<Claim>,
    results: Vec<ContainerResult>,
}

/// Where batches come from: every container in id order (one process), or claims of a shared cycle.
enum Source<'a> {
    All { after: i64 },
    Claims { me: &'a str, lease_secs: i64 },
}

/// Context shared by the pipeline's stages.
struct Pipeline<'a> {
    store: &'a Store,
    opts: Arc<AssessOptions>,
    /// Assessment time (the cycle start when shared).
    now: i64,
    workers: usize,
    stop: Option<&'a tokio::sync::watch::Receiver<bool>>,
    /// Microseconds spent reading and fitting, summed over batches (the save stage owns the report).
    read_us: AtomicU64,
    fit_us: AtomicU64,
}

impl Pipeline<'_> {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| *s.borrow())
    }

    /// The next batch with its samples, `None` when the source has no more (or the replica is stopping).
    async fn next(&self, source: &mut Source<'_>) -> Result<Option<Loaded>, StoreError> {
        let started = Instant::now();
        let loaded = self.read(source).await;
        self.read_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        loaded
    }

    async fn read(&self, source: &mut Source<'_>) -> Result<Option<Loaded>, StoreError> {
        let batch = self.opts.batch as i64;
        let (claim, targets) = match source {
            Source::All { after } => {
                let targets = self.store.assess_targets(*after, batch).await?;
                let Some(last) = targets.last() else {
                    return Ok(None);
                };
                *after = last.container_id;
                (None, targets)
            }
            Source::Claims { me, lease_secs } => {
                if self.stopped() {
                    return Ok(None);
                }
                let Some(claim) = self.store.claim_batch(self.now, me, *lease_secs).await? else {
                    return Ok(None);
                };
                match self.store.batch_targets(claim.batch_start, batch).await {
                    Ok(t) => (Some(claim), t),
                    Err(e) => {
                        let _ = self.store.release_batch(&claim).await;
                        return Err(e);
                    }
                }
            }
        };
        let ids: Vec<i64> = targets
            .iter()
            .flat_map(|t| t.series.values().copied())
            .collect();
        match self
            .store
            .read_samples_many(&ids, self.now - self.opts.history_secs, self.now + 1)
            .await
        {
            Ok(samples) => Ok(Some(Loaded {
                claim,
                targets,
                samples,
            })),
            Err(e) => {
                if let Some(c) = &claim {
                    let _ = self.store.release_batch(c).await;
                }
                Err(e)
            }
        }
    }

    /// Fits a batch on the blocking pool; `None` when the replica was told to stop first (the batch is
    /// abandoned, its claim still held).
    async fn fit(&self, batch: Loaded) -> Result<Option<Fitted>, StoreError> {
        let opts = Arc::clone(&self.opts);
        let (now, workers) = (self.now, self.workers);
        let span = tracing::Span::current();
        let Loaded {
            claim,
            targets,
            samples,
        } = batch;
        let work = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            plan_batch(&targets, &samples, &opts, now, workers)
        });
        let started = Instant::now();
        let results = match self.stop {
            None => work.await,
            Some(stop) => {
                let mut stop = stop.clone();
                tokio::select! {
                    r = work => r,
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                }
            }
        }
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.fit_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Some(Fitted { claim, results }))
    }

    /// Stores a batch's results: under its claim, in the transaction that completes it, or plainly.
    async fn save(
        &self,
        fitted: Option<Fitted>,
        report: &mut AssessReport,
    ) -> Result<(), StoreError> {
        let Some(f) = fitted else { return Ok(()) };
        let started = Instant::now();
        match &f.claim {
            None => {
                self.store.save_assessment(&f.results, self.now).await?;
                tally(report, &f.results);
            }
            Some(claim) => match self.store.complete_batch(claim, &f.results, self.now).await {
                Ok(true) => tally(report, &f.results),
                Ok(false) => tracing::warn!(
                    batch = claim.batch_start,
                    "claim expired before the batch was stored; another replica has it"
                ),
                Err(e) => {
                    let _ = self.store.release_batch(claim).await;
                    return Err(e);
                }
            },
        }
        report.save_secs += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn stage_times(&self, report: &mut AssessReport) {
        report.read_secs = self.read_us.load(Ordering::Relaxed) as f64 / 1e6;
        report.fit_secs = self.fit_us.load(Ordering::Relaxed) as f64 / 1e6;
    }

    async fn release(&self, claims: impl IntoIterator<Item = Option<Claim>>) {
        for c in claims.into_iter().flatten() {
            let _ = self.store.release_batch(&c).await;
        }
    }

    /// Runs batches through three overlapping stages until the source is dry: while one batch is fitted
    /// on every core, the next is read and the previous one stored. At most three batches are in memory.
    /// Returns `true` when it stopped early (claims it held are released).
    async fn drain(
        &self,
        source: &mut Source<'_>,
        report: &mut AssessReport,
    ) -> Result<bool, StoreError> {
        let mut ahead = self.next(source).await?;
        let mut fitted: Option<Fitted> = None;
        while let Some(current) = ahead.take() {
            let claim = current.claim.clone();
            let (next, fit, saved) = tokio::join!(
                self.next(source),
                self.fit(current),
                self.save(fitted.take(), report)
            );
            let next_claim = next
                .as_ref()
                .ok()
                .and_then(|n| n.as_ref())
                .and_then(|n| n.claim.clone());
            let fit = match saved.and(next).and_then(|n| fit.map(|f| (n, f))) {
                Ok((next, fit)) => {
                    ahead = next;
                    fit
                }
                Err(e) => {
                    self.release([claim, next_claim]).await;
                    return Err(e);
                }
            };
            match fit {
                Some(f) => fitted = Some(f),
                None => {
                    self.release([claim, next_claim]).await;
                    return Ok(true);
                }
            }
        }
        self.save(fitted, report).await?;
        Ok(self.stopped())
    }
}

fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Assesses every container in one process, batch after batch, and stores the results at `now`.
pub async fn run(
    store: &Store,
    opts: &AssessOptions,
    now: i64,
) -> Result<AssessReport, StoreError> {
    let started = Instant::now();
    let mut report = AssessReport::default();
    let pipeline = Pipeline {
        store,
        opts: Arc::new(opts.clone()),
        now,
        workers: workers(),
        stop: None,
        read_us: AtomicU64::new(0),
        fit_us: AtomicU64::new(0),
    };
    pipeline
        .drain(&mut Source::All { after: 0 }, &mut report)
        .await?;
    store.refresh_workload_summaries(now).await?;
    pipeline.stage_times(&mut report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One replica's share of the assessment cycle that starts at `cycle_start`: claims open batches until none
/// is left, stores each batch's results only while its claim holds, and takes over batches whose lease ran
/// out (a replica that died). Whoever sees the cycle finished refreshes the workload summaries. `stop`
/// hands the batches in hand back at once.
pub async fn run_share(
    store: &Store,
    opts: &AssessOptions,
    cycle_start: i64,
    me: &str,
    lease_secs: i64,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<AssessReport, StoreError> {
    let started = Instant::now();
    let mut report = AssessReport::default();
    store.open_cycle(cycle_start, opts.batch as i64).await?;
    let pipeline = Pipeline {
        store,
        opts: Arc::new(opts.clone()),
        now: cycle_start,
        workers: workers(),
        stop: Some(stop),
        read_us: AtomicU64::new(0),
        fit_us: AtomicU64::new(0),
    };
    let mut source = Source::Claims { me, lease_secs };
    loop {
        if pipeline.drain(&mut source, &mut report).await? {
            break;
        }
        if store.open_batches(cycle_start).await? == 0 {
            store.refresh_workload_summaries(cycle_start).await?;
            break;
        }
        // Others hold the rest; wait for them to finish or for a dead one's lease to expire.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    pipeline.stage_times(&mut report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
