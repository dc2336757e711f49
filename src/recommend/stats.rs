//! Order statistics the rules are built from: weighted quantiles over exponentially decaying weights and
//! per-window peaks. Exact (sort-based) rather than bucketed, since offline histories fit in memory.

/// Weight of a sample `age_secs` old under a half-life; a half-life of zero means every sample counts alike.
pub fn decay_weight(age_secs: f64, half_life_secs: f64) -> f64 {
    if half_life_secs <= 0.0 {
        1.0
    } else {
        (-age_secs.max(0.0) / half_life_secs).exp2()
    }
}

/// The `q` quantile of `values` under `weights` (the smallest value whose cumulative weight reaches `q` of
/// the total). `None` when there is nothing with positive weight.
pub fn weighted_quantile(values: &[f64], weights: &[f64], q: f64) -> Option<f64> {
    let mut pairs: Vec<(f64, f64)> = values
        .iter()
        .zip(weights)
        .filter(|(v, w)| v.is_finite() && **w > 0.0)
        .map(|(v, w)| (*v, *w))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    let target = q.clamp(0.0, 1.0) * total;
    let mut acc = 0.0;
    for (v, w) in &pairs {
        acc += w;
        if acc >= target {
            return Some(*v);
        }
    }
    pairs.last().map(|p| p.0)
}

/// The value `r` minimising `slack(r) + cost * above(r)`: `slack` is the weighted mean unused share of
/// `r`, `max(0, 1 - v / r)`, and `above` the weighted share of values above `r`. Candidates are the
/// values themselves times `scale` (a margin), kept within `[lo, hi]`. One more unit of request is
/// worth buying while it removes more than `cost` of violations per unit of idle share it adds, the
/// same trade for every series: that is what keeps the average idle share low at a given violation rate.
pub fn cost_optimal(
    values: &[f64],
    weights: &[f64],
    cost: f64,
    scale: f64,
    lo: f64,
    hi: f64,
) -> Option<f64> {
    let mut pairs: Vec<(f64, f64)> = values
        .iter()
        .zip(weights)
        .filter(|(v, w)| v.is_finite() && **w > 0.0)
        .map(|(v, w)| (*v, *w))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    let (mut w_le, mut s_le) = (0.0, 0.0);
    let mut best: Option<(f64, f64)> = None;
    for (i, &(v, w)) in pairs.iter().enumerate() {
        w_le += w;
        s_le += w * v;
        // Ties: judge a value once every sample equal to it is counted below it.
        if pairs.get(i + 1).is_some_and(|n| n.0 == v) {
            continue;
        }
        let r = (v * scale).clamp(lo, hi);
        if r <= 0.0 {
            continue;
        }
        let slack = (w_le - s_le / r).max(0.0) / total;
        let above = (total - w_le) / total;
        let j = slack + cost * above;
        if best.is_none_or(|(bj, _)| j < bj) {
            best = Some((j, r));
        }
    }
    best.map(|(_, r)| r).or(Some(lo))
}

/// Maxima over consecutive windows of `window_secs`, aligned so the last window ends at the last sample
/// (a partial window at the start still counts: its peak is a real peak). Each peak carries its window's
/// end time, so recency weighting treats it like a sample taken then.
pub fn window_peaks(points: &[(i64, f64)], window_secs: i64) -> Vec<(i64, f64)> {
    let Some(&(last, _)) = points.last() else {
        return Vec::new();
    };
    let window = window_secs.max(1);
    let mut peaks: Vec<(i64, f64)> = Vec::new();
    let mut current: Option<(i64, f64)> = None;
    for &(t, v) in points {
        // Window index counted backwards from the end: 0 is the window holding the last sample.
        let idx = (last - t) / window;
        let end = last - idx * window;
        match current {
            Some((e, m)) if e == end => current = Some((e, m.max(v))),
            Some(done) => {
                peaks.push(done);
                current = Some((end, v));
            }
            None => current = Some((end, v)),
        }
    }
    peaks.extend(current);
    peaks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_quantile_with_equal_weights_is_the_ordinary_quantile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let w = vec![1.0; 100];
        assert_eq!(weighted_quantile(&v, &w, 0.9), Some(90.0));
        assert_eq!(weighted_quantile(&v, &w, 1.0), Some(100.0));
        assert_eq!(weighted_quantile(&v, &w, 0.0), Some(1.0));
    }

    #[test]
    fn weighted_quantile_follows_the_heavier_samples() {
        let v = [1.0, 10.0];
        assert_eq!(weighted_quantile(&v, &[9.0, 1.0], 0.5), Some(1.0));
        assert_eq!(weighted_quantile(&v, &[1.0, 9.0], 0.5), Some(10.0));
    }

    #[test]
    fn weighted_quantile_of_nothing_is_none() {
        assert_eq!(weighted_quantile(&[], &[], 0.5), None);
        assert_eq!(weighted_quantile(&[1.0], &[0.0], 0.5), None);
    }

    #[test]
    fn cost_optimal_buys_the_spike_only_when_violations_are_expensive() {
        // 95 samples at 1, 5 spikes at 10: covering the spikes leaves 90 % of the request idle.
        let mut v = vec![1.0; 95];
        v.extend([10.0; 5]);
        let w = vec![1.0; 100];
        assert_eq!(cost_optimal(&v, &w, 1.0, 1.0, 0.0, f64::MAX), Some(1.0));
        assert_eq!(cost_optimal(&v, &w, 100.0, 1.0, 0.0, f64::MAX), Some(10.0));
        assert_eq!(cost_optimal(&v, &w, 1.0, 1.0, 2.0, f64::MAX), Some(2.0));
    }

    #[test]
    fn decay_weight_halves_after_one_half_life() {
        assert!((decay_weight(3600.0, 3600.0) - 0.5).abs() < 1e-12);
        assert_eq!(decay_weight(1e9, 0.0), 1.0);
    }

    #[test]
    fn window_peaks_align_to_the_last_sample() {
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, i as f64)).collect();
        // Windows of 30 s ending at 90: (60, 90], (30, 60], (0, 30], and 0 alone.
        let peaks = window_peaks(&pts, 30);
        assert_eq!(peaks, vec![(0, 0.0), (30, 3.0), (60, 6.0), (90, 9.0)]);
    }
}
