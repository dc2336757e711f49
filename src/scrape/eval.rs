//! Pure: the semantics of the default queries, evaluated over raw samples read with remote read, so that a
//! remote-read scrape stores what a range-query scrape of the same source stores. Covers exactly what those
//! queries use, as Prometheus 2.x evaluates it: instant selectors (the newest sample at most 5 minutes
//! old, stale markers ending a series), `rate()` over a closed range with Prometheus' extrapolation,
//! `sum by` / `max by`. Checked against a real Prometheus in the integration tests. (Ownership needs
//! labels only, which the source's series API gives without samples.)

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::parse::{QueryResult, SeriesView};
use super::remote::{self, LabelMatcher, Match, Query, SeriesSink};
use crate::store::Grid;

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

    /// The steps `func(series)` can have a value at: from the series' first sample to as far as its last
    /// reaches (its lookback or range), within the window's `steps`.
    fn reach(
        &self,
        samples: &[(i64, f64)],
        (start, step, steps): (i64, i64, usize),
        lookback_ms: i64,
    ) -> Option<(usize, usize)> {
        let (first, last) = (samples.first()?, samples.last()?);
        let step_ms = step * 1000;
        let from = (first.0 - start * 1000 + step_ms - 1)
            .div_euclid(step_ms)
            .max(0) as usize;
        let to = ((last.0 + self.reach_ms(lookback_ms) - start * 1000).div_euclid(step_ms) + 1)
            .clamp(0, steps as i64) as usize;
        (from < to).then_some((from, to))
    }

    /// Calls `put(slot, value)` for every step where `func(series)` has a value, in step order: `out`
    /// holds one slot per step, the first at `first_ms`, then every `step_ms`.
    fn evaluate(
        &self,
        samples: &[(i64, f64)],
        (first_ms, step_ms): (i64, i64),
        out: &mut [f64],
        lookback_ms: i64,
        live: &mut Vec<(i64, f64)>,
        put: &mut impl Put,
    ) {
        let mut t = first_ms;
        match self.func {
            Func::Instant => {
                // Sample by sample rather than step by step: a sample's value holds at the steps from its
                // time until the next sample or the end of its lookback, and a run of samples with one
                // value, each within the lookback of the one before (a request, a limit, a counter at
                // rest), holds as one: its steps are filled at once.
                let (mut k, mut i) = (0, 0);
                while i < samples.len() && k < out.len() {
                    let (ts, v) = samples[i];
                    let mut j = i + 1;
                    while j < samples.len()
                        && samples[j].1.to_bits() == v.to_bits()
                        && samples[j].0 - samples[j - 1].0 <= lookback_ms
                    {
                        j += 1;
                    }
                    let reach = samples[j - 1].0 + lookback_ms + 1;
                    let until = samples.get(j).map_or(reach, |next| next.0.min(reach));
                    (k, t) = steps_until(ts, (k, t), out.len(), step_ms);
                    let first = k;
                    (k, t) = steps_until(until, (k, t), out.len(), step_ms);
                    // A stale marker ends the series: no value until the next sample.
                    if !is_stale(v) {
                        put.fill(&mut out[first..k], v);
                    }
                    i = j;
                }
            }
            Func::Rate { range_ms } => {
                // Stale markers end nothing for `rate`: they are left out. Most series have none.
                let live: &[(i64, f64)] = if samples.iter().any(|p| is_stale(p.1)) {
                    live.clear();
                    live.extend(samples.iter().filter(|p| !is_stale(p.1)));
                    live
                } else {
                    samples
                };
                let resets = live.windows(2).any(|w| w[1].1 < w[0].1);
                let (mut lo, mut hi) = (0, 0);
                for slot in out {
                    while hi < live.len() && live[hi].0 <= t {
                        hi += 1;
                    }
                    while lo < hi && live[lo].0 < t - range_ms {
                        lo += 1;
                    }
                    if hi - lo >= 2 {
                        put.put(slot, rate(&live[lo..hi], resets, t - range_ms, t, range_ms));
                    }
                    t += step_ms;
                }
            }
        }
    }
}

