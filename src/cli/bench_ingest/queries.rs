//! What Headroom's queries cost Prometheus, for `headroom bench ingest`: replays of recorded requests (how
//! fast Prometheus alone serves the scraper's answers, and what a steady-state cycle costs it), and a
//! KRR-style cycle that re-reads the whole history of every container on every run, measured the same way.
//!
//! The KRR model follows the query pattern KRR documents for its `simple` strategy: per container of a
//! workload, the workload's pods are found through `kube_replicaset_owner` and `kube_pod_owner` over the
//! whole history (and checked with `kube_pod_status_phase`), then four instant queries with subqueries over
//! the whole history: a CPU percentile (`quantile_over_time` of `rate`), the peak memory
//! (`max_over_time`), and the number of CPU and memory points (`count_over_time`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;

use crate::scrape::client::{RecordedRequest, remote_read_request};
use crate::scrape::remote;
use crate::simulate::{Cluster, Kind};

/// What a set of requests cost: counted from the answers, and timed by Prometheus itself
/// (`stats=all`) where asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub queries: u64,
    /// Bytes of the answers' bodies.
    pub bytes: u64,
    /// Samples in the answers (points of every series returned).
    pub samples: u64,
    /// Samples Prometheus loaded to evaluate the queries (`totalQueryableSamples`).
    pub queryable_samples: u64,
    /// Prometheus' own evaluation time (`evalTotalTime`), summed over the queries.
    pub eval_seconds: f64,
    /// Wall time of the whole set.
    pub wall_seconds: f64,
}

impl Cost {
    fn add(&mut self, other: &Cost) {
        self.queries += other.queries;
        self.bytes += other.bytes;
        self.samples += other.samples;
        self.queryable_samples += other.queryable_samples;
        self.eval_seconds += other.eval_seconds;
    }

    /// `prefix_queries,…` lines for the benchmark's CSV output.
    pub fn print(&self, prefix: &str) {
        println!("{prefix}_queries,{}", self.queries);
        println!("{prefix}_answer_bytes,{}", self.bytes);
        println!("{prefix}_samples_returned,{}", self.samples);
        println!("{prefix}_samples_loaded,{}", self.queryable_samples);
        println!("{prefix}_prometheus_eval_seconds,{:.3}", self.eval_seconds);
        println!("{prefix}_wall_seconds,{:.3}", self.wall_seconds);
    }
}

/// One Prometheus to send requests to.
#[derive(Clone)]
pub struct Target {
    http: reqwest::Client,
    base: reqwest::Url,
}

impl Target {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let mut base: reqwest::Url = base.parse().context("prometheus url")?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?;
        Ok(Self { http, base })
    }

    /// Sends one recorded request: a range or instant query, or a remote read.
    async fn replay_one(&self, r: &RecordedRequest, stats: bool) -> anyhow::Result<Cost> {
        match &r.body {
            Some(body) => self.remote_read(&r.path, body, stats).await,
            None => Ok(self.send(&r.path, &r.params, stats).await?.0),
        }
    }

    /// A remote read. Prometheus reports no statistics for it; with `stats` the answer is decoded and
    /// its raw samples counted as both returned and loaded (remote read loads nothing else).
    async fn remote_read(&self, path: &str, body: &[u8], stats: bool) -> anyhow::Result<Cost> {
        let req = remote_read_request(self.http.post(self.base.join(path)?), body);
        let (mut cost, answer) = answered(path, req).await?;
        if stats {
            let ranges: Vec<(i64, i64)> = remote::decode_request(body)?
                .queries
                .iter()
                .map(|q| (q.start_timestamp_ms, q.end_timestamp_ms))
                .collect();
            let mut count = SampleCount(0);
            remote::decode_stream(&answer, &ranges, &mut count)?;
            cost.samples = count.0;
            cost.queryable_samples = cost.samples;
        }
        Ok(cost)
    }

    /// Sends one request; with `stats`, asks Prometheus for its own timings and returns the parsed answer.
    async fn send(
        &self,
        path: &str,
        params: &[(String, String)],
        stats: bool,
    ) -> anyhow::Result<(Cost, Option<serde_json::Value>)> {
        let mut req = self.http.get(self.base.join(path)?).query(params);
        if stats {
            req = req.query(&[("stats", "all")]);
        }
        let (mut cost, body) = answered(path, req).await?;
        if !stats {
            return Ok((cost, None));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let data = &v["data"];
        if let Some(result) = data["result"].as_array() {
            for s in result {
                cost.samples += s["values"].as_array().map_or(0, |a| a.len() as u64)
                    + u64::from(s.get("value").is_some());
            }
        }
        cost.queryable_samples = data["stats"]["samples"]["totalQueryableSamples"]
            .as_u64()
            .unwrap_or(0);
        cost.eval_seconds = data["stats"]["timings"]["evalTotalTime"]
            .as_f64()
            .unwrap_or(0.0);
        Ok((cost, Some(v)))
    }

    async fn instant(&self, query: String, time: i64) -> anyhow::Result<(Cost, serde_json::Value)> {
        let params = [
            ("query".to_string(), query),
            ("time".to_string(), time.to_string()),
        ];
        let (cost, v) = self.send("api/v1/query", &params, true).await?;
        Ok((cost, v.unwrap_or_default()))
    }
}

/// Sends a request and reads its answer: the cost of one query of that many bytes, or the error the
/// source answered.
async fn answered(
    path: &str,
    req: reqwest::RequestBuilder,
) -> anyhow::Result<(Cost, bytes::Bytes)> {
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        anyhow::bail!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let cost = Cost {
        queries: 1,
        bytes: body.len() as u64,
        ..Cost::default()
    };
    Ok((cost, body))
}

