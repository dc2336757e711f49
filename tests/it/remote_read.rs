//! The remote-read path (`read = "remote_read"`) against a real Prometheus: it stores exactly what the
//! range-query path stores from the same data, series by series and sample by sample, resumes and adds
//! nothing twice, and rides out the same faults.

use std::collections::BTreeMap;

use headroom::config::Settings;
use headroom::scrape::SourceReport;
use headroom::simulate::ClusterSpec;
use headroom::store::Store;
use sqlx::PgPool;

use crate::prom::{Fault, FaultProxy, LOOKBACK_SECS, TestPrometheus};
use crate::scrape::{STEP, T0};

/// Two sources over the same Prometheus: `query` reads with range queries, `remote` with remote read.
/// Small windows (`max_points`, and 100 times as many samples per remote read: windows of about 7 hours), so window edges and chunk
/// boundaries are crossed many times.
fn settings(query_url: &str, remote_url: &str, max_points: u64) -> Settings {
    Settings::from_toml(&format!(
        "[scrape]\nstep_secs = {STEP}\ntimeout_secs = 5\nmax_in_flight = 2\nmax_points_per_query = {max_points}\nmax_samples_per_read = {}\n\
         [[sources]]\nname = \"query\"\nurl = \"{query_url}\"\n\
         [[sources]]\nname = \"remote\"\nurl = \"{remote_url}\"\nread = \"remote_read\"\nlookback_secs = {LOOKBACK_SECS}\n",
        max_points * 100
    ))
    .unwrap()
}

async fn scrape(
    store: &Store,
    s: &Settings,
    source: usize,
    end: i64,
    backfill: i64,
) -> SourceReport {
    let mut one = s.clone();
    one.sources = vec![s.sources[source].clone()];
    crate::scrape::scrape_with(store, one, end, backfill)
        .await
        .unwrap_or_else(|e| panic!("scrape of {}: {e}", s.sources[source].name))
}

type Key = (String, String, String, String, String);

/// Every stored series of one cluster, keyed by workload, container and metric, with its samples.
async fn stored(pool: &PgPool, cluster: &str) -> BTreeMap<Key, Vec<(i64, f64)>> {
    let rows: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
        "select s.id, w.namespace, w.kind, w.name, c.name, s.metric
         from series s join container c on c.id = s.container_id join workload w on w.id = c.workload_id
         join cluster k on k.id = w.cluster_id where k.name = $1",
    )
    .bind(cluster)
    .fetch_all(pool)
    .await
    .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut samples = Store::from_pool(pool.clone())
        .read_samples_many(&ids, T0 - 86_400, T0 + 30 * 86_400)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, ns, kind, name, container, metric)| {
            (
                (ns, kind, name, container, metric),
                samples.remove(&id).unwrap_or_default(),
            )
        })
        .collect()
}

fn assert_same(query: &BTreeMap<Key, Vec<(i64, f64)>>, remote: &BTreeMap<Key, Vec<(i64, f64)>>) {
    assert_eq!(
        query.keys().collect::<Vec<_>>(),
        remote.keys().collect::<Vec<_>>(),
        "the same workloads, containers and metrics"
    );
    let differ: Vec<String> = query
        .iter()
        .filter_map(|(key, q)| {
            let r = &remote[key];
            let qt: std::collections::BTreeSet<i64> = q.iter().map(|p| p.0).collect();
            let rt: std::collections::BTreeSet<i64> = r.iter().map(|p| p.0).collect();
            (qt != rt).then(|| {
                let only_q: Vec<_> = qt.difference(&rt).take(5).collect();
                let only_r: Vec<_> = rt.difference(&qt).take(5).collect();
                format!("{key:?}: only range query {only_q:?}, only remote read {only_r:?}")
            })
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} series differ in timestamps:\n{}",
        differ.len(),
        differ.join("\n")
    );
    for (key, q) in query {
        let r = &remote[key];
        for (a, b) in q.iter().zip(r) {
            let tolerance = 1e-6 * a.1.abs().max(b.1.abs()) + 1e-12;
            assert!(
                (a.1 - b.1).abs() <= tolerance,
                "{key:?} at {}: range query {} against remote read {}",
                a.0,
                a.1,
                b.1
            );
        }
    }
}

