//! The offline `forecast` and `exhaustion` commands through the real binary: columns, formats, and
//! one-line errors with exit status 2.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "headroom-it-forecast-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Eight days of 5-minute samples: a daily cycle on `web/cpu`, a slow leak on `web/memory`.
fn usage_csv() -> String {
    let mut s = String::from("series_id,timestamp_unix,resource,value,unit\n");
    for i in 0..8 * 288i64 {
        let t = 1_700_000_000 + i * 300;
        let phase = std::f64::consts::TAU * (i % 288) as f64 / 288.0;
        let wiggle = ((i * 7_919) % 13) as f64 / 13.0;
        writeln!(s, "web,{t},cpu,{},cores", 2.0 + phase.sin() + 0.2 * wiggle).unwrap();
    }
    for i in 0..8 * 288i64 {
        let t = 1_700_000_000 + i * 300;
        let wiggle = ((i * 7_919) % 13) as f64 / 13.0;
        writeln!(
            s,
            "web,{t},memory,{},bytes",
            1e9 + 1e6 * i as f64 + 1e6 * wiggle
        )
        .unwrap();
    }
    s
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .output()
        .expect("the headroom binary runs")
}

#[test]
fn forecast_prints_one_row_per_future_step_with_ordered_bounds() {
    let d = dir("fc");
    let input = d.join("usage.csv");
    std::fs::write(&input, usage_csv()).unwrap();
    let out = run(&[
        "forecast",
        "--input",
        input.to_str().unwrap(),
        "--horizon",
        "24h",
        "--level",
        "0.8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("series_id,resource,timestamp_unix,p50,lower,upper,model")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 288);
    let last = 1_700_000_000 + (8 * 288 - 1) * 300;
    assert_eq!(rows[0][2].parse::<i64>().unwrap(), last + 300);
    for r in &rows {
        let (p, lo, hi): (f64, f64, f64) = (
            r[3].parse().unwrap(),
            r[4].parse().unwrap(),
            r[5].parse().unwrap(),
        );
        assert!(lo <= p && p <= hi, "{r:?}");
    }
}

#[test]
fn forecast_json_carries_the_same_content_as_csv() {
    let d = dir("json");
    let input = d.join("usage.csv");
    std::fs::write(&input, usage_csv()).unwrap();
    let i = input.to_str().unwrap();
    let csv =
        String::from_utf8(run(&["forecast", "--input", i, "--horizon", "2h"]).stdout).unwrap();
    let json = run(&[
        "forecast",
        "--input",
        i,
        "--horizon",
        "2h",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), csv.lines().count() - 1);
    let first: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(rows[0]["timestamp_unix"].to_string(), first[2]);
    assert_eq!(rows[0]["model"].as_str().unwrap(), first[6]);
}

#[test]
fn exhaustion_reports_the_leak_reaching_its_limit_and_the_cycle_never_reaching_its_own() {
    let d = dir("ex");
    let input = d.join("usage.csv");
    let cap = d.join("limits.csv");
    std::fs::write(&input, usage_csv()).unwrap();
    // Memory grows 288 MB a day from about 3.3 GB: a 6 GB limit is reached in about 9 to 10 days.
    std::fs::write(
        &cap,
        "series_id,timestamp_unix,resource,value,unit\n\
         web,1700000000,memory_limit,6000000000,bytes\n\
         web,1700000000,cpu_limit,8,cores\n\
         web,1700000000,cpu_cores,4,count\n",
    )
    .unwrap();
    let out = run(&[
        "exhaustion",
        "--input",
        input.to_str().unwrap(),
        "--capacity",
        cap.to_str().unwrap(),
        "--horizon",
        "30d",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("series_id,resource,capacity_resource,threshold,eta_unix,probability")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let cpu = rows.iter().find(|r| r[2] == "cpu_limit").unwrap();
    assert_eq!(cpu[4], "");
    assert_eq!(cpu[8], "not_within_horizon");
    let mem = rows.iter().find(|r| r[2] == "memory_limit").unwrap();
    let last = 1_700_000_000 + (8 * 288 - 1) * 300;
    let days = (mem[4].parse::<i64>().unwrap() - last) as f64 / 86_400.0;
    assert!((8.0..11.0).contains(&days), "{days} days: {mem:?}");
    assert!(mem[5].parse::<f64>().unwrap() > 0.5);
}

#[test]
fn a_non_numeric_value_fails_with_file_line_and_column_and_status_2() {
    let d = dir("bad");
    let input = d.join("usage.csv");
    std::fs::write(
        &input,
        "series_id,timestamp_unix,resource,value,unit\nweb,1,cpu,abc,cores\n",
    )
    .unwrap();
    let out = run(&["forecast", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("usage.csv:2: column 4 (value): \"abc\" is not a number"),
        "{err}"
    );
}

#[test]
fn an_unknown_duration_and_an_empty_file_fail_with_status_2() {
    let d = dir("dur");
    let input = d.join("usage.csv");
    std::fs::write(&input, "").unwrap();
    let out = run(&["forecast", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty file"));
    let out = run(&[
        "forecast",
        "--input",
        input.to_str().unwrap(),
        "--horizon",
        "3y",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown duration"));
}

#[test]
fn a_series_too_short_to_forecast_is_named_in_the_error() {
    let d = dir("short");
    let input = d.join("usage.csv");
    std::fs::write(
        &input,
        "series_id,timestamp_unix,resource,value\nweb,0,cpu,1\nweb,60,cpu,2\n",
    )
    .unwrap();
    let out = run(&["forecast", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not enough history: have 2, need"), "{err}");
}
