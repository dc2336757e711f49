//! The forecast engine's benchmarks (never asserted in tests): `bench forecast` (throughput on synthetic
//! series), `bench accuracy` (rolling origins on the real traces) and `bench exhaustion` (synthetic
//! series with a known crossing, against `predict_linear`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{CliResult, Failure};
use crate::forecast::evaluate::{self, OriginCase, Shape};
use crate::forecast::{self, ForecastOptions, ModelSpec};
use crate::offline;

/// `headroom bench forecast`.
#[derive(Debug, clap::Args)]
pub struct ForecastArgs {
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// Sample step in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub step: i64,
    /// Also write the series as a usage CSV (for the statsforecast timing script).
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// `headroom bench accuracy`.
#[derive(Debug, clap::Args)]
pub struct AccuracyArgs {
    /// Directory of datasets, each with a usage.csv.
    #[arg(long, default_value = "../shared/data/traces")]
    pub traces: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub origins: usize,
    #[arg(long, default_value_t = 0.8)]
    pub level: f64,
    /// A directory of model files replacing the built-in set.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Write every origin's training window (last 28 days) and actuals for the comparison script.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Also write per-origin MASE of every method.
    #[arg(long)]
    pub detail: Option<PathBuf>,
}

/// `headroom bench exhaustion`.
#[derive(Debug, clap::Args)]
pub struct ExhaustionArgs {
    /// Series per shape.
    #[arg(long, default_value_t = 200)]
    pub series: u64,
    #[arg(long, default_value_t = 30)]
    pub horizon_days: i64,
}

pub fn run_forecast(a: &ForecastArgs) -> CliResult {
    bench_forecast(a.series, a.days, a.step, a.export.as_deref())
}

pub fn run_accuracy(a: &AccuracyArgs) -> CliResult {
    bench_accuracy(
        &a.traces,
        a.origins,
        a.level,
        a.models.as_deref(),
        a.export.as_deref(),
        a.detail.as_deref(),
    )
}

pub fn run_exhaustion(a: &ExhaustionArgs) -> CliResult {
    bench_exhaustion(a.series, a.horizon_days)
}

fn bench_forecast(n: usize, days: i64, step: i64, export: Option<&Path>) -> CliResult {
    let series: Vec<Vec<(i64, f64)>> = (0..n as u64)
        .map(|s| evaluate::synthetic_usage(s, days, step))
        .collect();
    if let Some(path) = export {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(w, "series_id,timestamp_unix,resource,value,unit")?;
        for (i, s) in series.iter().enumerate() {
            for (t, v) in s {
                writeln!(w, "s{i},{t},cpu,{v},cores")?;
            }
        }
        w.flush()?;
    }
    let opts = ForecastOptions::new(86_400, 0.8);
    let inputs: Vec<&[(i64, f64)]> = series.iter().map(Vec::as_slice).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    let out = forecast::forecast_many(&inputs, &opts);
    let secs = t.elapsed().as_secs_f64();
    let ok = out.iter().filter(|r| r.is_ok()).count();
    println!(
        "forecast bench: {n} series x {} points, horizon 24h, {} candidates, up to {} backtest origins, {threads} threads",
        series.first().map_or(0, Vec::len),
        opts.models.len(),
        opts.max_origins
    );
    println!(
        "forecast bench: {ok} forecasts in {secs:.2} s = {:.0} series/s ({:.3} ms per series per thread)",
        n as f64 / secs,
        secs * 1e3 * threads as f64 / n as f64
    );
    Ok(())
}

/// The methods scored on each origin: the engine, each candidate alone, and `predict_linear`.
struct Method {
    name: String,
    mase: Vec<f64>,
    inside: usize,
    observed: usize,
}

impl Method {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mase: Vec::new(),
            inside: 0,
            observed: 0,
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn bench_accuracy(
    traces: &Path,
    origins: usize,
    level: f64,
    models: Option<&Path>,
    export: Option<&Path>,
    detail: Option<&Path>,
) -> CliResult {
    let mut opts = ForecastOptions::new(86_400, level);
    if let Some(dir) = models {
        opts.models = ModelSpec::load_dir(dir).map_err(|e| Failure::BadInput(e.into()))?;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(traces)
        .map_err(|e| Failure::BadInput(anyhow::anyhow!("{}: {e}", traces.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("usage.csv").is_file())
        .collect();
    dirs.sort();
    // Every origin of every series, with its dataset name and key.
    let mut cases: Vec<(String, String, OriginCase)> = Vec::new();
    for d in &dirs {
        let name = d
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let usage =
            offline::read_usage(&d.join("usage.csv")).map_err(|e| Failure::BadInput(e.into()))?;
        for s in usage {
            for c in evaluate::origin_cases(&s.points, origins, 86_400) {
                cases.push((name.clone(), format!("{}|{}", s.series_id, s.resource), c));
            }
        }
    }
    let mut methods: Vec<Method> = vec![Method::new("headroom")];
    let singles: Vec<ForecastOptions> = opts
        .models
        .iter()
        .map(|m| ForecastOptions {
            models: vec![m.clone()],
            ..opts.clone()
        })
        .collect();
    methods.extend(opts.models.iter().map(|m| Method::new(m.name.clone())));
    methods.push(Method::new("predict_linear_6h"));

    let t = Instant::now();
    let inputs: Vec<&[(i64, f64)]> = cases.iter().map(|c| c.2.train.as_slice()).collect();
    let mut runs = vec![forecast::forecast_many(&inputs, &opts)];
    for o in &singles {
        runs.push(forecast::forecast_many(&inputs, o));
    }
    let secs = t.elapsed().as_secs_f64();
    let mut kept = vec![true; cases.len()];
    for r in &runs {
        for (i, f) in r.iter().enumerate() {
            kept[i] &= f.is_ok();
        }
    }
    let mut chosen: std::collections::BTreeMap<String, usize> = Default::default();
    // Per dataset: the engine's MASE per origin, and its observed leads inside the interval and in all.
    let mut per_dataset: std::collections::BTreeMap<String, (Vec<f64>, usize, usize)> =
        Default::default();
    let mut detail_rows = Vec::new();
    for (i, (ds, key, case)) in cases.iter().enumerate() {
        if !kept[i] {
            continue;
        }
        let mut row = vec![ds.clone(), key.clone(), case.origin.to_string()];
        for (m, r) in methods.iter_mut().zip(&runs) {
            let Ok(f) = &r[i] else { continue };
            let x = case.mase(&f.p50);
            m.mase.push(x);
            let (inside, n) = case.covered(&f.lower, &f.upper);
            m.inside += inside;
            m.observed += n;
            row.push(format!("{x:.4}"));
        }
        if let Ok(f) = &runs[0][i] {
            *chosen.entry(f.model.clone()).or_default() += 1;
            let d = per_dataset.entry(ds.clone()).or_default();
            d.0.push(case.mase(&f.p50));
            let (inside, n) = case.covered(&f.lower, &f.upper);
            d.1 += inside;
            d.2 += n;
        }
        let lin = evaluate::predict_linear(&case.train_y, case.step, 6 * 3_600, case.actual.len());
        let x = case.mase(&lin);
        if let Some(m) = methods.last_mut() {
            m.mase.push(x);
        }
        row.push(format!("{x:.4}"));
        detail_rows.push(row.join(","));
    }
    let n_kept = kept.iter().filter(|k| **k).count();
    println!(
        "accuracy bench: {} datasets, {n_kept} origins kept of {} ({} without enough history), last {origins} daily origins, 24h ahead, level {level}",
        dirs.len(),
        cases.len(),
        cases.len() - n_kept
    );
    println!(
        "| method | median MASE | mean MASE | {:.0} % coverage |",
        level * 100.0
    );
    println!("|---|---|---|---|");
    for m in &methods {
        let mean = m.mase.iter().sum::<f64>() / m.mase.len().max(1) as f64;
        let cov = if m.observed > 0 {
            format!("{:.3}", m.inside as f64 / m.observed as f64)
        } else {
            "-".into()
        };
        println!(
            "| {} | {:.3} | {:.3} | {cov} |",
            m.name,
            median(&m.mase),
            mean
        );
    }
    println!("chosen models: {chosen:?}");
    for (ds, (v, inside, n)) in &per_dataset {
        println!(
            "  {ds}: {} origins, median MASE {:.3}, coverage {:.3}",
            v.len(),
            median(v),
            *inside as f64 / (*n).max(1) as f64
        );
    }
    println!(
        "engine time: {secs:.1} s for {} forecasts",
        cases.len() * runs.len()
    );
    if let Some(path) = detail {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        let names: Vec<&str> = methods.iter().map(|m| m.name.as_str()).collect();
        writeln!(w, "dataset,series,origin,{}", names.join(","))?;
        for r in &detail_rows {
            writeln!(w, "{r}")?;
        }
    }
    if let Some(path) = export {
        export_cases(path, &cases, &kept)?;
    }
    Ok(())
}

/// One row per slot: `case,dataset,series,origin,step,scale,role,lead,value` (role train or test).
fn export_cases(path: &Path, cases: &[(String, String, OriginCase)], kept: &[bool]) -> CliResult {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "case,dataset,series,origin,step,scale,role,index,value")?;
    for (i, (ds, key, c)) in cases.iter().enumerate() {
        if !kept[i] {
            continue;
        }
        let keep = (28 * 86_400 / c.step) as usize;
        let from = c.train_y.len().saturating_sub(keep);
        let head = format!("{i},{ds},{key},{},{},{}", c.origin, c.step, c.scale);
        for (j, v) in c.train_y.iter().enumerate().skip(from) {
            writeln!(w, "{head},train,{},{}", j - from, fmt(*v))?;
        }
        for (j, v) in c.actual.iter().enumerate() {
            writeln!(w, "{head},test,{j},{}", fmt(*v))?;
        }
    }
    w.flush()?;
    Ok(())
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

fn bench_exhaustion(per_shape: u64, horizon_days: i64) -> CliResult {
    let opts = ForecastOptions::new(horizon_days * 86_400, 0.8);
    let mut cases = Vec::new();
    for (k, shape) in [Shape::Leak, Shape::Growth, Shape::Flat]
        .into_iter()
        .enumerate()
    {
        for s in 0..per_shape {
            cases.push(evaluate::exhaustion_case(
                s * 3 + k as u64,
                shape,
                horizon_days,
            ));
        }
    }
    let inputs: Vec<&[(i64, f64)]> = cases.iter().map(|c| c.history.as_slice()).collect();
    let t = Instant::now();
    let fc = forecast::forecast_many(&inputs, &opts);
    let secs = t.elapsed().as_secs_f64();
    let horizon_end =
        |c: &evaluate::ExhaustionCase| c.history.last().map_or(0, |p| p.0) + horizon_days * 86_400;
    // (relative errors of crossing cases with a miss counted as 1, missed, false alarms, non-crossing)
    let mut ours = (Vec::new(), 0usize, 0usize);
    let mut lin = (Vec::new(), 0usize, 0usize);
    let (mut crossing, mut flat, mut early_ok, mut late_ok) = (0usize, 0usize, 0usize, 0usize);
    for (c, f) in cases.iter().zip(&fc) {
        let Ok(f) = f else { continue };
        let last = c.history.last().map_or(0, |p| p.0);
        let x = forecast::exhaustion(f, c.threshold);
        let step = f.step;
        let y: Vec<f64> = c.history.iter().map(|p| p.1).collect();
        let h = f.p50.len();
        let line = evaluate::predict_linear(&y, step, 6 * 3_600, h);
        let lin_eta = line
            .iter()
            .position(|v| *v >= c.threshold)
            .map(|i| f.start + i as i64 * step);
        let eta = x.eta.filter(|t| *t <= horizon_end(c));
        match c.truth {
            Some(truth) => {
                crossing += 1;
                let lead = (truth - last) as f64;
                for (acc, e) in [(&mut ours, eta), (&mut lin, lin_eta)] {
                    match e {
                        Some(e) => acc.0.push(((e - truth) as f64 / lead).abs()),
                        None => {
                            acc.0.push(1.0);
                            acc.1 += 1;
                        }
                    }
                }
                early_ok += usize::from(x.eta_early.is_some_and(|e| e <= truth));
                late_ok += usize::from(x.eta_late.is_none_or(|l| l >= truth));
            }
            None => {
                flat += 1;
                ours.2 += usize::from(eta.is_some());
                lin.2 += usize::from(lin_eta.is_some());
            }
        }
    }
    println!(
        "exhaustion bench: {} series ({crossing} crossing within {horizon_days}d, {flat} never crossing), forecast in {secs:.1} s",
        cases.len()
    );
    println!(
        "| method | median relative ETA error | missed crossings | false alarms on never-crossing |"
    );
    println!("|---|---|---|---|");
    for (name, acc) in [("headroom", &ours), ("predict_linear_6h", &lin)] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            median(&acc.0),
            acc.1 as f64 / crossing.max(1) as f64,
            acc.2 as f64 / flat.max(1) as f64
        );
    }
    println!(
        "headroom bounds: eta_early at or before the true crossing {:.3}, eta_late at or after it {:.3}",
        early_ok as f64 / crossing.max(1) as f64,
        late_ok as f64 / crossing.max(1) as f64
    );
    Ok(())
}