/// How an evaluated value goes into its slot: one value, or one value over a run of slots (an instant
/// selector's sample holding over several steps), which a fold can take at once.
trait Put {
    fn put(&mut self, slot: &mut f64, v: f64);
    fn fill(&mut self, slots: &mut [f64], v: f64) {
        for slot in slots {
            self.put(slot, v);
        }
    }
}

/// A series of a group: its own slots (the group's first series), or summed or kept if larger as PromQL
/// does (NaN loses to any value).
struct Combine {
    agg: Agg,
    own: bool,
}

impl Put for Combine {
    fn put(&mut self, slot: &mut f64, v: f64) {
        if self.own || slot.to_bits() == ABSENT {
            *slot = v;
            return;
        }
        match self.agg {
            Agg::Sum => *slot += v,
            Agg::Max if *slot < v || slot.is_nan() => *slot = v,
            Agg::Max => {}
        }
    }
    fn fill(&mut self, slots: &mut [f64], v: f64) {
        if self.own {
            slots.fill(v);
            return;
        }
        for slot in slots {
            self.put(slot, v);
        }
    }
}

/// `FoldedMax`'s: finite values kept if larger (a slot holds `ABSENT` or a finite value, so one compare
/// says both), non-finite ones dropped and counted, a run's value checked once.
#[derive(Default)]
struct FiniteMax {
    values: u64,
    dropped: u64,
}

impl Put for FiniteMax {
    fn put(&mut self, slot: &mut f64, v: f64) {
        self.fill(std::slice::from_mut(slot), v);
    }
    fn fill(&mut self, slots: &mut [f64], v: f64) {
        if !v.is_finite() {
            self.dropped += slots.len() as u64;
            return;
        }
        self.values += slots.len() as u64;
        for slot in slots {
            // ABSENT is a NaN.
            if *slot < v || slot.is_nan() {
                *slot = v;
            }
        }
    }
}

/// Moves the step cursor `(k, t)` (slot `k` at time `t`) to the first slot at or after `until`, or to
/// `len` if none is: `while k < len && t < until { k += 1; t += step_ms }`, with one division.
#[inline(always)]
fn steps_until(until: i64, (k, t): (usize, i64), len: usize, step_ms: i64) -> (usize, i64) {
    if t >= until || k >= len {
        return (k, t);
    }
    let n = ((until - t + step_ms - 1) / step_ms) as usize;
    let n = n.min(len - k);
    (k + n, t + n as i64 * step_ms)
}

/// One expression evaluated at `start`, `start + step`, …, `end` (seconds), like `/api/v1/query_range`,
/// as the raw series of a remote-read answer stream in: each series is evaluated on its own and folded
/// into its group's values, one per step, so that the raw samples of a window are never held together.
pub struct RangeEval {
    /// Grouped by the `by` labels' values, each followed by a NUL (which label values do not hold in
    /// practice; Prometheus' own grouping hashes them with a separator byte alike).
    groups: Groups<String>,
    key: String,
}

/// The window's steps and the groups holding values on them, in the order their first series came (the
/// order Prometheus aggregates them in).
struct Groups<K> {
    expr: Expr,
    start: i64,
    step: i64,
    steps: usize,
    lookback_ms: i64,
    index: FxHashMap<K, usize>,
    groups: Vec<Group<K>>,
    live: Vec<(i64, f64)>,
    /// Values the groups hold, over all of them.
    held: u64,
}

impl<K: Clone + Eq + std::hash::Hash> Groups<K> {
    fn new(expr: Expr, (start, end, step): (i64, i64, i64), lookback_ms: i64) -> Self {
        Self {
            expr,
            start,
            step,
            steps: ((end - start).div_euclid(step) + 1).max(0) as usize,
            lookback_ms,
            index: FxHashMap::default(),
            groups: Vec::new(),
            live: Vec::new(),
            held: 0,
        }
    }

