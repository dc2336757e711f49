//! The scraper: pulls usage, requests, limits, restarts, OOM kills and throttling from Prometheus-compatible
//! sources into Postgres. Incremental (a high-water mark per source and job), chunked under Prometheus'
//! points-per-series limit and a sample budget, bounded in flight, and idempotent: a re-scrape of an
//! overlapping window stores nothing twice. The HTTP side is in `client`, the pure parsing in `parse`, the
//! pod-to-workload aggregation in `aggregate`, and the live state read through `/federate` in `live`.

pub mod aggregate;
pub mod client;
pub mod live;
pub mod parse;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aggregate::{Aggregated, Ownership};
use client::{RetryPolicy, ScrapeError, SourceClient};
pub use live::LiveReport;
use parse::QueryResult;

use crate::config::{QueryOverrides, ScrapeSettings, SourceSettings};
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{ContainerKey, Store, StoreError};

/// Default PromQL, following what cAdvisor and kube-state-metrics export.
pub mod defaults {
    pub const CPU_USAGE: &str = r#"sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!="",container!="POD"}[5m]))"#;
    pub const MEMORY_USAGE: &str = r#"max by (namespace, pod, container) (container_memory_working_set_bytes{container!="",container!="POD"})"#;
    pub const REQUESTS: &str = r#"max by (namespace, pod, container, resource) (kube_pod_container_resource_requests{resource=~"cpu|memory"})"#;
    pub const LIMITS: &str = r#"max by (namespace, pod, container, resource) (kube_pod_container_resource_limits{resource=~"cpu|memory"})"#;
    pub const POD_OWNER: &str = r#"max by (namespace, pod, owner_kind, owner_name) (kube_pod_owner{owner_is_controller!="false"})"#;
    pub const REPLICASET_OWNER: &str =
        r#"max by (namespace, replicaset, owner_kind, owner_name) (kube_replicaset_owner)"#;
    pub const OOM_KILLS: &str = r#"max by (namespace, pod, container) (kube_pod_container_status_last_terminated_reason{reason="OOMKilled"})"#;
    pub const RESTARTS: &str =
        r#"max by (namespace, pod, container) (kube_pod_container_status_restarts_total)"#;
    pub const THROTTLED_PERIODS: &str = r#"sum by (namespace, pod, container) (rate(container_cpu_cfs_throttled_periods_total{container!="",container!="POD"}[5m]))"#;
    pub const CFS_PERIODS: &str = r#"sum by (namespace, pod, container) (rate(container_cpu_cfs_periods_total{container!="",container!="POD"}[5m]))"#;
}

/// The effective queries of one source: its overrides over the defaults.
#[derive(Debug, Clone)]
pub struct Queries {
    pub cpu_usage: String,
    pub memory_usage: String,
    pub requests: String,
    pub limits: String,
    pub pod_owner: String,
    pub replicaset_owner: String,
    pub oom_kills: String,
    pub restarts: String,
    pub throttled_periods: String,
    pub cfs_periods: String,
}

impl Queries {
    pub fn with_overrides(o: &QueryOverrides) -> Self {
        let pick = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        Self {
            cpu_usage: pick(&o.cpu_usage, defaults::CPU_USAGE),
            memory_usage: pick(&o.memory_usage, defaults::MEMORY_USAGE),
            requests: pick(&o.requests, defaults::REQUESTS),
            limits: pick(&o.limits, defaults::LIMITS),
            pod_owner: pick(&o.pod_owner, defaults::POD_OWNER),
            replicaset_owner: pick(&o.replicaset_owner, defaults::REPLICASET_OWNER),
            oom_kills: pick(&o.oom_kills, defaults::OOM_KILLS),
            restarts: pick(&o.restarts, defaults::RESTARTS),
            throttled_periods: pick(&o.throttled_periods, defaults::THROTTLED_PERIODS),
            cfs_periods: pick(&o.cfs_periods, defaults::CFS_PERIODS),
        }
    }
}

