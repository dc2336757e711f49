//! The scraper against a real Prometheus backfilled with promtool.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use headroom::config::Settings;
use headroom::metrics::{Metrics, SourceLabels};
use headroom::scrape::client::ScrapeError;
use headroom::scrape::{RunOptions, SourceScraper};
use headroom::simulate::{Behaviour, Cluster, ClusterSpec, Container, Workload};
use headroom::store::Store;
use sqlx::PgPool;

use crate::prom::{Fault, FaultProxy, LOOKBACK_SECS, TestPrometheus};

/// 2024-01-01T00:00:00Z, a fixed origin so runs are reproducible.
pub const T0: i64 = 1_704_067_200;
pub const STEP: i64 = 60;

/// A small cluster in OpenMetrics: Deployment `api` (ReplicaSet api-6d4cf56db6, pods a and b, the second
/// one starting halfway), StatefulSet `db` (db-0, restarted by an OOM kill at hour 12), over `hours` hours.
fn fixture(hours: i64) -> String {
    let n = hours * 60;
    let mut s = String::new();
    let pods = [
        ("api-6d4cf56db6-aaaaa", "app", 0, n),
        ("api-6d4cf56db6-bbbbb", "app", n / 2, n),
        ("db-0", "db", 0, n),
    ];
    s.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for (pod, c, from, to) in pods {
        let mut total = 0.0;
        for i in from..to {
            total += 0.5 * STEP as f64; // half a core
            s.push_str(&format!(
                "container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"{pod}\",container=\"{c}\"}} {total} {}\n",
                T0 + i * STEP
            ));
        }
    }
    s.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for (k, (pod, c, from, to)) in pods.iter().enumerate() {
        for i in *from..*to {
            let v = 100_000_000.0 * (k + 1) as f64 + i as f64;
            s.push_str(&format!(
                "container_memory_working_set_bytes{{namespace=\"shop\",pod=\"{pod}\",container=\"{c}\"}} {v} {}\n",
                T0 + i * STEP
            ));
        }
    }
    s.push_str("# TYPE kube_pod_container_resource_requests gauge\n");
    for (pod, c, from, to) in pods {
        for (res, unit, v) in [("cpu", "core", 1.0), ("memory", "byte", 536_870_912.0)] {
            for i in from..to {
                s.push_str(&format!(
                    "kube_pod_container_resource_requests{{namespace=\"shop\",pod=\"{pod}\",container=\"{c}\",resource=\"{res}\",unit=\"{unit}\"}} {v} {}\n",
                    T0 + i * STEP
                ));
            }
        }
    }
    s.push_str("# TYPE kube_pod_owner gauge\n");
    for (pod, kind, name) in [
        ("api-6d4cf56db6-aaaaa", "ReplicaSet", "api-6d4cf56db6"),
        ("api-6d4cf56db6-bbbbb", "ReplicaSet", "api-6d4cf56db6"),
        ("db-0", "StatefulSet", "db"),
    ] {
        let (from, to) = pods
            .iter()
            .find(|p| p.0 == pod)
            .map(|p| (p.2, p.3))
            .unwrap();
        for i in from..to {
            s.push_str(&format!(
                "kube_pod_owner{{namespace=\"shop\",pod=\"{pod}\",owner_kind=\"{kind}\",owner_name=\"{name}\",owner_is_controller=\"true\"}} 1 {}\n",
                T0 + i * STEP
            ));
        }
    }
    s.push_str("# TYPE kube_replicaset_owner gauge\n");
    for i in 0..n {
        s.push_str(&format!(
            "kube_replicaset_owner{{namespace=\"shop\",replicaset=\"api-6d4cf56db6\",owner_kind=\"Deployment\",owner_name=\"api\"}} 1 {}\n",
            T0 + i * STEP
        ));
    }
    s.push_str("# TYPE kube_pod_container_status_restarts_total counter\n");
    for i in 0..n {
        let v = if i >= n / 2 { 1 } else { 0 };
        s.push_str(&format!(
            "kube_pod_container_status_restarts_total{{namespace=\"shop\",pod=\"db-0\",container=\"db\"}} {v} {}\n",
            T0 + i * STEP
        ));
    }
    s.push_str("# TYPE kube_pod_container_status_last_terminated_reason gauge\n");
    for i in n / 2..n {
        s.push_str(&format!(
            "kube_pod_container_status_last_terminated_reason{{namespace=\"shop\",pod=\"db-0\",container=\"db\",reason=\"OOMKilled\"}} 1 {}\n",
            T0 + i * STEP
        ));
    }
    s.push_str("# EOF\n");
    s
}

