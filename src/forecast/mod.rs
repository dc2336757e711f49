//! The forecast engine: resamples a usage series, backtests every declared candidate model on the
//! series' own history (rolling origin), forecasts with the winner and calibrates intervals from its
//! backtest residuals per lead time. Pure: plain data in, plain data out; no tokio, no sqlx.

pub mod evaluate;
mod exhaustion;
mod fit;
mod interval;
mod model;
mod resample;

pub use exhaustion::{Exhaustion, ExhaustionStatus, exhaustion};
pub use fit::day_slots;
use interval::Bands;
pub use model::{ModelError, ModelKind, ModelSpec};
pub use resample::{Regular, resample, typical_step};

/// What to forecast and how.
#[derive(Debug, Clone)]
pub struct ForecastOptions {
    /// How far ahead, in seconds.
    pub horizon_secs: i64,
    /// Central coverage of the interval, in (0, 1): 0.8 gives the 10 % and 90 % quantiles.
    pub level: f64,
    /// Grid step in seconds; `None` uses the series' median spacing.
    pub step_secs: Option<i64>,
    /// Candidate models, in tie-breaking order.
    pub models: Vec<ModelSpec>,
    /// At most this many rolling origins in the backtest (more: steadier choice and intervals, slower).
    pub max_origins: usize,
}

impl ForecastOptions {
    pub fn new(horizon_secs: i64, level: f64) -> Self {
        Self {
            horizon_secs,
            level,
            step_secs: None,
            models: ModelSpec::builtin(),
            max_origins: 7,
        }
    }
}

/// Why no forecast could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("not enough history: have {have}, need {need} (points at the {step_secs} s step)")]
    NotEnoughHistory {
        have: usize,
        need: usize,
        step_secs: i64,
    },
    #[error("invalid forecast options: {0}")]
    BadOptions(String),
}

/// A forecast at a regular step, with the chosen model and its backtest error.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Name of the model the backtest chose.
    pub model: String,
    /// Backtest MAE of that model scaled by the in-sample daily seasonal-naive MAE (`None` when the
    /// series never changes, so the scale is zero).
    pub backtest_mase: Option<f64>,
    /// Time of the first forecast value; value `i` is at `start + i * step`.
    pub start: i64,
    pub step: i64,
    pub level: f64,
    pub p50: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// Timestamp and value of the last observed sample ("already over" is judged on it).
    pub last: (i64, f64),
    /// Whether the series never went below zero (then no quantile does either).
    nonnegative: bool,
    /// The model's point forecast before clamping: the centre the residuals were measured from.
    point: Vec<f64>,
    bands: Bands,
    /// Residuals of the hourly peak (highest actual minus highest forecast in a block of leads).
    peak_bands: Bands,
    /// Slots per peak block.
    block: usize,
}

impl Forecast {
    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.p50.len()).map(|i| self.start + i as i64 * self.step)
    }

    /// Probability that the value at forecast index `i` is at least `x`, from the backtest residuals.
    pub fn prob_at_least(&self, i: usize, x: f64) -> f64 {
        self.bands
            .tail(i, x - self.point[i], self.nonnegative && x <= 0.0)
    }

    /// The hourly blocks of the forecast: `(first index, index of the block's highest point)`.
    pub fn peak_blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.point.len()).step_by(self.block).map(|b| {
            let e = (b + self.block).min(self.point.len());
            let top = (b..e)
                .max_by(|&i, &j| self.point[i].total_cmp(&self.point[j]))
                .unwrap_or(b);
            (b, top)
        })
    }

    /// Probability that the highest value of the block starting at `b` (peak at `top`) is at least `x`.
    pub fn peak_prob_at_least(&self, b: usize, top: usize, x: f64) -> f64 {
        self.peak_bands.tail(
            b / self.block,
            x - self.point[top],
            self.nonnegative && x <= 0.0,
        )
    }
}

