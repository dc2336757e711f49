//! Unit and property tests of the rightsizing rules, on synthetic histories made here.

use proptest::prelude::*;

use super::*;

const STEP: i64 = 300;

/// `days` of samples every 5 minutes with a daily wave between `base` and `base + swing`.
fn wave(days: i64, base: f64, swing: f64) -> Vec<(i64, f64)> {
    (0..days * 288)
        .map(|i| {
            let t = 1_700_000_000 + i * STEP;
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            (t, base + swing * (0.5 + 0.5 * phase.sin()))
        })
        .collect()
}

fn balanced() -> Policy {
    Policy::load("balanced").unwrap()
}

#[test]
fn recommend_reports_not_enough_history_for_a_young_workload() {
    let usage = wave(1, 1.0, 0.5);
    let young = &usage[..6];
    let rec = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), young),
        &balanced(),
        None,
    );
    assert_eq!(rec.request, None);
    assert_eq!(rec.rule, "not_enough_history");
    assert!(rec.reason.contains("not enough history"), "{}", rec.reason);
}

#[test]
fn recommend_reports_not_enough_history_for_an_empty_series() {
    let rec = recommend(
        &History::new(Resource::Memory, Unit::Unknown, &[]),
        &balanced(),
        None,
    );
    assert_eq!(rec.request, None);
}

#[test]
fn cpu_request_sits_between_the_median_and_the_peak_of_a_steady_wave() {
    let usage = wave(14, 1.0, 1.0);
    let rec = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), &usage),
        &balanced(),
        None,
    );
    let req = rec.request.unwrap();
    assert!(req > 1.5 && req < 2.0 * 1.1 + 1e-9, "request {req}");
    assert_eq!(rec.limit, None, "balanced sets no CPU limit");
    let (lo, hi) = (rec.request_lower.unwrap(), rec.request_upper.unwrap());
    assert!(lo <= req && req <= hi, "{lo} <= {req} <= {hi}");
}

#[test]
fn memory_limit_holds_every_peak_seen_in_the_window() {
    let mut usage = wave(10, 100.0, 20.0);
    usage[1000].1 = 400.0;
    let rec = recommend(
        &History::new(Resource::Memory, Unit::Unknown, &usage),
        &balanced(),
        None,
    );
    assert!(rec.limit.unwrap() >= 400.0, "limit {:?}", rec.limit);
    assert!(rec.limit.unwrap() >= rec.request.unwrap());
}

#[test]
fn oom_kill_raises_memory_to_at_least_the_bump_over_the_old_limit() {
    let usage = wave(10, 100.0, 20.0);
    let kill = usage[2000].0;
    let kills = [kill];
    let mut h = History::new(Resource::Memory, Unit::Bytes(1_048_576.0), &usage);
    h.oom_kills = &kills;
    h.current_limit = Some(128.0);
    let rec = recommend(&h, &balanced(), None);
    // max(1.2 x 128, 128 + 100 MiB) = 228 MiB.
    assert!(
        (rec.request.unwrap() - 228.0).abs() < 1e-9,
        "{:?}",
        rec.request
    );
    assert!(rec.limit.unwrap() >= 228.0);
    assert!(rec.rule.contains("oom_bump"), "{}", rec.rule);
}

#[test]
fn throttling_raises_the_cpu_request() {
    let usage = wave(10, 1.0, 0.5);
    let plain = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), &usage),
        &balanced(),
        None,
    );
    let mut h = History::new(Resource::Cpu, Unit::Cores(1.0), &usage);
    h.throttled_ratio = Some(0.3);
    let throttled = recommend(&h, &balanced(), None);
    assert!(throttled.request.unwrap() > plain.request.unwrap());
    assert!(throttled.rule.contains("throttling"));
}

#[test]
fn expected_growth_raises_the_request_up_to_the_policy_cap() {
    let usage = wave(10, 1.0, 0.5);
    let p = balanced();
    let plain = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), &usage),
        &p,
        None,
    );
    let mut h = History::new(Resource::Cpu, Unit::Cores(1.0), &usage);
    h.growth_ratio = Some(10.0);
    let grown = recommend(&h, &p, None);
    let ratio = grown.request.unwrap() / plain.request.unwrap();
    assert!((ratio - p.max_growth_ratio).abs() < 1e-9, "ratio {ratio}");
    h.growth_ratio = Some(0.5);
    let shrinking = recommend(&h, &p, None);
    assert_eq!(
        shrinking.request, plain.request,
        "a decline never lowers the request"
    );
}

#[test]
fn replica_counts_turn_workload_totals_into_per_replica_requests() {
    let per_replica = wave(10, 1.0, 0.5);
    let total: Vec<(i64, f64)> = per_replica.iter().map(|&(t, v)| (t, v * 4.0)).collect();
    let replicas = [(per_replica[0].0, 4.0)];
    let single = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), &per_replica),
        &balanced(),
        None,
    );
    let mut h = History::new(Resource::Cpu, Unit::Cores(1.0), &total);
    h.replicas = &replicas;
    let scaled = recommend(&h, &balanced(), None);
    assert!((scaled.request.unwrap() - single.request.unwrap()).abs() < 1e-9);
}