fn settings(url: &str) -> Settings {
    settings_with(url, 10_000)
}

fn settings_with(url: &str, max_points: u64) -> Settings {
    Settings::from_toml(&format!(
        "[scrape]\nstep_secs = 60\ntimeout_secs = 2\nmax_in_flight = 2\nmax_points_per_query = {max_points}\n[[sources]]\nname = \"test\"\nurl = \"{url}\"\n"
    ))
    .unwrap()
}

pub type ScrapeResult = Result<headroom::scrape::SourceReport, headroom::scrape::Error>;

async fn scrape(store: &Store, url: &str, end: i64, backfill: i64) -> ScrapeResult {
    scrape_with(store, settings(url), end, backfill).await
}

pub async fn scrape_with(store: &Store, s: Settings, end: i64, backfill: i64) -> ScrapeResult {
    let scraper =
        SourceScraper::new(&s.sources[0], &s.scrape, store.clone(), Metrics::new()).await?;
    scraper
        .run(RunOptions {
            end,
            backfill_secs: backfill,
            progress: false,
        })
        .await
}

async fn series_id(pool: &PgPool, workload: &str, kind: &str, metric: &str) -> i64 {
    sqlx::query_scalar(
        "select s.id from series s join container c on c.id = s.container_id join workload w on w.id = c.workload_id
         where w.name = $1 and w.kind = $2 and s.metric = $3",
    )
    .bind(workload)
    .bind(kind)
    .bind(metric)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("no series {workload}/{kind}/{metric}: {e}"))
}

async fn total_samples(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select coalesce(sum(n_samples), 0)::bigint from sample_chunk")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn scrape_stores_what_prometheus_holds_resolves_owners_and_adds_nothing_twice(pool: PgPool) {
    let prom = TestPrometheus::start(fixture(24).as_bytes());
    let store = Store::from_pool(pool.clone());
    let end = T0 + 24 * 3_600 - STEP;
    let report = scrape(&store, &prom.url, end, 24 * 3_600).await.unwrap();
    assert!(report.samples_written > 0);

    // Workloads and their controllers.
    let workloads: Vec<(String, String)> =
        sqlx::query_as("select kind, name from workload order by name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        workloads,
        vec![
            ("Deployment".into(), "api".into()),
            ("StatefulSet".into(), "db".into())
        ]
    );

    // Memory: every minute of the window is stored, the mean is per replica and replicas are counted.
    let mem = series_id(&pool, "api", "Deployment", "memory_usage").await;
    let points = store.read_samples(mem, T0, end + 1).await.unwrap();
    assert_eq!(points.len(), 24 * 60, "one sample per step");
    let replicas = series_id(&pool, "api", "Deployment", "replicas").await;
    let r = store.read_samples(replicas, T0, end + 1).await.unwrap();
    assert_eq!(r.first().unwrap().1, 1.0);
    assert_eq!(r.last().unwrap().1, 2.0);
    let last = points.last().unwrap();
    let i = (last.0 - T0) / STEP;
    let expected = (100_000_000.0 + i as f64 + 200_000_000.0 + i as f64) / 2.0;
    assert!(
        (last.1 - expected).abs() / expected < 1e-6,
        "{} vs {expected}",
        last.1
    );

    // CPU: half a core per replica once the rate window has filled.
    let cpu = series_id(&pool, "api", "Deployment", "cpu_usage").await;
    let c = store.read_samples(cpu, T0 + 3_600, end + 1).await.unwrap();
    // Prometheus' rate() under-reads the first minutes of a new pod; skip the 10 minutes after pod b starts.
    let b_start = T0 + 12 * 3_600;
    let off: Vec<_> = c
        .iter()
        .filter(|p| !(b_start..b_start + 600).contains(&p.0))
        .filter(|p| (p.1 - 0.5).abs() > 0.01)
        .collect();
    assert!(off.is_empty(), "{off:?}");

    // Requests and the OOM kill of db-0.
    let req = series_id(&pool, "db", "StatefulSet", "memory_request").await;
    assert_eq!(
        store.read_samples(req, T0, end + 1).await.unwrap()[0].1,
        536_870_912.0
    );
    let oom = series_id(&pool, "db", "StatefulSet", "oom_kills").await;
    let kills: f64 = store
        .read_samples(oom, T0, end + 1)
        .await
        .unwrap()
        .iter()
        .map(|p| p.1)
        .sum();
    assert_eq!(kills, 1.0);

    // The number of stored memory samples equals what Prometheus holds for the window.
    let held = prom_count(
        &prom.url,
        "count_over_time(container_memory_working_set_bytes{pod=\"db-0\"}[1d])",
        end,
    )
    .await;
    let db_mem = series_id(&pool, "db", "StatefulSet", "memory_usage").await;
    assert_eq!(
        store.count_samples(db_mem, T0, end + 1).await.unwrap() as i64,
        held
    );

    // A second scrape of the same window adds nothing.
    let before = total_samples(&pool).await;
    let again = scrape(&store, &prom.url, end, 24 * 3_600).await.unwrap();
    assert_eq!(again.samples_written, 0);
    assert_eq!(total_samples(&pool).await, before);
}

