//! Rollups and retention against a real Postgres: partitions dropped whole, rollups equal to the hourly
//! statistics of the raw samples, nothing lost across the raw/rollup boundary, idempotent passes.

use std::collections::BTreeMap;

use headroom::store::{ContainerKey, HOUR_SECS, HistoryStat, SeriesSelection, Store, WorkloadKey};
use sqlx::PgPool;

const DAY: i64 = 86_400;
/// 2023-11-14 00:00:00 UTC, a day boundary.
const D0: i64 = 1_699_920_000;

async fn series(store: &Store, n: usize) -> Vec<i64> {
    let cluster = store.upsert_cluster("retention").await.unwrap();
    let keys: Vec<ContainerKey> = (0..n)
        .map(|i| ContainerKey {
            workload: WorkloadKey {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: format!("api-{i}"),
            },
            container: "app".into(),
        })
        .collect();
    let containers = store.upsert_containers(cluster, &keys, D0).await.unwrap();
    let items: Vec<(i64, &str, &str)> = containers
        .iter()
        .map(|&c| (c, "memory_usage", "bytes"))
        .collect();
    store.upsert_series(&items).await.unwrap()
}

/// `days` of samples from D0 at an irregular step (45 to 104 s) with a two-hour gap on the second day;
/// values are multiples of 1/8, exact in the stored 32-bit floats.
fn history(seed: i64, days: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut t = D0 + seed;
    let mut i = 0i64;
    while t < D0 + days * DAY {
        let gap = (D0 + DAY + 5 * HOUR_SECS..D0 + DAY + 7 * HOUR_SECS).contains(&t);
        if !gap {
            let wave = ((i * 7 + seed * 13) % 97) as f64 / 8.0;
            out.push((t, 100.0 + seed as f64 + wave));
        }
        t += 45 + (i * 31 + seed) % 60;
        i += 1;
    }
    out
}

/// `n` series with `days` of history each, written to the store; returns the ids and what was written.
async fn stored_history(
    store: &Store,
    n: usize,
    days: i64,
) -> (Vec<i64>, Vec<(i64, Vec<(i64, f64)>)>) {
    let ids = series(store, n).await;
    let data: Vec<(i64, Vec<(i64, f64)>)> =
        ids.iter().map(|&id| (id, history(id % 50, days))).collect();
    store.write_samples(&data).await.unwrap();
    (ids, data)
}

async fn raw_partitions(store: &Store) -> Vec<String> {
    let parts = store.partitions("sample_chunk").await.unwrap();
    parts.into_iter().map(|p| p.name).collect()
}

