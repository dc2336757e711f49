//! The candidates' arithmetic: Fourier-plus-trend least squares on ndarray (ridge normal equations,
//! Cholesky), an optional Huber pass, a decaying offset from the last residuals, and seasonal naive.

use std::f64::consts::TAU;

use ndarray::{Array1, Array2};

use super::model::{ModelKind, ModelSpec};

const DAY: f64 = 86_400.0;
const WEEK: f64 = 7.0 * DAY;

/// Predicts `horizon` slots after `end` from `y[..end]` (slot `i` at `t0 + i * step`, `NaN` missing).
pub fn predict(
    spec: &ModelSpec,
    y: &[f64],
    t0: i64,
    step: i64,
    end: usize,
    horizon: usize,
) -> Vec<f64> {
    match spec.kind {
        ModelKind::SeasonalNaive => seasonal_naive(y, step, end, horizon),
        ModelKind::Fourier => fourier(spec, y, t0, step, end, horizon),
    }
}

pub fn day_slots(step: i64) -> usize {
    ((DAY / step as f64).round() as usize).max(1)
}

fn seasonal_naive(y: &[f64], step: i64, end: usize, horizon: usize) -> Vec<f64> {
    let period = day_slots(step);
    let last = y[..end]
        .iter()
        .rev()
        .find(|v| v.is_finite())
        .copied()
        .unwrap_or(0.0);
    (0..horizon)
        .map(|h| {
            let mut j = end + h;
            while j >= period {
                j -= period;
                if j < end && y[j].is_finite() {
                    return y[j];
                }
            }
            last
        })
        .collect()
}

/// Feature layout of one fitted regression.
struct Design {
    trend: bool,
    daily: usize,
    weekly: usize,
    /// Trend time is measured in windows, ending at 0 at the forecast origin, so the intercept is the
    /// level there and the slope stays well-conditioned whatever the timestamps.
    t_end: f64,
    span: f64,
}

impl Design {
    fn width(&self) -> usize {
        1 + usize::from(self.trend) + 2 * self.daily + 2 * self.weekly
    }

