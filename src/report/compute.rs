//! The arithmetic of a report: scope totals over time from per-container samples, sums of per-service
//! forecasts at a lead time, the backtest error distribution, and earlier forecasts scored against what
//! happened. Pure functions on plain data.

use std::collections::BTreeMap;

use super::data::HistoryPoint;

/// One container's samples over the period (usage is per replica).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerSamples<'a> {
    pub cpu_usage: &'a [(i64, f64)],
    pub memory_usage: &'a [(i64, f64)],
    pub replicas: &'a [(i64, f64)],
    pub cpu_request: &'a [(i64, f64)],
    pub memory_request: &'a [(i64, f64)],
}

/// Mean of each `step`-wide slot.
fn slot_means(points: &[(i64, f64)], step: i64) -> BTreeMap<i64, f64> {
    let mut acc: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for &(t, v) in points {
        let e = acc.entry(t.div_euclid(step) * step).or_default();
        e.0 += v;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(t, (s, n))| (t, s / f64::from(n)))
        .collect()
}

/// The value a step function (sorted points) holds at `t`: its last point at or before `t`.
fn held_at(points: &[(i64, f64)], t: i64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 <= t);
    i.checked_sub(1).map(|i| points[i].1)
}

/// Adds one container to the scope totals, slot by slot. A container counts only in slots where it
/// reported usage, so a deleted workload stops adding requests when it stops running. Requests are the
/// value held at the end of the slot; replicas the slot's mean (the last known count when it has none,
/// 1 when there is none at all).
pub fn add_container(totals: &mut BTreeMap<i64, HistoryPoint>, step: i64, c: &ContainerSamples) {
    let cpu = slot_means(c.cpu_usage, step);
    let mem = slot_means(c.memory_usage, step);
    let reps = slot_means(c.replicas, step);
    let mut slots: Vec<i64> = cpu.keys().chain(mem.keys()).copied().collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        let r = reps
            .get(&slot)
            .copied()
            .or_else(|| held_at(c.replicas, slot))
            .unwrap_or(1.0);
        let end = slot + step - 1;
        let p = totals.entry(slot).or_insert(HistoryPoint {
            t: slot,
            ..Default::default()
        });
        p.cpu_used += cpu.get(&slot).copied().unwrap_or(0.0) * r;
        p.memory_used += mem.get(&slot).copied().unwrap_or(0.0) * r;
        p.cpu_requested += held_at(c.cpu_request, end).unwrap_or(0.0) * r;
        p.memory_requested += held_at(c.memory_request, end).unwrap_or(0.0) * r;
    }
}

/// Sum of several services' forecasts at one lead time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SummedForecast {
    pub p50: f64,
    /// Sum of the upper bounds (services peak together).
    pub upper_together: f64,
    /// p50 plus the half-widths added in quadrature (services vary independently).
    pub upper_independent: f64,
    pub reaching: usize,
}

/// Sums `(p50, upper, weight)` of the forecasts that reach the lead time (`None` when none does).
pub fn sum_forecasts(
    items: impl IntoIterator<Item = (Option<f64>, Option<f64>, f64)>,
) -> Option<SummedForecast> {
    let mut s = SummedForecast::default();
    let mut var = 0.0;
    for (p50, upper, w) in items {
        let (Some(p), Some(u)) = (p50, upper) else {
            continue;
        };
        s.p50 += p * w;
        s.upper_together += u * w;
        var += ((u - p).max(0.0) * w).powi(2);
        s.reaching += 1;
    }
    s.upper_independent = s.p50 + var.sqrt();
    (s.reaching > 0).then_some(s)
}

/// The `q` quantile (0..=1) of sorted values, interpolated linearly.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let x = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo as f64))
}

/// Running sums of an earlier forecast's errors against what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub points: usize,
    pub abs_error: f64,
    pub signed_error: f64,
    pub actual: f64,
    pub inside: usize,
    pub checked: usize,
}

impl Outcome {
    pub fn add(&mut self, o: &Outcome) {
        self.points += o.points;
        self.abs_error += o.abs_error;
        self.signed_error += o.signed_error;
        self.actual += o.actual;
        self.inside += o.inside;
        self.checked += o.checked;
    }
}

/// A forecast as stored: value `i` stands for the block `[start + i step, start + (i + 1) step)`.
#[derive(Debug, Clone, Copy)]
pub struct Thinned<'a> {
    pub start: i64,
    pub step: i64,
    pub p50: &'a [f32],
    pub lower: &'a [f32],
    pub upper: &'a [f32],
}

