//! Loads a simulated cluster straight into the store, aggregated the way the scraper aggregates what it
//! reads from Prometheus (per-replica mean and max, replicas, requests, limits, OOM kills). For benchmarks
//! of the API and the assessment at 10,000 workloads and more, where backfilling Prometheus first would
//! only measure promtool.

use std::collections::BTreeMap;

use crate::simulate::{Cluster, ClusterSpec};
use crate::store::{ContainerKey, Store, StoreError, WorkloadKey};

/// What was loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedReport {
    pub workloads: u64,
    pub containers: u64,
    pub samples: u64,
}

type Points = Vec<(i64, f64)>;

/// Per workload container: metric name → points.
fn aggregate(
    cluster: &Cluster,
    w: &crate::simulate::Workload,
) -> BTreeMap<String, BTreeMap<&'static str, Points>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, Points>> = BTreeMap::new();
    for cname in &w.containers {
        // time → (sum, n, max) for cpu and memory; requests and limits are per-pod constants.
        let mut cpu: BTreeMap<i64, (f64, u32, f64)> = BTreeMap::new();
        let mut mem: BTreeMap<i64, (f64, u32, f64)> = BTreeMap::new();
        let mut caps: BTreeMap<&'static str, BTreeMap<i64, f64>> = BTreeMap::new();
        let mut ooms: BTreeMap<i64, f64> = BTreeMap::new();
        for pod in &w.pods {
            let Some(c) = pod.containers.iter().find(|c| &c.name == cname) else {
                continue;
            };
            for t in cluster.sample_times(pod) {
                for (acc, v) in [
                    (&mut cpu, cluster.cpu_usage(w, c, t)),
                    (&mut mem, cluster.memory_working_set(c, t)),
                ] {
                    let e = acc.entry(t).or_insert((0.0, 0, f64::MIN));
                    e.0 += v;
                    e.1 += 1;
                    e.2 = e.2.max(v);
                }
                for (name, v) in [
                    ("cpu_request", c.cpu_request),
                    ("cpu_limit", c.cpu_limit),
                    ("memory_request", c.memory_request),
                    ("memory_limit", c.memory_limit),
                ] {
                    if let Some(v) = v {
                        let e = caps.entry(name).or_default().entry(t).or_insert(0.0);
                        *e = e.max(v);
                    }
                }
                ooms.entry(t).or_insert(0.0);
            }
            for &k in &c.oom_kills {
                let slot = cluster.sample_times(pod).find(|&t| t >= k);
                if let Some(t) = slot {
                    *ooms.entry(t).or_insert(0.0) += 1.0;
                }
            }
        }
        let metrics = out.entry(cname.clone()).or_default();
        let mean = |m: &BTreeMap<i64, (f64, u32, f64)>| {
            m.iter().map(|(&t, a)| (t, a.0 / a.1 as f64)).collect()
        };
        let max = |m: &BTreeMap<i64, (f64, u32, f64)>| m.iter().map(|(&t, a)| (t, a.2)).collect();
        metrics.insert("cpu_usage", mean(&cpu));
        metrics.insert("cpu_usage_max", max(&cpu));
        metrics.insert("memory_usage", mean(&mem));
        metrics.insert("memory_usage_max", max(&mem));
        metrics.insert(
            "replicas",
            mem.iter().map(|(&t, a)| (t, a.1 as f64)).collect(),
        );
        metrics.insert("oom_kills", ooms.into_iter().collect());
        for (name, pts) in caps {
            metrics.insert(name, pts.into_iter().collect());
        }
    }
    out
}

fn unit(metric: &str) -> &'static str {
    match metric {
        m if m.starts_with("cpu") => "cores",
        m if m.starts_with("memory") => "bytes",
        _ => "count",
    }
}

/// Simulates `spec` and writes it into the store under cluster `cluster_name`, `batch` workloads at a time.
pub async fn seed(
    store: &Store,
    cluster_name: &str,
    spec: &ClusterSpec,
    batch: usize,
) -> Result<SeedReport, SeedError> {
    let cluster = Cluster::plan(spec).map_err(|e| SeedError::Spec(e.to_string()))?;
    let cluster_id = store.upsert_cluster(cluster_name).await?;
    let mut report = SeedReport::default();
    for chunk in cluster.workloads.chunks(batch.max(1)) {
        let aggregated: Vec<(ContainerKey, BTreeMap<&'static str, Points>)> = chunk
            .iter()
            .flat_map(|w| {
                let key = WorkloadKey {
                    namespace: w.namespace.clone(),
                    kind: w.kind.as_str().to_string(),
                    name: w.name.clone(),
                };
                aggregate(&cluster, w).into_iter().map(move |(c, m)| {
                    (
                        ContainerKey {
                            workload: key.clone(),
                            container: c,
                        },
                        m,
                    )
                })
            })
            .collect();
        let keys: Vec<ContainerKey> = aggregated.iter().map(|(k, _)| k.clone()).collect();
        let ids = store.upsert_containers(cluster_id, &keys, spec.end).await?;
        let series: Vec<(i64, &str, &str)> = aggregated
            .iter()
            .zip(&ids)
            .flat_map(|((_, m), id)| m.keys().map(move |metric| (*id, *metric, unit(metric))))
            .collect();
        let series_ids = store.upsert_series(&series).await?;
        let mut sid = series_ids.into_iter();
        let mut batch_points = Vec::new();
        for (_, metrics) in &aggregated {
            for pts in metrics.values() {
                if let Some(id) = sid.next() {
                    report.samples += pts.len() as u64;
                    batch_points.push((id, pts.clone()));
                }
            }
        }
        store.write_samples(&batch_points).await?;
        report.workloads += chunk.len() as u64;
        report.containers += keys.len() as u64;
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("invalid cluster: {0}")]
    Spec(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
