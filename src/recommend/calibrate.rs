//! Per-series calibration of the margin, conformal style: the policy's own rule is replayed at earlier
//! origins of the history, and the margin is the quantile of "what came next / what the rule said then"
//! that keeps the declared share of the following samples above the request. Uses the history only.

use super::policy::Calibration as CalibrationPolicy;

const DAY: i64 = 86_400;

/// The margin a replay of the rule found, and how it was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrated {
    /// Multiplier on the rule's level (1.1 = +10 %), within the policy's bounds.
    pub ratio: f64,
    /// Replay origins that had both history before and samples after them.
    pub origins: usize,
    /// Share of the replayed following samples above `ratio` x the level at their origin.
    pub exceedance: f64,
}

/// Replays `level` (the rule's value for a history ending at a given time, before any margin) at up to
/// `policy.origins` origins a day apart, the latest one `horizon` before the end of `usage`, and returns
/// the smallest multiplier that keeps at most `policy.target_exceedance` of the samples that followed each
/// origin (within the horizon) above its level. The horizon is `policy.horizon_days`, or half the history
/// when that is shorter, the same split the quality benchmark uses. Memory is judged on `peaks` where
/// given. `None` when no origin has `policy.min_history_hours` of history before it.
pub fn calibrate(
    usage: &[(i64, f64)],
    peaks: &[(i64, f64)],
    policy: &CalibrationPolicy,
    level: impl Fn(&[(i64, f64)], &[(i64, f64)], i64) -> Option<f64>,
) -> Option<Calibrated> {
    let (&(first, _), &(last, _)) = (usage.first()?, usage.last()?);
    let horizon = ((policy.horizon_days * DAY as f64) as i64).min((last - first) / 2);
    if horizon <= 0 {
        return None;
    }
    let need = (policy.min_history_hours * 3_600.0) as i64;
    let step = DAY.min(horizon);
    let judged = if peaks.is_empty() { usage } else { peaks };
    let mut ratios: Vec<f64> = Vec::new();
    let mut origins = 0;
    for k in 0..policy.origins as i64 {
        let origin = last - horizon - k * step;
        if origin - first < need {
            break;
        }
        let (u, p) = (upto(usage, origin), upto(peaks, origin));
        let Some(base) = level(u, p, origin).filter(|b| *b > 0.0) else {
            continue;
        };
        let after = judged
            .iter()
            .filter(|p| p.0 > origin && p.0 <= origin + horizon)
            .map(|p| p.1 / base);
        let before = ratios.len();
        ratios.extend(after);
        origins += usize::from(ratios.len() > before);
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = match policy.violation_cost {
        Some(cost) => cost_optimal_ratio(&ratios, cost, policy.min_ratio, policy.max_ratio),
        None => {
            // The smallest ratio with at most the target share of replayed samples strictly above it.
            let allowed = (policy.target_exceedance * ratios.len() as f64).floor() as usize;
            ratios[ratios.len() - 1 - allowed.min(ratios.len() - 1)]
                .clamp(policy.min_ratio, policy.max_ratio)
        }
    };
    let exceedance = ratios.iter().filter(|r| **r > ratio).count() as f64 / ratios.len() as f64;
    Some(Calibrated {
        ratio,
        origins,
        exceedance,
    })
}

/// The multiplier minimising, over the replayed ratios (sorted), the mean unused share of the request
/// plus `cost` x the share above it: the same trade between idle capacity and time above the request for
/// every series, so a bursty series gives up a little more time above its request for a lot less idle,
/// and a steady one the other way round.
fn cost_optimal_ratio(sorted: &[f64], cost: f64, lo: f64, hi: f64) -> f64 {
    let n = sorted.len() as f64;
    let mut prefix = Vec::with_capacity(sorted.len() + 1);
    prefix.push(0.0);
    for r in sorted {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + r);
    }
    let mut best = (f64::INFINITY, lo);
    for &r in sorted.iter().chain([&lo, &hi]) {
        let m = r.clamp(lo, hi);
        let below = sorted.partition_point(|x| *x <= m);
        let idle = (below as f64 - prefix[below] / m) / n;
        let above = (sorted.len() - below) as f64 / n;
        let j = idle + cost * above;
        if j < best.0 {
            best = (j, m);
        }
    }
    best.1
}

fn upto(points: &[(i64, f64)], t: i64) -> &[(i64, f64)] {
    &points[..points.partition_point(|p| p.0 <= t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(target: f64) -> CalibrationPolicy {
        CalibrationPolicy {
            target_exceedance: target,
            violation_cost: None,
            horizon_days: 7.0,
            origins: 7,
            min_history_hours: 24.0,
            min_ratio: 0.5,
            max_ratio: 3.0,
        }
    }

    fn hourly(days: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
        (0..days * 24).map(|h| (h * 3_600, f(h))).collect()
    }

    fn last_value(u: &[(i64, f64)], _: &[(i64, f64)], _: i64) -> Option<f64> {
        u.last().map(|p| p.1)
    }

    #[test]
    fn calibration_of_a_flat_series_needs_no_margin() {
        let pts = hourly(28, |_| 4.0);
        let c = calibrate(&pts, &[], &policy(0.0), last_value).unwrap();
        assert!((c.ratio - 1.0).abs() < 1e-12, "ratio {}", c.ratio);
        assert_eq!(c.origins, 7);
        assert_eq!(c.exceedance, 0.0);
    }

    #[test]
    fn calibration_of_a_rising_series_covers_the_rise_within_the_horizon() {
        // 1 % a day: a week after any origin the series is about 7 % above the level then.
        let pts = hourly(28, |h| 100.0 * (1.0 + 0.01 * h as f64 / 24.0));
        let c = calibrate(&pts, &[], &policy(0.0), last_value).unwrap();
        assert!(c.ratio > 1.05 && c.ratio < 1.08, "ratio {}", c.ratio);
        // Allowing a tenth of the samples above gives a smaller margin.
        let loose = calibrate(&pts, &[], &policy(0.1), last_value).unwrap();
        assert!(loose.ratio < c.ratio, "{} < {}", loose.ratio, c.ratio);
        assert!(loose.exceedance <= 0.1 + 1e-12, "{}", loose.exceedance);
    }

    #[test]
    fn calibration_stays_within_the_declared_bounds() {
        let pts = hourly(28, |h| if h % 24 == 0 { 100.0 } else { 1.0 });
        let c = calibrate(&pts, &[], &policy(0.0), last_value).unwrap();
        assert_eq!(c.ratio, 3.0);
    }

    #[test]
    fn cost_optimal_calibration_leaves_rare_bursts_above_the_request() {
        // Steady at 1 with a burst to 10 one hour a day: covering it would leave 90 % of the request idle.
        let pts = hourly(28, |h| if h % 24 == 12 { 10.0 } else { 1.0 });
        let mut p = policy(0.0);
        p.violation_cost = Some(2.0);
        let c = calibrate(&pts, &[], &p, |_, _, _| Some(1.0)).unwrap();
        assert!((c.ratio - 1.0).abs() < 1e-12, "ratio {}", c.ratio);
        // When the time above is dear enough, the burst is bought.
        p.violation_cost = Some(100.0);
        p.max_ratio = 20.0;
        let c = calibrate(&pts, &[], &p, |_, _, _| Some(1.0)).unwrap();
        assert!((c.ratio - 10.0).abs() < 1e-12, "ratio {}", c.ratio);
    }

    #[test]
    fn calibration_declines_a_history_too_short_to_replay() {
        let pts = hourly(1, |_| 1.0);
        assert_eq!(calibrate(&pts, &[], &policy(0.0), last_value), None);
    }
}
