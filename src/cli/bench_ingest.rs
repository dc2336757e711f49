//! `headroom bench ingest`: samples per second from a real Prometheus (backfilled by the simulator) into
//! Postgres, next to the raw speed of a binary `COPY` of the same chunk rows into the same tables, and the
//! bytes per sample at rest. A measurement, never a test; it cleans up its temporary data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use queries::{Target, krr_cycle, replay};

use super::{CliResult, Failure};
use crate::config::Settings;
use crate::metrics::{Metrics, SourceLabels};
use crate::scrape::{RunOptions, SourceScraper};
use crate::simulate::{Cluster, ClusterSpec, simulate};
use crate::store::codec::ChunkRow;
use crate::store::{ConnectOptions, Store};

mod queries;

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
    /// Queries in flight at once (the scraper's `scrape.max_in_flight`, and the replays').
    #[arg(long, default_value_t = 4)]
    pub max_in_flight: usize,
    /// Length of the steady-state cycle measured after the backfill (the daemon's `scrape.interval_secs`).
    #[arg(long, default_value_t = 300)]
    pub cycle_secs: i64,
    /// Also run a KRR-style cycle (every container's whole history re-read) and print what it costs.
    #[arg(long)]
    pub krr: bool,
    /// Replay the backfill's requests once more with Prometheus' query statistics, to split its cost
    /// between ownership and range queries (as long again as the ceiling replay).
    #[arg(long)]
    pub split_costs: bool,
    /// Keep the work directory (with `--work-dir`): a later run with the same directory, workloads, days
    /// and step reuses its backfilled Prometheus data instead of simulating and backfilling again.
    #[arg(long, requires = "work_dir")]
    pub keep: bool,
    /// Backfill scrapes measured, each into an emptied history with no marks, a raw COPY timed between
    /// each two; the fastest of each is reported (one run's time varies with what the other processes
    /// are doing), and every run's time is printed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub scrape_runs: u32,
    /// The scraper's `scrape.max_samples_per_read` (remote read: values one answer may hold at most),
    /// when not the configured default.
    #[arg(long)]
    pub max_samples_per_read: Option<u64>,
    /// How the scraper reads Prometheus: PromQL range queries, or remote read (raw chunks).
    #[arg(long, value_enum, default_value_t = ReadArg::QueryRange)]
    pub read: ReadArg,
}

/// `--read`: the source's `read` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadArg {
    QueryRange,
    RemoteRead,
}

/// The scratch Prometheus' `--query.lookback-delta`, and the remote-read scraper's `lookback_secs`.
const LOOKBACK_SECS: u64 = 600;

/// 2024-01-01T00:00:00Z plus the window: a fixed end, so runs are comparable.
const END: i64 = 1_704_067_200 + 30 * 86_400;

pub fn run(a: &IngestArgs) -> CliResult {
    if a.workloads == 0 || a.days < 1 || !(1..=3_600).contains(&a.step) {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--workloads must be at least 1, --days at least 1 and --step between 1 and 3600 seconds"
        )));
    }
    if a.max_in_flight == 0
        || a.cycle_secs < a.step
        || a.cycle_secs % a.step != 0
        || a.cycle_secs >= a.days * 86_400
    {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--max-in-flight must be at least 1, and --cycle-secs a multiple of --step shorter than --days"
        )));
    }
    let dir = a.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("headroom-bench-ingest-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    let result = measure(a, &dir);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
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
    let data = dir.join("data");
    let stamp = dir.join("cluster.spec");
    let spec_line = format!("{spec:?}");
    if a.keep && std::fs::read_to_string(&stamp).ok().as_deref() == Some(spec_line.as_str()) {
        eprintln!("reusing the backfilled data in {}", data.display());
        let cluster = Cluster::plan(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        return serve_and_measure(a, dir, &cluster);
    }
    let _ = std::fs::remove_file(&stamp);
    let _ = std::fs::remove_dir_all(&data);
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
    std::fs::write(&stamp, &spec_line)?;
    serve_and_measure(a, dir, &cluster)
}

/// Starts Prometheus on the backfilled data and measures against it.
fn serve_and_measure(a: &IngestArgs, dir: &Path, cluster: &Cluster) -> CliResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let prom = Prometheus::start(dir, port)?;
    let db = format!("headroom_bench_ingest_{}", std::process::id());
    let rt = super::runtime()?;
    let out = rt.block_on(async {
        let admin = connect(&a.database_url)?;
        admin.create_database(&db).await?;
        let result = ingest(a, &prom, cluster, &db).await;
        admin.drop_database(&db).await?;
        result
    });
    drop(prom);
    out
}