/// A unit of scraping with its own high-water mark: one or two queries aggregated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    CpuUsage,
    MemoryUsage,
    Requests,
    Limits,
    Restarts,
    Throttling,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::CpuUsage,
        Job::MemoryUsage,
        Job::Requests,
        Job::Limits,
        Job::Restarts,
        Job::Throttling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::CpuUsage => "cpu_usage",
            Job::MemoryUsage => "memory_usage",
            Job::Requests => "requests",
            Job::Limits => "limits",
            Job::Restarts => "restarts",
            Job::Throttling => "throttling",
        }
    }
}

/// Why a scrape stopped early. Whatever was stored before the failure stays stored, and the marks say
/// exactly up to where, so the next scrape resumes there.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] ScrapeError),
    #[error("while storing scraped samples: {0}")]
    Store(#[from] StoreError),
}

/// What one scrape of one source did.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    pub source: String,
    pub queries: u64,
    pub samples_received: u64,
    pub samples_written: u64,
    pub series: u64,
    pub seconds: f64,
}

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Scrape up to this Unix time (aligned down to the step).
    pub end: i64,
    /// Where a job without a mark starts.
    pub backfill_secs: i64,
    /// Print a progress bar to stderr.
    pub progress: bool,
}

/// One source's scraper.
pub struct SourceScraper {
    pub client: SourceClient,
    queries: Queries,
    settings: ScrapeSettings,
    store: Store,
    cluster_id: i32,
    metrics: Arc<Metrics>,
}

/// Samples one query may bring back at most; windows shrink to fit. Keeps answers around tens of MB.
const SAMPLE_BUDGET: u64 = 1_500_000;

impl SourceScraper {
    pub async fn new(
        src: &SourceSettings,
        settings: &ScrapeSettings,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let client = SourceClient::new(
            src,
            settings.timeout_secs,
            settings.max_in_flight,
            RetryPolicy::default(),
            metrics.clone(),
        )?;
        let cluster_id = store.upsert_cluster(&src.name).await?;
        Ok(Self {
            client,
            queries: Queries::with_overrides(&src.queries),
            settings: settings.clone(),
            store,
            cluster_id,
            metrics,
        })
    }

    pub fn cluster_id(&self) -> i32 {
        self.cluster_id
    }