/// The hourly statistics computed here, independently of the store: hour -> (mean, max, p95, count).
fn expected_hours(points: &[(i64, f64)]) -> BTreeMap<i64, (f64, f64, f64, u32)> {
    let mut by_hour: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for &(t, v) in points {
        by_hour
            .entry(t - t.rem_euclid(HOUR_SECS))
            .or_default()
            .push(v);
    }
    by_hour
        .into_iter()
        .map(|(h, mut v)| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let n = v.len();
            let pos = 0.95 * (n as f64 - 1.0);
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let p95 = v[lo] + (v[hi] - v[lo]) * (pos - lo as f64);
            let mean = v.iter().sum::<f64>() / n as f64;
            (h, (mean, v[n - 1], p95, n as u32))
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 1e-6
}

async fn table_digest(pool: &PgPool, table: &str) -> (i64, String) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select count(*), coalesce(md5(string_agg(series_id::text || chunk_start::text || md5(data), ',' \
         order by series_id, chunk_start)), '') from {table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn rollups_equal_the_hourly_stats_of_the_raw_data(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (ids, data) = stored_history(&store, 3, 9).await;

    // Nine days cross the boundary of a 7-day rollup chunk.
    let stats = store
        .rollup(SeriesSelection::All, D0, D0 + 9 * DAY)
        .await
        .unwrap();
    assert_eq!(stats.series, 3);
    let rollups = store.read_rollups(&ids, D0, D0 + 9 * DAY).await.unwrap();
    let mut hours = 0;
    for (id, points) in &data {
        let expected = expected_hours(points);
        let got = &rollups[id];
        assert_eq!(
            got.len(),
            expected.len(),
            "series {id}: one point per hour with samples"
        );
        for r in got {
            let (mean, max, p95, count) = expected[&r.hour];
            assert_eq!(r.count, count, "series {id} hour {}", r.hour);
            assert!(close(r.mean, mean), "mean {} vs {mean}", r.mean);
            assert!(close(r.max, max), "max {} vs {max}", r.max);
            assert!(close(r.p95, p95), "p95 {} vs {p95}", r.p95);
        }
        hours += got.len() as u64;
    }
    assert_eq!(stats.hours_written, hours);
    // The two-hour gap has no rollup points rather than zeros.
    assert!(
        !rollups[&ids[0]]
            .iter()
            .any(|r| r.hour == D0 + DAY + 5 * HOUR_SECS)
    );

    let again = store
        .rollup(SeriesSelection::Ids(&ids), D0, D0 + 9 * DAY)
        .await
        .unwrap();
    assert_eq!((again.hours_written, again.chunks_written), (0, 0));
}

#[sqlx::test]
async fn a_changed_raw_sample_rewrites_only_its_hour(pool: PgPool) {
    let store = Store::from_pool(pool);
    let id = series(&store, 1).await[0];
    let points = history(0, 1);
    store.write_samples(&[(id, points.clone())]).await.unwrap();
    store
        .rollup(SeriesSelection::Ids(&[id]), D0, D0 + DAY)
        .await
        .unwrap();
    let (t, _) = points[points.len() / 2];
    store
        .write_samples(&[(id, vec![(t, 10_000.0)])])
        .await
        .unwrap();
    let stats = store
        .rollup(SeriesSelection::Ids(&[id]), D0, D0 + DAY)
        .await
        .unwrap();
    assert_eq!((stats.hours_written, stats.chunks_written), (1, 1));
    let hour = t - t.rem_euclid(HOUR_SECS);
    let rollups = store.read_rollups(&[id], hour, hour + 1).await.unwrap();
    assert_eq!(rollups[&id].len(), 1);
    assert_eq!(rollups[&id][0].max, 10_000.0);
}

#[sqlx::test]
async fn retention_drops_old_raw_partitions_whole_after_rolling_them_up(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (ids, data) = stored_history(&store, 2, 5).await;
    let before = raw_partitions(&store).await;
    assert_eq!(before.len(), 5);
    let kept_before = store
        .read_samples_many(&ids, D0 + 3 * DAY, D0 + 5 * DAY)
        .await
        .unwrap();

    // Noon of day 5 with two days of raw history: days 0, 1 and 2 are wholly older than the window.
    let now = D0 + 5 * DAY + 12 * HOUR_SECS;
    let report = store.apply_retention(now, 2, 400).await.unwrap();
    assert_eq!(report.raw_partitions_dropped, before[..3].to_vec());
    assert!(report.rollup_partitions_dropped.is_empty());
    assert_eq!(report.rolled_up.series, 2);
    let after = raw_partitions(&store).await;
    assert_eq!(after, before[3..].to_vec());
    // Dropped tables are gone from the catalog, not emptied.
    for name in &before[..3] {
        let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(exists, None, "{name}");
    }
    assert!(
        store
            .read_samples_many(&ids, D0, D0 + 3 * DAY)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .read_samples_many(&ids, D0 + 3 * DAY, D0 + 5 * DAY)
            .await
            .unwrap(),
        kept_before
    );
    // The dropped days live on as rollups.
    let rollups = store.read_rollups(&ids, D0, D0 + 3 * DAY).await.unwrap();
    for (id, points) in &data {
        let old: Vec<(i64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0 < D0 + 3 * DAY)
            .collect();
        assert_eq!(rollups[id].len(), expected_hours(&old).len());
    }

    // A late sample for a dropped day still finds a partition to land in.
    store
        .write_samples(&[(ids[0], vec![(D0 + 60, 1.0)])])
        .await
        .unwrap();
    assert_eq!(
        store
            .read_samples(ids[0], D0, D0 + DAY)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[sqlx::test]
async fn running_retention_twice_is_a_no_op(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    stored_history(&store, 2, 4).await;
    let now = D0 + 4 * DAY;
    let first = store.apply_retention(now, 1, 400).await.unwrap();
    assert_eq!(first.raw_partitions_dropped.len(), 3);
    let raw = table_digest(&pool, "sample_chunk").await;
    let rollups = table_digest(&pool, "rollup_chunk").await;
    assert!(rollups.0 > 0);

    let second = store.apply_retention(now, 1, 400).await.unwrap();
    assert_eq!(second, Default::default());
    assert_eq!(table_digest(&pool, "sample_chunk").await, raw);
    assert_eq!(table_digest(&pool, "rollup_chunk").await, rollups);
}

#[sqlx::test]
async fn rollup_partitions_older_than_their_window_are_dropped_whole(pool: PgPool) {
    let store = Store::from_pool(pool);
    let id = series(&store, 1).await[0];
    store.write_samples(&[(id, history(0, 2))]).await.unwrap();
    store
        .rollup(SeriesSelection::All, D0, D0 + 2 * DAY)
        .await
        .unwrap();
    let parts = store.partitions("rollup_chunk").await.unwrap();
    assert_eq!(parts.len(), 1);
    let month_end = parts[0].hi;

    // A chunk starting on the month's last day reaches 7 days past it: a second short of that plus the
    // 10-day window, the month is kept; at that instant it is dropped.
    let keep = store
        .apply_retention(month_end + 17 * DAY - 1, 1, 10)
        .await
        .unwrap();
    assert_eq!(keep.raw_partitions_dropped.len(), 2);
    assert!(keep.rollup_partitions_dropped.is_empty());
    let drop = store
        .apply_retention(month_end + 17 * DAY, 1, 10)
        .await
        .unwrap();
    assert_eq!(drop.rollup_partitions_dropped, vec![parts[0].name.clone()]);
    assert!(store.partitions("rollup_chunk").await.unwrap().is_empty());
    assert!(
        store
            .read_rollups(&[id], D0, D0 + 2 * DAY)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test]
async fn history_loses_nothing_across_the_retention_boundary(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (ids, data) = stored_history(&store, 2, 4).await;
    let (from, to) = (D0, D0 + 4 * DAY);
    store.apply_retention(to, 2, 400).await.unwrap();
    let boundary = D0 + 2 * DAY;

    // Fine reads: hourly peaks where raw samples were dropped, every raw sample after.
    let fine = store
        .read_history(&ids, from, to, 100_000, HistoryStat::Max)
        .await
        .unwrap();
    for (id, points) in &data {
        let old: Vec<(i64, f64)> = points.iter().copied().filter(|p| p.0 < boundary).collect();
        let mut expected: Vec<(i64, f64)> = expected_hours(&old)
            .into_iter()
            .map(|(h, (_, max, _, _))| (h, max))
            .collect();
        expected.extend(points.iter().copied().filter(|p| p.0 >= boundary));
        assert_eq!(fine[id], expected, "series {id}");
    }

    // Coarse reads (6-hour points) give the same answer as bucketing every raw sample ever written.
    for stat in [HistoryStat::Mean, HistoryStat::Max] {
        let coarse = store.read_history(&ids, from, to, 16, stat).await.unwrap();
        for (id, points) in &data {
            let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for &(t, v) in points {
                buckets
                    .entry(t - (t - from).rem_euclid(6 * HOUR_SECS))
                    .or_default()
                    .push(v);
            }
            let got = &coarse[id];
            assert_eq!(got.len(), buckets.len(), "{stat:?}");
            for ((t, v), (bt, values)) in got.iter().zip(&buckets) {
                assert_eq!(t, bt);
                let want = match stat {
                    HistoryStat::Mean => values.iter().sum::<f64>() / values.len() as f64,
                    HistoryStat::Max => values.iter().copied().fold(f64::MIN, f64::max),
                };
                assert!(close(*v, want), "{stat:?} at {t}: {v} vs {want}");
            }
        }
    }
}

#[sqlx::test]
async fn pending_rollups_stop_at_the_scrape_high_water_mark(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (ids, _) = stored_history(&store, 2, 2).await;
    let cluster = store.upsert_cluster("retention").await.unwrap();
    let scraped = D0 + DAY + 90 * 60;
    store
        .set_scrape_mark(cluster, "memory_usage", scraped)
        .await
        .unwrap();

    let first = store.rollup_pending(D0 + 2 * DAY).await.unwrap();
    assert_eq!(first.series, 2);
    assert_eq!(
        store.rollup_mark().await.unwrap(),
        Some(D0 + DAY + HOUR_SECS)
    );
    let rollups = store.read_rollups(&ids, D0, D0 + 2 * DAY).await.unwrap();
    let last = rollups[&ids[0]].last().unwrap().hour;
    assert_eq!(last, D0 + DAY);
    assert_eq!(
        store.rollup_pending(D0 + 2 * DAY).await.unwrap(),
        Default::default()
    );

    // Coarse history reads rollups before the mark and raw samples after it: same answer as raw alone.
    let coarse = store
        .read_history(&ids, D0, D0 + 2 * DAY, 8, HistoryStat::Max)
        .await
        .unwrap();
    let from_raw = store
        .read_samples_many(&ids, D0, D0 + 2 * DAY)
        .await
        .unwrap();
    for id in &ids {
        let mut peaks: BTreeMap<i64, f64> = BTreeMap::new();
        for &(t, v) in &from_raw[id] {
            let p = peaks
                .entry(t - (t - D0).rem_euclid(6 * HOUR_SECS))
                .or_insert(v);
            *p = p.max(v);
        }
        assert_eq!(coarse[id], peaks.into_iter().collect::<Vec<_>>());
    }
}

#[sqlx::test]
async fn the_retention_command_drops_old_days_once(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    stored_history(&store, 2, 4).await;
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    let base = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    let now = (D0 + 4 * DAY).to_string();
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["retention", "--now", &now])
            .env("HEADROOM_DATABASE__URL", &url)
            .env("HEADROOM_RETENTION__RAW_DAYS", "1")
            .output()
    };

    let first = run().await.unwrap();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        out.contains("dropped 3 raw partitions older than 1 days"),
        "{out}"
    );
    assert!(
        out.contains(&format!("rollups complete before {now}")),
        "{out}"
    );
    assert_eq!(raw_partitions(&store).await, vec!["sample_chunk_20231117"]);

    let second = run().await.unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{out}");
    assert!(
        out.contains("rolled up 0 hours of 0 series (0 chunks)"),
        "{out}"
    );
    assert!(out.contains("dropped 0 raw partitions"), "{out}");
}

/// (rows computed at `at`, all rows) of one results table.
async fn results_at(pool: &PgPool, table: &str, at: i64) -> (i64, i64) {
    // The table name is one of three literals of the test.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select count(*) filter (where computed_at = to_timestamp($1)), count(*) from {table}"
    )))
    .bind(at as f64)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn old_results_are_deleted_but_the_newest_of_each_is_kept(pool: PgPool) {
    use headroom::assess::{self, AssessOptions};
    let end = crate::assess::END;
    let (store, _) = crate::assess::seeded(&pool, 4, 8).await;
    let opts =
        AssessOptions::from_settings(&headroom::config::Settings::from_toml("").unwrap()).unwrap();
    let (t1, t2) = (end, end + DAY);
    assess::run(&store, &opts, t1).await.unwrap();
    assess::run(&store, &opts, t2).await.unwrap();
    let tables = ["forecast", "exhaustion", "recommendation"];
    let mut before = Vec::new();
    for table in tables {
        let (at_t1, all) = results_at(&pool, table, t1).await;
        let (at_t2, _) = results_at(&pool, table, t2).await;
        assert!(at_t1 > 0 && at_t2 > 0, "{table}: {at_t1} {at_t2}");
        assert_eq!(all, at_t1 + at_t2, "{table}");
        before.push((at_t1, at_t2));
    }

    // Within the window: nothing goes.
    let none = store.prune_results(t2, 2).await.unwrap();
    assert_eq!(none, Default::default());

    // The first run is past the window and superseded: deleted; the second is newer than the cutoff.
    // No workload detail shows superseded results, so the detail caches hear nothing of it.
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen("headroom_detail").await.unwrap();
    let pruned = store.prune_results(t2 + DAY, 1).await.unwrap();
    sqlx::query("select pg_notify('headroom_detail', 'marker')")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "marker");
    assert_eq!(
        (pruned.forecasts, pruned.exhaustions, pruned.recommendations),
        (before[0].0 as u64, before[1].0 as u64, before[2].0 as u64)
    );
    for (table, (_, at_t2)) in tables.iter().zip(&before) {
        assert_eq!(results_at(&pool, table, t1).await, (0, *at_t2), "{table}");
    }

    // Far past the window, the newest results are still the current ones: kept, and a rerun deletes nothing.
    assert_eq!(
        store.prune_results(t2 + 400 * DAY, 1).await.unwrap(),
        Default::default()
    );
    for (table, (_, at_t2)) in tables.iter().zip(&before) {
        assert_eq!(
            results_at(&pool, table, t2).await,
            (*at_t2, *at_t2),
            "{table}"
        );
    }
    // Any other delete of results still empties the caches.
    sqlx::query("delete from forecast where id = (select min(id) from forecast)")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "*");
    // The API's readers still find every container's recommendation.
    let recs = store
        .current_recommendations(None, f64::NEG_INFINITY, 1_000_000, 0)
        .await
        .unwrap();
    assert_eq!(recs.len() as i64, before[2].1);
}