async fn ingest(a: &IngestArgs, prom: &Prometheus, cluster: &Cluster, db: &str) -> CliResult {
    let url = &prom.url;
    let mut db_url: reqwest::Url = a.database_url.parse().context("--database-url")?;
    db_url.set_path(db);
    let store = connect(db_url.as_str())?;
    store.migrate().await?;
    let read = match a.read {
        ReadArg::QueryRange => "query_range",
        ReadArg::RemoteRead => "remote_read",
    };
    let budget = a
        .max_samples_per_read
        .map(|n| format!("max_samples_per_read = {n}\n"))
        .unwrap_or_default();
    let settings = Settings::from_toml(&format!(
        "[scrape]\nstep_secs = {}\ntimeout_secs = 600\nmax_in_flight = {}\n{budget}[[sources]]\nname = \"bench\"\nurl = \"{url}\"\nread = \"{read}\"\nlookback_secs = {LOOKBACK_SECS}\n",
        a.step, a.max_in_flight
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::new();
    let mut scraper = SourceScraper::new(
        &settings.sources[0],
        &settings.scrape,
        store.clone(),
        metrics.clone(),
    )
    .await?;
    scraper.client.record_requests();
    let scraper = Arc::new(scraper);
    let target = Target::new(url)?;

    // The backfill: everything but the last cycle, which is scraped afterwards as a steady-state cycle.
    let last = END - a.step;
    let load_before = load_average();
    let mut runs = Vec::new();
    let mut backfill_requests = Vec::new();
    // A raw COPY of the rows the run before stored is timed between each two runs (and once more at the
    // end): the two speeds are compared as measured in the same minutes, not a minute apart, while the
    // machine's speed drifts (a shared host's CPUs do). The rows are read back for each COPY and dropped
    // after it, so the scraper's peak memory is not the rows' too.
    let mut copy_times = Vec::new();
    let mut peak_rss: f64 = 0.0;
    for run in 0..a.scrape_runs {
        if run > 0 {
            let rows = store.export_chunk_rows().await?;
            copy_times.push(timed_copy(&store, &rows).await?.0);
            store.truncate_samples().await?;
        }
        // The peak memory of the scrapes only, not of the COPYs between them.
        reset_peak_rss();
        let cpu_before = CpuTimes::now(prom.pid(), db);
        let report = scraper
            .run_spawned(RunOptions {
                end: last - a.cycle_secs,
                backfill_secs: a.days * 86_400 - a.cycle_secs,
                progress: true,
            })
            .await?;
        let cpu = CpuTimes::now(prom.pid(), db).since(&cpu_before);
        peak_rss = peak_rss.max(peak_rss_mb());
        let requests = scraper.client.take_recorded_requests();
        if run == 0 {
            backfill_requests = requests;
        }
        runs.push((report, cpu));
    }
    // Each run starts from the same empty history, so each must store the same samples.
    if let Some(r) = runs
        .iter()
        .find(|r| r.0.samples_written != runs[0].0.samples_written)
    {
        return Err(Failure::Failed(anyhow::anyhow!(
            "the backfill scrapes stored {} and {} samples from the same data",
            runs[0].0.samples_written,
            r.0.samples_written
        )));
    }
    let run_seconds: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.0.seconds)).collect();
    let (report, cpu) = runs
        .into_iter()
        .min_by(|a, b| a.0.seconds.total_cmp(&b.0.seconds))
        .expect("at least one run");
    let load_after = load_average();
    let size = store.sample_storage().await?;
    let scrape_rate = report.samples_written as f64 / report.seconds;

    // Prometheus alone serving the same requests, answers read and dropped: the ceiling of any scraper.
    eprintln!(
        "replaying the backfill's {} requests",
        backfill_requests.len()
    );
    let ceiling = replay(&target, &backfill_requests, a.max_in_flight, false).await?;
    // The same requests with Prometheus' own statistics, split into ownership and range queries.
    let split = if a.split_costs {
        let (own_reqs, range_reqs): (Vec<_>, Vec<_>) = backfill_requests
            .iter()
            .cloned()
            .partition(|r| r.path == "api/v1/query" || r.path == "api/v1/series");
        Some((
            replay(&target, &own_reqs, a.max_in_flight, true).await?,
            replay(&target, &range_reqs, a.max_in_flight, true).await?,
        ))
    } else {
        None
    };

    // One steady-state cycle from the marks the backfill left.
    let labels = SourceLabels {
        source: "bench".into(),
    };
    let requests_before = metrics.scrape_requests.get_or_create(&labels).get();
    let samples_before = metrics.scrape_samples.get_or_create(&labels).get();
    let cycle_cpu_before = CpuTimes::now(prom.pid(), db);
    let cycle = scraper
        .run_spawned(RunOptions {
            end: last,
            backfill_secs: a.days * 86_400,
            progress: false,
        })
        .await?;
    let cycle_cpu = CpuTimes::now(prom.pid(), db).since(&cycle_cpu_before);
    let cycle_requests = scraper.client.take_recorded_requests();
    let cycle_cost = replay(&target, &cycle_requests, a.max_in_flight, true).await?;
    let krr = if a.krr {
        eprintln!("running a KRR-style cycle over every container");
        let before = CpuTimes::now(prom.pid(), db);
        let cost = krr_cycle(
            &target,
            cluster,
            last,
            a.days * 86_400,
            a.step,
            a.max_in_flight,
        )
        .await?;
        Some((cost, CpuTimes::now(prom.pid(), db).since(&before)))
    } else {
        None
    };

    // These rows also hold the steady-state cycle's samples, a few more than the runs'.
    let rows = store.export_chunk_rows().await?;
    // The best of the COPYs between the runs and one or more here (three at least): the raw speed is a
    // ceiling, and one COPY's time varies with what Postgres' checkpointer and the other processes are
    // doing at that moment.
    let mut copied = None;
    while copy_times.len() < 3 || copied.is_none() {
        let (time, rows_copied) = timed_copy(&store, &rows).await?;
        copy_times.push(time);
        copied = Some(rows_copied);
    }
    let copied = copied.unwrap_or_default();
    let (copy_secs, copy_rate) = copy_times
        .iter()
        .map(|&(secs, samples)| (secs, samples as f64 / secs))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();

    println!("metric,value");
    println!("containers_series,{}", report.series);
    println!("step_secs,{}", a.step);
    println!("days,{}", a.days);
    println!("max_in_flight,{}", a.max_in_flight);
    println!("read,{read}");
    println!(
        "max_samples_per_read,{}",
        settings.scrape.max_samples_per_read
    );
    println!("queries,{}", report.queries);
    println!("samples_received,{}", report.samples_received);
    println!("samples_stored,{}", report.samples_written);
    println!("scrape_runs_seconds,{}", run_seconds.join(" "));
    println!("scrape_seconds,{:.2}", report.seconds);
    println!("scrape_samples_per_sec,{scrape_rate:.0}");
    println!(
        "scrape_received_per_sec,{:.0}",
        report.samples_received as f64 / report.seconds
    );
    println!("decode_seconds,{:.2}", report.decode_seconds);
    println!("aggregate_seconds,{:.2}", report.aggregate_seconds);
    println!("write_seconds,{:.2}", report.write_seconds);
    println!("cpu_seconds_headroom,{:.2}", cpu.own);
    println!("cpu_seconds_prometheus,{:.2}", cpu.prometheus);
    println!("cpu_seconds_postgres,{:.2}", cpu.postgres);
    println!("headroom_peak_rss_mb,{peak_rss:.0}");
    println!("load_average_before,{load_before}");
    println!("load_average_after,{load_after}");
    println!("ceiling_requests,{}", ceiling.queries);
    println!("ceiling_seconds,{:.2}", ceiling.wall_seconds);
    println!(
        "ceiling_received_per_sec,{:.0}",
        report.samples_received as f64 / ceiling.wall_seconds
    );
    println!(
        "ceiling_stored_per_sec,{:.0}",
        report.samples_written as f64 / ceiling.wall_seconds
    );
    println!(
        "scrape_vs_ceiling,{:.3}",
        ceiling.wall_seconds / report.seconds
    );
    if let Some((own_cost, range_cost)) = split {
        own_cost.print("backfill_ownership");
        range_cost.print("backfill_range");
    }
    println!("copy_rows,{copied}");
    let copy_seconds: Vec<String> = copy_times.iter().map(|t| format!("{:.3}", t.0)).collect();
    println!("copy_runs_seconds,{}", copy_seconds.join(" "));
    println!("copy_seconds,{copy_secs:.3}");
    println!("copy_samples_per_sec,{copy_rate:.0}");
    println!("scrape_vs_copy,{:.4}", scrape_rate / copy_rate);
    println!(
        "ceiling_vs_copy,{:.4}",
        report.samples_written as f64 / ceiling.wall_seconds / copy_rate
    );
    println!("chunk_rows,{}", size.rows);
    println!("partitions,{}", size.partitions);
    println!("bytes_at_rest,{}", size.bytes);
    println!("bytes_per_sample,{:.3}", size.bytes_per_sample());
    println!("cycle_secs,{}", a.cycle_secs);
    println!("headroom_cycle_seconds,{:.3}", cycle.seconds);
    println!("headroom_cycle_samples_stored,{}", cycle.samples_written);
    println!(
        "headroom_cycle_scrape_requests_total,{}",
        metrics.scrape_requests.get_or_create(&labels).get() - requests_before
    );
    println!(
        "headroom_cycle_scrape_samples_total,{}",
        metrics.scrape_samples.get_or_create(&labels).get() - samples_before
    );
    println!(
        "headroom_cycle_prometheus_cpu_seconds,{:.3}",
        cycle_cpu.prometheus
    );
    cycle_cost.print("headroom_cycle");
    if let Some((cost, cpu)) = krr {
        println!("krr_cycle_prometheus_cpu_seconds,{:.3}", cpu.prometheus);
        cost.print("krr_cycle");
    }
    println!(
        "headroom_scrape_requests_total,{}",
        metrics.scrape_requests.get_or_create(&labels).get()
    );
    println!(
        "headroom_scrape_samples_total,{}",
        metrics.scrape_samples.get_or_create(&labels).get()
    );
    println!(
        "headroom_scrape_retries_total,{}",
        metrics.scrape_retries.get_or_create(&labels).get()
    );
    Ok(())
}