/// Runs `each` over `items`, `concurrency` at a time, and adds up their costs.
async fn each_concurrently<'a, T, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    each: F,
) -> anyhow::Result<Cost>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Cost>>,
{
    let next = AtomicUsize::new(0);
    let worker = || async {
        let mut cost = Cost::default();
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            cost.add(&each(item).await?);
        }
        Ok::<_, anyhow::Error>(cost)
    };
    let results = futures_util::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let mut total = Cost::default();
    for r in results {
        total.add(&r?);
    }
    Ok(total)
}

/// Sends `requests` again, `concurrency` at a time. Without `stats` the answers are read and dropped (the
/// source's own serving speed); with it they are counted and timed by Prometheus.
pub async fn replay(
    target: &Target,
    requests: &[RecordedRequest],
    concurrency: usize,
    stats: bool,
) -> anyhow::Result<Cost> {
    let started = Instant::now();
    let mut total =
        each_concurrently(requests, concurrency, |r| target.replay_one(r, stats)).await?;
    total.wall_seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// One KRR-style recommendation run over every container of the simulated cluster, at `end`, reading
/// `history_secs` of history at `step_secs` resolution, `concurrency` containers at a time.
pub async fn krr_cycle(
    target: &Target,
    cluster: &Cluster,
    end: i64,
    history_secs: i64,
    step_secs: i64,
    concurrency: usize,
) -> anyhow::Result<Cost> {
    let started = Instant::now();
    let objects: Vec<(&str, Kind, &str, &str)> = cluster
        .workloads
        .iter()
        .flat_map(|w| {
            w.containers
                .iter()
                .map(move |c| (w.namespace.as_str(), w.kind, w.name.as_str(), c.as_str()))
        })
        .collect();
    let history = format!("{}d", history_secs / 86_400);
    let step = format!("{step_secs}s");
    // Once per run: the history range Prometheus holds.
    let mut total = {
        let params = [
            (
                "query".to_string(),
                "max(prometheus_tsdb_head_series)".to_string(),
            ),
            ("start".to_string(), (end - history_secs).to_string()),
            ("end".to_string(), end.to_string()),
            ("step".to_string(), "3600".to_string()),
        ];
        target.send("api/v1/query_range", &params, true).await?.0
    };
    let objects = each_concurrently(&objects, concurrency, |&(ns, kind, name, container)| {
        krr_object(target, ns, kind, name, container, end, &history, &step)
    })
    .await?;
    total.add(&objects);
    total.wall_seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// Label values of `label` in an answer's series, deduplicated, in order.
fn label_values(v: &serde_json::Value, label: &str) -> Vec<String> {
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// The queries of one container: its pods over the history, then the four history-wide metrics.
#[allow(clippy::too_many_arguments)]
async fn krr_object(
    target: &Target,
    ns: &str,
    kind: Kind,
    name: &str,
    container: &str,
    end: i64,
    history: &str,
    step: &str,
) -> anyhow::Result<Cost> {
    let mut cost = Cost::default();
    let (owners, owner_kind) = if kind == Kind::Deployment {
        let (c, v) = target
            .instant(
                format!(
                    r#"kube_replicaset_owner{{owner_name="{name}",owner_kind="Deployment",namespace="{ns}"}}[{history}]"#
                ),
                end,
            )
            .await?;
        cost.add(&c);
        (label_values(&v, "replicaset"), "ReplicaSet")
    } else {
        (vec![name.to_string()], kind.as_str())
    };
    let mut pods = Vec::new();
    for batch in owners.chunks(100) {
        let (c, v) = target
            .instant(
                format!(
                    r#"last_over_time(kube_pod_owner{{owner_name=~"{}",owner_kind="{owner_kind}",namespace="{ns}"}}[{history}])"#,
                    batch.join("|")
                ),
                end,
            )
            .await?;
        cost.add(&c);
        pods.extend(label_values(&v, "pod"));
    }
    if pods.is_empty() {
        return Ok(cost);
    }
    for batch in pods.chunks(100) {
        let (c, _) = target
            .instant(
                format!(
                    r#"kube_pod_status_phase{{phase="Running",pod=~"{}",namespace="{ns}"}} == 1"#,
                    batch.join("|")
                ),
                end,
            )
            .await?;
        cost.add(&c);
    }
    let selector = format!(
        r#"namespace="{ns}",pod=~"{}",container="{container}""#,
        pods.join("|")
    );
    let queries = [
        format!(
            "quantile_over_time(0.95, max(rate(container_cpu_usage_seconds_total{{{selector}}}[{step}])) by (container, pod, job)[{history}:{step}])"
        ),
        format!(
            "max_over_time(max(container_memory_working_set_bytes{{{selector}}}) by (container, pod, job)[{history}:{step}])"
        ),
        format!(
            "count_over_time(max(container_cpu_usage_seconds_total{{{selector}}}) by (container, pod, job)[{history}:{step}])"
        ),
        format!(
            "count_over_time(max(container_memory_working_set_bytes{{{selector}}}) by (container, pod, job)[{history}:{step}])"
        ),
    ];
    let answers =
        futures_util::future::join_all(queries.into_iter().map(|q| target.instant(q, end))).await;
    for a in answers {
        cost.add(&a?.0);
    }
    Ok(cost)
}

/// Counts the samples of a remote-read answer.
struct SampleCount(u64);

impl remote::SeriesSink for SampleCount {
    fn series(&mut self, _: usize, _: &[(&str, &str)], samples: &[(i64, f64)]) {
        self.0 += samples.len() as u64;
    }
    fn held(&self) -> u64 {
        0
    }
}
