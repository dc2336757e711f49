//! Rightsizing: from one container's usage history of one resource and a declared [`Policy`] to a
//! recommended request and limit, with bounds, the rule that produced it, the risk in plain words and the
//! saving. Pure: plain data in, plain data out; no I/O, no clock.

pub mod calibrate;
pub mod evaluate;
pub mod growth;
pub mod patch;
pub mod policy;
pub mod stats;

use std::fmt::Write as _;

use crate::domain::Resource;

pub use policy::{Basis, Policy, PolicyError, ResourcePolicy};

const HOUR: f64 = 3_600.0;
const DAY: f64 = 86_400.0;
/// Hours in an average month, the period savings are quoted for.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What one unit of the input is worth in cores or bytes, when the unit says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// One unit is this many CPU cores.
    Cores(f64),
    /// One unit is this many bytes.
    Bytes(f64),
    /// Percent, MHz, normalised units: recommendations stay in the unit, savings have no money value.
    Unknown,
}

impl Unit {
    /// Reads the `unit` column of the offline format; an unrecognised unit is [`Unit::Unknown`].
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "cores" | "core" | "cpu" | "cpus" => Unit::Cores(1.0),
            "m" | "millicores" | "millicpu" | "mcpu" => Unit::Cores(0.001),
            "bytes" | "byte" | "B" => Unit::Bytes(1.0),
            // Memory tools report KB meaning 1024 bytes; so do the traces this is measured on.
            "KB" | "KiB" | "kB" | "Ki" => Unit::Bytes(1024.0),
            "MB" | "MiB" | "Mi" => Unit::Bytes(1024.0 * 1024.0),
            "GB" | "GiB" | "Gi" => Unit::Bytes(1024.0 * 1024.0 * 1024.0),
            _ => Unit::Unknown,
        }
    }

    /// One unit in cores (CPU) or GiB (memory), the quantities prices are given in.
    pub fn priced_quantity(self) -> Option<f64> {
        match self {
            Unit::Cores(c) => Some(c),
            Unit::Bytes(b) => Some(b / (1024.0 * 1024.0 * 1024.0)),
            Unit::Unknown => None,
        }
    }
}

/// Prices that turn a saving into money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub core_hour: f64,
    pub gib_hour: f64,
}

/// One container's history of one resource, and what is known around it.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub resource: Resource,
    pub unit: Unit,
    /// `(unix seconds, value)`, time-ordered: per replica, or the workload's total when `replicas` is given.
    pub usage: &'a [(i64, f64)],
    /// Per-window maxima where the source has them: the peaks a window mean hides. May be empty.
    pub peaks: &'a [(i64, f64)],
    /// Replica count as a step function; when given, `usage` and `peaks` are totals over the replicas.
    pub replicas: &'a [(i64, f64)],
    /// Times of OOM kills (memory).
    pub oom_kills: &'a [i64],
    /// Share of CFS periods throttled over the window (CPU), 0 to 1.
    pub throttled_ratio: Option<f64>,
    pub current_request: Option<f64>,
    pub current_limit: Option<f64>,
    /// A horizontal autoscaler scales on this resource: its per-replica usage follows the request.
    pub hpa_scaled: bool,
    /// Growth the forecast expects within the planning horizon, as a ratio to the current level.
    pub growth_ratio: Option<f64>,
}

impl<'a> History<'a> {
    /// A bare history: usage only, nothing else known.
    pub fn new(resource: Resource, unit: Unit, usage: &'a [(i64, f64)]) -> Self {
        Self {
            resource,
            unit,
            usage,
            peaks: &[],
            replicas: &[],
            oom_kills: &[],
            throttled_ratio: None,
            current_request: None,
            current_limit: None,
            hpa_scaled: false,
            growth_ratio: None,
        }
    }
}

/// What a recommendation saves against the current request, per replica and for all replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saving {
    /// Current request minus recommended request, in the input's unit, over all replicas (negative: costs more).
    pub units: f64,
    /// The same in cores or GiB, when the unit is known.
    pub quantity: Option<f64>,
    /// The same in money per month at the given prices.
    pub money_per_month: Option<f64>,
}

/// A recommended request and limit for one container and resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub resource: Resource,
    /// `None` only when there is not enough history to say.
    pub request: Option<f64>,
    /// `None`: no limit.
    pub limit: Option<f64>,
    pub request_lower: Option<f64>,
    pub request_upper: Option<f64>,
    /// The rule and its adjustments, for example `daily_peaks_p98+oom_bump`.
    pub rule: String,
    /// How the numbers came about, in one sentence.
    pub reason: String,
    /// What could go wrong with this request and limit, in a service owner's words.
    pub risk: String,
    pub saving: Option<Saving>,
}