/// Forecasts `points` (sorted, strictly increasing timestamps) `opts.horizon_secs` ahead.
pub fn forecast(points: &[(i64, f64)], opts: &ForecastOptions) -> Result<Forecast, ForecastError> {
    if !(opts.level > 0.0 && opts.level < 1.0) {
        return Err(ForecastError::BadOptions(format!(
            "level {} is not between 0 and 1",
            opts.level
        )));
    }
    if opts.horizon_secs <= 0 || opts.models.is_empty() {
        return Err(ForecastError::BadOptions(
            "the horizon must be positive and at least one model declared".into(),
        ));
    }
    let step = match opts.step_secs.or_else(|| typical_step(points)) {
        Some(s) if s > 0 => s,
        _ => {
            return Err(ForecastError::NotEnoughHistory {
                have: points.len(),
                need: 2,
                step_secs: 0,
            });
        }
    };
    let reg = resample(points, step);
    let n = reg.y.len();
    let day = day_slots(step);
    let horizon = ((opts.horizon_secs / step) as usize).max(1);
    let need = day + (day / 8).max(12);
    let observed = reg.y.iter().filter(|v| v.is_finite()).count();
    if n < need || observed < need / 2 {
        return Err(ForecastError::NotEnoughHistory {
            have: if n < need { n } else { observed },
            need,
            step_secs: step,
        });
    }
    // Backtest one day ahead (or the horizon, if shorter), each origin with at least a day of
    // history before it. Long horizons backtest further ahead (up to a third of the history) so a
    // trend that only shows over days can win the choice. Origins sit a backtest length apart when
    // the history allows `max_origins` of them; shorter histories get overlapping origins (down to
    // a quarter of that apart), so the interval calibration still sees several days' errors.
    let bt = horizon.min(day.max((n - day) / 3)).min(n - day);
    let wanted = opts.max_origins.max(1);
    let gap = if wanted > 1 {
        ((n - bt - day) / (wanted - 1)).clamp((bt / 4).max(1), bt)
    } else {
        bt
    };
    let origins: Vec<usize> = (0..wanted)
        .map_while(|k| (n - bt).checked_sub(k * gap).filter(|&o| o >= day))
        .collect();
    // Peaks are compared hour by hour: the highest actual against the highest forecast of the block.
    let block = ((3_600 / step) as usize).clamp(1, bt.max(1));
    let blocks = bt.div_ceil(block);
    // Per origin: residuals by lead, and peak residuals by block (`NaN` where nothing was observed).
    type Residuals = (Vec<Vec<f64>>, Vec<Vec<f64>>);
    let mut best: Option<(f64, usize, Residuals)> = None;
    for (c, spec) in opts.models.iter().enumerate() {
        let mut by_lead: Vec<Vec<f64>> = Vec::with_capacity(origins.len());
        let mut peaks: Vec<Vec<f64>> = Vec::with_capacity(origins.len());
        let (mut sum, mut cnt) = (0.0, 0usize);
        for &o in &origins {
            let pred = fit::predict(spec, &reg.y, reg.t0, step, o, bt);
            let res: Vec<f64> = pred
                .iter()
                .enumerate()
                .map(|(h, p)| reg.y[o + h] - p)
                .collect();
            for r in res.iter().filter(|r| r.is_finite()) {
                sum += r.abs();
                cnt += 1;
            }
            by_lead.push(res);
            peaks.push(
                (0..blocks)
                    .map(|i| {
                        let (b, e) = (i * block, ((i + 1) * block).min(bt));
                        let amax = reg.y[o + b..o + e]
                            .iter()
                            .copied()
                            .filter(|v| v.is_finite())
                            .fold(f64::NAN, f64::max);
                        let pmax = pred[b..e].iter().copied().fold(f64::NAN, f64::max);
                        amax - pmax
                    })
                    .collect(),
            );
        }
        let mae = if cnt == 0 {
            f64::INFINITY
        } else {
            sum / cnt as f64
        };
        if best.as_ref().is_none_or(|b| mae < b.0) {
            best = Some((mae, c, (by_lead, peaks)));
        }
    }
    let (mae, chosen, (by_lead, peaks)) =
        best.unwrap_or((f64::INFINITY, 0, (Vec::new(), Vec::new())));
    let spec = &opts.models[chosen];
    let scale = seasonal_naive_scale(&reg.y, day);
    let backtest_mase = (mae.is_finite() && scale > 0.0).then(|| mae / scale);

    let bands = Bands::calibrated(&by_lead, opts.level);
    let peak_bands = Bands::calibrated(&peaks, opts.level);

    let point = fit::predict(spec, &reg.y, reg.t0, step, n, horizon);
    let nonnegative = points.iter().all(|p| p.1 >= 0.0);
    let clamp = |v: f64| if nonnegative { v.max(0.0) } else { v };
    let (lo_q, hi_q) = ((1.0 - opts.level) / 2.0, (1.0 + opts.level) / 2.0);
    let p50: Vec<f64> = point.iter().map(|&v| clamp(v)).collect();
    let lower = (0..horizon)
        .map(|h| clamp(point[h] + bands.quantile(h, lo_q)).min(p50[h]))
        .collect();
    let upper = (0..horizon)
        .map(|h| clamp(point[h] + bands.quantile(h, hi_q)).max(p50[h]))
        .collect();
    let last = points[points.len() - 1];
    Ok(Forecast {
        model: spec.name.clone(),
        backtest_mase,
        start: reg.time(n - 1) + step,
        step,
        level: opts.level,
        p50,
        lower,
        upper,
        last,
        nonnegative,
        point,
        bands,
        peak_bands,
        block,
    })
}

/// Mean absolute change from one day to the next: the MASE denominator (lag 1 if under two days).
pub fn seasonal_naive_scale(y: &[f64], day: usize) -> f64 {
    let lag = if y.len() > day { day } else { 1 };
    let (mut s, mut c) = (0.0, 0usize);
    for i in lag..y.len() {
        let d = y[i] - y[i - lag];
        if d.is_finite() {
            s += d.abs();
            c += 1;
        }
    }
    if c == 0 { 0.0 } else { s / c as f64 }
}

#[cfg(test)]
mod tests;

/// Forecasts many series on all cores (`std::thread::scope`, work handed out one series at a time,
/// since series lengths differ by orders of magnitude). Results keep the input order.
pub fn forecast_many(
    series: &[&[(i64, f64)]],
    opts: &ForecastOptions,
) -> Vec<Result<Forecast, ForecastError>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(series.len().max(1));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<Forecast, ForecastError>>>> =
        Mutex::new(vec![None; series.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= series.len() {
                        break;
                    }
                    let r = forecast(series[i], opts);
                    if let Ok(mut o) = out.lock() {
                        o[i] = Some(r);
                    }
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            r.unwrap_or(Err(ForecastError::BadOptions(
                "a worker thread failed".into(),
            )))
        })
        .collect()
}