/// A stored forecast (thinned to blocks of `step`) against the samples that arrived since, up to `now`.
/// The samples are reduced exactly as the forecast was made: the max of each `fit_step` slot (the peak
/// the assessment forecasts), then the middle slot of each stored block stands against the block's p50,
/// and every slot is checked against the block's interval (the lowest lower and highest upper of it).
pub fn score_forecast(f: &Thinned, samples: &[(i64, f64)], fit_step: i64, now: i64) -> Outcome {
    let Thinned {
        start,
        step,
        p50,
        lower,
        upper,
    } = *f;
    let fit_step = fit_step.clamp(1, step.max(1));
    let mut peaks: BTreeMap<i64, f64> = BTreeMap::new();
    for &(t, v) in samples {
        let e = peaks
            .entry(t.div_euclid(fit_step) * fit_step)
            .or_insert(f64::MIN);
        *e = e.max(v);
    }
    let mut out = Outcome::default();
    for (i, ((&p, &lo), &hi)) in p50.iter().zip(lower).zip(upper).enumerate() {
        let from = start + i as i64 * step;
        if from + step > now {
            break;
        }
        let block: Vec<f64> = peaks.range(from..from + step).map(|(_, v)| *v).collect();
        let Some(&actual) = block.get(block.len() / 2) else {
            continue;
        };
        out.points += 1;
        out.abs_error += (f64::from(p) - actual).abs();
        out.signed_error += f64::from(p) - actual;
        out.actual += actual.abs();
        out.checked += block.len();
        out.inside += block
            .iter()
            .filter(|&&a| a >= f64::from(lo) && a <= f64::from(hi))
            .count();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_totals_multiply_per_replica_usage_by_replicas_and_hold_requests() {
        let mut totals = BTreeMap::new();
        let usage = [(0, 1.0), (1_800, 3.0), (3_600, 2.0)];
        let replicas = [(0, 3.0)];
        let request = [(0, 4.0)];
        add_container(
            &mut totals,
            3_600,
            &ContainerSamples {
                cpu_usage: &usage,
                replicas: &replicas,
                cpu_request: &request,
                ..Default::default()
            },
        );
        let first = totals[&0];
        assert_eq!(
            first.cpu_used, 6.0,
            "mean 2 cores per replica times 3 replicas"
        );
        assert_eq!(first.cpu_requested, 12.0);
        assert_eq!(totals[&3_600].cpu_used, 6.0);
        assert_eq!(
            totals[&3_600].cpu_requested, 12.0,
            "the request holds into the next hour"
        );
        assert_eq!(totals.len(), 2);
    }

    #[test]
    fn a_container_adds_nothing_in_hours_without_usage() {
        let mut totals = BTreeMap::new();
        let usage = [(0, 1.0)];
        let request = [(0, 4.0), (7_200, 4.0)];
        add_container(
            &mut totals,
            3_600,
            &ContainerSamples {
                memory_usage: &usage,
                memory_request: &request,
                ..Default::default()
            },
        );
        assert_eq!(totals.len(), 1);
        assert_eq!(
            totals[&0].memory_requested, 4.0,
            "one replica when none is known"
        );
    }

    #[test]
    fn summed_intervals_are_widest_when_services_peak_together() {
        let s = sum_forecasts([
            (Some(1.0), Some(2.0), 1.0),
            (Some(1.0), Some(2.0), 1.0),
            (None, None, 5.0),
        ])
        .unwrap();
        assert_eq!(s.p50, 2.0);
        assert_eq!(s.upper_together, 4.0);
        assert!((s.upper_independent - (2.0 + 2f64.sqrt())).abs() < 1e-12);
        assert_eq!(s.reaching, 2);
        assert!(sum_forecasts([(None, Some(1.0), 1.0)]).is_none());
    }

    #[test]
    fn quantiles_interpolate_between_neighbours() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[0.0, 10.0], 0.25), Some(2.5));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_perfect_forecast_scores_no_error_and_full_coverage() {
        // Two blocks of two 30-minute slots; peaks 2,4 then 6,8; the stored p50 is the middle slot.
        let samples = [
            (0, 1.0),
            (10, 2.0),
            (1_800, 4.0),
            (3_600, 6.0),
            (5_400, 8.0),
        ];
        let f = Thinned {
            start: 0,
            step: 3_600,
            p50: &[4.0, 8.0],
            lower: &[1.0, 5.0],
            upper: &[5.0, 9.0],
        };
        let o = score_forecast(&f, &samples, 1_800, 7_200);
        assert_eq!(o.points, 2);
        assert_eq!(o.abs_error, 0.0);
        assert_eq!(o.actual, 12.0);
        assert_eq!((o.inside, o.checked), (4, 4));
    }

    #[test]
    fn a_forecast_is_scored_only_on_blocks_that_have_fully_arrived() {
        let samples = [(0, 3.0), (3_600, 3.0)];
        let f = Thinned {
            start: 0,
            step: 3_600,
            p50: &[1.0, 1.0],
            lower: &[0.0, 0.0],
            upper: &[2.0, 2.0],
        };
        let o = score_forecast(&f, &samples, 3_600, 5_000);
        assert_eq!(o.points, 1);
        assert_eq!(o.abs_error, 2.0);
        assert_eq!(o.signed_error, -2.0, "under-forecast is negative");
        assert_eq!((o.inside, o.checked), (0, 1));
    }
}
