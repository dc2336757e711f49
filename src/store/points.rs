//! Pure: the shapes one series' samples take on their way into a write. (time, value) pairs in any order,
//! or values on a step grid, half the memory of pairs for the regular series a scrape brings.

/// Unix seconds and value.
pub type Point = (i64, f64);

/// Values at the times `t0`, `t0 + step`, …; NaN where there is none (so NaN is never a value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grid {
    pub t0: i64,
    pub step: i64,
    pub values: Vec<f64>,
}

impl Grid {
    /// The points, in time order.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        let (t0, step) = (self.t0, self.step);
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(move |(i, &v)| (t0 + i as i64 * step, v))
    }

    /// The times of the first and the last slot (values or not); none without slots.
    pub fn span(&self) -> Option<(i64, i64)> {
        let last = self.values.len().checked_sub(1)?;
        Some((self.t0, self.t0 + last as i64 * self.step))
    }
}

/// One series' samples for `Store::write_samples`.
pub trait SamplePoints {
    /// The samples in the order given.
    fn points(&self) -> impl Iterator<Item = Point> + '_;

    /// How many samples (non-finite ones included).
    fn count(&self) -> usize;

    /// The first and the last time given, or None without samples. For samples in time order, their
    /// earliest and latest.
    fn ends(&self) -> Option<(i64, i64)>;

    /// Whether the samples are in strictly increasing time order and all finite: written as they are.
    fn is_simple(&self) -> bool;