/// Starts this process' peak resident memory afresh (Linux: 5 to `clear_refs`); where that is refused,
/// the peak stays the process' whole life's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The most resident memory this process has had (`VmHWM`), in MB; 0 where `/proc` does not say.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds used so far by this process, the Prometheus child and the Postgres backends serving the
/// scratch database (from `/proc`; Postgres' shared background writers are not counted).
struct CpuTimes {
    own: f64,
    prometheus: f64,
    postgres: f64,
}

impl CpuTimes {
    fn now(prometheus: u32, db: &str) -> Self {
        let mut postgres = 0.0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                // A backend's title names its database: "postgres: 15/main: user DB host(port) state".
                let serves_db = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.starts_with("postgres:") && c.split_whitespace().any(|w| w == db)
                });
                if serves_db {
                    postgres += proc_cpu_seconds(&pid.to_string());
                }
            }
        }
        Self {
            own: proc_cpu_seconds("self"),
            prometheus: proc_cpu_seconds(&prometheus.to_string()),
            postgres,
        }
    }

    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            own: self.own - before.own,
            prometheus: self.prometheus - before.prometheus,
            postgres: self.postgres - before.postgres,
        }
    }
}

/// User plus system CPU seconds of a process (`/proc/PID/stat`, in clock ticks of 1/100 s).
fn proc_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The one-minute load average, for the record next to every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn connect(url: &str) -> Result<Store, Failure> {
    Ok(Store::connect_lazy(&ConnectOptions {
        url: url.to_string(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(30),
    })?)
}

/// Empties the sample store and times a raw COPY of `rows` into it: (seconds, samples) and the rows
/// copied.
async fn timed_copy(store: &Store, rows: &[ChunkRow]) -> anyhow::Result<((f64, i64), u64)> {
    store.truncate_samples().await?;
    let t = Instant::now();
    let copied = store.copy_chunk_rows_raw(rows).await?;
    let samples = rows.iter().map(|r| i64::from(r.n_samples)).sum();
    Ok(((t.elapsed().as_secs_f64(), samples), copied))
}

/// A Prometheus on the backfilled data, killed on drop.
struct Prometheus {
    url: String,
    child: Child,
}

impl Prometheus {
    fn pid(&self) -> u32 {
        self.child.id()
    }

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
            .arg(format!("--query.lookback-delta={LOOKBACK_SECS}s"))
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