/// Remote reads Prometheus has answered, from its own `prometheus_http_requests_total`.
async fn remote_reads(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/read\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[sqlx::test]
async fn remote_read_stores_what_range_queries_store(pool: PgPool) {
    let days = 2;
    let sim_end = T0 + days * 86_400;
    let spec = ClusterSpec {
        workloads: 12,
        start: T0,
        end: sim_end,
        step: STEP,
        seed: 5,
    };
    let (_, prom) = TestPrometheus::simulated(&spec);
    let store = Store::from_pool(pool.clone());
    let s = settings(&prom.url, &prom.url, 700);
    // Stop short of the end first, so the second run is an incremental one from the marks.
    let (mid, end) = (T0 + 30 * 3_600, sim_end - STEP);
    let backfill = end - T0 + STEP;
    let q1 = scrape(&store, &s, 0, mid, backfill - (end - mid)).await;
    let r1 = scrape(&store, &s, 1, mid, backfill - (end - mid)).await;
    // Each job's first window asks for all 30 hours; its answer outgrows the 70,000-value budget, is
    // dropped and the window halved: more than one request per job (and the ownership call).
    assert!(r1.queries > 7, "{r1:?}");
    let q2 = scrape(&store, &s, 0, end - 3_600, backfill).await;
    let r2 = scrape(&store, &s, 1, end - 3_600, backfill).await;
    // A short steady-state window goes through range queries even for the remote-read source (whole
    // chunks would cost more there), and stores the same.
    let reads_before = remote_reads(&prom.url).await;
    let q3 = scrape(&store, &s, 0, end, backfill).await;
    let r3 = scrape(&store, &s, 1, end, backfill).await;
    assert_eq!(remote_reads(&prom.url).await, reads_before);
    // Many remote-read windows, so that their edges (and chunks reaching over them) were crossed.
    assert!(reads_before >= 15, "{reads_before} remote reads");
    let (query, remote) = (stored(&pool, "query").await, stored(&pool, "remote").await);
    assert_same(&query, &remote);
    assert!(q1.samples_written > 100_000, "{q1:?}");
    assert_eq!(r1.samples_written, q1.samples_written);
    assert_eq!(r2.samples_written, q2.samples_written);
    assert_eq!(r3.samples_written, q3.samples_written);
    assert!(r3.samples_written > 0);

    assert!(query.len() > 100, "{} series", query.len());
    let metrics: std::collections::BTreeSet<&str> = query.keys().map(|k| k.4.as_str()).collect();
    for m in [
        "cpu_usage",
        "cpu_usage_max",
        "memory_usage",
        "replicas",
        "cpu_request",
        "memory_limit",
        "restarts",
        "oom_kills",
        "cpu_throttled_ratio",
    ] {
        assert!(metrics.contains(m), "{m} missing from {metrics:?}");
    }

    // A re-scrape of the whole window through remote read adds nothing.
    let mut again = s.clone();
    again.sources.remove(0);
    sqlx::query(
        "delete from scrape_mark where cluster_id = (select id from cluster where name = 'remote')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let r4 = scrape(&store, &again, 0, end, backfill).await;
    assert_eq!(r4.samples_written, 0);
    assert_eq!(stored(&pool, "remote").await, remote);
}

#[sqlx::test]
async fn remote_read_faults_are_retried_and_lose_nothing(pool: PgPool) {
    let hours = 12;
    let spec = ClusterSpec {
        workloads: 4,
        start: T0,
        end: T0 + hours * 3_600,
        step: STEP,
        seed: 2,
    };
    let (_, prom) = TestPrometheus::simulated(&spec);
    let proxy = FaultProxy::start(
        &prom.url,
        vec![
            Fault::Http500,
            Fault::Truncated,
            Fault::Html502,
            Fault::Pass,
            Fault::Truncated,
        ],
    )
    .await;
    let store = Store::from_pool(pool.clone());
    let s = settings(&prom.url, &proxy.url, 10_000);
    let end = T0 + hours * 3_600 - STEP;
    let backfill = hours * 3_600;
    scrape(&store, &s, 0, end, backfill).await;
    let r = scrape(&store, &s, 1, end, backfill).await;
    assert!(r.samples_written > 0);
    assert!(
        proxy.requests.load(std::sync::atomic::Ordering::SeqCst) >= 5,
        "every fault was met"
    );
    assert_same(
        &stored(&pool, "query").await,
        &stored(&pool, "remote").await,
    );
}

#[test]
fn query_overrides_with_remote_read_are_refused_naming_the_key() {
    let err = Settings::from_toml(
        "[[sources]]\nname = \"a\"\nurl = \"http://127.0.0.1:9090\"\nread = \"remote_read\"\n[sources.queries]\ncpu_usage = \"up\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sources[0].queries"), "{err}");
    assert!(err.contains("query_range"), "{err}");
    let err = Settings::from_toml(
        "[[sources]]\nname = \"a\"\nurl = \"http://127.0.0.1:9090\"\nread = \"chunks\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("read"), "{err}");
}
