//! Pure: the semantics of the default queries, evaluated over raw samples read with remote read, so that a
//! remote-read scrape stores what a range-query scrape of the same source stores. Covers exactly what those
//! queries use, as Prometheus 2.x evaluates it: instant selectors (the newest sample at most 5 minutes
//! old, stale markers ending a series), `rate()` over a closed range with Prometheus' extrapolation,
//! `sum by` / `max by`. Checked against a real Prometheus in the integration tests. (Ownership needs
//! labels only, which the source's series API gives without samples.)

use std::collections::{BTreeMap, HashMap};

use super::parse::{QueryResult, Series};
use super::remote::{LabelMatcher, Match, Query, RawSeries};

/// Prometheus' default lookback of instant selectors (`--query.lookback-delta`).
pub const DEFAULT_LOOKBACK_MS: i64 = 300_000;

/// The bit pattern Prometheus writes when a series disappears.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// What is applied to each selected series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// The series' value at each step (an instant selector).
    Instant,
    /// `rate(series[range])`.
    Rate { range_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Max,
}

/// `agg by (by…) (func(metric{matchers…}))`.
#[derive(Debug, Clone, Copy)]
pub struct Expr {
    pub metric: &'static str,
    pub matchers: &'static [(Match, &'static str, &'static str)],
    pub func: Func,
    pub agg: Agg,
    pub by: &'static [&'static str],
}

impl Expr {
    /// How far before the first step samples matter.
    fn reach_ms(&self, lookback_ms: i64) -> i64 {
        match self.func {
            Func::Instant => lookback_ms,
            Func::Rate { range_ms } => range_ms,
        }
    }

    /// The remote-read query for steps from `start` to `end` (seconds), with instant selectors looking
    /// back `lookback_ms`.
    pub fn query(&self, start: i64, end: i64, lookback_ms: i64) -> Query {
        let range = (start * 1000 - self.reach_ms(lookback_ms), end * 1000);
        let mut matchers = vec![LabelMatcher::new(Match::Equal, "__name__", self.metric)];
        matchers.extend(
            self.matchers
                .iter()
                .map(|&(kind, name, value)| LabelMatcher::new(kind, name, value)),
        );
        Query {
            start_timestamp_ms: range.0,
            end_timestamp_ms: range.1,
            matchers,
        }
    }