/// The forecast growth ratio the policy asks for on `resource` (None: the policy does not use it, or
/// the forecast engine could not forecast this history).
pub fn policy_growth(policy: &Policy, resource: Resource, usage: &[(i64, f64)]) -> Option<f64> {
    if !policy.for_resource(resource).forecast_growth {
        return None;
    }
    growth::growth_ratio(usage, (policy.planning_horizon_days * DAY) as i64)
}

/// Recommends a request and limit for `history` under `policy`.
pub fn recommend(history: &History<'_>, policy: &Policy, prices: Option<Prices>) -> Recommendation {
    let rp = policy.for_resource(history.resource);
    let per_replica_usage = per_replica(history.usage, history.replicas);
    let per_replica_peaks = per_replica(history.peaks, history.replicas);
    let usage = &per_replica_usage;

    let (first, last) = match (usage.first(), usage.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => return not_enough(history, policy, 0.0, 0),
    };
    let span_hours = (last - first) as f64 / HOUR;
    if span_hours < policy.min_history_hours || usage.len() < policy.min_samples {
        return not_enough(history, policy, span_hours, usage.len());
    }

    let since = last - (rp.window_days * DAY) as i64;
    let window: Vec<(i64, f64)> = usage.iter().copied().filter(|p| p.0 > since).collect();
    let peaks_window: Vec<(i64, f64)> = per_replica_peaks
        .iter()
        .copied()
        .filter(|p| p.0 > since)
        .collect();
    let (values, weights) = rule_sample(usage, &per_replica_peaks, rp, last);
    let q = |quantile: f64| stats::weighted_quantile(&values, &weights, quantile).unwrap_or(0.0);
    // A calibrated policy replays its own rule at earlier origins of this history and takes the margin
    // that would have held there; too short a history falls back to the declared margin.
    let calibrated = rp.calibration.as_ref().and_then(|c| {
        calibrate::calibrate(usage, &per_replica_peaks, c, |u, p, at| {
            let (v, w) = rule_sample(u, p, rp, at);
            stats::weighted_quantile(&v, &w, rp.quantile)
        })
    });
    let margin = calibrated.map_or(1.0 + rp.margin_ratio, |c| c.ratio);

    let mut rule = format!(
        "{}_p{}",
        match rp.basis {
            Basis::Samples => "quantile",
            Basis::DailyPeaks => "daily_peaks",
        },
        fmt_quantile(rp.quantile)
    );
    let mut reason = format!(
        "{} of {}{} over the last {:.1} days (half-life {}h), times {:.2}",
        fmt_quantile_words(rp.quantile),
        match rp.basis {
            Basis::Samples => "samples",
            Basis::DailyPeaks => "daily peaks",
        },
        if history.replicas.is_empty() {
            ""
        } else {
            " per replica"
        },
        ((last - window[0].0) as f64 / DAY).max(0.0),
        rp.half_life_hours,
        margin
    );
    if let Some(c) = calibrated {
        rule.push_str("+calibrated");
        let _ = write!(
            reason,
            " (calibrated: replayed at {} earlier points of this history, that margin kept all but {:.1} % of the following samples within the request)",
            c.origins,
            c.exceedance * 100.0
        );
    }
    let mut request = q(rp.quantile) * margin;
    let mut lower = q(rp.lower_quantile) * margin;
    let mut upper = q(rp.upper_quantile) * margin;
    if let Some(cost) = rp.violation_cost {
        let floor = request;
        request = stats::cost_optimal(&values, &weights, cost, margin, floor, upper.max(floor))
            .unwrap_or(floor);
        rule = format!("cost{cost}_{rule}");
        let _ = write!(
            reason,
            "; raised to where one more unit of request would remove less than {cost} x its idle share in time above it"
        );
    }

    if rp.recent_floor_ratio > 0.0 {
        let recent_since = last - (rp.recent_hours * HOUR) as i64;
        let recent: Vec<f64> = window
            .iter()
            .filter(|p| p.0 > recent_since)
            .map(|p| p.1)
            .collect();
        let ones = vec![1.0; recent.len()];
        let level = stats::weighted_quantile(&recent, &ones, 0.5).unwrap_or(0.0);
        let floor = level * rp.recent_floor_ratio;
        if floor > request {
            request = floor;
            rule.push_str("+recent_floor");
            let _ = write!(
                reason,
                "; raised to {:.2}x the median of the last {}h, which is above the older history",
                rp.recent_floor_ratio, rp.recent_hours
            );
        }
    }

    let mut growth = 1.0;
    if let Some(g) = history.growth_ratio
        && g > 1.0
    {
        let g = g.min(policy.max_growth_ratio);
        growth = g;
        request *= g;
        upper *= g;
        rule.push_str("+growth");
        let _ = write!(
            reason,
            "; x{g:.2} for the growth the forecast expects within {} days",
            policy.planning_horizon_days
        );
    }

    if history.resource == Resource::Cpu
        && let Some(t) = history.throttled_ratio
        && t > rp.throttling_threshold
    {
        // Throttled usage is capped by the limit, so the history understates demand by about the share of
        // periods that were cut short.
        let bumped = request * (1.0 + t);
        let bumped = history.current_request.map_or(bumped, |r| bumped.max(r));
        request = bumped;
        upper = upper.max(request);
        rule.push_str("+throttling");
        let _ = write!(
            reason,
            "; raised by {:.0} % because CPU was throttled in {:.0} % of periods, so usage understates demand",
            t * 100.0,
            t * 100.0
        );
    }

    let peak = window
        .iter()
        .chain(&peaks_window)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let mut oom_floor = None;
    if history.resource == Resource::Memory {
        let kills = history.oom_kills.iter().filter(|&&t| t > since).count();
        if kills > 0 {
            // The memory at the kill is at least the limit then (or, unknown limit, the highest use seen).
            let at_kill = history.current_limit.unwrap_or(0.0).max(peak);
            let add = match history.unit {
                Unit::Bytes(b) => rp.oom_bump_mib * 1024.0 * 1024.0 / b,
                _ => 0.0,
            };
            let bumped = (at_kill * rp.oom_bump_ratio).max(at_kill + add);
            oom_floor = Some(bumped);
            if bumped > request {
                request = bumped;
                upper = upper.max(request);
            }
            rule.push_str("+oom_bump");
            let _ = write!(
                reason,
                "; {kills} OOM kill(s) in the window: at least max({:.1}x, +{} MiB) over the memory at the kill",
                rp.oom_bump_ratio, rp.oom_bump_mib
            );
        }
    }

    if history.hpa_scaled
        && let Some(current) = history.current_request
    {
        // The autoscaler holds per-replica usage near its target share of the request, so a smaller request
        // only buys more replicas: leave it, size only what does not feed back.
        request = current;
        rule = "hpa_scaled".into();
        reason = "an autoscaler scales on this resource: per-replica usage follows the request, so it is kept"
            .into();
    }

    let mut limit = rp.limit_ratio.map(|r| request * r);
    if let Some(r) = rp.limit_peak_ratio {
        // The peak grows with the level: a limit sized on the past peak alone is what growing tasks hit.
        let at_peak = peak * r * growth;
        limit = Some(limit.map_or(at_peak, |l| l.max(at_peak)).max(request));
    }
    if let (Some(l), Some(f)) = (limit, oom_floor) {
        limit = Some(l.max(f));
    }

    // Young histories get wider bounds (the VPA recommender's confidence multipliers).
    let days = (span_hours / 24.0).max(1e-3);
    lower = (lower * (1.0 + 0.001 / days).powi(-2)).min(request);
    upper = (upper * (1.0 + 1.0 / days)).max(request);

    let risk = risk_text(history.resource, &window, &peaks_window, request, limit);
    let saving = history.current_request.map(|cur| {
        let replicas = history.replicas.last().map_or(1.0, |r| r.1.max(1.0));
        let units = (cur - request) * replicas;
        let quantity = history.unit.priced_quantity().map(|q| q * units);
        let money_per_month = match (quantity, prices) {
            (Some(q), Some(p)) => Some(
                q * HOURS_PER_MONTH
                    * match history.resource {
                        Resource::Cpu => p.core_hour,
                        Resource::Memory => p.gib_hour,
                    },
            ),
            _ => None,
        };
        Saving {
            units,
            quantity,
            money_per_month,
        }
    });

    Recommendation {
        resource: history.resource,
        request: Some(request),
        limit,
        request_lower: Some(lower),
        request_upper: Some(upper),
        rule,
        reason,
        risk,
        saving,
    }
}

