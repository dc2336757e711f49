//! `headroom bench seed`: loads a simulated cluster of any size straight into the configured database and
//! optionally assesses it, timing both. It prepares the API load benchmark (`scripts/bench-api`) and
//! measures whether one assessment of 10,000 workloads fits in the default interval.

use std::time::Instant;

use anyhow::Context as _;

use super::{CliResult, Context, Failure};
use crate::assess::{self, AssessOptions};
use crate::simulate::ClusterSpec;

/// `headroom bench seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Simulated workloads (Deployments, StatefulSets, DaemonSets, Jobs).
    #[arg(long, default_value_t = 10_000)]
    pub workloads: usize,
    /// Days of history up to `--end`.
    #[arg(long, default_value_t = 7)]
    pub days: i64,
    /// Sample step in seconds.
    #[arg(long, default_value_t = 300)]
    pub step: i64,
    /// Unix time the history ends at (default: now, rounded down to the step).
    #[arg(long)]
    pub end: Option<i64>,
    /// Name of the cluster the workloads belong to.
    #[arg(long, default_value = "sim")]
    pub cluster: String,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Workloads written per database round trip.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Also run one assessment at `--end` and report how long it took.
    #[arg(long)]
    pub assess: bool,
}

pub fn run(ctx: &Context, a: &SeedArgs) -> CliResult {
    if a.days < 1 {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--days must be at least 1, got {}",
            a.days
        )));
    }
    if a.workloads < 1 {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--workloads must be at least 1"
        )));
    }
    let settings = ctx.settings()?;
    let now = crate::domain::unix_now();
    let step = a.step.max(1);
    let end = a.end.unwrap_or(now - now.rem_euclid(step));
    let spec = ClusterSpec {
        workloads: a.workloads,
        start: end - a.days * 86_400,
        end,
        step: a.step,
        seed: a.seed,
    };
    // A bad spec is the caller's fault; check it before touching the database.
    crate::simulate::Cluster::plan(&ClusterSpec {
        workloads: 1,
        ..spec.clone()
    })
    .map_err(|e| Failure::BadInput(e.into()))?;
    let opts = AssessOptions::from_settings(&settings).map_err(|e| Failure::BadInput(e.into()))?;
    super::runtime()?.block_on(async {
        let store = super::connect(&settings)?;
        store
            .migrate()
            .await
            .context("while migrating the database")?;
        let started = Instant::now();
        let seeded = crate::seed::seed(&store, &a.cluster, &spec, a.batch)
            .await
            .context("while seeding the database")?;
        println!(
            "seeded {} workloads, {} containers, {} samples ({} days at {}s) in {:.1} s",
            seeded.workloads,
            seeded.containers,
            seeded.samples,
            a.days,
            a.step,
            started.elapsed().as_secs_f64()
        );
        if a.assess {
            let report = assess::run(&store, &opts, end)
                .await
                .context("while assessing")?;
            println!(
                "assessed {} containers ({} forecasts, {} without enough history) in {:.1} s \
                 (stages: read {:.1} s, fit {:.1} s, save {:.1} s)",
                report.containers,
                report.forecasts,
                report.not_enough_history,
                report.seconds,
                report.read_secs,
                report.fit_secs,
                report.save_secs
            );
        }
        Ok(())
    })
}
