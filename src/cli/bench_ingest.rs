//! `headroom bench ingest`: samples per second from a real Prometheus (backfilled by the simulator) into
//! Postgres, next to the raw speed of a binary `COPY` of the same chunk rows into the same tables, and the
//! bytes per sample at rest. A measurement, never a test; it cleans up its temporary data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{CliResult, Failure};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::scrape::{RunOptions, SourceScraper};
use crate::simulate::{ClusterSpec, simulate};
use crate::store::{ConnectOptions, Store};

/// `headroom bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Simulated workloads (about three containers each).
    #[arg(long, default_value_t = 700)]
    pub workloads: usize,
    #[arg(long, default_value_t = 14)]
    pub days: i64,
    /// Sample step in seconds (the simulator's and the scraper's).
    #[arg(long, default_value_t = 300)]
    pub step: i64,
    /// A Postgres server where a scratch database is created and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Directory for the OpenMetrics file and the Prometheus data (removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// 2024-01-01T00:00:00Z plus the window: a fixed end, so runs are comparable.
const END: i64 = 1_704_067_200 + 30 * 86_400;

pub fn run(a: &IngestArgs) -> CliResult {
    if a.workloads == 0 || a.days < 1 || !(1..=3_600).contains(&a.step) {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--workloads must be at least 1, --days at least 1 and --step between 1 and 3600 seconds"
        )));
    }
    let dir = a.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("headroom-bench-ingest-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    let result = measure(a, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(a: &IngestArgs, dir: &Path) -> CliResult {
    let spec = ClusterSpec {
        workloads: a.workloads,
        start: END - a.days * 86_400,
        end: END,
        step: a.step,
        seed: 1,
    };
    let om = dir.join("cluster.om");
    let t = Instant::now();
    let file = std::fs::File::create(&om)?;
    let (cluster, written) = simulate(&spec, std::io::BufWriter::with_capacity(1 << 20, file))?;
    let containers: usize = cluster
        .workloads
        .iter()
        .map(|w| w.pods.iter().map(|p| p.containers.len()).sum::<usize>())
        .sum();
    eprintln!(
        "simulated {} workloads, {containers} pod containers, {} series, {} samples, {:.0} MB in {:.1}s",
        a.workloads,
        written.series(),
        written.samples(),
        std::fs::metadata(&om)?.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let t = Instant::now();
    let out = Command::new("promtool")
        .args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=720h",
        ])
        .arg(&om)
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .context("while running promtool (install Debian's prometheus package)")?;
    if !out.status.success() {
        return Err(Failure::Failed(anyhow::anyhow!(
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::remove_file(&om)?;
    eprintln!("backfilled in {:.1}s", t.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let prom = Prometheus::start(dir, port)?;
    let db = format!("headroom_bench_ingest_{}", std::process::id());
    let rt = super::runtime()?;
    let out = rt.block_on(async {
        let admin = connect(&a.database_url)?;
        admin.create_database(&db).await?;
        let result = ingest(a, &prom.url, &db).await;
        admin.drop_database(&db).await?;
        result
    });
    drop(prom);
    out
}

async fn ingest(a: &IngestArgs, url: &str, db: &str) -> CliResult {
    let mut db_url: reqwest::Url = a.database_url.parse().context("--database-url")?;
    db_url.set_path(db);
    let store = connect(db_url.as_str())?;
    store.migrate().await?;
    let settings = Settings::from_toml(&format!(
        "[scrape]\nstep_secs = {}\ntimeout_secs = 120\nmax_in_flight = 4\n[[sources]]\nname = \"bench\"\nurl = \"{url}\"\n",
        a.step
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scraper = SourceScraper::new(
        &settings.sources[0],
        &settings.scrape,
        store.clone(),
        Metrics::new(),
    )
    .await?;
    let report = scraper
        .run(RunOptions {
            end: END - a.step,
            backfill_secs: a.days * 86_400,
            progress: true,
        })
        .await?;
    let size = store.sample_storage().await?;
    let scrape_rate = report.samples_written as f64 / report.seconds;

    let rows = store.export_chunk_rows().await?;
    store.truncate_samples().await?;
    let t = Instant::now();
    let copied = store.copy_chunk_rows_raw(&rows).await?;
    let copy_secs = t.elapsed().as_secs_f64();
    let copy_rate = size.samples as f64 / copy_secs;

    println!("metric,value");
    println!("containers_series,{}", report.series);
    println!("step_secs,{}", a.step);
    println!("days,{}", a.days);
    println!("queries,{}", report.queries);
    println!("samples_received,{}", report.samples_received);
    println!("samples_stored,{}", report.samples_written);
    println!("scrape_seconds,{:.2}", report.seconds);
    println!("scrape_samples_per_sec,{scrape_rate:.0}");
    println!("copy_rows,{copied}");
    println!("copy_seconds,{copy_secs:.2}");
    println!("copy_samples_per_sec,{copy_rate:.0}");
    println!("scrape_vs_copy,{:.3}", scrape_rate / copy_rate);
    println!("chunk_rows,{}", size.rows);
    println!("partitions,{}", size.partitions);
    println!("bytes_at_rest,{}", size.bytes);
    println!("bytes_per_sample,{:.3}", size.bytes_per_sample());
    Ok(())
}

fn connect(url: &str) -> Result<Store, Failure> {
    Ok(Store::connect_lazy(&ConnectOptions {
        url: url.to_string(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(30),
    })?)
}

/// A Prometheus on the backfilled data, killed on drop.
struct Prometheus {
    url: String,
    child: Child,
}

impl Prometheus {
    fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        )?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg("--query.lookback-delta=10m")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("while starting prometheus")?;
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let ready = format!("{}/-/ready", p.url);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok =
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && reqwest_ready(&ready);
            if ok {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("prometheus did not become ready");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A blocking readiness probe without a runtime.
fn reqwest_ready(url: &str) -> bool {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let Some((host, path)) = rest.split_once('/') else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if String::from_utf8_lossy(&buf[..n]).contains(" 200"))
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