    /// Evaluates one series (samples in time order) into the group `key` with the `Put` that `put` gives,
    /// told whether the series is the first to hold values in the group; returns it.
    fn evaluate<P: Put>(
        &mut self,
        key: &K,
        samples: &[(i64, f64)],
        put: impl FnOnce(bool) -> P,
    ) -> Option<P> {
        let g = match self.index.get(key) {
            Some(&g) => g,
            None => {
                self.index.insert(key.clone(), self.groups.len());
                self.groups.push(Group {
                    key: key.clone(),
                    first: 0,
                    values: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let grid = (self.start, self.step, self.steps);
        let reach = self.expr.reach(samples, grid, self.lookback_ms)?;
        let g = &mut self.groups[g];
        let before = g.values.len();
        g.cover(reach.0, reach.1);
        self.held += (g.values.len() - before) as u64;
        let out = &mut g.values[reach.0 - g.first..reach.1 - g.first];
        let first_ms = (self.start + reach.0 as i64 * self.step) * 1000;
        let grid = (first_ms, self.step * 1000);
        let mut put = put(before == 0);
        self.expr.evaluate(
            samples,
            grid,
            out,
            self.lookback_ms,
            &mut self.live,
            &mut put,
        );
        Some(put)
    }
}

/// A group's value at the steps `first..first + values.len()`, `ABSENT` where none of its series has one.
struct Group<K = String> {
    /// For `RangeEval`, the values of the `by` labels, each followed by a NUL.
    key: K,
    first: usize,
    values: Vec<f64>,
}

/// Marks a step where a group has no value yet: a NaN whose payload neither Prometheus (its stale marker,
/// its NaN) nor arithmetic writes, so no slot needs a flag beside it. A sample with these very bits would
/// count as absent, which ends the same way as the NaN it is: dropped.
const ABSENT: u64 = 0x7ff8_0000_a850_0001;

impl RangeEval {
    pub fn new(expr: Expr, span: (i64, i64, i64), lookback_ms: i64) -> Self {
        Self {
            groups: Groups::new(expr, span, lookback_ms),
            key: String::new(),
        }
    }

    /// Folds one series (labels sorted by name, samples in time order) into its group.
    pub fn push(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        self.key.clear();
        for l in self.groups.expr.by {
            self.key.push_str(remote::label(labels, l));
            self.key.push('\0');
        }
        // The group's first series (most groups have one): its slots are all its own.
        let agg = self.groups.expr.agg;
        self.groups
            .evaluate(&self.key, samples, |own| Combine { agg, own });
    }

    /// The groups with a value at some step, in order, each turned in place into a `GridSeries`.
    /// Non-finite results are dropped and counted, as the range-query parser does.
    pub fn finish(self) -> QueryResult<GridSeries> {
        let mut out = QueryResult::default();
        let (start, step, by) = (self.groups.start, self.groups.step, self.groups.expr.by);
        for g in self.groups.groups {
            let Group {
                key,
                first,
                mut values,
            } = g;
            // Counted apart from the fix-up below, which most groups (every slot a finite value) skip.
            let points = values.iter().filter(|v| v.is_finite()).count();
            if points < values.len() {
                for v in &mut values {
                    if !v.is_finite() {
                        if v.to_bits() != ABSENT {
                            out.dropped_non_finite += 1;
                        }
                        *v = f64::NAN;
                    }
                }
            }
            if points > 0 {
                let grid = Grid {
                    t0: start + first as i64 * step,
                    step,
                    values,
                };
                out.series.push(GridSeries {
                    by,
                    key,
                    grid,
                    points,
                });
            }
        }
        out
    }
}

/// `max by (…)` of one expression folded on, as the series stream in, into the coarser groups `key_of`
/// names (a workload's container and resource, for requests and limits): each series' values go
/// straight into its group's maxima, and no per-pod values are held, counted or folded afterwards. The
/// maximum over pods of each pod's maximum is the maximum of their series' finite values, so this is both
/// folds in one, but for one case no request or limit has: where a series is `+Inf`, PromQL's `max` makes
/// its pod's value `+Inf`, which is dropped (not finite) with the pod's other series; here only the
/// `+Inf` is dropped. Non-finite values are dropped and counted one by one.
pub struct FoldedMax<K> {
    groups: Groups<K>,
    key_of: KeyOf<K>,
    /// Finite values folded in, and non-finite ones dropped, one per series and step.
    values: u64,
    dropped_non_finite: u64,
}

/// Names the group of a series from its labels (sorted by name); None leaves the series out.
pub type KeyOf<K> = std::sync::Arc<dyn Fn(&[(&str, &str)]) -> Option<K> + Send + Sync>;

/// What a `FoldedMax` gives: each group with a finite value somewhere, in key order, its maxima on the
/// window's steps (NaN where it has none).
#[derive(Debug)]
pub struct Folded<K> {
    pub groups: Vec<(K, Grid)>,
    /// Finite values folded in (what per-pod groups would have counted as their points).
    pub values: u64,
    pub dropped_non_finite: u64,
    /// Slots held for the groups (what the window's memory grew with).
    pub held: u64,
}

impl<K: Clone + Eq + std::hash::Hash + Ord> FoldedMax<K> {
    pub fn new(expr: Expr, span: (i64, i64, i64), lookback_ms: i64, key_of: KeyOf<K>) -> Self {
        debug_assert_eq!(expr.agg, Agg::Max);
        Self {
            groups: Groups::new(expr, span, lookback_ms),
            key_of,
            values: 0,
            dropped_non_finite: 0,
        }
    }

    /// Folds one series (labels sorted by name, samples in time order) into its group's maxima.
    pub fn push(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        let Some(key) = (self.key_of)(labels) else {
            return;
        };
        if let Some(put) = self
            .groups
            .evaluate(&key, samples, |_| FiniteMax::default())
        {
            self.values += put.values;
            self.dropped_non_finite += put.dropped;
        }
    }

    pub fn finish(self) -> Folded<K> {
        let mut groups: Vec<(K, Grid)> = Vec::with_capacity(self.groups.groups.len());
        let (start, step) = (self.groups.start, self.groups.step);
        for Group {
            key,
            first,
            mut values,
        } in self.groups.groups
        {
            let mut any = false;
            for v in &mut values {
                if v.to_bits() == ABSENT {
                    *v = f64::NAN;
                } else {
                    any = true;
                }
            }
            if any {
                let t0 = start + first as i64 * step;
                groups.push((key, Grid { t0, step, values }));
            }
        }
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Folded {
            groups,
            values: self.values,
            dropped_non_finite: self.dropped_non_finite,
            held: self.groups.held,
        }
    }
}

/// One query's series, all into the one fold.
impl<K: Clone + Eq + std::hash::Hash + Ord> SeriesSink for FoldedMax<K> {
    fn series(&mut self, _query: usize, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        self.push(labels, samples);
    }
    fn held(&self) -> u64 {
        self.groups.held
    }
}

/// An evaluated group: its value at each step of its grid, NaN where it has none (its non-finite results
/// are dropped, so NaN means nothing else). Half the memory of (time, value) pairs for a pod that lives
/// through the window, and aggregation places each value without dividing.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSeries {
    /// The names of the labels it keeps, and their values in that order, each followed by a NUL (one
    /// string a group rather than a map of them: there are as many groups as pods).
    by: &'static [&'static str],
    key: String,
    pub grid: Grid,
    /// How many values are not NaN.
    points: usize,
}

impl GridSeries {
    /// Its labels, those with an empty value left out (as PromQL does).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.by
            .iter()
            .zip(self.key.split('\0'))
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

impl SeriesView for GridSeries {
    fn label(&self, name: &str) -> &str {
        self.by
            .iter()
            .position(|&n| n == name)
            .and_then(|i| self.key.split('\0').nth(i))
            .unwrap_or("")
    }
    fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.grid.points()
    }
    fn point_count(&self) -> usize {
        self.points
    }
    fn held(&self) -> usize {
        self.grid.values.len()
    }
    fn grid(&self) -> Option<&Grid> {
        Some(&self.grid)
    }
    fn span(&self) -> Option<(i64, i64)> {
        self.grid.span()
    }
}

impl<K> Group<K> {
    /// Makes room for the steps `lo..hi`.
    fn cover(&mut self, lo: usize, hi: usize) {
        let absent = f64::from_bits(ABSENT);
        if self.values.is_empty() {
            self.first = lo;
        } else if lo < self.first {
            let more = self.first - lo;
            self.values.splice(0..0, std::iter::repeat_n(absent, more));
            self.first = lo;
        }
        let len = hi.max(self.first + self.values.len()) - self.first;
        self.values.resize(len, absent);
    }
}

/// Series of query `i` go to the `i`th evaluation.
impl SeriesSink for Vec<RangeEval> {
    fn series(&mut self, query: usize, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        self[query].push(labels, samples);
    }
    fn held(&self) -> u64 {
        self.iter().map(|e| e.groups.held).sum()
    }
}

/// Prometheus' `extrapolatedRate` for a counter, over the non-stale samples of `[range_start, range_end]`.
/// `resets` says whether the counter may go down among them: if not, the increase is the last value less
/// the first with no look at the others (a reset adds the value before it; the first value, compared
/// with 0, could only add 0 to a -0 increase, which a first value below 0 cannot give).
fn rate(
    points: &[(i64, f64)],
    resets: bool,
    range_start: i64,
    range_end: i64,
    range_ms: i64,
) -> f64 {
    let (first, last) = (points[0], points[points.len() - 1]);
    let mut result = last.1 - first.1;
    if resets {
        let mut prev = 0.0;
        for p in points {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    if first.0 == range_start && last.0 == range_end {
        // Samples at both ends of the range (a scrape interval that divides the range, on the grid):
        // below, nothing would be extrapolated (both gaps are 0, under any threshold, and the distance to
        // zero cannot be negative), so `interval / sampled` would be exactly 1. The same result with one
        // division instead of four.
        return result / (range_ms as f64 / 1000.0);
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
    use crate::scrape::parse::Series;

    type Raw = (Vec<(&'static str, &'static str)>, Vec<(i64, f64)>);

    fn series(labels: &[(&'static str, &'static str)], samples: &[(i64, f64)]) -> Raw {
        let mut labels = labels.to_vec();
        labels.sort();
        (labels, samples.to_vec())
    }

    /// The evaluation of `series`, as (time, value) pairs.
    fn range(e: &Expr, series: &[Raw], span: (i64, i64, i64), lookback_ms: i64) -> QueryResult {
        let mut eval = RangeEval::new(*e, span, lookback_ms);
        for (labels, samples) in series {
            eval.push(labels, samples);
        }
        let grid = eval.finish();
        let series = grid.series.iter().map(|g| Series {
            labels: g.labels(),
            points: g.points().collect(),
        });
        QueryResult {
            series: series.collect(),
            dropped_non_finite: grid.dropped_non_finite,
        }
    }

    #[test]
    fn a_group_grows_both_ways_and_drops_what_is_not_finite() {
        let later = series(&[("pod", "a"), ("cpu", "0")], &[(120_000, 1.0)]);
        let earlier = series(
            &[("pod", "a"), ("cpu", "1")],
            &[(0, f64::INFINITY), (60_000, 2.0)],
        );
        let sum = Expr {
            agg: Agg::Sum,
            ..GAUGE
        };
        let r = range(&sum, &[later, earlier], (0, 180, 60), 0);
        // Each sample is seen at its own step only (no lookback): +Inf at 0 s, 2 at 60 s, 1 at 120 s.
        assert_eq!(r.series[0].points, vec![(60, 2.0), (120, 1.0)]);
        assert_eq!(r.dropped_non_finite, 1);
    }

    const L: i64 = DEFAULT_LOOKBACK_MS;

    /// An instant selector by its definition, step by step: the newest sample at or before the step, if
    /// it is at most `lookback_ms` old and not a stale marker.
    fn instant_by_definition(
        samples: &[(i64, f64)],
        (start, end, step): (i64, i64, i64),
        lookback_ms: i64,
    ) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        let mut t = start;
        while t <= end {
            let newest = samples.iter().rev().find(|p| p.0 <= t * 1000);
            if let Some(&(ts, v)) = newest
                && ts >= t * 1000 - lookback_ms
                && !is_stale(v)
            {
                out.push((t, v.to_bits()));
            }
            t += step;
        }
        out
    }

    proptest::proptest! {
        /// A window with no reset gives, without reading its middle values, the rate the reading gives,
        /// to the bit, whatever the values (negative ones, zeros of either sign).
        #[test]
        fn a_rate_without_resets_skips_the_reading(
            steps in proptest::collection::vec(0u32..4, 2..12),
            first in proptest::sample::select(vec![-2.5f64, -0.0, 0.0, 1.0, 1e15]),
            gaps in proptest::collection::vec(1i64..200_000, 12),
        ) {
            let (mut t, mut v) = (1_000_000i64, first);
            let mut points = Vec::new();
            for (step, gap) in steps.iter().zip(&gaps) {
                points.push((t, v));
                t += gap;
                v += f64::from(*step) * 0.25;
            }
            let (start, end) = (points[0].0 - 5_000, points[points.len() - 1].0);
            let read = rate(&points, true, start, end, 300_000);
            proptest::prop_assert_eq!(rate(&points, false, start, end, 300_000).to_bits(), read.to_bits());
        }

        /// Samples at any times (on the steps, between them, in bursts, after gaps) with values that
        /// repeat, stale markers among them: the run-at-once evaluation gives what the definition does.
        #[test]
        fn instant_selectors_evaluate_as_defined(
            gaps in proptest::collection::vec(1i64..400_000, 1..60),
            values in proptest::collection::vec(0u8..5, 60),
            lookback_ms in proptest::sample::select(vec![0i64, 60_000, 300_000, 600_000]),
            start in 0i64..600,
        ) {
            let mut t = 0;
            let samples: Vec<(i64, f64)> = gaps.iter().zip(&values).map(|(gap, v)| {
                t += gap;
                let v = match v {
                    0 => f64::from_bits(STALE_NAN),
                    v => f64::from(*v),
                };
                (t, v)
            }).collect();
            let span = (start, start + 60 * 120, 60);
            let got = range(&GAUGE, &[series(&[("pod", "a")], &samples)], span, lookback_ms);
            let got: Vec<(i64, u64)> = got.series.iter()
                .flat_map(|s| s.points.iter().map(|p| (p.0, p.1.to_bits())))
                .collect();
            proptest::prop_assert_eq!(got, instant_by_definition(&samples, span, lookback_ms));
        }
    }

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
        let r = range(&GAUGE, &[s], (1_000, 2_000, 100), L);
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
        let r = range(&GAUGE, &[a.clone(), b.clone(), c], (0, 60, 60), L);
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.series[0].points, vec![(0, 3.0), (60, 5.0)]);
        assert_eq!(r.series[0].labels.len(), 1, "only the by labels stay");
        assert_eq!(r.series[1].points, vec![(0, 7.0), (60, 7.0)]);
        let sum = Expr {
            agg: Agg::Sum,
            ..GAUGE
        };
        assert_eq!(
            range(&sum, &[a, b], (0, 60, 60), L).series[0].points,
            vec![(0, 4.0), (60, 7.0)]
        );
    }

    #[test]
    fn rate_extrapolates_like_prometheus_and_survives_counter_resets() {
        // Samples every 60 s, 10 a minute: rate 1/6 per second. At 600 s the range [300, 600] holds six
        // samples, exactly at both ends: no extrapolation needed.
        let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let r = range(
            &COUNTER,
            &[series(&[("pod", "a")], &pts)],
            (600, 600, 60),
            L,
        );
        assert!((r.series[0].points[0].1 - 10.0 / 60.0).abs() < 1e-12);
        // Samples 15 s inside both ends: extrapolated by up to 1.1 average intervals, so to the ends.
        let pts: Vec<(i64, f64)> = (0..5)
            .map(|i| (15_000 + i * 60_000, 100.0 + i as f64 * 60.0))
            .collect();
        let r = range(
            &COUNTER,
            &[series(&[("pod", "a")], &pts)],
            (270, 270, 60),
            L,
        );
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
        let r = range(
            &COUNTER,
            &[series(&[("pod", "a")], &pts)],
            (120, 120, 60),
            L,
        );
        let increase = 5.0 - 40.0 + 50.0;
        // Range [-180 s, 120 s]: the first sample is 180 s from the start, past 1.1 × 60 s, so half an
        // interval is added there; the end is exact. Zero is 120 × 40 / 15 = 320 s away: no cap.
        let expect = increase * (150.0 / 120.0) / 300.0;
        assert!((r.series[0].points[0].1 - expect).abs() < 1e-12);
        // One sample in range: no rate.
        let r = range(
            &COUNTER,
            &[series(&[("pod", "a")], &[(0, 1.0)])],
            (0, 0, 60),
            L,
        );
        assert!(r.series.is_empty());
    }
}