async fn prom_count(url: &str, query: &str, at: i64) -> i64 {
    prom_vector(url, query, at).await[0].1 as i64
}

#[sqlx::test]
async fn an_incremental_scrape_resumes_at_the_mark(pool: PgPool) {
    let prom = TestPrometheus::start(fixture(12).as_bytes());
    let store = Store::from_pool(pool.clone());
    let mid = T0 + 6 * 3_600;
    let end = T0 + 12 * 3_600 - STEP;
    scrape(&store, &prom.url, mid, 12 * 3_600).await.unwrap();
    let mem = series_id(&pool, "db", "StatefulSet", "memory_usage").await;
    let first = store.count_samples(mem, T0, end + 1).await.unwrap();
    let report = scrape(&store, &prom.url, end, 12 * 3_600).await.unwrap();
    let total = store.count_samples(mem, T0, end + 1).await.unwrap();
    assert_eq!(total, 12 * 60);
    assert_eq!(first + ((end - mid) / STEP) as usize, total);
    // Resuming queried only the new part.
    assert!(
        report.samples_received < 12 * 60 * 12,
        "{}",
        report.samples_received
    );
}

#[sqlx::test]
async fn faults_are_retried_counted_and_lose_nothing(pool: PgPool) {
    let prom = TestPrometheus::start(fixture(6).as_bytes());
    // Two scrapes through two proxies: the first meets the retryable faults, the second (resuming at the
    // marks) a window refused as too large. Apart, an unretryable answer cannot cancel the slow request
    // (requests of one window run together), whatever order the concurrent jobs send them in.
    let flaky = FaultProxy::start(
        &prom.url,
        vec![
            Fault::Http500,
            Fault::Html502,
            Fault::Truncated,
            Fault::Pass,
            Fault::Slow,
        ],
    )
    .await;
    let refusing = FaultProxy::start(&prom.url, vec![Fault::PrometheusError422]).await;
    let store = Store::from_pool(pool.clone());
    let end = T0 + 6 * 3_600 - STEP;
    let metrics = Metrics::new();
    for (url, until) in [(&flaky.url, T0 + 3 * 3_600 - STEP), (&refusing.url, end)] {
        let s = settings(url);
        let scraper = SourceScraper::new(
            &s.sources[0],
            &s.scrape,
            store.clone(),
            Arc::clone(&metrics),
        )
        .await
        .unwrap();
        scraper
            .run(RunOptions {
                end: until,
                backfill_secs: 6 * 3_600,
                progress: false,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        metrics.error_count("test", "http_5xx"),
        2,
        "{}",
        metrics.render()
    );
    assert!(
        metrics.error_count("test", "garbage") >= 1,
        "{}",
        metrics.render()
    );
    assert!(
        metrics.error_count("test", "timeout") >= 1,
        "{}",
        metrics.render()
    );
    // Prometheus refusing a window as too large makes the scraper halve it, not fail.
    assert!(
        metrics.error_count("test", "too_many_samples") >= 1,
        "{}",
        metrics.render()
    );

    // Everything arrived despite the faults: same as a clean scrape of the same Prometheus.
    let clean_pool = pool.clone();
    let mem = series_id(&clean_pool, "db", "StatefulSet", "memory_usage").await;
    assert_eq!(store.count_samples(mem, T0, end + 1).await.unwrap(), 6 * 60);
}

#[sqlx::test]
async fn a_range_answer_off_the_grid_it_was_asked_for_is_refused_by_name(pool: PgPool) {
    let prom = TestPrometheus::start(fixture(6).as_bytes());
    let proxy = FaultProxy::start(&prom.url, vec![Fault::OffGrid; 100]).await;
    let store = Store::from_pool(pool.clone());
    let s = settings(&proxy.url);
    let scraper = SourceScraper::new(&s.sources[0], &s.scrape, store.clone(), Metrics::new())
        .await
        .unwrap();
    let err = scraper
        .run(RunOptions {
            end: T0 + 6 * 3_600 - STEP,
            backfill_secs: 6 * 3_600,
            progress: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("off the query's grid (start "), "{err}");
    let stored: i64 = sqlx::query_scalar("select count(*) from sample_chunk")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing from a wrong answer is stored");
}

#[sqlx::test]
async fn prometheus_killed_mid_backfill_ends_complete_after_restart(pool: PgPool) {
    let mut prom = TestPrometheus::start(fixture(48).as_bytes());
    // The proxy holds every request after the 40th, so the kill lands in the middle of the backfill.
    let proxy = FaultProxy::start_gated(&prom.url, vec![], 40).await;
    let store = Store::from_pool(pool.clone());
    let end = T0 + 48 * 3_600 - STEP;
    let (url, store2) = (proxy.url.clone(), store.clone());
    // Small windows: the 48 hours take many requests, so the gate closes well before the end.
    let scrape_task = tokio::spawn(async move {
        scrape_with(&store2, settings_with(&url, 120), end, 48 * 3_600).await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while proxy.requests.load(std::sync::atomic::Ordering::SeqCst) < 41 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill never reached the gate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    prom.kill();
    proxy.release();
    let first = scrape_task.await.unwrap();
    assert!(
        first.is_err(),
        "the backfill cannot succeed with Prometheus gone"
    );
    let partial = total_samples(&pool).await;
    assert!(partial > 0, "what was fetched before the kill is stored");

    prom.restart();
    scrape(&store, &proxy.url, end, 48 * 3_600).await.unwrap();
    let mem = series_id(&pool, "db", "StatefulSet", "memory_usage").await;
    let pts = store.read_samples(mem, T0, end + 1).await.unwrap();
    assert_eq!(pts.len(), 48 * 60);
    let mut ts: Vec<i64> = pts.iter().map(|p| p.0).collect();
    ts.dedup();
    assert_eq!(ts.len(), 48 * 60, "no duplicates");
    let api = series_id(&pool, "api", "Deployment", "memory_usage").await;
    assert_eq!(
        store.count_samples(api, T0, end + 1).await.unwrap(),
        48 * 60
    );
}

/// Prometheus' answer to an instant query at `at`: every series' labels and value.
async fn prom_vector(url: &str, query: &str, at: i64) -> Vec<(serde_json::Value, f64)> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query), ("time", &at.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {v}"))
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

async fn series_of(pool: &PgPool, w: &Workload, container: &str, metric: &str) -> i64 {
    sqlx::query_scalar(
        "select s.id from series s join container c on c.id = s.container_id join workload w on w.id = c.workload_id
         where w.namespace = $1 and w.kind = $2 and w.name = $3 and c.name = $4 and s.metric = $5",
    )
    .bind(&w.namespace)
    .bind(w.kind.as_str())
    .bind(&w.name)
    .bind(container)
    .bind(metric)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("no series {}/{container}/{metric}: {e}", w.name))
}

/// Pods of `w` Prometheus shows at `t`: those with a sample in `[t - lookback, t]`.
fn visible_pods(cluster: &Cluster, w: &Workload, t: i64) -> usize {
    w.pods
        .iter()
        .filter(|p| {
            cluster
                .sample_times(p)
                .any(|s| s <= t && s >= t - LOOKBACK_SECS)
        })
        .count()
}

#[sqlx::test]
async fn a_simulated_cluster_comes_out_with_its_true_workloads_replicas_and_oom_kills(
    pool: PgPool,
) {
    let days = 2;
    let sim_end = T0 + days * 86_400;
    let spec = ClusterSpec {
        workloads: 11,
        start: T0,
        end: sim_end,
        step: STEP,
        seed: 3,
    };
    let (cluster, prom) = TestPrometheus::simulated(&spec);
    let store = Store::from_pool(pool.clone());
    let end = sim_end - STEP;
    let report = scrape(&store, &prom.url, end, days * 86_400).await.unwrap();
    assert!(report.samples_written > 0);

    // Workloads and their controllers: exactly the simulator's, with the same containers.
    let got: BTreeSet<(String, String, String, String)> = sqlx::query_as(
        "select w.namespace, w.kind, w.name, c.name from workload w join container c on c.workload_id = w.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let want: BTreeSet<(String, String, String, String)> = cluster
        .workloads
        .iter()
        .flat_map(|w| {
            w.containers.iter().map(|c| {
                (
                    w.namespace.clone(),
                    w.kind.as_str().to_string(),
                    w.name.clone(),
                    c.clone(),
                )
            })
        })
        .collect();
    assert_eq!(got, want);

    // Sample counts equal what Prometheus holds, for workloads whose pods live through the window.
    let whole: Vec<&Workload> = cluster
        .workloads
        .iter()
        .filter(|w| w.pods.iter().all(|p| p.start <= T0 && p.end >= sim_end))
        .collect();
    assert!(
        whole.len() >= 3,
        "{} workloads live throughout",
        whole.len()
    );
    for w in &whole {
        let (pod, c) = (&w.pods[0].name, &w.pods[0].containers[0].name);
        for (metric, family, extra) in [
            ("memory_usage", "container_memory_working_set_bytes", ""),
            (
                "memory_request",
                "kube_pod_container_resource_requests",
                ",resource=\"memory\"",
            ),
        ] {
            let q = format!(
                "count_over_time({family}{{namespace=\"{}\",pod=\"{pod}\",container=\"{c}\"{extra}}}[{}s])",
                w.namespace,
                days * 86_400
            );
            let held = prom_vector(&prom.url, &q, end).await;
            if metric == "memory_request" && held.is_empty() {
                continue; // this container has no memory request
            }
            assert_eq!(held.len(), 1, "{q}");
            let id = series_of(&pool, w, c, metric).await;
            let stored = store.count_samples(id, T0 - STEP, end + 1).await.unwrap();
            assert_eq!(stored as f64, held[0].1, "{} {metric}", w.name);
        }
    }

    // HPA: the replica count at every step is the number of pods Prometheus shows then, and it moves.
    let hpa = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::Autoscaled)
        .unwrap();
    let id = series_of(&pool, hpa, &hpa.containers[0], "replicas").await;
    let replicas = store.read_samples(id, T0, end + 1).await.unwrap();
    assert_eq!(replicas.len() as i64, days * 86_400 / STEP);
    let wrong: Vec<_> = replicas
        .iter()
        .filter(|&&(t, v)| v != visible_pods(&cluster, hpa, t) as f64)
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    let agree = replicas
        .iter()
        .filter(|&&(t, v)| v == f64::from(cluster.replicas_at(hpa, t)))
        .count();
    assert!(
        agree * 10 >= replicas.len() * 9,
        "only {agree} of {} steps match the HPA",
        replicas.len()
    );
    let distinct: BTreeSet<i64> = replicas.iter().map(|p| p.1 as i64).collect();
    assert!(distinct.len() >= 3, "{distinct:?}");

    // OOM kills: every kill the restart counters show between a pod's first and last sample.
    let mut truth_kills = 0;
    for w in &cluster.workloads {
        for p in &w.pods {
            let times: Vec<i64> = cluster.sample_times(p).filter(|&t| t <= end).collect();
            let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
                continue;
            };
            for c in &p.containers {
                truth_kills += cluster.restarts_at(c, last) - cluster.restarts_at(c, first);
            }
        }
    }
    assert!(truth_kills >= 1, "the leak kills within two days");
    let stored_kills = |metric: &'static str| {
        let pool = pool.clone();
        async move {
            let ids: Vec<i64> = sqlx::query_scalar("select id from series where metric = $1")
                .bind(metric)
                .fetch_all(&pool)
                .await
                .unwrap();
            let all = store_of(&pool)
                .read_samples_many(&ids, T0 - STEP, end + 1)
                .await
                .unwrap();
            all.values().flatten().map(|p| p.1).sum::<f64>()
        }
    };
    assert_eq!(stored_kills("oom_kills").await, truth_kills as f64);
    assert_eq!(stored_kills("restarts").await, truth_kills as f64);

    // A second scrape of the same window adds nothing.
    let before = total_samples(&pool).await;
    let again = scrape(&store, &prom.url, end, days * 86_400).await.unwrap();
    assert_eq!(again.samples_written, 0);
    assert_eq!(total_samples(&pool).await, before);
}

fn store_of(pool: &PgPool) -> Store {
    Store::from_pool(pool.clone())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[sqlx::test]
async fn federate_reads_the_current_requests_limits_and_owners_of_a_live_cluster(pool: PgPool) {
    // History ending a few minutes ahead, so /federate (which only returns series with a recent sample)
    // still sees every live pod however long the backfill takes.
    let now = now_secs().div_euclid(STEP) * STEP;
    let spec = ClusterSpec {
        workloads: 11,
        start: now - 2 * 3_600,
        end: now + 10 * 60,
        step: STEP,
        seed: 5,
    };
    let (cluster, prom) = TestPrometheus::simulated(&spec);
    let store = Store::from_pool(pool.clone());
    let s = settings(&prom.url);
    let scraper = SourceScraper::new(&s.sources[0], &s.scrape, store.clone(), Metrics::new())
        .await
        .unwrap();
    let report = scraper.run_live().await.unwrap();
    assert!(report.samples_written > 0, "{report:?}");

    // Every workload with a request or limit comes out, under its true controller.
    let got: BTreeSet<(String, String, String)> =
        sqlx::query_as("select namespace, kind, name from workload")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let want: BTreeSet<(String, String, String)> = cluster
        .workloads
        .iter()
        .map(|w| {
            (
                w.namespace.clone(),
                w.kind.as_str().to_string(),
                w.name.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // Each stored value is the largest request (limit) over the pods that had a sample at its time.
    let mut checked = 0;
    for w in &cluster.workloads {
        for (i, c) in w.containers.iter().enumerate() {
            for (metric, of) in [
                (
                    "cpu_request",
                    (|c| c.cpu_request) as fn(&Container) -> Option<f64>,
                ),
                ("memory_request", |c| c.memory_request),
                ("cpu_limit", |c| c.cpu_limit),
                ("memory_limit", |c| c.memory_limit),
            ] {
                let truth_at = |t: i64| {
                    w.pods
                        .iter()
                        .filter(|p| cluster.sample_times(p).any(|s| s == t))
                        .filter_map(|p| of(&p.containers[i]))
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                };
                let id: Option<i64> = sqlx::query_scalar(
                    "select s.id from series s join container c on c.id = s.container_id
                     join workload w on w.id = c.workload_id
                     where w.namespace = $1 and w.name = $2 and c.name = $3 and s.metric = $4",
                )
                .bind(&w.namespace)
                .bind(&w.name)
                .bind(c)
                .bind(metric)
                .fetch_optional(&pool)
                .await
                .unwrap();
                let Some(id) = id else {
                    assert!(
                        truth_at(now - STEP).is_none() && truth_at(now).is_none(),
                        "{}/{c} {metric} missing",
                        w.name
                    );
                    continue;
                };
                let pts = store.read_samples(id, now - 600, now + 600).await.unwrap();
                assert!(!pts.is_empty());
                for (t, v) in pts {
                    assert!(t <= now && t > now - 3 * LOOKBACK_SECS, "{t} vs now {now}");
                    let want = truth_at(t).unwrap_or_else(|| panic!("{} no pod at {t}", w.name));
                    assert_eq!(v as f32, want as f32, "{}/{c} {metric} at {t}", w.name);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 30, "{checked} values checked");

    // Reading the live state again within the same step stores nothing new.
    let before = total_samples(&pool).await;
    let again = scraper.run_live().await.unwrap();
    assert_eq!(
        total_samples(&pool).await - before,
        again.samples_written as i64
    );
    if now_secs().div_euclid(STEP) * STEP == now {
        assert_eq!(again.samples_written, 0);
    }
}

#[sqlx::test]
async fn several_sources_scrape_at_once_each_with_its_own_auth(pool: PgPool) {
    let prom = TestPrometheus::start(fixture(6).as_bytes());
    let bearer =
        FaultProxy::start_requiring(&prom.url, &[("authorization", "Bearer s3cret")]).await;
    let basic = FaultProxy::start_requiring(
        &prom.url,
        &[
            ("authorization", "Basic c2NyYXBlcjpwYTU1"),
            ("x-scope-orgid", "team-a"),
        ],
    )
    .await;
    let s = Settings::from_toml(&format!(
        r#"[scrape]
step_secs = 60
timeout_secs = 2
max_in_flight = 2
[[sources]]
name = "east"
url = "{east}"
bearer_token = "s3cret"
[[sources]]
name = "west"
url = "{west}"
headers = {{ "X-Scope-OrgID" = "team-a" }}
[sources.basic_auth]
username = "scraper"
password = "pa55"
[[sources]]
name = "stale-token"
url = "{east}"
bearer_token = "revoked"
"#,
        east = bearer.url,
        west = basic.url
    ))
    .unwrap();
    let store = Store::from_pool(pool.clone());
    let metrics = Metrics::new();
    let end = T0 + 6 * 3_600 - STEP;
    let runs = s.sources.iter().map(|src| {
        let (store, metrics, scrape) = (store.clone(), Arc::clone(&metrics), s.scrape.clone());
        async move {
            let scraper = SourceScraper::new(src, &scrape, store, metrics).await?;
            scraper
                .run(RunOptions {
                    end,
                    backfill_secs: 6 * 3_600,
                    progress: false,
                })
                .await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(results[1].is_ok(), "{:?}", results[1]);
    match &results[2] {
        Err(headroom::scrape::Error::Source(ScrapeError::Http { status: 401, .. })) => {}
        other => panic!("a revoked token must fail with 401, got {other:?}"),
    }
    // A 401 is counted and not retried, and only the revoked source was rejected.
    assert!(bearer.rejected.load(Ordering::SeqCst) >= 1);
    assert!(metrics.error_count("stale-token", "http_4xx") >= 1);
    let retries = metrics
        .scrape_retries
        .get_or_create(&SourceLabels {
            source: "stale-token".into(),
        })
        .get();
    assert_eq!(retries, 0);
    assert_eq!(basic.rejected.load(Ordering::SeqCst), 0);
    assert_eq!(metrics.error_count("east", "http_4xx"), 0);

    // Each cluster holds its own workloads and all of their history.
    let per_cluster: Vec<(String, String, i64)> = sqlx::query_as(
        "select c.name, w.name, count(*) from workload w join cluster c on c.id = w.cluster_id
         group by 1, 2 order by 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let names: Vec<(&str, &str)> = per_cluster
        .iter()
        .map(|(c, w, _)| (c.as_str(), w.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("east", "api"),
            ("east", "db"),
            ("west", "api"),
            ("west", "db")
        ]
    );
    for cluster in ["east", "west"] {
        let id: i64 = sqlx::query_scalar(
            "select s.id from series s join container ct on ct.id = s.container_id
             join workload w on w.id = ct.workload_id join cluster c on c.id = w.cluster_id
             where c.name = $1 and w.name = 'db' and s.metric = 'memory_usage'",
        )
        .bind(cluster)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            store.count_samples(id, T0, end + 1).await.unwrap(),
            6 * 60,
            "{cluster}"
        );
    }
}
