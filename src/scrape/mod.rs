//! The scraper: pulls usage, requests, limits, restarts, OOM kills and throttling from Prometheus-compatible
//! sources into Postgres. Incremental (a high-water mark per source and job), chunked under Prometheus'
//! points-per-series limit and a sample budget, bounded in flight, and idempotent: a re-scrape of an
//! overlapping window stores nothing twice. The HTTP side is in `client`, the pure parsing in `parse`, the
//! pod-to-workload aggregation in `aggregate`, and the live state read through `/federate` in `live`.

pub mod aggregate;
pub mod client;
pub mod eval;
pub mod live;
pub mod parse;
pub mod remote;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rustc_hash::FxHashMap;

use aggregate::{Aggregated, Ownership};
use client::{RetryPolicy, ScrapeError, SourceClient};
pub use live::LiveReport;
use parse::{QueryResult, SeriesView};

use crate::config::{QueryOverrides, ReadApi, ScrapeSettings, SourceSettings};
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{CHUNK_SECS, ContainerKey, SamplePoints, Samples, Store, StoreError};

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

/// The default queries as expressions evaluated by Headroom over raw series read with remote read
/// (`read = "remote_read"`); each mirrors the PromQL of the same name in `defaults`.
pub mod exprs {
    /// The series ownership comes from, as selected by `defaults::POD_OWNER` and
    /// `defaults::REPLICASET_OWNER`. Ownership needs their labels only, which a remote-read source gives
    /// through its series API.
    pub const OWNER_SELECTORS: [&str; 2] = [
        r#"kube_pod_owner{owner_is_controller!="false"}"#,
        "kube_replicaset_owner",
    ];

    use super::eval::{Agg, Expr, Func};
    use super::remote::Match::{self, Equal, NotEqual, Regex};

    type Matchers = &'static [(Match, &'static str, &'static str)];
    const CONTAINERS: Matchers = &[(NotEqual, "container", ""), (NotEqual, "container", "POD")];
    const RESOURCES: Matchers = &[(Regex, "resource", "cpu|memory")];
    const BY_CONTAINER: &[&str] = &["namespace", "pod", "container"];
    const BY_RESOURCE: &[&str] = &["namespace", "pod", "container", "resource"];
    const RATE_5M: Func = Func::Rate { range_ms: 300_000 };

    const fn expr(
        metric: &'static str,
        matchers: Matchers,
        func: Func,
        agg: Agg,
        by: &'static [&'static str],
    ) -> Expr {
        Expr {
            metric,
            matchers,
            func,
            agg,
            by,
        }
    }

    pub const CPU_USAGE: Expr = expr(
        "container_cpu_usage_seconds_total",
        CONTAINERS,
        RATE_5M,
        Agg::Sum,
        BY_CONTAINER,
    );
    pub const MEMORY_USAGE: Expr = expr(
        "container_memory_working_set_bytes",
        CONTAINERS,
        Func::Instant,
        Agg::Max,
        BY_CONTAINER,
    );
    pub const REQUESTS: Expr = expr(
        "kube_pod_container_resource_requests",
        RESOURCES,
        Func::Instant,
        Agg::Max,
        BY_RESOURCE,
    );
    pub const LIMITS: Expr = expr(
        "kube_pod_container_resource_limits",
        RESOURCES,
        Func::Instant,
        Agg::Max,
        BY_RESOURCE,
    );
    pub const OOM_KILLS: Expr = expr(
        "kube_pod_container_status_last_terminated_reason",
        &[(Equal, "reason", "OOMKilled")],
        Func::Instant,
        Agg::Max,
        BY_CONTAINER,
    );
    pub const RESTARTS: Expr = expr(
        "kube_pod_container_status_restarts_total",
        &[],
        Func::Instant,
        Agg::Max,
        BY_CONTAINER,
    );
    pub const THROTTLED_PERIODS: Expr = expr(
        "container_cpu_cfs_throttled_periods_total",
        CONTAINERS,
        RATE_5M,
        Agg::Sum,
        BY_CONTAINER,
    );
    pub const CFS_PERIODS: Expr = expr(
        "container_cpu_cfs_periods_total",
        CONTAINERS,
        RATE_5M,
        Agg::Sum,
        BY_CONTAINER,
    );
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

    /// For the requests and limits jobs, the kind of capacity they read ("request" or "limit").
    fn capacity_kind(self) -> Option<&'static str> {
        match self {
            Job::Requests => Some("request"),
            Job::Limits => Some("limit"),
            _ => None,
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
    /// Time spent decoding answers (and evaluating remote-read series, done as they are decoded),
    /// aggregating pods into workload containers and storing windows,
    /// each summed over the concurrent jobs (so together they may exceed `seconds`).
    pub decode_seconds: f64,
    pub aggregate_seconds: f64,
    pub write_seconds: f64,
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
    read: ReadApi,
    /// Lookback of instant selectors when evaluating remote-read series.
    lookback_ms: i64,
}