fn not_enough(
    history: &History<'_>,
    policy: &Policy,
    hours: f64,
    samples: usize,
) -> Recommendation {
    Recommendation {
        resource: history.resource,
        request: None,
        limit: None,
        request_lower: None,
        request_upper: None,
        rule: "not_enough_history".into(),
        reason: format!(
            "not enough history: {hours:.1} h and {samples} samples, the policy needs {} h and {} samples",
            policy.min_history_hours, policy.min_samples
        ),
        risk: "unknown until the workload has run long enough; keep the current request and limit"
            .into(),
        saving: None,
    }
}

/// Divides totals by the replica count in force at each sample; without replica counts, the input as is.
fn per_replica(points: &[(i64, f64)], replicas: &[(i64, f64)]) -> Vec<(i64, f64)> {
    if replicas.is_empty() {
        return points.to_vec();
    }
    let mut i = 0;
    points
        .iter()
        .map(|&(t, v)| {
            while i + 1 < replicas.len() && replicas[i + 1].0 <= t {
                i += 1;
            }
            let n = if replicas[i].0 <= t {
                replicas[i].1
            } else {
                replicas[0].1
            };
            (t, if n >= 1.0 { v / n } else { v })
        })
        .collect()
}

/// The values and recency weights the rule's quantile is taken over for a history ending at `last`:
/// the samples, or the daily peaks (of the window maxima where known), within the policy's window.
fn rule_sample(
    usage: &[(i64, f64)],
    peaks: &[(i64, f64)],
    rp: &ResourcePolicy,
    last: i64,
) -> (Vec<f64>, Vec<f64>) {
    let since = last - (rp.window_days * DAY) as i64;
    let within = |pts: &[(i64, f64)]| -> Vec<(i64, f64)> {
        pts.iter()
            .copied()
            .filter(|p| p.0 > since && p.0 <= last)
            .collect()
    };
    let window = within(usage);
    let peaks_window = within(peaks);
    let basis = match rp.basis {
        Basis::Samples => window,
        // Peaks, where known, are what memory must hold and what CPU bursts to; means are the fallback.
        Basis::DailyPeaks if peaks_window.is_empty() => stats::window_peaks(&window, DAY as i64),
        Basis::DailyPeaks => stats::window_peaks(&peaks_window, DAY as i64),
    };
    let half_life = rp.half_life_hours * HOUR;
    let weights = basis
        .iter()
        .map(|p| stats::decay_weight((last - p.0) as f64, half_life))
        .collect();
    (basis.into_iter().map(|p| p.1).collect(), weights)
}

