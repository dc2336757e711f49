//! `headroom exhaustion`: forecasts each usage series over the horizon and reports, for every capacity
//! that bounds it (`<resource>_limit`, `_request`, `_capacity`, ...), when usage reaches it.

use std::io::Write;
use std::path::PathBuf;

use super::{CliResult, Failure};
use crate::domain::Span;
use crate::forecast::{self, ForecastError};
use crate::offline::{self, Cell, Format, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Usage CSV: `series_id,timestamp_unix,resource,value,unit`.
    #[arg(long)]
    pub input: PathBuf,
    /// Capacity CSV holding step functions named `<usage resource>_<kind>` (memory_limit, cpu_request, ...).
    #[arg(long)]
    pub capacity: PathBuf,
    /// How far ahead to look, for example 30d.
    #[arg(long, default_value = "30d")]
    pub horizon: Span,
    /// Coverage between the early and the late estimate.
    #[arg(long, default_value_t = 0.8)]
    pub level: f64,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// A directory of model files replacing the built-in `models/forecast/` set.
    #[arg(long)]
    pub models: Option<PathBuf>,
}

pub const COLUMNS: [&str; 10] = [
    "series_id",
    "resource",
    "capacity_resource",
    "threshold",
    "eta_unix",
    "probability",
    "eta_early",
    "eta_late",
    "status",
    "model",
];

pub fn run(args: &Args) -> CliResult {
    let opts = super::forecast::options(args.horizon, args.level, args.models.as_deref())?;
    let usage = offline::read_usage(&args.input).map_err(|e| Failure::BadInput(e.into()))?;
    let capacity =
        offline::read_capacity(&args.capacity).map_err(|e| Failure::BadInput(e.into()))?;
    // Only series with a bound are forecast: the rest would produce no row.
    let bounded: Vec<(&offline::UsageSeries, Vec<&offline::UsageSeries>)> = usage
        .iter()
        .map(|s| {
            let b = capacity.bounds_for(&s.series_id, &s.resource, s.unit.as_deref());
            (s, b)
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let inputs: Vec<&[(i64, f64)]> = bounded.iter().map(|(s, _)| s.points.as_slice()).collect();
    let results = forecast::forecast_many(&inputs, &opts);
    let mut table = Table::new(&COLUMNS);
    for ((s, bounds), r) in bounded.iter().zip(&results) {
        let last_t = s.points.last().map_or(0, |p| p.0);
        for b in bounds {
            // The capacity in force at the last sample; a capacity that starts later uses its first value.
            let Some(threshold) = capacity
                .value_at(&s.series_id, &b.resource, last_t)
                .or_else(|| b.points.first().map(|p| p.1))
            else {
                continue;
            };
            let mut row: Vec<Cell> = vec![
                s.series_id.as_str().into(),
                s.resource.as_str().into(),
                b.resource.as_str().into(),
                threshold.into(),
            ];
            match r {
                Ok(f) => {
                    let x = forecast::exhaustion(f, threshold);
                    row.extend([
                        Cell::from(x.eta),
                        x.probability.into(),
                        Cell::from(x.eta_early),
                        Cell::from(x.eta_late),
                        x.status.as_str().into(),
                        f.model.as_str().into(),
                    ]);
                }
                Err(e) => {
                    let status = match e {
                        ForecastError::NotEnoughHistory { .. } => "not_enough_history",
                        ForecastError::BadOptions(_) => "error",
                    };
                    row.extend([
                        Cell::Empty,
                        Cell::Empty,
                        Cell::Empty,
                        Cell::Empty,
                        status.into(),
                        Cell::Empty,
                    ]);
                    eprintln!("warning: {} {}: {e}", s.series_id, s.resource);
                }
            }
            table.push(row);
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    table.write(args.format, &mut out)?;
    out.flush()?;
    Ok(())
}
