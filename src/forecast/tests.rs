use super::*;

const H: i64 = 3_600;
const D: i64 = 86_400;

/// Deterministic noise in [-1, 1] so tests never flake.
fn noise(i: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((x >> 33) as f64 / (1u64 << 31) as f64) - 1.0
}

fn series(days: i64, step: i64, f: impl Fn(usize, i64) -> f64) -> Vec<(i64, f64)> {
    (0..days * D / step)
        .map(|i| {
            let t = 1_700_000_000 + i * step;
            (t, f(i as usize, t))
        })
        .collect()
}

fn daily(t: i64) -> f64 {
    (std::f64::consts::TAU * (t % D) as f64 / D as f64).sin()
}

#[test]
fn forecast_reports_not_enough_history_for_two_points() {
    let e = forecast(&[(0, 1.0), (60, 2.0)], &ForecastOptions::new(D, 0.8)).unwrap_err();
    assert!(
        matches!(e, ForecastError::NotEnoughHistory { have: 2, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("not enough history: have 2, need "),
        "{e}"
    );
    let e = forecast(&[(0, 1.0)], &ForecastOptions::new(D, 0.8)).unwrap_err();
    assert!(matches!(e, ForecastError::NotEnoughHistory { .. }));
}

#[test]
fn a_level_outside_zero_and_one_is_refused() {
    let pts = series(5, H, |_, _| 1.0);
    assert!(matches!(
        forecast(&pts, &ForecastOptions::new(D, 1.0)),
        Err(ForecastError::BadOptions(_))
    ));
}

#[test]
fn a_constant_series_gets_a_flat_forecast_with_a_closed_interval() {
    let pts = series(5, 300, |_, _| 42.0);
    let f = forecast(&pts, &ForecastOptions::new(D, 0.8)).unwrap();
    assert_eq!(f.p50.len(), 288);
    assert_eq!(f.start, pts.last().unwrap().0 + 300);
    for i in 0..f.p50.len() {
        assert!((f.p50[i] - 42.0).abs() < 1e-6);
        assert!((f.upper[i] - f.lower[i]).abs() < 1e-6);
    }
    assert_eq!(f.backtest_mase, None);
}

#[test]
fn a_daily_cycle_is_forecast_closely_and_beats_the_seasonal_naive_floor() {
    let pts = series(14, 300, |i, t| 50.0 + 20.0 * daily(t) + 3.0 * noise(i));
    let f = forecast(&pts, &ForecastOptions::new(D, 0.8)).unwrap();
    assert_ne!(f.model, "seasonal_naive");
    let mase = f.backtest_mase.unwrap();
    assert!(mase < 0.8, "backtest MASE {mase}");
    for (i, t) in f.times().enumerate() {
        let truth = 50.0 + 20.0 * daily(t);
        assert!(
            (f.p50[i] - truth).abs() < 3.0,
            "{i}: {} vs {truth}",
            f.p50[i]
        );
        assert!(f.lower[i] <= f.p50[i] && f.p50[i] <= f.upper[i]);
    }
}

#[test]
fn an_eighty_percent_interval_covers_about_eighty_percent_of_a_held_out_day() {
    let all = series(15, 600, |i, t| 100.0 + 10.0 * daily(t) + 8.0 * noise(i));
    let cut = all.len() - 144;
    let f = forecast(&all[..cut], &ForecastOptions::new(D, 0.8)).unwrap();
    let inside = all[cut..]
        .iter()
        .enumerate()
        .filter(|(i, p)| f.lower[*i] <= p.1 && p.1 <= f.upper[*i])
        .count();
    let coverage = inside as f64 / 144.0;
    assert!((0.7..=0.9).contains(&coverage), "coverage {coverage}");
}

#[test]
fn after_a_level_shift_the_forecast_follows_the_new_level() {
    let pts = series(20, 300, |i, t| {
        let base = if i > 17 * 288 { 200.0 } else { 100.0 };
        base + 5.0 * daily(t) + noise(i)
    });
    let f = forecast(&pts, &ForecastOptions::new(D, 0.8)).unwrap();
    let mean = f.p50.iter().sum::<f64>() / f.p50.len() as f64;
    assert!((mean - 200.0).abs() < 10.0, "mean {mean} with {}", f.model);
}

#[test]
fn irregular_samples_with_gaps_and_restarts_still_forecast() {
    let mut pts = series(10, 60, |i, t| 1e12 * (3.0 + daily(t) + 0.1 * noise(i)));
    pts.retain(|p| !(p.0 % D > 3 * H && p.0 % D < 6 * H && (p.0 / D) % 3 == 0));
    for p in pts.iter_mut().step_by(997) {
        p.1 = 0.0;
        p.0 += 7;
    }
    let f = forecast(&pts, &ForecastOptions::new(12 * H, 0.9)).unwrap();
    assert_eq!(f.step, 60);
    assert_eq!(f.p50.len(), 720);
    assert!(
        f.p50
            .iter()
            .chain(&f.upper)
            .all(|v| v.is_finite() && *v >= 0.0)
    );
    let mean = f.p50.iter().sum::<f64>() / f.p50.len() as f64;
    assert!((mean / 1e12 - 3.0).abs() < 1.0, "mean {mean}");
}

#[test]
fn exhaustion_finds_a_linear_leak_close_to_its_true_crossing() {
    // 1 unit per hour from 100, threshold 400: crossed 300 h after the start, 60 h after the end.
    let pts = series(10, 600, |i, t| {
        100.0 + (t - 1_700_000_000) as f64 / H as f64 + 0.5 * noise(i)
    });
    let f = forecast(&pts, &ForecastOptions::new(30 * D, 0.8)).unwrap();
    let x = exhaustion(&f, 400.0);
    assert_eq!(x.status, ExhaustionStatus::Within);
    let truth = 1_700_000_000 + 300 * H;
    let last = pts.last().unwrap().0;
    let err = (x.eta.unwrap() - truth).abs() as f64 / (truth - last) as f64;
    assert!(err < 0.15, "relative error {err}");
    assert!(x.eta_early.unwrap() <= x.eta.unwrap() && x.eta.unwrap() <= x.eta_late.unwrap());
    assert!(x.probability > 0.9);
}

#[test]
fn a_flat_noisy_series_is_never_within_the_horizon_of_a_distant_limit() {
    let pts = series(14, 300, |i, t| 50.0 + 10.0 * daily(t) + 5.0 * noise(i));
    let f = forecast(&pts, &ForecastOptions::new(30 * D, 0.8)).unwrap();
    let x = exhaustion(&f, 100.0);
    assert_eq!(x.status, ExhaustionStatus::NotWithinHorizon);
    assert_eq!(x.eta, None);
    assert!(x.probability < 0.5);
}

#[test]
fn usage_already_over_the_threshold_is_reported_as_such() {
    let pts = series(3, 300, |_, _| 10.0);
    let f = forecast(&pts, &ForecastOptions::new(D, 0.8)).unwrap();
    let x = exhaustion(&f, 10.0);
    assert_eq!(x.status, ExhaustionStatus::AlreadyOver);
    assert_eq!(x.probability, 1.0);
    assert_eq!(x.eta, Some(pts.last().unwrap().0));
}

#[test]
fn a_three_day_history_still_gets_a_calibrated_interval_from_overlapping_origins() {
    let all = series(4, 600, |i, t| 100.0 + 10.0 * daily(t) + 8.0 * noise(i));
    let cut = all.len() - 144;
    let f = forecast(&all[..cut], &ForecastOptions::new(D, 0.8)).unwrap();
    let inside = all[cut..]
        .iter()
        .enumerate()
        .filter(|(i, p)| f.lower[*i] <= p.1 && p.1 <= f.upper[*i])
        .count();
    let coverage = inside as f64 / 144.0;
    assert!((0.65..=0.95).contains(&coverage), "coverage {coverage}");
}
