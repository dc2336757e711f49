//! Growth over the planning horizon from the forecast engine: the ratio of the forecast's last day to
//! the history's last day (whole days on both sides, so daily seasonality cancels out).

use crate::forecast::{self, ForecastOptions};

const DAY: i64 = 86_400;

/// Forecast growth ratio of `points` over `horizon_secs`, or `None` when the engine cannot forecast the
/// series (too short, too sparse); a ratio below 1 is a forecast decline.
pub fn growth_ratio(points: &[(i64, f64)], horizon_secs: i64) -> Option<f64> {
    let &(last, _) = points.last()?;
    // Hourly is fine enough for a level and keeps the fit cheap on minute-resolution histories.
    let mut opts = ForecastOptions::new(horizon_secs.max(DAY), 0.8);
    opts.step_secs = Some(forecast::typical_step(points)?.max(3_600));
    let f = forecast::forecast(points, &opts).ok()?;
    let tail_from = f.times().last()? - DAY;
    let ahead: Vec<f64> = f
        .times()
        .zip(&f.p50)
        .filter(|(t, _)| *t > tail_from)
        .map(|(_, v)| *v)
        .collect();
    let recent: Vec<f64> = points
        .iter()
        .filter(|p| p.0 > last - DAY)
        .map(|p| p.1)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (now, then) = (mean(&recent), mean(&ahead));
    (now > 0.0 && then.is_finite() && !ahead.is_empty()).then(|| then / now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_ratio_sees_a_steady_rise() {
        // 14 days hourly rising 2 % a day, no noise: a week ahead the level is about 14 % higher.
        let pts: Vec<(i64, f64)> = (0..14 * 24)
            .map(|h| (h * 3_600, 100.0 * (1.0 + 0.02 * h as f64 / 24.0)))
            .collect();
        let g = growth_ratio(&pts, 7 * DAY).unwrap();
        assert!(g > 1.08 && g < 1.2, "growth {g}");
    }

    #[test]
    fn growth_ratio_of_a_flat_series_is_one() {
        let pts: Vec<(i64, f64)> = (0..14 * 24).map(|h| (h * 3_600, 5.0)).collect();
        let g = growth_ratio(&pts, 7 * DAY).unwrap();
        assert!((g - 1.0).abs() < 0.02, "growth {g}");
    }
}
