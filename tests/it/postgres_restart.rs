//! Postgres restarted in the middle of an ingest: `headroom serve` scrapes a real Prometheus into a
//! private PostgreSQL 15 cluster of its own (the shared server is never restarted: other tests use it),
//! the cluster is stopped as by a crash and started again while the scrape goes on, and the daemon
//! recovers by itself. In the end the stored samples equal those of an undisturbed scrape of the same
//! window: nothing lost, nothing twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use headroom::config::Settings;
use headroom::metrics::Metrics;
use headroom::scrape::{RunOptions, SourceScraper};
use headroom::simulate::ClusterSpec;
use headroom::store::Store;
use sqlx::PgPool;

use crate::prom::{FaultProxy, TestPrometheus, free_port, temp_dir};
use crate::serve::Daemon;

/// Where Debian's PostgreSQL 15 server binaries live.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of the test's own: initdb into a temporary directory, a free loopback port,
/// stopped and removed on drop. Postgres refuses to run as root, so as root it runs as `postgres`.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        for tool in ["initdb", "pg_ctl"] {
            assert!(
                Path::new(PG_BIN).join(tool).exists(),
                "{PG_BIN}/{tool} is missing: this test runs a PostgreSQL 15 server of its own; \
                 install it with `apt-get install -y postgresql-15` (.ci/run does)"
            );
        }
        let dir = temp_dir("postgres");
        if is_root() {
            run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir));
        }
        let pg = PrivatePostgres {
            dir,
            port: free_port(),
        };
        pg.as_postgres(
            &["initdb", "-D"],
            &[&pg.data()],
            &[
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a server binary (as `postgres` when this process is root): `head`, then paths, then `tail`.
    fn as_postgres(&self, head: &[&str], paths: &[&Path], tail: &[&str]) {
        let program = Path::new(PG_BIN).join(head[0]);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(&head[1..]).args(paths).args(tail);
        run(&mut cmd);
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=40",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.as_postgres(
            &["pg_ctl", "start", "-w", "-t", "60", "-D"],
            &[&self.data()],
            &["-l", log.to_str().unwrap(), "-o", &opts],
        );
    }

    /// Stops the server without a checkpoint, as a crash would; the next start replays the WAL.
    pub fn stop_immediate(&self) {
        self.as_postgres(
            &["pg_ctl", "stop", "-w", "-m", "immediate", "-D"],
            &[&self.data()],
            &[],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = Path::new(PG_BIN).join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every stored sample, keyed by identity (cluster ids differ between databases).
type Samples = BTreeMap<(String, String, String, String, String), Vec<(i64, f64)>>;

async fn all_samples(pool: &PgPool) -> Samples {
    let series: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
        "select s.id, w.namespace, w.kind, w.name, c.name, s.metric
         from series s join container c on c.id = s.container_id join workload w on w.id = c.workload_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let store = Store::from_pool(pool.clone());
    let ids: Vec<i64> = series.iter().map(|s| s.0).collect();
    let mut points = store
        .read_samples_many(&ids, 0, 4_102_444_800)
        .await
        .unwrap();
    series
        .into_iter()
        .map(|(id, ns, kind, name, container, metric)| {
            (
                (ns, kind, name, container, metric),
                points.remove(&id).unwrap_or_default(),
            )
        })
        .collect()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap()
}

const OPEN: usize = 80;

#[sqlx::test]
async fn postgres_restarted_during_ingest_loses_and_duplicates_nothing(reference: PgPool) {
    let pg = PrivatePostgres::start();
    // On the scrape step's grid: the test Prometheus looks back only 120 s from each step.
    let now = headroom::domain::unix_now() / 300 * 300;
    let spec = ClusterSpec {
        workloads: 4,
        start: now - 2 * 86_400,
        end: now,
        step: 300,
        seed: 5,
    };
    let (_, prom) = TestPrometheus::simulated(&spec);
    // The proxy holds every request after the first OPEN, so the outage lands mid-backfill.
    let proxy = FaultProxy::start_gated(&prom.url, vec![], OPEN).await;

    let scrape_toml = |url: &str| {
        format!(
            "[scrape]\nstep_secs = 300\nbackfill_days = 2\ninterval_secs = 3600\nmax_points_per_query = 24\n\
             [[sources]]\nname = \"sim\"\nurl = \"{url}\"\n\
             [sources.queries]\ncpu_usage = 'sum by (namespace, pod, container) \
             (rate(container_cpu_usage_seconds_total{{container!=\"\"}}[15m]))'\n"
        )
    };
    let dir = temp_dir("pg-restart");
    let config = dir.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten_addr = \"127.0.0.1:0\"\n\
             [database]\nurl = \"{}\"\nacquire_timeout_secs = 2\nmax_connections = 4\n\
             [assess]\ninitial_delay_secs = 86400\ninterval_secs = 86400\n[reports]\ninterval_secs = 0\n{}",
            pg.url(),
            scrape_toml(&proxy.url)
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config).await;

    // Every job has stored its first windows and the scraper waits at the gate.
    let db = PgPool::connect(&pg.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let marks = count(&db, "select count(*) from scrape_mark").await;
        if marks == 6 && proxy.requests.load(Ordering::SeqCst) > OPEN {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill never reached the gate ({marks} marks)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = count(
        &db,
        "select coalesce(sum(n_samples), 0)::bigint from sample_chunk",
    )
    .await;
    assert!(before > 0);
    db.close().await;
    assert_eq!(daemon.readyz().await.0, 200);

    // The outage: readiness says so, and the scraper's writes fail while the gate opens.
    pg.stop_immediate();
    let (status, body) = daemon.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "unreachable");
    proxy.release();
    daemon
        .wait_log(
            "a failed write during the outage",
            Duration::from_secs(60),
            |v| v["message"] == "database unavailable; scraping again soon",
        )
        .await;
    pg.start_server();

    // The daemon, never restarted, finishes the backfill on its own.
    daemon
        .wait_log("the scrape to complete", Duration::from_secs(120), |v| {
            v["message"] == "scrape done" && v["source"] == "sim"
        })
        .await;
    let (status, body) = daemon.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert!(body["newest_sample_age_secs"].is_number(), "{body}");
    assert!(daemon.stop().success());

    // The same window scraped from the same Prometheus without any fault.
    let db = PgPool::connect(&pg.url()).await.unwrap();
    let marks: Vec<i64> = sqlx::query_scalar(
        "select extract(epoch from high_water)::bigint from scrape_mark order by query_name",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(marks.len(), 6);
    let end = marks[0];
    assert!(marks.iter().all(|&m| m == end), "{marks:?}");
    let got = all_samples(&db).await;
    let stored_rows = count(
        &db,
        "select coalesce(sum(n_samples), 0)::bigint from sample_chunk",
    )
    .await;
    db.close().await;
    assert!(
        stored_rows > before,
        "the outage came before the end of the ingest"
    );

    let settings = Settings::from_toml(&scrape_toml(&prom.url)).unwrap();
    let store = Store::from_pool(reference.clone());
    let scraper = SourceScraper::new(
        &settings.sources[0],
        &settings.scrape,
        store,
        Metrics::new(),
    )
    .await
    .unwrap();
    // The daemon's first window started at the earliest stored sample of a memory series.
    let start = got
        .iter()
        .filter(|(k, _)| k.4 == "memory_usage")
        .filter_map(|(_, p)| p.first().map(|p| p.0))
        .min()
        .unwrap_or_else(|| {
            panic!(
                "no memory samples stored: {stored_rows} rows, series {:?}",
                got.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            )
        });
    scraper
        .run(RunOptions {
            end,
            backfill_secs: end - start,
            progress: false,
        })
        .await
        .unwrap();
    let want = all_samples(&reference).await;
    assert_eq!(got.len(), want.len(), "series: {:?}", got.keys());
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total > 10_000, "{total} samples");
    for (key, points) in &want {
        assert_eq!(got.get(key), Some(points), "{key:?}");
    }
    assert_eq!(stored_rows as usize, total, "no sample stored twice");
    let _ = std::fs::remove_dir_all(dir);
}
