//! The assessment over history stored in Postgres: forecasts, exhaustion, recommendations, summaries.

use headroom::assess::{self, AssessOptions};
use headroom::config::Settings;
use headroom::seed;
use headroom::simulate::{Behaviour, Cluster, ClusterSpec};
use headroom::store::Store;
use sqlx::PgPool;

pub const END: i64 = 1_704_067_200 + 14 * 86_400;

pub fn spec_until(workloads: usize, days: i64, end: i64) -> ClusterSpec {
    ClusterSpec {
        workloads,
        start: end - days * 86_400,
        end,
        step: 300,
        seed: 7,
    }
}

pub async fn seeded(pool: &PgPool, workloads: usize, days: i64) -> (Store, Cluster) {
    seeded_until(pool, workloads, days, END).await
}

/// A simulated cluster written straight into the store, its history ending at `end`.
pub async fn seeded_until(
    pool: &PgPool,
    workloads: usize,
    days: i64,
    end: i64,
) -> (Store, Cluster) {
    let store = Store::from_pool(pool.clone());
    let s = spec_until(workloads, days, end);
    seed::seed(&store, "sim", &s, 50).await.unwrap();
    (store, Cluster::plan(&s).unwrap())
}

fn options() -> AssessOptions {
    AssessOptions::from_settings(&Settings::from_toml("").unwrap()).unwrap()
}

async fn workload_id(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("select id from workload where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn assessment_forecasts_every_container_and_flags_the_leak_and_the_waste(pool: PgPool) {
    let (store, cluster) = seeded(&pool, 11, 10).await;
    let report = assess::run(&store, &options(), END).await.unwrap();
    let containers: i64 = sqlx::query_scalar("select count(*) from container")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(report.containers as i64, containers);
    assert!(report.forecasts >= containers as u64, "{report:?}");

    // Every workload has a summary.
    let summaries: i64 = sqlx::query_scalar("select count(*) from workload_summary")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summaries, cluster.workloads.len() as i64);

    // The leaking service reaches its memory limit: already over or expected within the horizon.
    let leak = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::MemoryLeak)
        .unwrap();
    let id = workload_id(&pool, &leak.name).await;
    let (over, eta): (bool, Option<f64>) = sqlx::query_as(
        "select already_over, extract(epoch from earliest_eta)::float8 from workload_summary where workload_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(over || eta.is_some(), "the leak is not flagged");
    let statuses: Vec<String> = sqlx::query_scalar(
        "select e.status from exhaustion e join series s on s.id = e.series_id join container c on c.id = s.container_id
         where c.workload_id = $1 and s.metric = 'memory_usage_max' and e.threshold_kind = 'limit'",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        statuses.iter().any(|s| s != "not_within_horizon"),
        "{statuses:?}"
    );

    // The over-provisioned one gets a smaller CPU request and a saving.
    let fat = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::OverProvisioned)
        .unwrap();
    let id = workload_id(&pool, &fat.name).await;
    let (request, current, saving): (Option<f64>, Option<f64>, f64) = sqlx::query_as(
        "select r.request, r.current_request, r.saving_money from recommendation r join container c on c.id = r.container_id
         where c.workload_id = $1 and r.resource = 'cpu' order by c.id limit 1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        request.unwrap() < current.unwrap(),
        "{request:?} vs {current:?}"
    );
    assert!(saving > 0.0);

    // A steady service is not at risk.
    let steady = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::Steady)
        .unwrap();
    let id = workload_id(&pool, &steady.name).await;
    let over: bool =
        sqlx::query_scalar("select already_over from workload_summary where workload_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!over);
}

#[sqlx::test]
async fn forecasts_are_kept_not_overwritten(pool: PgPool) {
    let (store, _) = seeded(&pool, 3, 5).await;
    assess::run(&store, &options(), END - 3_600).await.unwrap();
    assess::run(&store, &options(), END).await.unwrap();
    let per_series: Vec<i64> =
        sqlx::query_scalar("select count(*) from forecast group by series_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!per_series.is_empty());
    assert!(per_series.iter().all(|&n| n == 2), "{per_series:?}");
}

#[sqlx::test]
async fn policy_rules_choose_the_policy_per_namespace_or_workload(pool: PgPool) {
    let (store, cluster) = seeded(&pool, 6, 5).await;
    let first = &cluster.workloads[0];
    let settings = Settings::from_toml(&format!(
        "[assess]\npolicy_rules = [{{ match = \"{}/{}\", policy = \"cautious\" }}, {{ match = \"*\", policy = \"aggressive\" }}]\n",
        first.namespace, first.name
    ))
    .unwrap();
    assess::run(
        &store,
        &AssessOptions::from_settings(&settings).unwrap(),
        END,
    )
    .await
    .unwrap();
    let policies: Vec<(String, String)> = sqlx::query_as(
        "select distinct w.name, r.policy from recommendation r join container c on c.id = r.container_id
         join workload w on w.id = c.workload_id order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (name, policy) in policies {
        let want = if name == first.name {
            "cautious"
        } else {
            "aggressive"
        };
        assert_eq!(policy, want, "{name}");
    }
}
