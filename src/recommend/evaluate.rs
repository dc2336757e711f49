//! Rightsizing quality on recorded histories: train on all but the last days of each series, apply the
//! recommendation to the days held out, and count idle request (slack) against samples above the request
//! or the limit. Pure, so the benchmark command and tests share it.

use super::{History, Policy, Unit, recommend};
use crate::domain::Resource;

/// `(unix seconds, value)`.
type Point = (i64, f64);

/// One recorded series to score.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub id: &'a str,
    pub resource: Resource,
    pub unit: Unit,
    pub points: &'a [(i64, f64)],
}

/// How one policy did on one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Series scored (they had a recommendation and held-out samples).
    pub series: usize,
    /// Series the policy declined (not enough history); they count in no other field.
    pub declined: usize,
    /// Held-out samples over all scored series.
    pub samples: usize,
    /// Mean over series of the mean unused share of the request, `max(0, 1 - usage / request)`.
    pub slack: f64,
    /// As `slack`, against the limit (no limit: not counted).
    pub limit_slack: f64,
    pub above_request: usize,
    pub above_limit: usize,
    pub series_above_request: usize,
    pub series_above_limit: usize,
}

impl Score {
    pub fn above_request_share(&self) -> f64 {
        self.above_request as f64 / self.samples.max(1) as f64
    }
    pub fn above_limit_share(&self) -> f64 {
        self.above_limit as f64 / self.samples.max(1) as f64
    }
}

/// Splits a series into history and held-out part: the last `eval_secs`, or the last half of a series
/// shorter than twice that, so short-lived series are scored too (with less history).
pub fn split(points: &[Point], eval_secs: i64) -> (&[Point], &[Point]) {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return (points, &[]);
    };
    let held = eval_secs.min((last.0 - first.0) / 2);
    let cut = last.0 - held;
    let n = points.partition_point(|p| p.0 <= cut);
    points.split_at(n)
}

/// How one policy did on one series: its recommendation and what the held-out samples did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesScore {
    pub id: String,
    /// `None`: the policy declined (not enough history).
    pub request: Option<f64>,
    pub limit: Option<f64>,
    /// Held-out samples.
    pub samples: usize,
    /// Mean unused share of the request over the held-out samples.
    pub slack: f64,
    /// As `slack`, against the limit (no limit: `None`).
    pub limit_slack: Option<f64>,
    pub above_request: usize,
    pub above_limit: usize,
}

/// Scores `policy` on each of `series`, holding out the last `eval_secs` of each; series with no
/// held-out samples or no history are left out.
pub fn evaluate_series(
    series: &[Recorded<'_>],
    policy: &Policy,
    eval_secs: i64,
) -> Vec<SeriesScore> {
    let mut out = Vec::new();
    for s in series {
        let (train, test) = split(s.points, eval_secs);
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let mut h = History::new(s.resource, s.unit, train);
        h.growth_ratio = super::policy_growth(policy, s.resource, train);
        let rec = recommend(&h, policy, None);
        let n = test.len() as f64;
        let unused = |cap: f64| {
            if cap > 0.0 {
                test.iter().map(|p| (1.0 - p.1 / cap).max(0.0)).sum::<f64>() / n
            } else {
                0.0
            }
        };
        let above = |cap: Option<f64>| cap.map_or(0, |c| test.iter().filter(|p| p.1 > c).count());
        out.push(SeriesScore {
            id: s.id.to_string(),
            request: rec.request,
            limit: rec.limit,
            samples: test.len(),
            slack: rec.request.map_or(0.0, unused),
            limit_slack: rec.limit.map(unused),
            above_request: above(rec.request),
            above_limit: above(rec.limit),
        });
    }
    out
}

/// Scores `policy` on `series` (all of one resource), holding out the last `eval_secs` of each.
pub fn evaluate(series: &[Recorded<'_>], policy: &Policy, eval_secs: i64) -> Score {
    aggregate(&evaluate_series(series, policy, eval_secs))
}

/// Pools per-series scores: slack averaged over series, samples above counted over all samples.
pub fn aggregate(scores: &[SeriesScore]) -> Score {
    let mut score = Score::default();
    let mut limit_series = 0usize;
    for s in scores {
        if s.request.is_none() {
            score.declined += 1;
            continue;
        }
        score.series += 1;
        score.samples += s.samples;
        score.slack += s.slack;
        score.above_request += s.above_request;
        score.series_above_request += usize::from(s.above_request > 0);
        if let Some(l) = s.limit_slack {
            limit_series += 1;
            score.limit_slack += l;
            score.above_limit += s.above_limit;
            score.series_above_limit += usize::from(s.above_limit > 0);
        }
    }
    score.slack /= score.series.max(1) as f64;
    score.limit_slack /= limit_series.max(1) as f64;
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(days: i64, value: f64) -> Vec<(i64, f64)> {
        (0..days * 24).map(|h| (h * 3600, value)).collect()
    }

    fn cpu(points: &[(i64, f64)]) -> Recorded<'_> {
        Recorded {
            id: "s",
            resource: Resource::Cpu,
            unit: Unit::Unknown,
            points,
        }
    }

    #[test]
    fn split_holds_out_the_last_days_or_half_of_a_short_series() {
        let pts = flat(20, 1.0);
        let (train, test) = split(&pts, 7 * 86_400);
        assert_eq!(test.len(), 7 * 24);
        assert_eq!(train.len() + test.len(), pts.len());
        let short = flat(4, 1.0);
        let (train, test) = split(&short, 7 * 86_400);
        assert!(
            train.len().abs_diff(test.len()) <= 1,
            "{} vs {}",
            train.len(),
            test.len()
        );
    }

    #[test]
    fn evaluate_counts_samples_above_the_request_after_a_jump() {
        let mut pts = flat(20, 1.0);
        let n = pts.len();
        // The last day doubles: every held-out sample of that day is above a request sized on the past.
        for p in &mut pts[n - 24..] {
            p.1 = 2.0;
        }
        let policy = Policy::load("krr").unwrap();
        let rec = cpu(&pts);
        let score = evaluate(&[rec], &policy, 7 * 86_400);
        assert_eq!(score.series, 1);
        assert_eq!(score.above_request, 24);
        // Six days used exactly the request (no slack), one day was above it (no slack either).
        assert!(score.slack.abs() < 1e-12, "slack {}", score.slack);
    }

    #[test]
    fn evaluate_measures_slack_as_the_unused_share_of_the_request() {
        let pts = flat(20, 1.0);
        let mut policy = Policy::load("krr").unwrap();
        policy.cpu.margin_ratio = 1.0;
        let rec = cpu(&pts);
        let score = evaluate(&[rec], &policy, 7 * 86_400);
        assert!((score.slack - 0.5).abs() < 1e-12, "slack {}", score.slack);
        assert_eq!(score.above_request, 0);
    }

    #[test]
    fn evaluate_counts_a_declined_series_in_no_other_field() {
        // Ten hours: balanced needs twelve, so the five hours of history before the split are declined.
        let pts: Vec<(i64, f64)> = (0..120).map(|i| (i * 300, 1.0)).collect();
        let policy = Policy::load("balanced").unwrap();
        let rec = cpu(&pts);
        let per_series = evaluate_series(&[rec], &policy, 7 * 86_400);
        assert_eq!(per_series.len(), 1);
        assert_eq!(per_series[0].request, None);
        let score = aggregate(&per_series);
        assert_eq!((score.declined, score.series, score.samples), (1, 0, 0));
    }
}