/// Windows shorter than this are read with range queries even from a remote-read source.
const REMOTE_READ_MIN_SECS: i64 = 6 * 3_600;

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
            read: src.read,
            lookback_ms: src.lookback_secs as i64 * 1000,
        })
    }

    pub fn cluster_id(&self) -> i32 {
        self.cluster_id
    }

    /// `run` on the runtime's worker threads, as the daemon's scrape task runs it. Awaited on the thread
    /// that called `block_on` (the CLI, the benchmark), `run` decodes every answer on that one thread and
    /// is woken across threads for every piece of every body: about a fifth more CPU for a remote-read
    /// backfill.
    pub async fn run_spawned(self: &Arc<Self>, opts: RunOptions) -> Result<SourceReport, Error> {
        let scraper = Arc::clone(self);
        tokio::spawn(async move { scraper.run(opts).await })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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
        let counters = Counters {
            run_span: plan.iter().map(|p| p.1).min().map(|start| (start, end)),
            ..Counters::default()
        };
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
            decode_seconds: self.client.decode_seconds(),
            aggregate_seconds: counters.aggregate_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            write_seconds: counters.write_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        })
    }

    /// One job from `start` to `end`, window after window. The next window is fetched while the current
    /// one is aggregated and written, so Prometheus, this process and Postgres work at the same time;
    /// the mark only moves once a window is stored, and windows are stored in order.
    #[allow(clippy::too_many_arguments)]
    async fn run_job(
        &self,
        job: Job,
        start: i64,
        end: i64,
        step: i64,
        ids: &tokio::sync::Mutex<IdCache>,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<(), Error> {
        let (max_points, budget) = match self.read {
            ReadApi::QueryRange => (self.settings.max_points_per_query as i64, SAMPLE_BUDGET),
            // Remote read has no points limit, and answers are compact chunks: windows are bounded by
            // the values `max_samples_per_read` lets one answer hold. Larger windows send fewer chunks
            // twice (a chunk reaching over a window's edge goes out with both) and make the source
            // re-encode fewer of them.
            ReadApi::RemoteRead => (10_000_000, self.settings.max_samples_per_read),
        };
        // Range queries start small and grow: the first answer tells how many series a window holds.
        // A remote-read answer is decoded as it arrives and dropped as soon as it holds more than the
        // budget, so the first window asks for everything: most backfills then take one request per
        // job, and each series is looked up and sent once (a source's cost per series and window
        // outweighs its cost per sample).
        let first = match self.read {
            ReadApi::QueryRange => 60,
            ReadApi::RemoteRead => max_points,
        };
        let mut points = first.min(max_points);
        let mut window = Window::of(start, points, step, end);
        let mut fetched = self.fetch_job(job, window, counters).await;
        loop {
            let (aggregated, held) = match fetched {
                Ok(v) => v,
                Err(Error::Source(ScrapeError::TooManySamples { message, .. }))
                    if window.steps() > 2 =>
                {
                    points = (window.steps() / 2).max(2);
                    tracing::info!(source = %self.client.name, job = job.name(), points, reason = %message, "window too large; halving");
                    window = Window::of(window.start, points, step, end);
                    fetched = self.fetch_job(job, window, counters).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let done = window;
            tracing::debug!(source = %self.client.name, job = job.name(), start = done.start, end = done.end, held, "window read");
            let store = async {
                let fresh_from = (done.start + CHUNK_SECS - 1).div_euclid(CHUNK_SECS) * CHUNK_SECS;
                let written = self
                    .store_aggregated(aggregated, fresh_from, ids, counters)
                    .await?;
                counters.written.fetch_add(written, Ordering::Relaxed);
                self.store
                    .set_scrape_mark(self.cluster_id, job.name(), done.end)
                    .await?;
                progress.advance((done.end - done.start + step) as u64, written);
                tracing::debug!(source = %self.client.name, job = job.name(), start = done.start, end = done.end, written, "window stored");
                Ok::<(), Error>(())
            };
            let next_start = done.end + step;
            if next_start > end {
                return store.await;
            }
            // The next window holds as many values per step as this one did (series come and go:
            // a count of series would overstate a long window's). An empty window (before the
            // history begins) says nothing about the next one: grow step by step instead of jumping
            // to the largest window at once.
            points = match budget.saturating_mul(done.steps() as u64).checked_div(held) {
                Some(fit) => (fit.min(i64::MAX as u64) as i64).clamp(2, max_points),
                None => (points * 2).min(max_points),
            };
            window = Window::of(next_start, points, step, end);
            let (stored, next) = tokio::join!(store, self.fetch_job(job, window, counters));
            stored?;
            fetched = next;
        }
    }

    /// Runs the job's queries for one window and aggregates them per workload container. Returns the
    /// aggregated series and how many values the answers held (to size the next window).
    async fn fetch_job(
        &self,
        job: Job,
        w: Window,
        counters: &Counters,
    ) -> Result<(Vec<Aggregated>, u64), Error> {
        let (own, results) = tokio::try_join!(
            self.ownership(w, counters),
            self.fetch_results(job, w, counters)
        )?;
        let started = Instant::now();
        // On a blocking thread: a window's aggregation takes a while, and the runtime's threads keep
        // reading answers and copying rows meanwhile.
        let out = tokio::task::spawn_blocking(move || match results {
            Fetched::Parsed(r) => aggregate_job(job, &own, r, w),
            Fetched::Evaluated(r) => aggregate_job(job, &own, r, w),
            Fetched::Folded(kind, f) => (aggregate::capacity_of_maxima(f.groups, kind), f.held),
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        counters.add_time(&counters.aggregate_nanos, started);
        Ok(out)
    }

    /// The queries of a job: its PromQL, the same as an expression evaluated over remote-read series, and
    /// the first step each is evaluated at. Restart counters start one step early: the first point of each
    /// pod is only the counter's baseline.
    fn job_queries(&self, job: Job, w: Window) -> Vec<(&str, eval::Expr, i64)> {
        let q = &self.queries;
        let (start, baseline) = (w.start, w.start - w.step);
        match job {
            Job::CpuUsage => vec![(&q.cpu_usage, exprs::CPU_USAGE, start)],
            Job::MemoryUsage => vec![(&q.memory_usage, exprs::MEMORY_USAGE, start)],
            Job::Requests => vec![(&q.requests, exprs::REQUESTS, start)],
            Job::Limits => vec![(&q.limits, exprs::LIMITS, start)],
            Job::Restarts => vec![
                (&q.restarts, exprs::RESTARTS, baseline),
                (&q.oom_kills, exprs::OOM_KILLS, baseline),
            ],
            Job::Throttling => vec![
                (&q.throttled_periods, exprs::THROTTLED_PERIODS, start),
                (&q.cfs_periods, exprs::CFS_PERIODS, start),
            ],
        }
    }

    /// The raw answers of one job's queries for one window: range queries, or one remote read evaluated
    /// here.
    async fn fetch_results(
        &self,
        job: Job,
        w: Window,
        counters: &Counters,
    ) -> Result<Fetched, Error> {
        let Window { end, step, .. } = w;
        let queries = self.job_queries(job, w);
        if self.remote_window(w) {
            if let (Some(kind), [(_, expr, from)]) = (job.capacity_kind(), &queries[..]) {
                // The maxima go straight into each workload container's: no per-pod values held.
                let folded = self.remote_folded(*expr, *from, w, counters).await?;
                self.account_counts(folded.values, folded.dropped_non_finite, counters);
                return Ok(Fetched::Folded(kind, folded));
            }
            let specs = queries.iter().map(|&(_, e, from)| (e, from)).collect();
            let results = self.remote(specs, w, counters).await?;
            for r in &results {
                self.account(r, counters);
            }
            return Ok(Fetched::Evaluated(results));
        }
        let results = futures_util::future::try_join_all(queries.iter().map(
            |&(query, _, from)| async move {
                counters.queries.fetch_add(1, Ordering::Relaxed);
                let r = self.client.query_range(query, from, end, step).await?;
                self.account(&r, counters);
                Ok::<QueryResult, Error>(r)
            },
        ))
        .await?;
        Ok(Fetched::Parsed(results))
    }

    /// Whether a window is read with remote read. Chunks come whole (up to 120 samples each), so for a
    /// short window (a steady-state cycle) the source would send and Headroom decode far more samples
    /// than the window holds: range queries are cheaper there, and store the same values.
    fn remote_window(&self, w: Window) -> bool {
        self.read == ReadApi::RemoteRead && w.end - w.start >= REMOTE_READ_MIN_SECS
    }

    /// Reads the series of `specs` (an expression and the first step it is evaluated at, up to the
    /// window's end) in one remote-read request, evaluating each over the window's steps as the answer is
    /// decoded.
    async fn remote(
        &self,
        specs: Vec<(eval::Expr, i64)>,
        w: Window,
        counters: &Counters,
    ) -> Result<Vec<QueryResult<eval::GridSeries>>, Error> {
        let Window { end, step, .. } = w;
        let lookback = self.lookback_ms;
        counters.queries.fetch_add(1, Ordering::Relaxed);
        let queries = specs.iter().map(|(e, from)| e.query(*from, end, lookback));
        let results = self
            .client
            .remote_read(
                queries.collect(),
                self.settings.max_samples_per_read,
                || {
                    specs
                        .iter()
                        .map(|&(e, from)| eval::RangeEval::new(e, (from, end, step), lookback))
                        .collect::<Vec<_>>()
                },
                |evals| evals.into_iter().map(eval::RangeEval::finish).collect(),
            )
            .await?;
        Ok(results)
    }

    /// Reads the requests or limits of `expr` (a `max by` pod) in one remote-read request, folding each
    /// series straight into its workload container's maxima as the answer is decoded: the pod's owner is
    /// known before the answer comes (ownership is read first), and the maximum over pods of their
    /// maxima is the maximum over their series.
    async fn remote_folded(
        &self,
        expr: eval::Expr,
        from: i64,
        w: Window,
        counters: &Counters,
    ) -> Result<eval::Folded<CapacityKey>, Error> {
        let Window { end, step, .. } = w;
        let own = self.ownership(w, counters).await?;
        let lookback = self.lookback_ms;
        counters.queries.fetch_add(1, Ordering::Relaxed);
        let key_of: eval::KeyOf<CapacityKey> = Arc::new(move |labels| {
            aggregate::capacity_key(&own, |name| remote::label(labels, name))
        });
        let folded = self
            .client
            .remote_read(
                vec![expr.query(from, end, lookback)],
                self.settings.max_samples_per_read,
                || eval::FoldedMax::new(expr, (from, end, step), lookback, key_of.clone()),
                eval::FoldedMax::finish,
            )
            .await?;
        Ok(folded)
    }

    /// Ownership of every pod alive during the window (and up to an hour before it, so a pod whose
    /// kube-state-metrics series started earlier is still known). Jobs whose windows coincide (every job
    /// of a steady-state cycle) share one answer, and remote-read windows share one for the whole run:
    /// the series API costs the source per call far more than per pod, and a pod outside a window only
    /// adds an unused entry. A range-query window evaluates the subquery at the scrape step: the range
    /// queries only see pods at those instants, so finer would cost Prometheus more and find nothing new.
    async fn ownership(&self, w: Window, counters: &Counters) -> Result<Arc<Ownership>, Error> {
        let key = match counters.run_span {
            Some((start, end)) if self.remote_window(w) => Window { start, end, ..w },
            _ => w,
        };
        let Window { start, end, step } = key;
        let cell = counters
            .ownership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let own = cell
            .get_or_try_init(|| async {
                let span = end - start + 3_600;
                if self.remote_window(w) {
                    // Ownership needs labels only: the series API answers from the source's index, where
                    // a remote read would send (and this process decode) every ownership sample again for
                    // each job's windows. It may name a pod seen a little outside the span (the index
                    // knows series by chunk), which only adds an unused entry.
                    counters.queries.fetch_add(1, Ordering::Relaxed);
                    let sets = self
                        .client
                        .series(&exprs::OWNER_SELECTORS, end - span, end)
                        .await?;
                    return Ok(Arc::new(Ownership::from_label_sets(&sets)));
                }
                let pods = format!(
                    "last_over_time(({})[{span}s:{step}s])",
                    self.queries.pod_owner
                );
                let rs = format!(
                    "last_over_time(({})[{span}s:{step}s])",
                    self.queries.replicaset_owner
                );
                counters.queries.fetch_add(2, Ordering::Relaxed);
                let (p, r) =
                    tokio::try_join!(self.client.query(&pods, end), self.client.query(&rs, end))?;
                Ok::<_, Error>(Arc::new(Ownership::from_results(&p, &r)))
            })
            .await?;
        Ok(own.clone())
    }

    fn account<S: SeriesView>(&self, r: &QueryResult<S>, counters: &Counters) {
        self.account_counts(r.samples(), r.dropped_non_finite, counters);
    }

    /// Counts the samples an answer brought and the non-finite ones dropped from it.
    fn account_counts(&self, samples: u64, dropped_non_finite: u64, counters: &Counters) {
        let labels = SourceLabels {
            source: self.client.name.clone(),
        };
        counters.received.fetch_add(samples, Ordering::Relaxed);
        self.metrics
            .scrape_samples
            .get_or_create(&labels)
            .inc_by(samples);
        if dropped_non_finite > 0 {
            self.metrics
                .scrape_dropped_samples
                .get_or_create(&labels)
                .inc_by(dropped_non_finite);
            tracing::debug!(source = %self.client.name, dropped = dropped_non_finite, "dropped NaN or infinite samples");
        }
    }

    /// Upserts the identities the window introduced, then writes its samples: those from `fresh_from` on
    /// are expected to be past everything stored (see `Store::write_new_samples`).
    async fn store_aggregated(
        &self,
        agg: Vec<Aggregated>,
        fresh_from: i64,
        ids: &tokio::sync::Mutex<IdCache>,
        counters: &Counters,
    ) -> Result<u64, Error> {
        if agg.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
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
                .filter_map(|a| a.points.ends().map(|e| e.1))
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
        let batch: Vec<(i64, Samples)> = agg
            .into_iter()
            .map(|a| {
                (
                    cache.series[&(cache.containers[&a.container], a.metric)],
                    a.points,
                )
            })
            .collect();
        drop(cache);
        // Chunks from the first boundary at or after the window's start lie past everything the job
        // stored: they are copied in. The chunk the window starts in may hold earlier samples: merged.
        let mut head = Vec::new();
        let mut tail = Vec::new();
        for (id, mut early) in batch {
            let late = early.split_off(fresh_from);
            if early.ends().is_some() {
                head.push((id, early));
            }
            if late.ends().is_some() {
                tail.push((id, late));
            }
        }
        let (merged, copied) = tokio::try_join!(
            self.store.write_samples(&head),
            self.store.write_new_samples(&tail)
        )?;
        let written = merged.samples_written + copied.samples_written;
        counters.add_time(&counters.write_nanos, started);
        Ok(written)
    }
}

/// The steps `start..=end` one request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Window {
    start: i64,
    end: i64,
    step: i64,
}

impl Window {
    /// At most `points` steps from `start`, capped at `end`. A window that reaches past a chunk boundary
    /// ends just before the last one it reaches, so that a backfill writes whole chunks (brand-new rows,
    /// copied in) instead of merging every window's first chunk with the previous one's last.
    /// The cut never takes more than half the window: a window starting just before a boundary keeps
    /// its size (a one-step window would tell nothing about how many series the next one holds).
    fn of(start: i64, points: i64, step: i64, end: i64) -> Self {
        let far = (start + (points - 1) * step).min(end);
        let aligned = (far + step).div_euclid(CHUNK_SECS) * CHUNK_SECS - step;
        let end = if far < end && aligned - start >= (far - start) / 2 {
            aligned
        } else {
            far
        };
        Window { start, end, step }
    }

    /// How many steps it covers.
    fn steps(self) -> i64 {
        (self.end - self.start) / self.step + 1
    }
}

/// The answers of one job's queries for one window, in the order of `job_queries`.
enum Fetched {
    Parsed(Vec<QueryResult>),
    Evaluated(Vec<QueryResult<eval::GridSeries>>),
    /// Requests or limits (the kind) already folded per workload container (remote read).
    Folded(&'static str, eval::Folded<CapacityKey>),
}

/// A workload container and a resource.
type CapacityKey = (ContainerKey, &'static str);

/// Aggregates one window's answers of `job` per workload container. Returns the aggregated series and how
/// many values the answers held (to size the next window).
fn aggregate_job<S: SeriesView>(
    job: Job,
    own: &Ownership,
    results: Vec<QueryResult<S>>,
    w: Window,
) -> (Vec<Aggregated>, u64) {
    let held = results.iter().map(QueryResult::held).sum();
    let mut results = results.into_iter();
    let mut next = || results.next().unwrap_or_default();
    let aggregated = match job {
        Job::CpuUsage => aggregate::usage(own, &next(), w.step, "cpu", false),
        Job::MemoryUsage => aggregate::usage(own, &next(), w.step, "memory", true),
        Job::Requests | Job::Limits => {
            let kind = job
                .capacity_kind()
                .expect("requests and limits are capacity");
            aggregate::capacity(own, &next(), w.step, kind)
        }
        Job::Restarts => {
            let (counters, flags) = (next(), next());
            aggregate::restarts(own, &counters, &flags, (w.start, w.step))
        }
        Job::Throttling => {
            let (throttled, periods) = (next(), next());
            aggregate::throttling(own, &throttled, &periods, w.step)
        }
    };
    (aggregated, held)
}

#[derive(Default)]
struct IdCache {
    containers: FxHashMap<ContainerKey, i64>,
    series: FxHashMap<(i64, &'static str), i64>,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    received: AtomicU64,
    written: AtomicU64,
    /// Time spent aggregating pods into workload containers, summed over the jobs.
    aggregate_nanos: AtomicU64,
    /// Time spent storing windows (identities, read-merge-write of chunks), summed over the jobs.
    write_nanos: AtomicU64,
    /// Ownership per window, fetched once however many jobs ask for it.
    ownership: std::sync::Mutex<HashMap<Window, Arc<OwnershipCell>>>,
    /// The steps the run covers, from the earliest job's first to the end.
    run_span: Option<(i64, i64)>,
}

/// The ownership of one window, filled by the first job that needs it while the others wait.
type OwnershipCell = tokio::sync::OnceCell<Arc<Ownership>>;

impl Counters {
    fn add_time(&self, counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_that_cross_a_chunk_boundary_end_just_before_the_last_one() {
        let (step, origin) = (300, 100 * CHUNK_SECS);
        // 80 steps of 5 minutes from an hour into a chunk reach into the next one: cut at its start.
        let w = Window::of(origin + 3_600, 80, step, origin + 100 * CHUNK_SECS);
        assert_eq!(w.end, origin + CHUNK_SECS - step);
        // The next window then starts on a boundary and covers whole chunks.
        let next = Window::of(w.end + step, 80, step, origin + 100 * CHUNK_SECS);
        assert_eq!(next.start % CHUNK_SECS, 0);
        assert_eq!((next.end + step) % CHUNK_SECS, 0);
    }

    #[test]
    fn a_window_starting_just_before_a_boundary_is_not_cut_to_nothing() {
        let (step, origin) = (300, 100 * CHUNK_SECS);
        let w = Window::of(origin - step, 60, step, origin + 100 * CHUNK_SECS);
        assert_eq!(w.end, origin - step + 59 * step);
    }

    #[test]
    fn short_windows_and_the_last_window_are_not_cut() {
        let (step, origin) = (60, 100 * CHUNK_SECS);
        // Inside one chunk: nothing to align to.
        let w = Window::of(origin + 60, 10, step, origin + CHUNK_SECS * 10);
        assert_eq!(w.end, origin + 60 + 9 * step);
        // Reaching the scrape's end: the end, even past a boundary.
        let end = origin + CHUNK_SECS + 600;
        let w = Window::of(origin + 60, 10_000, step, end);
        assert_eq!(w.end, end);
    }
}
