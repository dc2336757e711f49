//! The live state of a source through `/federate`: the current requests, limits and ownership, aggregated
//! per workload container exactly as the range path does, and stored at the sample's own (step-aligned)
//! time. `/federate` only returns series with a sample within the lookback delta, so it cannot backfill.

use std::time::Instant;

use super::aggregate::{self, Ownership};
use super::parse::{self, QueryResult};
use super::{Counters, Error, IdCache, SourceScraper};

/// The kube-state-metrics families read through `/federate`. Selectors, not PromQL: a source that renames
/// these families needs the range path (with query overrides) instead.
pub mod selectors {
    pub const REQUESTS: &str = "kube_pod_container_resource_requests";
    pub const LIMITS: &str = "kube_pod_container_resource_limits";
    pub const POD_OWNER: &str = "kube_pod_owner";
    pub const REPLICASET_OWNER: &str = "kube_replicaset_owner";
}

/// What one read of a source's live state did.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    pub source: String,
    /// Series in the `/federate` answer.
    pub series_read: u64,
    /// Pods whose owner was known.
    pub pods: u64,
    /// Workload containers with a current request or limit.
    pub containers: u64,
    pub samples_written: u64,
    pub seconds: f64,
}

impl SourceScraper {
    /// Reads the current requests, limits and ownership through `/federate` and stores them. High-water
    /// marks are left alone: one instant says nothing about the history before it.
    pub async fn run_live(&self) -> Result<LiveReport, Error> {
        let started = Instant::now();
        let step = self.settings.step_secs as i64;
        let resource = r#"{resource=~"cpu|memory"}"#;
        let requests = format!("{}{resource}", selectors::REQUESTS);
        let limits = format!("{}{resource}", selectors::LIMITS);
        let samples = self
            .client
            .federate(&[
                &requests,
                &limits,
                selectors::POD_OWNER,
                selectors::REPLICASET_OWNER,
            ])
            .await?;
        let series_read = samples.len() as u64;
        let mut by_metric = parse::federated(samples, step);
        let mut take = |name: &str| by_metric.remove(name).unwrap_or_default();
        let (req, lim) = (take(selectors::REQUESTS), take(selectors::LIMITS));
        let own = Ownership::from_results(
            &take(selectors::POD_OWNER),
            &take(selectors::REPLICASET_OWNER),
        );
        let counters = Counters::default();
        for r in [&req, &lim] {
            self.account(r, &counters);
        }
        let mut agg = aggregate::capacity(&own, &req, step, "request");
        agg.extend(aggregate::capacity(&own, &lim, step, "limit"));
        let ids = tokio::sync::Mutex::new(IdCache::default());
        let written = self
            .store_aggregated(agg, i64::MAX, &ids, &counters)
            .await?;
        let ids = ids.into_inner();
        if let Some(latest) = latest(&[&req, &lim]) {
            let all: Vec<i64> = ids.containers.values().copied().collect();
            self.store.touch_workloads(&all, latest).await?;
        }
        Ok(LiveReport {
            source: self.client.name.clone(),
            series_read,
            pods: own.pods() as u64,
            containers: ids.containers.len() as u64,
            samples_written: written,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn latest(results: &[&QueryResult]) -> Option<i64> {
    results
        .iter()
        .flat_map(|r| r.series.iter())
        .filter_map(|s| s.points.last().map(|p| p.0))
        .max()
}