    /// Calls `f` with the samples of each chunk in turn (consecutive samples in the same span of
    /// `chunk_secs`, spans aligned to the epoch), for samples that are `is_simple`. `scratch` holds a
    /// chunk's pairs where the samples are neither pairs already nor a gapless stretch of a grid.
    fn for_each_run(&self, chunk_secs: i64, scratch: &mut Vec<Point>, f: impl FnMut(Run<'_>));
}

/// One chunk's samples, as a writer gets them: pairs, or a stretch of a grid with no gap (most of what a
/// scrape writes), which is encoded without turning each value into a pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Run<'a> {
    /// In strictly increasing time order.
    Pairs(&'a [Point]),
    /// Values at `t0`, `t0 + step`, …, none of them NaN.
    Dense {
        t0: i64,
        step: i64,
        values: &'a [f64],
    },
}

impl Run<'_> {
    pub fn len(&self) -> usize {
        match self {
            Run::Pairs(p) => p.len(),
            Run::Dense { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The times of the first and the last sample; none without samples.
    pub fn ends(&self) -> Option<(i64, i64)> {
        match *self {
            Run::Pairs(p) => Some((p.first()?.0, p.last()?.0)),
            Run::Dense { t0, step, values } => {
                let last = values.len().checked_sub(1)?;
                Some((t0, t0 + last as i64 * step))
            }
        }
    }

    /// The samples, in time order.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        let (pairs, dense) = match *self {
            Run::Pairs(p) => (p, None),
            Run::Dense { t0, step, values } => (&[][..], Some((t0, step, values))),
        };
        let dense = dense.into_iter().flat_map(|(t0, step, values)| {
            (values.iter().enumerate()).map(move |(i, &v)| (t0 + i as i64 * step, v))
        });
        pairs.iter().copied().chain(dense)
    }
}

/// Where the chunk holding `t` ends (exclusive). One division per chunk, not per sample.
fn chunk_end(t: i64, chunk_secs: i64) -> i64 {
    t.div_euclid(chunk_secs) * chunk_secs + chunk_secs
}

impl SamplePoints for Vec<Point> {
    fn points(&self) -> impl Iterator<Item = Point> + '_ {
        self.iter().copied()
    }
    fn count(&self) -> usize {
        self.len()
    }
    fn ends(&self) -> Option<(i64, i64)> {
        Some((self.first()?.0, self.last()?.0))
    }
    fn is_simple(&self) -> bool {
        self.windows(2).all(|w| w[0].0 < w[1].0) && self.iter().all(|p| p.1.is_finite())
    }
    fn for_each_run(&self, chunk_secs: i64, _: &mut Vec<Point>, mut f: impl FnMut(Run<'_>)) {
        let mut rest = &self[..];
        while let Some(first) = rest.first() {
            let end = chunk_end(first.0, chunk_secs);
            let n = rest.partition_point(|p| p.0 < end);
            f(Run::Pairs(&rest[..n]));
            rest = &rest[n..];
        }
    }
}

impl SamplePoints for Grid {
    fn points(&self) -> impl Iterator<Item = Point> + '_ {
        Grid::points(self)
    }
    fn count(&self) -> usize {
        self.values.iter().filter(|v| !v.is_nan()).count()
    }
    fn ends(&self) -> Option<(i64, i64)> {
        let first = self.values.iter().position(|v| !v.is_nan())?;
        let last = self.values.iter().rposition(|v| !v.is_nan())?;
        let at = |i: usize| self.t0 + i as i64 * self.step;
        Some((at(first), at(last)))
    }
    fn is_simple(&self) -> bool {
        self.step > 0 && self.values.iter().all(|v| v.is_nan() || v.is_finite())
    }
    fn for_each_run(&self, chunk_secs: i64, scratch: &mut Vec<Point>, mut f: impl FnMut(Run<'_>)) {
        let (t0, step, values) = (self.t0, self.step, &self.values[..]);
        let mut at = 0;
        while let Some(skip) = values[at..].iter().position(|v| !v.is_nan()) {
            let first = at + skip;
            let t = t0 + first as i64 * step;
            // The slots before the end of the chunk `t` is in.
            let stop = ((chunk_end(t, chunk_secs) - t0 + step - 1) / step) as usize;
            let stop = stop.min(values.len());
            let chunk = &values[first..stop];
            let last = chunk.iter().rposition(|v| !v.is_nan()).unwrap_or(0);
            let chunk = &chunk[..=last];
            if chunk.iter().any(|v| v.is_nan()) {
                scratch.clear();
                scratch.extend(
                    (chunk.iter().enumerate())
                        .filter(|(_, v)| !v.is_nan())
                        .map(|(i, &v)| (t + i as i64 * step, v)),
                );
                f(Run::Pairs(scratch));
            } else {
                f(Run::Dense {
                    t0: t,
                    step,
                    values: chunk,
                });
            }
            at = stop;
        }
    }
}

/// The samples of one aggregated series: pairs, or a grid.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    Pairs(Vec<Point>),
    Grid(Grid),
}

impl Samples {
    /// Takes the samples at `t` or later out, leaving the earlier ones.
    pub fn split_off(&mut self, t: i64) -> Samples {
        match self {
            Samples::Pairs(p) => {
                let (early, late) = std::mem::take(p).into_iter().partition(|q| q.0 < t);
                *p = early;
                Samples::Pairs(late)
            }
            Samples::Grid(g) => {
                let k = if g.step > 0 && t > g.t0 {
                    ((t - g.t0 + g.step - 1) / g.step).min(g.values.len() as i64) as usize
                } else {
                    0
                };
                // The later part keeps the grid, its first `k` slots emptied: the earlier part is
                // the short one (up to a chunk), so only that is copied.
                let mut late = std::mem::take(&mut g.values);
                g.values = late[..k].to_vec();
                late[..k].fill(f64::NAN);
                Samples::Grid(Grid {
                    t0: g.t0,
                    step: g.step,
                    values: late,
                })
            }
        }
    }
}

impl SamplePoints for Samples {
    fn points(&self) -> impl Iterator<Item = Point> + '_ {
        let (pairs, grid) = match self {
            Samples::Pairs(p) => (Some(p), None),
            Samples::Grid(g) => (None, Some(g)),
        };
        let pairs = pairs.into_iter().flat_map(|p| p.iter().copied());
        pairs.chain(grid.into_iter().flat_map(Grid::points))
    }
    fn count(&self) -> usize {
        match self {
            Samples::Pairs(p) => p.count(),
            Samples::Grid(g) => g.count(),
        }
    }
    fn ends(&self) -> Option<(i64, i64)> {
        match self {
            Samples::Pairs(p) => p.ends(),
            Samples::Grid(g) => g.ends(),
        }
    }
    fn is_simple(&self) -> bool {
        match self {
            Samples::Pairs(p) => p.is_simple(),
            Samples::Grid(g) => g.is_simple(),
        }
    }
    fn for_each_run(&self, chunk_secs: i64, scratch: &mut Vec<Point>, f: impl FnMut(Run<'_>)) {
        match self {
            Samples::Pairs(p) => p.for_each_run(chunk_secs, scratch, f),
            Samples::Grid(g) => g.for_each_run(chunk_secs, scratch, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_gives_its_values_by_time_and_skips_the_gaps() {
        let g = Grid {
            t0: 600,
            step: 300,
            values: vec![f64::NAN, 1.0, f64::NAN, 2.0, 3.0, f64::NAN],
        };
        assert_eq!(
            g.points().collect::<Vec<_>>(),
            [(900, 1.0), (1500, 2.0), (1800, 3.0)]
        );
        assert_eq!(g.count(), 3);
        assert_eq!(g.ends(), Some((900, 1800)));
        assert_eq!(g.span(), Some((600, 2100)));
        assert!(g.is_simple());
        let mut runs = Vec::new();
        g.for_each_run(1000, &mut Vec::new(), |r| {
            runs.push(r.points().collect::<Vec<_>>())
        });
        assert_eq!(runs, [vec![(900, 1.0)], vec![(1500, 2.0), (1800, 3.0)]]);
        // A chunk's stretch without gaps comes as it is, one with gaps as pairs; gaps at a chunk's
        // ends are trimmed.
        let g = Grid {
            t0: 0,
            step: 100,
            values: vec![f64::NAN, 1.0, 2.0, f64::NAN, 4.0, f64::NAN, 6.0, 7.0],
        };
        let mut runs = Vec::new();
        g.for_each_run(300, &mut Vec::new(), |r| runs.push(format!("{r:?}")));
        assert_eq!(
            runs,
            [
                "Dense { t0: 100, step: 100, values: [1.0, 2.0] }",
                "Dense { t0: 400, step: 100, values: [4.0] }",
                "Dense { t0: 600, step: 100, values: [6.0, 7.0] }",
            ]
        );
        let mut runs = Vec::new();
        g.for_each_run(1000, &mut Vec::new(), |r| runs.push(format!("{r:?}")));
        assert_eq!(
            runs,
            ["Pairs([(100, 1.0), (200, 2.0), (400, 4.0), (600, 6.0), (700, 7.0)])"]
        );
        let inf = Grid {
            values: vec![1.0, f64::INFINITY],
            ..g
        };
        assert!(
            !inf.is_simple(),
            "an infinite value is not written as it is"
        );
        assert_eq!(Grid::default().ends(), None);
    }

    #[test]
    fn samples_split_at_a_time_keep_the_earlier_ones_and_give_the_rest() {
        let mut g = Samples::Grid(Grid {
            t0: 100,
            step: 10,
            values: vec![1.0, f64::NAN, 3.0, 4.0],
        });
        let late = g.split_off(115);
        assert_eq!(g.points().collect::<Vec<_>>(), vec![(100, 1.0)]);
        assert_eq!(
            late.points().collect::<Vec<_>>(),
            vec![(120, 3.0), (130, 4.0)]
        );
        let mut all = late.clone();
        assert_eq!(
            all.split_off(50).points().count(),
            2,
            "a time before the grid takes all"
        );
        assert_eq!(all.count(), 0);
        let mut p = Samples::Pairs(vec![(30, 3.0), (10, 1.0), (20, 2.0)]);
        let late = p.split_off(20);
        assert_eq!(p.points().collect::<Vec<_>>(), vec![(10, 1.0)]);
        assert_eq!(
            late.points().collect::<Vec<_>>(),
            vec![(30, 3.0), (20, 2.0)]
        );
    }

    #[test]
    fn pairs_are_simple_only_in_strict_time_order_and_finite() {
        let p = vec![(1, 1.0), (2, 2.0), (1000, 3.0)];
        assert!(p.is_simple());
        assert!(!vec![(2, 1.0), (1, 2.0)].is_simple());
        assert!(!vec![(1, 1.0), (1, 2.0)].is_simple());
        assert!(!vec![(1, f64::NAN)].is_simple());
        let mut runs = Vec::new();
        p.for_each_run(1000, &mut Vec::new(), |r| {
            runs.push(r.points().collect::<Vec<_>>())
        });
        assert_eq!(runs, [vec![(1, 1.0), (2, 2.0)], vec![(1000, 3.0)]]);
        assert_eq!(Samples::Pairs(p.clone()).points().collect::<Vec<_>>(), p);
        assert_eq!(p.ends(), Some((1, 1000)));
    }
}