    /// Evaluates at `start`, `start + step`, …, `end` (seconds), like `/api/v1/query_range`. Non-finite
    /// results are dropped and counted, as the range-query parser does.
    pub fn range(
        &self,
        series: &[RawSeries],
        (start, end, step): (i64, i64, i64),
        lookback_ms: i64,
    ) -> QueryResult {
        let steps = ((end - start).div_euclid(step) + 1).max(0) as usize;
        // The series of each group, in the order they came (the order Prometheus aggregates them in).
        let mut index: HashMap<Vec<&str>, usize> = HashMap::new();
        let mut groups: Vec<(Vec<&str>, Vec<&RawSeries>)> = Vec::new();
        for s in series {
            let key: Vec<&str> = self.by.iter().map(|l| s.label(l)).collect();
            match index.get(&key) {
                Some(&g) => groups[g].1.push(s),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![s]));
                }
            }
        }
        let mut out = QueryResult::default();
        let mut values: Vec<(usize, f64)> = Vec::new();
        let mut live: Vec<(i64, f64)> = Vec::new();
        for (key, members) in groups {
            values.clear();
            for s in &members {
                self.evaluate(s, (start, step, steps), lookback_ms, &mut live, &mut values);
            }
            if members.len() > 1 {
                // Stable: each step's values stay in series order.
                values.sort_by_key(|v| v.0);
            }
            let mut points = Vec::with_capacity(values.len());
            for run in values.chunk_by(|a, b| a.0 == b.0) {
                let v = run[1..].iter().fold(run[0].1, |a, &(_, v)| match self.agg {
                    Agg::Sum => a + v,
                    Agg::Max if a < v || a.is_nan() => v,
                    Agg::Max => a,
                });
                if v.is_finite() {
                    points.push((start + run[0].0 as i64 * step, v));
                } else {
                    out.dropped_non_finite += 1;
                }
            }
            if points.is_empty() {
                continue;
            }
            let labels: BTreeMap<String, String> = self
                .by
                .iter()
                .zip(key)
                .filter(|(_, v)| !v.is_empty())
                .map(|(l, v)| (l.to_string(), v.to_string()))
                .collect();
            out.series.push(Series { labels, points });
        }
        out
    }

    /// Appends the value of `func(s)` at every step where it has one, as (step index, value).
    fn evaluate(
        &self,
        s: &RawSeries,
        (start, step, steps): (i64, i64, usize),
        lookback_ms: i64,
        live: &mut Vec<(i64, f64)>,
        out: &mut Vec<(usize, f64)>,
    ) {
        let (Some(first), Some(last)) = (s.samples.first(), s.samples.last()) else {
            return;
        };
        // Only the steps the series can reach.
        let from = (first.0 - start * 1000).div_euclid(step * 1000).max(0) as usize;
        let to = ((last.0 + self.reach_ms(lookback_ms) - start * 1000).div_euclid(step * 1000) + 1)
            .clamp(0, steps as i64) as usize;
        match self.func {
            Func::Instant => {
                let mut i = 0;
                for k in from..to {
                    let t = (start + k as i64 * step) * 1000;
                    while i < s.samples.len() && s.samples[i].0 <= t {
                        i += 1;
                    }
                    if i == 0 {
                        continue;
                    }
                    let (ts, v) = s.samples[i - 1];
                    if ts >= t - lookback_ms && !is_stale(v) {
                        out.push((k, v));
                    }
                }
            }
            Func::Rate { range_ms } => {
                live.clear();
                live.extend(s.samples.iter().filter(|p| !is_stale(p.1)));
                let (mut lo, mut hi) = (0, 0);
                for k in from..to {
                    let t = (start + k as i64 * step) * 1000;
                    while hi < live.len() && live[hi].0 <= t {
                        hi += 1;
                    }
                    while lo < hi && live[lo].0 < t - range_ms {
                        lo += 1;
                    }
                    if hi - lo >= 2 {
                        out.push((k, rate(&live[lo..hi], t - range_ms, t, range_ms)));
                    }
                }
            }
        }
    }
}

