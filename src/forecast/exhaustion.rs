//! Time to exhaustion: when usage reaches a threshold (request, limit, capacity). It follows the
//! forecast's peaks, not its median: the chance of reaching the threshold by each hour is the largest
//! exceedance probability of an hourly peak so far, read from the backtest's hourly peak residuals.

use super::Forecast;

/// The kind of answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExhaustionStatus {
    /// The last observed value is at or above the threshold already.
    AlreadyOver,
    /// Reached within the horizon with probability at least one half.
    Within,
    /// Not (likely) reached within the horizon.
    NotWithinHorizon,
}

impl ExhaustionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExhaustionStatus::AlreadyOver => "already_over",
            ExhaustionStatus::Within => "within_horizon",
            ExhaustionStatus::NotWithinHorizon => "not_within_horizon",
        }
    }
}

/// When a threshold is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhaustion {
    pub status: ExhaustionStatus,
    /// First time the probability of having reached the threshold is at least one half.
    pub eta: Option<i64>,
    /// First time that probability reaches `(1 - level) / 2`: the pessimistic estimate.
    pub eta_early: Option<i64>,
    /// First time it reaches `(1 + level) / 2`: the optimistic estimate.
    pub eta_late: Option<i64>,
    /// Probability of reaching the threshold within the horizon.
    pub probability: f64,
}

/// Exhaustion of `threshold` over the forecast's horizon.
pub fn exhaustion(f: &Forecast, threshold: f64) -> Exhaustion {
    if f.last.1 >= threshold {
        return Exhaustion {
            status: ExhaustionStatus::AlreadyOver,
            eta: Some(f.last.0),
            eta_early: Some(f.last.0),
            eta_late: Some(f.last.0),
            probability: 1.0,
        };
    }
    let (p_early, p_late) = ((1.0 - f.level) / 2.0, (1.0 + f.level) / 2.0);
    let (mut eta, mut early, mut late) = (None, None, None);
    let mut reached: f64 = 0.0;
    for (b, top) in f.peak_blocks() {
        let t = f.start + top as i64 * f.step;
        reached = reached.max(f.peak_prob_at_least(b, top, threshold));
        if early.is_none() && reached >= p_early {
            early = Some(t);
        }
        if eta.is_none() && reached >= 0.5 {
            eta = Some(t);
        }
        if late.is_none() && reached >= p_late {
            late = Some(t);
        }
    }
    Exhaustion {
        status: if eta.is_some() {
            ExhaustionStatus::Within
        } else {
            ExhaustionStatus::NotWithinHorizon
        },
        eta,
        eta_early: early,
        eta_late: late,
        probability: reached,
    }
}
