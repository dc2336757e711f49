//! Several `headroom serve` processes on one Postgres share an assessment cycle through claimed batches;
//! one killed with SIGKILL mid-cycle has its share finished by the others, and every container is
//! assessed exactly once in the cycle.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::assess::seeded_until;
use crate::prom::temp_dir;

fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[sqlx::test]
async fn three_replicas_assess_each_container_once_and_survive_a_kill(pool: PgPool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // History up to now: the replicas assess the current cycle.
    seeded_until(&pool, 30, 10, now - now % 300).await;
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    let dir = temp_dir("replicas");
    let config = dir.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "sources = []\n[server]\nlisten_addr = \"127.0.0.1:0\"\n\
             [database]\nurl = \"postgres://postgres@127.0.0.1:5432/{db}\"\n\
             [assess]\ninterval_secs = 86400\nbatch_size = 2\nlease_secs = 4\ninitial_delay_secs = 0\n"
        ),
    )
    .unwrap();
    let mut replicas: Vec<Child> = (0..3).map(|_| start(&config)).collect();
    let pids: Vec<String> = replicas.iter().map(|c| c.id().to_string()).collect();

    // Kill the first replica while it holds a claimed, unfinished batch.
    let victim = format!("-{}", pids[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holding: i64 = sqlx::query_scalar(
            "select count(*) from assess_claim where claimed_by like '%' || $1 and done_at is null and lease_until > now()",
        )
        .bind(&victim)
        .fetch_one(&pool)
        .await
        .unwrap();
        if holding > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first replica never held a batch"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[0].kill().unwrap();
    replicas[0].wait().unwrap();

    // The others finish the cycle, taking the dead replica's batch over once its lease runs out.
    let deadline = Instant::now() + Duration::from_secs(120);
    let cycle: i64 = loop {
        let open: Option<(i64, i64)> = sqlx::query_as(
            "select cycle, count(*) filter (where done_at is null) from assess_claim group by cycle",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some((cycle, 0)) = open {
            break cycle;
        }
        assert!(
            Instant::now() < deadline,
            "the cycle did not finish: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in replicas.iter_mut().skip(1) {
        let _ = Command::new("kill")
            .args(["-TERM", &r.id().to_string()])
            .status();
        let _ = r.wait();
    }

    // Exactly one recommendation per container and resource in the cycle, for every container.
    let (containers, rows, distinct): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from container),
                count(*), count(distinct (container_id, resource))
         from recommendation where computed_at = to_timestamp($1)",
    )
    .bind(cycle as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    let stamps: Vec<(f64, i64)> = sqlx::query_as(
        "select extract(epoch from computed_at)::float8, count(*) from recommendation group by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(rows > 0, "no results at cycle {cycle}: {stamps:?}");
    assert_eq!(rows, distinct, "a container was assessed twice");
    assert_eq!(distinct, containers * 2, "a container was not assessed");
    let forecasts_dup: i64 = sqlx::query_scalar(
        "select count(*) from (select series_id from forecast where computed_at = to_timestamp($1)
                               group by series_id having count(*) > 1) d",
    )
    .bind(cycle as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(forecasts_dup, 0);
    // The work was shared, and the dead replica's batch was taken over.
    let (holders, retaken): (i64, i64) = sqlx::query_as(
        "select count(distinct claimed_by), count(*) filter (where attempts > 1) from assess_claim where cycle = $1",
    )
    .bind(cycle)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(holders >= 2, "one replica did everything");
    assert!(
        retaken >= 1,
        "no batch was taken over from the killed replica"
    );
    let summaries: i64 = sqlx::query_scalar(
        "select count(*) from workload_summary where computed_at = to_timestamp($1)",
    )
    .bind(cycle as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(summaries, 30);
    let _ = std::fs::remove_dir_all(dir);
}