/// Prometheus' `extrapolatedRate` for a counter, over the non-stale samples of `[range_start, range_end]`.
fn rate(points: &[(i64, f64)], range_start: i64, range_end: i64, range_ms: i64) -> f64 {
    let (first, last) = (points[0], points[points.len() - 1]);
    let mut result = last.1 - first.1;
    let mut prev = 0.0;
    for p in points {
        if p.1 < prev {
            result += prev;
        }
        prev = p.1;
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result * (interval / sampled) / (range_ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> RawSeries {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        labels.sort();
        RawSeries {
            labels,
            samples: samples.to_vec(),
        }
    }

    const L: i64 = DEFAULT_LOOKBACK_MS;

    const GAUGE: Expr = Expr {
        metric: "m",
        matchers: &[],
        func: Func::Instant,
        agg: Agg::Max,
        by: &["pod"],
    };
    const COUNTER: Expr = Expr {
        metric: "c",
        matchers: &[],
        func: Func::Rate { range_ms: 300_000 },
        agg: Agg::Sum,
        by: &["pod"],
    };

    #[test]
    fn instant_selectors_look_back_five_minutes_inclusive_and_stop_at_stale_markers() {
        let stale = f64::from_bits(STALE_NAN);
        let s = series(
            &[("pod", "a")],
            &[(1_000_000, 1.0), (1_600_000, 2.0), (1_700_000, stale)],
        );
        let r = GAUGE.range(&[s], (1_000, 2_000, 100), L);
        // 1000 s: the sample itself; 1300 s: exactly 5 minutes old, still seen; 1400–1500 s: too old;
        // 1600 s: the new sample; 1700 s on: the stale marker ends the series.
        assert_eq!(r.series.len(), 1);
        assert_eq!(
            r.series[0].points,
            vec![
                (1_000, 1.0),
                (1_100, 1.0),
                (1_200, 1.0),
                (1_300, 1.0),
                (1_600, 2.0)
            ]
        );
        assert_eq!(r.series[0].labels.get("pod").map(String::as_str), Some("a"));
    }

    #[test]
    fn aggregations_group_by_the_labels_and_drop_the_others() {
        let a = series(&[("pod", "a"), ("cpu", "0")], &[(0, 1.0), (60_000, 5.0)]);
        let b = series(&[("pod", "a"), ("cpu", "1")], &[(0, 3.0), (60_000, 2.0)]);
        let c = series(&[("pod", "b")], &[(0, 7.0)]);
        let r = GAUGE.range(&[a.clone(), b.clone(), c], (0, 60, 60), L);
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.series[0].points, vec![(0, 3.0), (60, 5.0)]);
        assert_eq!(r.series[0].labels.len(), 1, "only the by labels stay");
        assert_eq!(r.series[1].points, vec![(0, 7.0), (60, 7.0)]);
        let sum = Expr {
            agg: Agg::Sum,
            ..GAUGE
        };
        assert_eq!(
            sum.range(&[a, b], (0, 60, 60), L).series[0].points,
            vec![(0, 4.0), (60, 7.0)]
        );
    }

    #[test]
    fn rate_extrapolates_like_prometheus_and_survives_counter_resets() {
        // Samples every 60 s, 10 a minute: rate 1/6 per second. At 600 s the range [300, 600] holds six
        // samples, exactly at both ends: no extrapolation needed.
        let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let r = COUNTER.range(&[series(&[("pod", "a")], &pts)], (600, 600, 60), L);
        assert!((r.series[0].points[0].1 - 10.0 / 60.0).abs() < 1e-12);
        // Samples 15 s inside both ends: extrapolated by up to 1.1 average intervals, so to the ends.
        let pts: Vec<(i64, f64)> = (0..5)
            .map(|i| (15_000 + i * 60_000, 100.0 + i as f64 * 60.0))
            .collect();
        let r = COUNTER.range(&[series(&[("pod", "a")], &pts)], (270, 270, 60), L);
        // Range [-30 s, 270 s]: 240 s sampled, 45 s to the start and 15 s to the end, both under the
        // 66 s threshold, so extrapolated to the whole 300 s. The counter would reach zero 100 s before
        // its first sample, farther than the start: no cap.
        let expect = 240.0 * (300.0 / 240.0) / 300.0;
        assert!(
            (r.series[0].points[0].1 - expect).abs() < 1e-12,
            "{:?}",
            r.series
        );
        // A reset: 50 → 5 counts as 5 more, not -45.
        let pts = [(0, 40.0), (60_000, 50.0), (120_000, 5.0)];
        let r = COUNTER.range(&[series(&[("pod", "a")], &pts)], (120, 120, 60), L);
        let increase = 5.0 - 40.0 + 50.0;
        // Range [-180 s, 120 s]: the first sample is 180 s from the start, past 1.1 × 60 s, so half an
        // interval is added there; the end is exact. Zero is 120 × 40 / 15 = 320 s away: no cap.
        let expect = increase * (150.0 / 120.0) / 300.0;
        assert!((r.series[0].points[0].1 - expect).abs() < 1e-12);
        // One sample in range: no rate.
        let r = COUNTER.range(&[series(&[("pod", "a")], &[(0, 1.0)])], (0, 0, 60), L);
        assert!(r.series.is_empty());
    }
}