    fn row(&self, t: i64, out: &mut [f64]) {
        out[0] = 1.0;
        let mut k = 1;
        if self.trend {
            out[k] = (t as f64 - self.t_end) / self.span;
            k += 1;
        }
        for (period, harmonics) in [(DAY, self.daily), (WEEK, self.weekly)] {
            if harmonics == 0 {
                continue;
            }
            // Whole seconds: the integer remainder is exactly what `f64::rem_euclid` gave, without fmod.
            let a = TAU * t.rem_euclid(period as i64) as f64 / period;
            let (s1, c1) = a.sin_cos();
            let (mut s, mut c) = (s1, c1);
            for _ in 0..harmonics {
                out[k] = c;
                out[k + 1] = s;
                k += 2;
                (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
            }
        }
    }
}

fn fourier(
    spec: &ModelSpec,
    y: &[f64],
    t0: i64,
    step: i64,
    end: usize,
    horizon: usize,
) -> Vec<f64> {
    let win = ((spec.window_days * DAY / step as f64).round() as usize).max(2);
    let start = end.saturating_sub(win);
    let span_days = (end - start) as f64 * step as f64 / DAY;
    let per_day = day_slots(step);
    // Harmonics above Nyquist alias; a weekly cycle needs enough weeks to tell it from noise.
    let max_h = (per_day.saturating_sub(1)) / 2;
    let daily = if span_days >= 1.0 {
        spec.daily_harmonics.min(max_h)
    } else {
        0
    };
    let weekly = if span_days >= spec.weekly_min_days {
        spec.weekly_harmonics
    } else {
        0
    };
    let time = |i: usize| t0 + i as i64 * step;
    let d = Design {
        trend: spec.trend,
        daily,
        weekly,
        t_end: time(end) as f64,
        span: ((end - start) as f64 * step as f64).max(1.0),
    };
    let p = d.width();
    let obs: Vec<usize> = (start..end).filter(|&i| y[i].is_finite()).collect();
    if obs.is_empty() {
        return vec![0.0; horizon];
    }
    let log = spec.log && obs.iter().all(|&i| y[i] > 0.0);
    let value = |i: usize| if log { y[i].ln() } else { y[i] };
    // Scale so the ridge penalty means the same for bytes and for cores.
    let mean = obs.iter().map(|&i| value(i)).sum::<f64>() / obs.len() as f64;
    let scale = obs
        .iter()
        .map(|&i| (value(i) - mean).abs())
        .fold(0.0, f64::max)
        .max(1e-12);
    let z: Vec<f64> = obs.iter().map(|&i| (value(i) - mean) / scale).collect();
    let mut rows = vec![0.0; obs.len() * p];
    for (r, &i) in obs.iter().enumerate() {
        d.row(time(i), &mut rows[r * p..(r + 1) * p]);
    }
    let lambda = spec.ridge * obs.len() as f64;
    let mut beta = solve_weighted(&rows, &z, None, p, lambda);
    let mut resid: Vec<f64> = residuals(&rows, &z, &beta, p);
    if spec.robust && obs.len() > 2 * p {
        let mut a: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
        let mid = a.len() / 2;
        let mad = *a.select_nth_unstable_by(mid, f64::total_cmp).1;
        if mad > 0.0 {
            let c = 1.345 * 1.4826 * mad;
            let w: Vec<f64> = resid.iter().map(|r| (c / r.abs()).min(1.0)).collect();
            beta = solve_weighted(&rows, &z, Some(&w), p, lambda);
            resid = residuals(&rows, &z, &beta, p);
        }
    }
    let mut offset = 0.0;
    if spec.offset_halflife_hours > 0.0 {
        let hl = (spec.offset_halflife_hours * 3_600.0 / step as f64).max(0.5);
        let a = 1.0 - 0.5f64.powf(1.0 / hl);
        let look = (hl * 5.0).ceil() as usize;
        let from = obs.partition_point(|&i| i + look < end);
        let mut first = true;
        for (r, _) in resid.iter().zip(&obs).skip(from) {
            if first {
                offset = *r;
                first = false;
            } else {
                offset += a * (r - offset);
            }
        }
    }
    let decay = 0.5f64.powf(step as f64 / (spec.offset_decay_hours * 3_600.0));
    let mut row = vec![0.0; p];
    let mut carried = offset;
    (0..horizon)
        .map(|h| {
            d.row(time(end + h), &mut row);
            carried *= decay;
            let v: f64 = row.iter().zip(beta.iter()).map(|(a, b)| a * b).sum();
            let v = mean + scale * (v + carried);
            if log { v.exp() } else { v }
        })
        .collect()
}

fn residuals(rows: &[f64], z: &[f64], beta: &Array1<f64>, p: usize) -> Vec<f64> {
    rows.chunks_exact(p)
        .zip(z)
        .map(|(x, zi)| zi - x.iter().zip(beta.iter()).map(|(a, b)| a * b).sum::<f64>())
        .collect()
}

/// Ridge least squares by the normal equations; the intercept is not penalised.
pub fn solve_weighted(
    rows: &[f64],
    z: &[f64],
    w: Option<&[f64]>,
    p: usize,
    lambda: f64,
) -> Array1<f64> {
    let mut xtx = Array2::<f64>::zeros((p, p));
    let mut xty = vec![0.0; p];
    {
        let a = xtx.as_slice_mut().expect("a fresh array is contiguous");
        // Each cell sums its products in row order, as a plain loop would, but four rows at a time so
        // the cell stays in a register across them, and over slices so the inner loop has no bounds
        // checks (this is the hot spot of an assessment).
        let weight = |r: usize| w.map_or(1.0, |w| w[r]);
        let quads = rows.len() / p / 4;
        for q in 0..quads {
            let r = 4 * q;
            let xs: [&[f64]; 4] = std::array::from_fn(|k| &rows[(r + k) * p..(r + k + 1) * p]);
            let ws: [f64; 4] = std::array::from_fn(|k| weight(r + k));
            for i in 0..p {
                let xi: [f64; 4] = std::array::from_fn(|k| xs[k][i] * ws[k]);
                for k in 0..4 {
                    xty[i] += xi[k] * z[r + k];
                }
                let cells = a[i * p + i..(i + 1) * p].iter_mut();
                let tails = cells
                    .zip(&xs[0][i..])
                    .zip(&xs[1][i..])
                    .zip(&xs[2][i..])
                    .zip(&xs[3][i..]);
                for ((((cell, &x0), &x1), &x2), &x3) in tails {
                    let mut c = *cell;
                    c += xi[0] * x0;
                    c += xi[1] * x1;
                    c += xi[2] * x2;
                    c += xi[3] * x3;
                    *cell = c;
                }
            }
        }
        for (r, (x, &zr)) in rows.chunks_exact(p).zip(z).enumerate().skip(4 * quads) {
            let wi = weight(r);
            for (i, (&xv, ty)) in x.iter().zip(xty.iter_mut()).enumerate() {
                let xi = xv * wi;
                *ty += xi * zr;
                for (cell, &xj) in a[i * p + i..(i + 1) * p].iter_mut().zip(&x[i..]) {
                    *cell += xi * xj;
                }
            }
        }
    }
    for i in 0..p {
        for j in 0..i {
            xtx[[i, j]] = xtx[[j, i]];
        }
        if i > 0 {
            xtx[[i, i]] += lambda;
        }
        // A tiny jitter keeps a constant or gap-riddled window positive definite.
        xtx[[i, i]] += 1e-9 * (1.0 + xtx[[i, i]]);
    }
    cholesky_solve(xtx, Array1::from(xty))
}

fn cholesky_solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Array1<f64> {
    let n = b.len();
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= a[[j, k]] * a[[j, k]];
        }
        let d = d.max(1e-12).sqrt();
        a[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[[i, k]] * b[k];
        }
        b[i] = s / a[[i, i]];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[[k, i]] * b[k];
        }
        b[i] = s / a[[i, i]];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;
    use linfa_linear::LinearRegression;

    fn spec(trend: bool, daily: usize) -> ModelSpec {
        ModelSpec {
            name: "t".into(),
            kind: ModelKind::Fourier,
            window_days: 28.0,
            trend,
            daily_harmonics: daily,
            weekly_harmonics: 0,
            weekly_min_days: 21.0,
            robust: false,
            log: false,
            offset_halflife_hours: 0.0,
            offset_decay_hours: 6.0,
            ridge: 0.0,
        }
    }

    #[test]
    fn normal_equations_agree_with_linfa_linear_regression() {
        let n = 200;
        let p = 3;
        let mut rows = Vec::new();
        let mut z = Vec::new();
        for i in 0..n {
            let x1 = (i as f64 * 0.37).sin();
            let x2 = i as f64 / n as f64;
            rows.extend([1.0, x1, x2]);
            z.push(0.5 + 2.0 * x1 - 3.0 * x2 + 0.01 * ((i * 7919) % 13) as f64);
        }
        let ours = solve_weighted(&rows, &z, None, p, 0.0);
        let x = Array2::from_shape_vec((n, p), rows).unwrap();
        let ds = Dataset::new(x.slice(ndarray::s![.., 1..]).to_owned(), Array1::from(z));
        let theirs = LinearRegression::new().fit(&ds).unwrap();
        assert!((ours[0] - theirs.intercept()).abs() < 1e-6);
        assert!((ours[1] - theirs.params()[0]).abs() < 1e-6);
        assert!((ours[2] - theirs.params()[1]).abs() < 1e-6);
    }

    #[test]
    fn a_fitted_trend_recovers_its_slope() {
        let step = 3_600;
        let y: Vec<f64> = (0..24 * 10).map(|i| 100.0 + 0.5 * i as f64).collect();
        let f = predict(&spec(true, 0), &y, 0, step, y.len(), 24);
        for (h, v) in f.iter().enumerate() {
            let want = 100.0 + 0.5 * (y.len() + h) as f64;
            assert!((v - want).abs() < 1e-3, "{h}: {v} vs {want}");
        }
    }

    #[test]
    fn daily_fourier_terms_reproduce_a_daily_cycle() {
        let step = 900;
        let per_day = 96;
        let y: Vec<f64> = (0..per_day * 7)
            .map(|i| 10.0 + 3.0 * (TAU * i as f64 / per_day as f64).sin())
            .collect();
        let f = predict(&spec(false, 4), &y, 0, step, y.len(), per_day);
        for (h, v) in f.iter().enumerate() {
            let want = 10.0 + 3.0 * (TAU * (y.len() + h) as f64 / per_day as f64).sin();
            assert!((v - want).abs() < 1e-3, "{h}: {v} vs {want}");
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_observed_day_across_gaps() {
        let mut y: Vec<f64> = (0..48).map(|i| (i % 24) as f64).collect();
        y[30] = f64::NAN;
        let f = predict(&ModelSpec::builtin()[0], &y, 0, 3_600, 48, 30);
        assert_eq!(f[0], 0.0);
        assert_eq!(f[6], 6.0); // slot 54 -> 30 is missing -> 6
        assert_eq!(f[29], 5.0);
    }
}
