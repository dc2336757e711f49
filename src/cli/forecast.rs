//! `headroom forecast`: reads a usage CSV, forecasts every `(series_id, resource)` at its typical
//! step up to the horizon and prints `series_id,resource,timestamp_unix,p50,lower,upper,model,...`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CliResult, Failure};
use crate::domain::Span;
use crate::forecast::{self, ForecastOptions, ModelSpec};
use crate::offline::{self, Cell, Format, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Usage CSV: `series_id,timestamp_unix,resource,value,unit`.
    #[arg(long)]
    pub input: PathBuf,
    /// How far ahead, for example 24h or 7d.
    #[arg(long, default_value = "24h")]
    pub horizon: Span,
    /// Central coverage of the interval, between 0 and 1.
    #[arg(long, default_value_t = 0.8)]
    pub level: f64,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// A directory of model files replacing the built-in `models/forecast/` set.
    #[arg(long)]
    pub models: Option<PathBuf>,
}

pub const COLUMNS: [&str; 8] = [
    "series_id",
    "resource",
    "timestamp_unix",
    "p50",
    "lower",
    "upper",
    "model",
    "backtest_mase",
];

/// Options shared by the offline commands: level check and model set, both the caller's fault if wrong.
pub fn options(
    horizon: Span,
    level: f64,
    models: Option<&Path>,
) -> Result<ForecastOptions, Failure> {
    if !(level > 0.0 && level < 1.0) {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--level {level}: must be between 0 and 1, for example 0.8"
        )));
    }
    let mut opts = ForecastOptions::new(horizon.secs(), level);
    if let Some(dir) = models {
        opts.models = ModelSpec::load_dir(dir).map_err(|e| Failure::BadInput(e.into()))?;
    }
    Ok(opts)
}

pub fn run(args: &Args) -> CliResult {
    let opts = options(args.horizon, args.level, args.models.as_deref())?;
    let series = offline::read_usage(&args.input).map_err(|e| Failure::BadInput(e.into()))?;
    let inputs: Vec<&[(i64, f64)]> = series.iter().map(|s| s.points.as_slice()).collect();
    let results = forecast::forecast_many(&inputs, &opts);
    let mut table = Table::new(&COLUMNS);
    let mut failed = Vec::new();
    for (s, r) in series.iter().zip(results) {
        match r {
            Ok(f) => {
                for (i, t) in f.times().enumerate() {
                    table.push(vec![
                        s.series_id.as_str().into(),
                        s.resource.as_str().into(),
                        t.into(),
                        f.p50[i].into(),
                        f.lower[i].into(),
                        f.upper[i].into(),
                        f.model.as_str().into(),
                        Cell::from(f.backtest_mase),
                    ]);
                }
            }
            Err(e) => failed.push(format!("{} {}: {e}", s.series_id, s.resource)),
        }
    }
    if table.rows.is_empty() {
        let first = failed.first().cloned().unwrap_or_default();
        return Err(Failure::BadInput(anyhow::anyhow!(
            "{}: no series could be forecast ({first})",
            args.input.display()
        )));
    }
    for f in &failed {
        eprintln!("warning: skipped {f}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    table.write(args.format, &mut out)?;
    out.flush()?;
    Ok(())
}
