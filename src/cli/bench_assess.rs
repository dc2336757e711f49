//! `headroom bench assess`: one full assessment of everything in the configured database, timed, with the
//! process' peak memory; several processes started with `--share` and the same `--now` split the cycle
//! through the claims, as replicas do. See docs/scale.md for the figures at 100,000 containers.

use anyhow::Context as _;

use super::{CliResult, Context, Failure};
use crate::assess::{self, AssessOptions};

/// `headroom bench assess`.
#[derive(Debug, clap::Args)]
pub struct AssessArgs {
    /// Assessment time (Unix seconds): history is read up to it. Default: now.
    #[arg(long)]
    pub now: Option<i64>,
    /// Take a share of the cycle starting at `--now` through the claims (start several processes with
    /// the same `--now`), instead of assessing everything alone.
    #[arg(long)]
    pub share: bool,
    /// Containers per batch (default: `assess.batch_size` of the configuration).
    #[arg(long)]
    pub batch: Option<usize>,
}

pub fn run(ctx: &Context, a: &AssessArgs) -> CliResult {
    let settings = ctx.settings()?;
    let mut opts =
        AssessOptions::from_settings(&settings).map_err(|e| Failure::BadInput(e.into()))?;
    if let Some(b) = a.batch {
        if b == 0 {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "--batch must be at least 1"
            )));
        }
        opts.batch = b;
    }
    let now = a.now.unwrap_or_else(crate::domain::unix_now);
    let load_before = load_average();
    let report = super::runtime()?.block_on(async {
        let store = super::connect(&settings)?;
        store
            .migrate()
            .await
            .context("while migrating the database")?;
        let report = if a.share {
            let me = format!("bench-{}", std::process::id());
            let (_keep, stop) = tokio::sync::watch::channel(false);
            let lease = settings.assess.lease_secs as i64;
            assess::run_share(&store, &opts, now, &me, lease, &stop).await
        } else {
            assess::run(&store, &opts, now).await
        };
        Ok::<_, Failure>(report.context("while assessing")?)
    })?;
    println!(
        "assessed {} containers ({} forecasts, {} without enough history) in {:.1} s, batches of {} on {} threads; \
         stages: read {:.1} s, fit {:.1} s, save {:.1} s; peak RSS {}; load average {} before, {} after",
        report.containers,
        report.forecasts,
        report.not_enough_history,
        report.seconds,
        opts.batch,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        report.read_secs,
        report.fit_secs,
        report.save_secs,
        peak_rss().map_or("unknown".into(), |kib| format!("{} MiB", kib / 1024)),
        load_before.unwrap_or_else(|| "unknown".into()),
        load_average().unwrap_or_else(|| "unknown".into()),
    );
    Ok(())
}

/// The process' peak resident set (`VmHWM`, KiB) where the kernel reports it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1, 5 and 15 minute load averages, as the kernel prints them.
fn load_average() -> Option<String> {
    let l = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