    /// Scrapes every job from its mark up to `opts.end`. Jobs run concurrently; the client's semaphore
    /// bounds the queries in flight.
    pub async fn run(&self, opts: RunOptions) -> Result<SourceReport, Error> {
        let started = Instant::now();
        let step = self.settings.step_secs as i64;
        let end = opts.end.div_euclid(step) * step;
        let marks = self.store.scrape_marks(self.cluster_id).await?;
        let plan: Vec<(Job, i64)> = Job::ALL
            .iter()
            .map(|&job| {
                let start = match marks.get(job.name()) {
                    Some(&m) => m + step,
                    None => (end - opts.backfill_secs).div_euclid(step) * step,
                };
                (job, start)
            })
            .filter(|&(_, start)| start <= end)
            .collect();
        let total: i64 = plan.iter().map(|(_, s)| end - s + step).sum();
        let progress = Progress::new(
            opts.progress && !plan.is_empty(),
            total.max(1) as u64,
            &self.client.name,
        );
        let ids = tokio::sync::Mutex::new(IdCache::default());
        let counters = Counters::default();
        let results =
            futures_util::future::join_all(plan.iter().map(|&(job, start)| {
                self.run_job(job, start, end, step, &ids, &counters, &progress)
            }))
            .await;
        progress.finish();
        for r in results {
            r?;
        }
        self.metrics
            .scrape_last_success
            .get_or_create(&SourceLabels {
                source: self.client.name.clone(),
            })
            .set(end);
        let ids = ids.into_inner();
        if !ids.containers.is_empty() {
            let all: Vec<i64> = ids.containers.values().copied().collect();
            self.store.touch_workloads(&all, end).await?;
        }
        Ok(SourceReport {
            source: self.client.name.clone(),
            queries: counters.queries.load(Ordering::Relaxed),
            samples_received: counters.received.load(Ordering::Relaxed),
            samples_written: counters.written.load(Ordering::Relaxed),
            series: ids.series.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_job(
        &self,
        job: Job,
        mut start: i64,
        end: i64,
        step: i64,
        ids: &tokio::sync::Mutex<IdCache>,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<(), Error> {
        let max_points = self.settings.max_points_per_query as i64;
        // Start small and grow: the first answer tells how many series a window holds.
        let mut points = 60.min(max_points);
        while start <= end {
            let window_end = (start + (points - 1) * step).min(end);
            let fetched = self.fetch_job(job, start, window_end, step, counters).await;
            let (aggregated, series_seen) = match fetched {
                Ok(v) => v,
                Err(Error::Source(ScrapeError::TooManySamples { .. })) if points > 2 => {
                    points = (points / 2).max(2);
                    tracing::info!(source = %self.client.name, job = job.name(), points, "window too large for the source; halving");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let written = self.store_aggregated(&aggregated, ids).await?;
            counters.written.fetch_add(written, Ordering::Relaxed);
            self.store
                .set_scrape_mark(self.cluster_id, job.name(), window_end)
                .await?;
            progress.advance((window_end - start + step) as u64, written);
            start = window_end + step;
            let fit = (SAMPLE_BUDGET / series_seen.max(1)) as i64;
            points = fit.clamp(2, max_points);
        }
        Ok(())
    }

    /// Runs the job's queries for one window and aggregates them per workload container. Returns the
    /// aggregated series and how many raw series came back (to size the next window).
    async fn fetch_job(
        &self,
        job: Job,
        start: i64,
        end: i64,
        step: i64,
        counters: &Counters,
    ) -> Result<(Vec<Aggregated>, u64), Error> {
        let q = &self.queries;
        let own = self.ownership(start, end, counters).await?;
        let range = |query: &str, from: i64| {
            let query = query.to_string();
            async move {
                counters.queries.fetch_add(1, Ordering::Relaxed);
                let r = self.client.query_range(&query, from, end, step).await?;
                self.account(&r, counters);
                Ok::<QueryResult, Error>(r)
            }
        };
        Ok(match job {
            Job::CpuUsage => {
                let r = range(&q.cpu_usage, start).await?;
                (
                    aggregate::usage(&own, &r, "cpu", false),
                    r.series.len() as u64,
                )
            }
            Job::MemoryUsage => {
                let r = range(&q.memory_usage, start).await?;
                (
                    aggregate::usage(&own, &r, "memory", true),
                    r.series.len() as u64,
                )
            }
            Job::Requests => {
                let r = range(&q.requests, start).await?;
                (
                    aggregate::capacity(&own, &r, "request"),
                    r.series.len() as u64,
                )
            }
            Job::Limits => {
                let r = range(&q.limits, start).await?;
                (
                    aggregate::capacity(&own, &r, "limit"),
                    r.series.len() as u64,
                )
            }
            Job::Restarts => {
                // One step earlier: the first point of each pod is only the counter's baseline.
                let counters_r = range(&q.restarts, start - step).await?;
                let flags = range(&q.oom_kills, start - step).await?;
                let n = (counters_r.series.len() + flags.series.len()) as u64;
                (aggregate::restarts(&own, &counters_r, &flags, start), n)
            }
            Job::Throttling => {
                let th = range(&q.throttled_periods, start).await?;
                let pe = range(&q.cfs_periods, start).await?;
                let n = (th.series.len() + pe.series.len()) as u64;
                (aggregate::throttling(&own, &th, &pe), n)
            }
        })
    }

    /// Ownership of every pod alive during the window (and up to an hour before it, so a pod whose
    /// kube-state-metrics series started earlier is still known).
    async fn ownership(
        &self,
        start: i64,
        end: i64,
        counters: &Counters,
    ) -> Result<Ownership, Error> {
        let span = end - start + 3_600;
        let pods = format!("last_over_time(({})[{span}s:])", self.queries.pod_owner);
        let rs = format!(
            "last_over_time(({})[{span}s:])",
            self.queries.replicaset_owner
        );
        counters.queries.fetch_add(2, Ordering::Relaxed);
        let (p, r) = tokio::try_join!(self.client.query(&pods, end), self.client.query(&rs, end))?;
        Ok(Ownership::from_results(&p, &r))
    }

    fn account(&self, r: &QueryResult, counters: &Counters) {
        let labels = SourceLabels {
            source: self.client.name.clone(),
        };
        counters.received.fetch_add(r.samples(), Ordering::Relaxed);
        self.metrics
            .scrape_samples
            .get_or_create(&labels)
            .inc_by(r.samples());
        if r.dropped_non_finite > 0 {
            self.metrics
                .scrape_dropped_samples
                .get_or_create(&labels)
                .inc_by(r.dropped_non_finite);
            tracing::debug!(source = %self.client.name, dropped = r.dropped_non_finite, "dropped NaN or infinite samples");
        }
    }

    /// Upserts the identities the window introduced, then writes its samples.
    async fn store_aggregated(
        &self,
        agg: &[Aggregated],
        ids: &tokio::sync::Mutex<IdCache>,
    ) -> Result<u64, Error> {
        if agg.is_empty() {
            return Ok(0);
        }
        let mut cache = ids.lock().await;
        let mut new_keys: Vec<ContainerKey> = agg
            .iter()
            .filter(|a| !cache.containers.contains_key(&a.container))
            .map(|a| a.container.clone())
            .collect();
        new_keys.sort();
        new_keys.dedup();
        if !new_keys.is_empty() {
            let seen = agg
                .iter()
                .filter_map(|a| a.points.last().map(|p| p.0))
                .max()
                .unwrap_or(0);
            let got = self
                .store
                .upsert_containers(self.cluster_id, &new_keys, seen)
                .await?;
            for (k, id) in new_keys.into_iter().zip(got) {
                cache.containers.insert(k, id);
            }
        }
        let mut new_series: Vec<(i64, &'static str, &'static str)> = agg
            .iter()
            .map(|a| (cache.containers[&a.container], a.metric, a.unit))
            .filter(|(c, m, _)| !cache.series.contains_key(&(*c, *m)))
            .collect();
        new_series.sort();
        new_series.dedup();
        if !new_series.is_empty() {
            let got = self.store.upsert_series(&new_series).await?;
            for ((c, m, _), id) in new_series.iter().zip(got) {
                cache.series.insert((*c, *m), id);
            }
        }
        let batch: Vec<(i64, Vec<(i64, f64)>)> = agg
            .iter()
            .map(|a| {
                (
                    cache.series[&(cache.containers[&a.container], a.metric)],
                    a.points.clone(),
                )
            })
            .collect();
        drop(cache);
        Ok(self.store.write_samples(&batch).await?.samples_written)
    }
}

#[derive(Default)]
struct IdCache {
    containers: HashMap<ContainerKey, i64>,
    series: HashMap<(i64, &'static str), i64>,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    received: AtomicU64,
    written: AtomicU64,
}

/// A progress bar on stderr for long backfills: redrawn in place on a terminal, a line every 10 % elsewhere.
struct Progress {
    enabled: bool,
    tty: bool,
    total: u64,
    done: AtomicU64,
    written: AtomicU64,
    last_decile: AtomicU64,
    started: Instant,
    source: String,
}

impl Progress {
    fn new(enabled: bool, total: u64, source: &str) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            total,
            done: AtomicU64::new(0),
            written: AtomicU64::new(0),
            last_decile: AtomicU64::new(0),
            started: Instant::now(),
            source: source.to_string(),
        }
    }

    fn advance(&self, secs: u64, written: u64) {
        if !self.enabled {
            return;
        }
        let done = self.done.fetch_add(secs, Ordering::Relaxed) + secs;
        let written = self.written.fetch_add(written, Ordering::Relaxed) + written;
        let frac = (done as f64 / self.total as f64).min(1.0);
        let rate = written as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let bar: String = (0..30)
            .map(|i| if (i as f64) < frac * 30.0 { '#' } else { '.' })
            .collect();
        let line = format!(
            "{} [{bar}] {:>3.0}%  {written} samples  {:.0} samples/s",
            self.source,
            frac * 100.0,
            rate
        );
        if self.tty {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else {
            let decile = (frac * 10.0) as u64;
            if self.last_decile.fetch_max(decile, Ordering::Relaxed) < decile {
                eprintln!("{line}");
            }
        }
    }

    fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}
