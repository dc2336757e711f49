//! What the benchmarks measure, kept pure so the numbers are reproducible: rolling origins over a
//! series (MASE scaled by the in-sample daily seasonal-naive error), the `predict_linear` baseline,
//! and seeded synthetic series with a known exhaustion time.

use super::{day_slots, resample, seasonal_naive_scale, typical_step};

/// One forecast origin of one series: what the forecaster may see and what then happened.
#[derive(Debug, Clone)]
pub struct OriginCase {
    /// Origin time: the last training sample is at or before it.
    pub origin: i64,
    pub step: i64,
    /// Raw samples up to the origin.
    pub train: Vec<(i64, f64)>,
    /// The resampled training series (slot `i` at `t0 + i * step`, `NaN` missing).
    pub train_y: Vec<f64>,
    /// Actual resampled values at leads `0..len` after the last training slot (`NaN` missing).
    pub actual: Vec<f64>,
    /// In-sample mean absolute daily seasonal-naive error: the MASE denominator.
    pub scale: f64,
}

/// The last `origins` daily origins of a series, `horizon_secs` ahead, at its median step. Origins
/// without a full day of training history, without actuals, or with a zero scale are left out.
pub fn origin_cases(points: &[(i64, f64)], origins: usize, horizon_secs: i64) -> Vec<OriginCase> {
    let Some(step) = typical_step(points) else {
        return Vec::new();
    };
    let full = resample(points, step);
    let day = day_slots(step);
    let horizon = ((horizon_secs / step) as usize).max(1);
    let last = points[points.len() - 1].0;
    let mut out = Vec::new();
    for k in 1..=origins {
        let origin = last - k as i64 * 86_400;
        let cut = points.partition_point(|p| p.0 <= origin);
        if cut < 2 {
            continue;
        }
        let train = points[..cut].to_vec();
        let reg = resample(&train, step);
        let n = reg.y.len();
        if n <= day {
            continue;
        }
        let actual: Vec<f64> = (n..n + horizon)
            .map(|i| full.y.get(i).copied().unwrap_or(f64::NAN))
            .collect();
        let scale = seasonal_naive_scale(&reg.y, day);
        if scale <= 0.0 || !actual.iter().any(|v| v.is_finite()) {
            continue;
        }
        out.push(OriginCase {
            origin,
            step,
            train,
            train_y: reg.y,
            actual,
            scale,
        });
    }
    out
}

impl OriginCase {
    /// Mean absolute error over the observed leads divided by the scale.
    pub fn mase(&self, pred: &[f64]) -> f64 {
        let (mut s, mut c) = (0.0, 0usize);
        for (a, p) in self.actual.iter().zip(pred) {
            if a.is_finite() {
                s += (a - p).abs();
                c += 1;
            }
        }
        s / c.max(1) as f64 / self.scale
    }

    /// Observed leads inside `[lower, upper]`, and observed leads.
    pub fn covered(&self, lower: &[f64], upper: &[f64]) -> (usize, usize) {
        let mut inside = 0;
        let mut n = 0;
        for ((a, l), u) in self.actual.iter().zip(lower).zip(upper) {
            if a.is_finite() {
                n += 1;
                inside += usize::from(*l <= *a && *a <= *u);
            }
        }
        (inside, n)
    }
}

/// Prometheus' `predict_linear`: a least-squares line over the last `window_secs` of the series,
/// extrapolated `horizon` slots past its end.
pub fn predict_linear(y: &[f64], step: i64, window_secs: i64, horizon: usize) -> Vec<f64> {
    let n = y.len();
    let w = ((window_secs / step) as usize).clamp(1, n.max(1));
    let (mut sx, mut sy, mut sxx, mut sxy, mut c) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, v) in y.iter().enumerate().skip(n - w.min(n)) {
        if v.is_finite() {
            let x = i as f64;
            sx += x;
            sy += v;
            sxx += x * x;
            sxy += x * v;
            c += 1.0;
        }
    }
    if c == 0.0 {
        return vec![0.0; horizon];
    }
    let den = c * sxx - sx * sx;
    let slope = if den.abs() > 1e-12 {
        (c * sxy - sx * sy) / den
    } else {
        0.0
    };
    let icpt = (sy - slope * sx) / c;
    (0..horizon)
        .map(|h| icpt + slope * (n + h) as f64)
        .collect()
}

/// A small seeded generator (SplitMix64), so synthetic benchmarks are the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[a, b)`.
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform(1e-12, 1.0);
        let v = self.uniform(0.0, 1.0);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const T0: i64 = 1_700_000_000;

