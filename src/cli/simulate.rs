//! `headroom simulate`: writes a simulated cluster's history (or a replayed trace) as OpenMetrics text for
//! `promtool tsdb create-blocks-from openmetrics`, and optionally the ground truth as JSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{CliResult, Failure};
use crate::domain::Span;
use crate::offline::{read_capacity, read_usage};
use crate::simulate::{self, ClusterSpec, ReplayError, ReplayOptions, SimulateError, Truth};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Number of workloads (Deployments, StatefulSets, DaemonSets) in the simulated cluster.
    #[arg(long, default_value_t = 12)]
    pub workloads: usize,
    /// Days of history, ending at --end.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Time between samples, like a scrape interval (for example 60s, 5m).
    #[arg(long, default_value = "60s")]
    pub step: Span,
    /// Seed: the same seed, size and --end give byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// End of the window in Unix seconds (exclusive); default: now, rounded down to the step.
    #[arg(long)]
    pub end: Option<i64>,
    /// Where to write the OpenMetrics text (`-` for standard output).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the ground truth (workloads, pods, containers, OOM kills, counts written) as JSON.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Replay an offline usage CSV (`series_id,timestamp_unix,resource,value,unit`) instead of simulating:
    /// one container per series. With --end, timestamps move by whole weeks to end just before it.
    #[arg(long, conflicts_with_all = ["workloads", "days", "step", "seed"])]
    pub replay: Option<PathBuf>,
    /// Capacity CSV of the replayed trace: `cpu_request`, `cpu_limit`, `memory_limit`, ... rows become
    /// kube-state-metrics requests and limits.
    #[arg(long, requires = "replay")]
    pub capacity: Option<PathBuf>,
    /// Namespace of the replayed workloads.
    #[arg(long, default_value = "replay", requires = "replay")]
    pub namespace: String,
    /// Replay: cores of the machine that `percent`, `fraction` and `NCU` cpu values are relative to.
    #[arg(long, default_value_t = 16.0, requires = "replay")]
    pub cores: f64,
    /// Replay: GiB of the machine that `percent`, `fraction` and `NMU` memory values are relative to.
    #[arg(long, default_value_t = 64.0, requires = "replay")]
    pub machine_memory_gib: f64,
    /// Replay: MHz of one core for `MHz` cpu values (used when the capacity file lacks `cpu_capacity`
    /// and `cpu_cores` for the series).
    #[arg(long, default_value_t = 2_600.0, requires = "replay")]
    pub core_mhz: f64,
}

pub fn run(args: &SimulateArgs) -> CliResult {
    if let Some(usage) = &args.replay {
        return run_replay(args, usage);
    }
    if args.days == 0 {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--days must be at least 1"
        )));
    }
    let step = args.step.secs();
    let end = match args.end {
        Some(e) => e,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("while reading the clock")?
                .as_secs() as i64;
            now - now.rem_euclid(step)
        }
    };
    let spec = ClusterSpec {
        workloads: args.workloads,
        start: end - i64::from(args.days) * 86_400,
        end,
        step,
        seed: args.seed,
    };
    let out = open_out(&args.out)?;
    let (cluster, stats) = simulate::simulate(&spec, out).map_err(|e| match e {
        SimulateError::Spec(e) => Failure::BadInput(e.into()),
        SimulateError::Io(e) => Failure::Failed(
            anyhow::Error::new(e).context(format!("while writing {}", args.out.display())),
        ),
    })?;
    if let Some(path) = &args.truth {
        write_json(
            path,
            &Truth {
                cluster: &cluster,
                written: &stats,
            },
        )?;
    }
    eprintln!(
        "simulated {} workloads, {} pods over {} days at {}: {} series, {} samples",
        cluster.workloads.len(),
        cluster
            .workloads
            .iter()
            .map(|w| w.pods.len())
            .sum::<usize>(),
        args.days,
        args.step,
        stats.series(),
        stats.samples()
    );
    Ok(())
}

fn run_replay(args: &SimulateArgs, usage_path: &Path) -> CliResult {
    for (flag, v) in [
        ("--cores", args.cores),
        ("--machine-memory-gib", args.machine_memory_gib),
        ("--core-mhz", args.core_mhz),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "{flag} must be a positive number, got {v}"
            )));
        }
    }
    let usage = read_usage(usage_path).map_err(|e| Failure::BadInput(e.into()))?;
    let capacity = match &args.capacity {
        Some(p) => Some(read_capacity(p).map_err(|e| Failure::BadInput(e.into()))?),
        None => None,
    };
    let opts = ReplayOptions {
        namespace: args.namespace.clone(),
        machine_cores: args.cores,
        machine_memory_bytes: args.machine_memory_gib * 1024.0 * 1024.0 * 1024.0,
        core_mhz: args.core_mhz,
        end: args.end,
    };
    let out = open_out(&args.out)?;
    let (replayed, stats) =
        simulate::replay(&usage, capacity.as_ref(), &opts, out).map_err(|e| match e {
            ReplayError::Io(e) => Failure::Failed(
                anyhow::Error::new(e).context(format!("while writing {}", args.out.display())),
            ),
            e => Failure::BadInput(anyhow::anyhow!("{}: {e}", usage_path.display())),
        })?;
    if let Some(path) = &args.truth {
        write_json(
            path,
            &serde_json::json!({ "replay": &replayed, "written": &stats }),
        )?;
    }
    eprintln!(
        "replayed {} trace series ({} skipped, shifted {}s): {} series, {} samples",
        replayed.series.len(),
        replayed.skipped.len(),
        replayed.shift_secs,
        stats.series(),
        stats.samples()
    );
    Ok(())
}

fn open_out(path: &Path) -> Result<Box<dyn Write>, Failure> {
    if path == Path::new("-") {
        return Ok(Box::new(BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        )));
    }
    let f = File::create(path).map_err(|e| {
        Failure::BadInput(anyhow::anyhow!("{}: cannot create: {e}", path.display()))
    })?;
    Ok(Box::new(BufWriter::with_capacity(1 << 20, f)))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Failure> {
    let f = File::create(path).map_err(|e| {
        Failure::BadInput(anyhow::anyhow!("{}: cannot create: {e}", path.display()))
    })?;
    let mut w = BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value)
        .and_then(|()| w.flush().map_err(serde_json::Error::io))
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(())
}
