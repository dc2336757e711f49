//! `headroom recommend` end to end: the binary on synthetic CSV files written here.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch directory unique to this test and process.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("headroom-recommend-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Ten days at 5-minute steps: `web` CPU in cores with a daily wave, memory in bytes, flat-ish.
fn usage_csv(days: i64) -> String {
    let mut s = String::from("series_id,timestamp_unix,resource,value,unit\n");
    for i in 0..days * 288 {
        let t = 1_700_000_000 + i * 300;
        let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        s.push_str(&format!(
            "shop/web/app,{t},cpu,{},cores\n",
            0.5 + 0.25 * phase.sin()
        ));
    }
    for i in 0..days * 288 {
        let t = 1_700_000_000 + i * 300;
        let mib = 200.0 + (i % 7) as f64;
        s.push_str(&format!(
            "shop/web/app,{t},memory,{},bytes\n",
            mib * 1_048_576.0
        ));
    }
    s
}

fn recommend(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("recommend")
        .args(args)
        .env_remove("HEADROOM_ENV")
        .env_remove("HEADROOM_CONFIG")
        .output()
        .unwrap()
}

fn field<'a>(header: &str, row: &'a str, name: &str) -> &'a str {
    let i = header.split(',').position(|c| c == name).unwrap();
    row.split(',').nth(i).unwrap()
}

#[test]
fn recommend_prints_a_request_and_limit_per_resource_in_the_input_units() {
    let dir = scratch("units");
    let input = dir.join("usage.csv");
    std::fs::write(&input, usage_csv(10)).unwrap();
    let out = recommend(&["--input", input.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("series_id,resource,request,limit,"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let cpu = rows.iter().find(|r| r.contains(",cpu,")).unwrap();
    let request: f64 = field(header, cpu, "request").parse().unwrap();
    assert!(
        request > 0.5 && request < 1.0,
        "cpu request {request} cores"
    );
    assert_eq!(
        field(header, cpu, "limit"),
        "",
        "balanced sets no CPU limit"
    );
    let mem = rows.iter().find(|r| r.contains(",memory,")).unwrap();
    let limit: f64 = field(header, mem, "limit").parse().unwrap();
    assert!(
        limit >= 206.0 * 1_048_576.0,
        "memory limit {limit} bytes covers the peak"
    );
}

#[test]
fn recommend_prices_the_saving_against_the_current_request() {
    let dir = scratch("saving");
    let input = dir.join("usage.csv");
    let cap = dir.join("capacity.csv");
    std::fs::write(&input, usage_csv(10)).unwrap();
    std::fs::write(
        &cap,
        "series_id,timestamp_unix,resource,value,unit\nshop/web/app,1700000000,cpu_request,2,cores\n",
    )
    .unwrap();
    let out = recommend(&[
        "--input",
        input.to_str().unwrap(),
        "--capacity",
        cap.to_str().unwrap(),
        "--core-hour-price",
        "0.05",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cpu = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "cpu")
        .unwrap();
    let request = cpu["request"].as_f64().unwrap();
    let saving = cpu["saving_money_per_month"].as_f64().unwrap();
    assert!(
        (saving - (2.0 - request) * 0.05 * 730.0).abs() < 1e-6,
        "saving {saving}"
    );
}

#[test]
fn recommend_says_not_enough_history_for_a_young_series() {
    let dir = scratch("young");
    let input = dir.join("usage.csv");
    let young: String = usage_csv(10)
        .lines()
        .take(10)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&input, young).unwrap();
    let out = recommend(&["--input", input.to_str().unwrap(), "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["rule"], "not_enough_history");
    assert!(json[0]["request"].is_null());
}

#[test]
fn recommend_writes_a_strategic_merge_patch_per_workload() {
    let dir = scratch("patch");
    let input = dir.join("usage.csv");
    std::fs::write(&input, usage_csv(10)).unwrap();
    let out = recommend(&["--input", input.to_str().unwrap(), "--format", "yaml-patch"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  name: web\n  namespace: shop\n"), "{yaml}");
    assert!(yaml.contains("        - name: app\n"), "{yaml}");
    assert!(
        yaml.contains("              cpu: null\n"),
        "no CPU limit: {yaml}"
    );
    assert!(yaml.contains("              memory: "), "{yaml}");
}

#[test]
fn recommend_names_file_line_and_column_of_a_bad_value_and_exits_2() {
    let dir = scratch("bad");
    let input = dir.join("usage.csv");
    std::fs::write(
        &input,
        "series_id,timestamp_unix,resource,value,unit\ns,1,cpu,0.5,cores\ns,2,cpu,lots,cores\n",
    )
    .unwrap();
    let out = recommend(&["--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("usage.csv:3") && err.contains("column 4"),
        "{err}"
    );
}

#[test]
fn recommend_rejects_an_unknown_policy_with_exit_2() {
    let dir = scratch("policy");
    let input = dir.join("usage.csv");
    std::fs::write(&input, usage_csv(2)).unwrap();
    let out = recommend(&["--input", input.to_str().unwrap(), "--policy", "reckless"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy \"reckless\""));
}