#[test]
fn hpa_scaled_resource_keeps_its_current_request() {
    let usage = wave(10, 1.0, 0.5);
    let mut h = History::new(Resource::Cpu, Unit::Cores(1.0), &usage);
    h.hpa_scaled = true;
    h.current_request = Some(3.0);
    let rec = recommend(&h, &balanced(), None);
    assert_eq!(rec.request, Some(3.0));
    assert_eq!(rec.rule, "hpa_scaled");
}

#[test]
fn saving_is_priced_per_core_hour_over_a_month() {
    let usage = wave(10, 1.0, 0.0);
    let mut h = History::new(Resource::Cpu, Unit::Cores(1.0), &usage);
    h.current_request = Some(3.0);
    let prices = Prices {
        core_hour: 0.04,
        gib_hour: 0.005,
    };
    let rec = recommend(&h, &balanced(), Some(prices));
    let s = rec.saving.unwrap();
    let expected_units = 3.0 - rec.request.unwrap();
    assert!((s.units - expected_units).abs() < 1e-9);
    assert!((s.money_per_month.unwrap() - expected_units * 0.04 * HOURS_PER_MONTH).abs() < 1e-9);
}

#[test]
fn saving_in_an_unknown_unit_has_no_money_value() {
    let usage = wave(10, 50.0, 10.0);
    let mut h = History::new(Resource::Cpu, Unit::parse("percent"), &usage);
    h.current_request = Some(100.0);
    let rec = recommend(
        &h,
        &balanced(),
        Some(Prices {
            core_hour: 1.0,
            gib_hour: 1.0,
        }),
    );
    assert_eq!(rec.saving.unwrap().money_per_month, None);
}

/// `p` at quantile `q`, without a calibrated margin: the calibrated multiplier is chosen per quantile, so
/// only the plain rule is monotone in it.
fn with_quantile(mut p: Policy, q: f64) -> Policy {
    p.cpu.calibration = None;
    p.memory.calibration = None;
    p.cpu.quantile = q;
    p.cpu.lower_quantile = p.cpu.lower_quantile.min(q);
    p.cpu.upper_quantile = p.cpu.upper_quantile.max(q);
    p.memory.quantile = q;
    p.memory.lower_quantile = p.memory.lower_quantile.min(q);
    p.memory.upper_quantile = p.memory.upper_quantile.max(q);
    p
}

proptest! {
    #[test]
    fn a_recommendation_never_decreases_when_the_percentile_rises(
        values in prop::collection::vec(0.0f64..100.0, 48..300),
        q1 in 0.0f64..1.0,
        q2 in 0.0f64..1.0,
        memory in any::<bool>(),
    ) {
        let usage: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 3600, *v)).collect();
        let resource = if memory { Resource::Memory } else { Resource::Cpu };
        let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
        let h = History::new(resource, Unit::Unknown, &usage);
        let a = recommend(&h, &with_quantile(balanced(), lo), None);
        let b = recommend(&h, &with_quantile(balanced(), hi), None);
        prop_assert!(a.request.unwrap() <= b.request.unwrap());
        prop_assert!(a.limit.unwrap_or(f64::INFINITY) <= b.limit.unwrap_or(f64::INFINITY));
    }

    #[test]
    fn a_calibrated_cpu_request_is_never_below_its_percentile(
        values in prop::collection::vec(0.0f64..100.0, 48..400),
    ) {
        let usage: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 3600, *v)).collect();
        let h = History::new(Resource::Cpu, Unit::Unknown, &usage);
        let policy = balanced();
        prop_assert!(policy.cpu.calibration.as_ref().is_some_and(|c| c.min_ratio >= 1.0));
        let mut plain = policy.clone();
        plain.cpu.calibration = None;
        plain.cpu.margin_ratio = 0.0;
        let calibrated = recommend(&h, &policy, None).request.unwrap();
        prop_assert!(calibrated >= recommend(&h, &plain, None).request.unwrap());
    }

    #[test]
    fn request_lies_within_its_bounds_and_the_limit_is_never_below_it(
        values in prop::collection::vec(0.0f64..1e6, 100..300),
        memory in any::<bool>(),
        name in prop::sample::select(policy::BUILTIN.map(|(n, _)| n).to_vec()),
    ) {
        let usage: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 3600, *v)).collect();
        let resource = if memory { Resource::Memory } else { Resource::Cpu };
        let rec = recommend(&History::new(resource, Unit::Unknown, &usage), &Policy::load(name).unwrap(), None);
        let req = rec.request.unwrap();
        prop_assert!(rec.request_lower.unwrap() <= req && req <= rec.request_upper.unwrap());
        if let Some(l) = rec.limit { prop_assert!(l >= req); }
    }
}

#[test]
fn balanced_cpu_margin_is_calibrated_on_the_series_own_history() {
    // A steady daily wave: the replayed weeks never exceed the 80th percentile by much, so the margin
    // found is small, and the reason says how it was found.
    let usage = wave(21, 1.0, 1.0);
    let rec = recommend(
        &History::new(Resource::Cpu, Unit::Cores(1.0), &usage),
        &balanced(),
        None,
    );
    assert!(rec.rule.contains("+calibrated"), "{}", rec.rule);
    assert!(rec.reason.contains("replayed at 7"), "{}", rec.reason);
    let req = rec.request.unwrap();
    assert!((1.8..=2.0 + 1e-9).contains(&req), "request {req}");
}
