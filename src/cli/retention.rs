//! `headroom retention`: one pass of rollups and retention over the configured database, then exit; for a
//! manual run or a scheduled job. Rolls up what is due, then drops raw and rollup partitions older than
//! `retention.raw_days` and `retention.rollup_days`, and deletes assessment results past
//! `retention.results_days` (see docs/operations.md).

use anyhow::Context;

use super::{CliResult, Failure};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Apply the windows as of this Unix time instead of now.
    #[arg(long)]
    pub now: Option<i64>,
}

pub fn run(settings: &Settings, args: &Args) -> CliResult {
    let now = match args.now {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .map_err(|e| Failure::Failed(e.into()))?,
    };
    let r = &settings.retention;
    super::runtime()?.block_on(async {
        let store = super::connect(settings)?;
        store
            .migrate()
            .await
            .context("while migrating the database")?;
        let pending = store
            .rollup_pending(now)
            .await
            .context("while rolling up pending hours")?;
        let report = store
            .apply_retention(now, r.raw_days, r.rollup_days)
            .await
            .context("while applying retention")?;
        let pruned = store
            .prune_results(now, r.results_days)
            .await
            .context("while deleting old assessment results")?;
        let mark = store
            .rollup_mark()
            .await
            .context("while reading the rollup mark")?;
        println!(
            "rolled up {} hours of {} series ({} chunks); rollups complete before {}",
            pending.hours_written + report.rolled_up.hours_written,
            pending.series.max(report.rolled_up.series),
            pending.chunks_written + report.rolled_up.chunks_written,
            mark.map_or_else(|| "(no mark yet)".to_string(), |m| m.to_string()),
        );
        println!(
            "dropped {} raw partitions older than {} days: {}",
            report.raw_partitions_dropped.len(),
            r.raw_days,
            report.raw_partitions_dropped.join(" ")
        );
        println!(
            "dropped {} rollup partitions older than {} days: {}",
            report.rollup_partitions_dropped.len(),
            r.rollup_days,
            report.rollup_partitions_dropped.join(" ")
        );
        println!(
            "deleted results older than {} days (the newest of each kept): {} forecasts, {} exhaustion estimates, {} recommendations",
            r.results_days, pruned.forecasts, pruned.exhaustions, pruned.recommendations
        );
        Ok(())
    })
}