/// A usage-like series: level, slow trend, daily and weekly cycles, noise. For the speed benchmark.
pub fn synthetic_usage(seed: u64, days: i64, step: i64) -> Vec<(i64, f64)> {
    let mut r = Rng::new(seed);
    let base = r.uniform(10.0, 1000.0);
    let trend = base * r.uniform(-0.005, 0.01);
    let daily = base * r.uniform(0.0, 0.4);
    let weekly = base * r.uniform(0.0, 0.1);
    let noise = base * r.uniform(0.01, 0.1);
    let phase = r.uniform(0.0, std::f64::consts::TAU);
    (0..days * 86_400 / step)
        .map(|i| {
            let t = T0 + i * step;
            let d = (t - T0) as f64 / 86_400.0;
            let v = base
                + trend * d
                + daily * (std::f64::consts::TAU * d + phase).sin()
                + weekly * (std::f64::consts::TAU * d / 7.0).sin()
                + noise * r.normal();
            (t, v.max(0.0))
        })
        .collect()
}

/// Shapes of the exhaustion benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Linear growth (a leak).
    Leak,
    /// Compounding growth.
    Growth,
    /// No growth: the threshold is never reached.
    Flat,
}

/// A synthetic exhaustion case: history, a threshold, and the true first crossing (if any) of the
/// generated future within `future_days`.
#[derive(Debug, Clone)]
pub struct ExhaustionCase {
    pub shape: Shape,
    pub history: Vec<(i64, f64)>,
    pub threshold: f64,
    /// First future time the generated usage reaches the threshold; `None` when it never does.
    pub truth: Option<i64>,
}

/// Fourteen days of 5-minute history and the following `future_days`, with daily seasonality and
/// noise; for growing shapes the threshold is placed so the crossing falls 2 to 25 days ahead.
pub fn exhaustion_case(seed: u64, shape: Shape, future_days: i64) -> ExhaustionCase {
    let mut r = Rng::new(seed);
    let step = 300;
    let hist_days = 14.0;
    let base = r.uniform(100.0, 1000.0);
    let amp = base * r.uniform(0.0, 0.25);
    let noise = base * r.uniform(0.005, 0.04);
    let rate = r.uniform(0.01, 0.05);
    let lead_days = r.uniform(2.0, 25.0);
    let level = |d: f64| match shape {
        Shape::Leak => base * (1.0 + rate * d),
        Shape::Growth => base * (1.0 + rate).powf(d),
        Shape::Flat => base,
    };
    let total = ((hist_days + future_days as f64) * 86_400.0 / step as f64) as i64;
    let hist_n = (hist_days * 86_400.0 / step as f64) as i64;
    let path: Vec<(i64, f64)> = (0..total)
        .map(|i| {
            let d = (i * step) as f64 / 86_400.0;
            // Uniform noise is bounded, so a flat series stays below a threshold above its range.
            let e = noise * r.uniform(-1.7, 1.7);
            (
                T0 + i * step,
                level(d) + amp * (std::f64::consts::TAU * d).sin() + e,
            )
        })
        .collect();
    let (history, future) = path.split_at(hist_n as usize);
    let hist_max = history.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let threshold = match shape {
        Shape::Flat => hist_max + (amp + noise * 1.7) * r.uniform(0.3, 1.0) + base * 0.05,
        _ => (level(hist_days + lead_days) + amp).max(hist_max * 1.01),
    };
    let truth = future.iter().find(|p| p.1 >= threshold).map(|p| p.0);
    ExhaustionCase {
        shape,
        history: history.to_vec(),
        threshold,
        truth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_linear_extends_the_last_line() {
        let y: Vec<f64> = (0..100).map(|i| 2.0 * i as f64 + 1.0).collect();
        let p = predict_linear(&y, 60, 3_600, 3);
        assert!((p[0] - 201.0).abs() < 1e-9 && (p[2] - 205.0).abs() < 1e-9);
    }

    #[test]
    fn origins_step_back_one_day_each_and_hold_out_the_next_day() {
        let pts = synthetic_usage(1, 6, 3_600);
        let cases = origin_cases(&pts, 3, 86_400);
        assert_eq!(cases.len(), 3);
        let last = pts.last().unwrap().0;
        assert_eq!(cases[0].origin, last - 86_400);
        assert!(cases[0].train.iter().all(|p| p.0 <= cases[0].origin));
        assert_eq!(cases[0].actual.len(), 24);
        assert!(cases[2].train.len() < cases[1].train.len());
        // A perfect forecast scores zero.
        assert_eq!(cases[1].mase(&cases[1].actual.clone()), 0.0);
    }

    #[test]
    fn flat_cases_never_cross_and_growing_cases_do() {
        for seed in 0..20 {
            assert_eq!(exhaustion_case(seed, Shape::Flat, 30).truth, None);
            let c = exhaustion_case(seed, Shape::Leak, 30);
            let last = c.history.last().unwrap();
            assert!(c.threshold > last.1);
            assert!(c.truth.is_some_and(|t| t > last.0), "seed {seed}");
        }
    }
}
