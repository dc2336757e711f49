use headroom::store::{ContainerKey, Store, WorkloadKey};
use sqlx::PgPool;

fn key(ns: &str, name: &str, container: &str) -> ContainerKey {
    ContainerKey {
        workload: WorkloadKey {
            namespace: ns.into(),
            kind: "Deployment".into(),
            name: name.into(),
        },
        container: container.into(),
    }
}

/// The `i`th minute's sample of the test series: its index as the value.
fn minute(i: i64) -> (i64, f64) {
    (1_700_000_000 + i * 60, i as f64)
}

/// The samples of the minutes `range`.
fn minutes(range: std::ops::Range<i64>) -> Vec<(i64, f64)> {
    range.map(minute).collect()
}

async fn one_series(store: &Store) -> i64 {
    let cluster = store.upsert_cluster("test").await.unwrap();
    let containers = store
        .upsert_containers(cluster, &[key("shop", "api", "app")], 1_700_000_000)
        .await
        .unwrap();
    store
        .upsert_series(&[(containers[0], "cpu_usage", "cores")])
        .await
        .unwrap()[0]
}

#[sqlx::test(migrations = false)]
async fn migrations_apply_on_an_empty_database_and_again_as_a_no_op(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let first = store.migrate().await.unwrap();
    assert!(first >= 1, "applied {first}");
    let second = store.migrate().await.unwrap();
    assert_eq!(second, 0);
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from pg_tables where tablename in ('sample_chunk','workload','forecast','alert_outbox')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 4);
}

#[sqlx::test]
async fn samples_round_trip_across_chunks_and_partitions(pool: PgPool) {
    let store = Store::from_pool(pool);
    let series = one_series(&store).await;
    let start = 1_700_000_000;
    // Two days at 60 s: crosses several 6-hour chunks and daily partitions.
    let points: Vec<(i64, f64)> = (0..2 * 1440)
        .map(|i| (start + i * 60, 0.25 + (i % 97) as f64 / 1000.0))
        .collect();
    let stats = store
        .write_samples(&[(series, points.clone())])
        .await
        .unwrap();
    assert_eq!(stats.samples_written, points.len() as u64);
    let back = store
        .read_samples(series, start, start + 2 * 86_400)
        .await
        .unwrap();
    assert_eq!(back.len(), points.len());
    for (a, b) in back.iter().zip(&points) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() <= b.1.abs() * 1e-6, "{a:?} vs {b:?}");
    }
    let window = store
        .read_samples(series, start + 3_600, start + 7_200)
        .await
        .unwrap();
    assert_eq!(window.len(), 60);
}

#[sqlx::test]
async fn a_duplicate_write_stores_nothing_twice(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let series = one_series(&store).await;
    let points = minutes(0..500);
    store
        .write_samples(&[(series, points.clone())])
        .await
        .unwrap();
    let bytes_before: Vec<Vec<u8>> =
        sqlx::query_scalar("select data from sample_chunk order by chunk_start")
            .fetch_all(&pool)
            .await
            .unwrap();

    let again = store
        .write_samples(&[(series, points.clone())])
        .await
        .unwrap();
    assert_eq!(again.samples_written, 0);
    assert_eq!(again.chunks_written, 0);
    // An overlapping write: half old, half new.
    let overlap = minutes(250..750);
    let stats = store.write_samples(&[(series, overlap)]).await.unwrap();
    assert_eq!(stats.samples_written, 250);

    let back = store.read_samples(series, 0, i64::MAX / 2).await.unwrap();
    assert_eq!(back.len(), 750);
    let mut ts: Vec<i64> = back.iter().map(|p| p.0).collect();
    ts.dedup();
    assert_eq!(ts.len(), 750);
    let bytes_after: Vec<Vec<u8>> =
        sqlx::query_scalar("select data from sample_chunk order by chunk_start")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(bytes_after.len() >= bytes_before.len());
}

#[sqlx::test]
async fn a_write_expected_new_that_meets_stored_chunks_merges_like_any_other(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let series = one_series(&store).await;
    store
        .write_new_samples(&[(series, minutes(0..500))])
        .await
        .unwrap();
    // Half of these are stored: the copy is refused and the batch merged, with nothing lost or twice.
    let stats = store
        .write_new_samples(&[(series, minutes(250..750))])
        .await
        .unwrap();
    assert_eq!(stats.samples_written, 250);
    let again = store
        .write_new_samples(&[(series, minutes(0..750))])
        .await
        .unwrap();
    assert_eq!((again.samples_written, again.chunks_written), (0, 0));
    let back = store.read_samples(series, 0, i64::MAX / 2).await.unwrap();
    assert_eq!(back, minutes(0..750));
    // Not a simple batch (the series twice, out of order, a NaN): written the careful way.
    let odd = [
        (
            series,
            vec![minute(800), minute(760), (minute(770).0, f64::NAN)],
        ),
        (series, vec![minute(750)]),
    ];
    let stats = store.write_new_samples(&odd).await.unwrap();
    assert_eq!(stats.samples_written, 3);
    let back = store.read_samples(series, 0, i64::MAX / 2).await.unwrap();
    assert_eq!(back.len(), 753);
}

#[sqlx::test]
async fn a_partition_dropped_behind_the_writers_back_is_made_again(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let series = one_series(&store).await;
    store
        .write_new_samples(&[(series, minutes(0..10))])
        .await
        .unwrap();
    // Another replica's retention drops the day's partition; this store still thinks it exists.
    let partition: String = sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'sample_chunk'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop table {partition}")))
        .execute(&pool)
        .await
        .unwrap();
    for write_new in [true, false] {
        let batch = [(series, minutes(0..10))];
        let stats = if write_new {
            store.write_new_samples(&batch).await.unwrap()
        } else {
            store.write_samples(&batch).await.unwrap()
        };
        assert_eq!(stats.samples_written, if write_new { 10 } else { 0 });
    }
    let back = store.read_samples(series, 0, i64::MAX / 2).await.unwrap();
    assert_eq!(back, minutes(0..10));
}

#[sqlx::test]
async fn concurrent_writers_of_the_same_new_chunk_lose_nothing(pool: PgPool) {
    let store = Store::from_pool(pool);
    let series = one_series(&store).await;
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let pts: Vec<(i64, f64)> = (0..100)
                .map(|i| (1_700_000_000 + (i * 4 + w) * 15, w as f64))
                .collect();
            store.write_samples(&[(series, pts)]).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        store.count_samples(series, 0, i64::MAX / 2).await.unwrap(),
        400
    );
}

#[sqlx::test]
async fn identities_are_upserted_once(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let cluster = store.upsert_cluster("c1").await.unwrap();
    assert_eq!(store.upsert_cluster("c1").await.unwrap(), cluster);
    let keys = vec![
        key("a", "w1", "app"),
        key("a", "w1", "sidecar"),
        key("b", "w2", "app"),
        key("a", "w1", "app"),
    ];
    let ids = store
        .upsert_containers(cluster, &keys, 1_700_000_000)
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[3]);
    assert_ne!(ids[0], ids[1]);
    let again = store
        .upsert_containers(cluster, &keys, 1_700_000_600)
        .await
        .unwrap();
    assert_eq!(ids, again);
    let workloads: i64 = sqlx::query_scalar("select count(*) from workload")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(workloads, 2);
    let s = store
        .upsert_series(&[
            (ids[0], "cpu_usage", "cores"),
            (ids[0], "memory_usage", "bytes"),
            (ids[0], "cpu_usage", "cores"),
        ])
        .await
        .unwrap();
    assert_eq!(s[0], s[2]);
    assert_ne!(s[0], s[1]);
}