fn risk_text(
    resource: Resource,
    window: &[(i64, f64)],
    peaks: &[(i64, f64)],
    request: f64,
    limit: Option<f64>,
) -> String {
    let share_above = |pts: &[(i64, f64)], x: f64| {
        pts.iter().filter(|p| p.1 > x).count() as f64 / pts.len().max(1) as f64 * 100.0
    };
    let above_request = share_above(window, request);
    let tops = if peaks.is_empty() { window } else { peaks };
    match (resource, limit) {
        (Resource::Cpu, None) => format!(
            "{above_request:.1} % of past samples were above the request: then the container competes for spare CPU and may slow down; no limit, so it is never throttled"
        ),
        (Resource::Cpu, Some(l)) => format!(
            "{above_request:.1} % of past samples were above the request and {:.1} % above the limit, where CPU is throttled",
            share_above(tops, l)
        ),
        (Resource::Memory, None) => format!(
            "{above_request:.1} % of past samples were above the request: under node memory pressure the pod may be evicted; no limit"
        ),
        (Resource::Memory, Some(l)) => {
            let above = share_above(tops, l);
            if above > 0.0 {
                format!(
                    "{above:.2} % of past samples were above the limit: an OOM kill each time such a peak recurs"
                )
            } else {
                format!(
                    "the highest past sample is {:.0} % below the limit; an OOM kill needs a peak higher than any seen; {above_request:.1} % of samples were above the request",
                    (1.0 - tops.iter().map(|p| p.1).fold(0.0, f64::max) / l) * 100.0
                )
            }
        }
    }
}

fn fmt_quantile(q: f64) -> String {
    let pct = q * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}", pct.round() as i64)
    } else {
        format!("{pct}")
    }
}

fn fmt_quantile_words(q: f64) -> String {
    if q >= 1.0 {
        "the maximum".into()
    } else {
        format!("the {}th percentile", fmt_quantile(q))
    }
}

#[cfg(test)]
mod tests;
