//! Irregular samples onto a regular grid: the series' typical (median) step, one mean per slot,
//! `NaN` where nothing was observed, so gaps stay visible to the fit instead of being invented.

/// A regular series: slot `i` is time `t0 + i * step`; `NaN` marks a slot without samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Regular {
    pub t0: i64,
    pub step: i64,
    pub y: Vec<f64>,
}

impl Regular {
    pub fn time(&self, i: usize) -> i64 {
        self.t0 + i as i64 * self.step
    }
}

/// The median spacing of consecutive samples (at least one second); `None` with fewer than two points.
pub fn typical_step(points: &[(i64, f64)]) -> Option<i64> {
    let mut d: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&d| d > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable(mid);
    Some((*m).max(1))
}

/// Averages `points` (sorted by time) into slots of `step` seconds anchored at the first point.
pub fn resample(points: &[(i64, f64)], step: i64) -> Regular {
    let step = step.max(1);
    let Some(&(t0, _)) = points.first() else {
        return Regular {
            t0: 0,
            step,
            y: Vec::new(),
        };
    };
    let last = points[points.len() - 1].0;
    let n = ((last - t0 + step / 2) / step) as usize + 1;
    let mut sum = vec![0.0; n];
    let mut cnt = vec![0u32; n];
    for &(t, v) in points {
        let i = (((t - t0) + step / 2) / step) as usize;
        let i = i.min(n - 1);
        sum[i] += v;
        cnt[i] += 1;
    }
    let y = sum
        .into_iter()
        .zip(cnt)
        .map(|(s, c)| if c == 0 { f64::NAN } else { s / c as f64 })
        .collect();
    Regular { t0, step, y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_step_is_the_median_spacing_despite_gaps() {
        let pts: Vec<(i64, f64)> = [0, 60, 120, 180, 3_600, 3_660]
            .iter()
            .map(|&t| (t, 1.0))
            .collect();
        assert_eq!(typical_step(&pts), Some(60));
        assert_eq!(typical_step(&pts[..1]), None);
    }

    #[test]
    fn resampling_averages_jittered_samples_and_marks_gaps_missing() {
        let pts = vec![(0, 1.0), (58, 3.0), (61, 5.0), (240, 7.0)];
        let r = resample(&pts, 60);
        assert_eq!(r.y.len(), 5);
        assert_eq!(r.y[0], 1.0);
        assert_eq!(r.y[1], 4.0);
        assert!(r.y[2].is_nan() && r.y[3].is_nan());
        assert_eq!(r.y[4], 7.0);
        assert_eq!(r.time(4), 240);
    }
}
