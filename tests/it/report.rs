//! Capacity reports from a seeded and assessed simulated cluster: every format through the binary, the
//! CSV's totals against the JSON's, the HTML rendered by headless Chromium, and the stored reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use headroom::assess::{self, AssessOptions};
use headroom::config::Settings;
use headroom::domain::{Resource, Span};
use headroom::report::{self, Format, ReportOptions, Scope};
use headroom::seed;
use headroom::simulate::ClusterSpec;
use headroom::store::Store;
use sqlx::PgPool;

const END: i64 = 1_704_067_200 + 14 * 86_400;
const DAY: i64 = 86_400;

/// 11 workloads over 10 days, labelled with teams, assessed 3 days before the end and at the end, so
/// the report has earlier forecasts whose outcome is known.
async fn seeded_and_assessed(pool: &PgPool) -> Store {
    let store = Store::from_pool(pool.clone());
    let spec = ClusterSpec {
        workloads: 11,
        start: END - 10 * DAY,
        end: END,
        step: 300,
        seed: 7,
    };
    seed::seed(&store, "sim", &spec, 50).await.unwrap();
    sqlx::query("update workload set labels = jsonb_build_object('team', case when id % 2 = 0 then 'blue' else 'red' end)")
        .execute(pool)
        .await
        .unwrap();
    let opts = AssessOptions::from_settings(&Settings::from_toml("").unwrap()).unwrap();
    assess::run(&store, &opts, END - 3 * DAY).await.unwrap();
    assess::run(&store, &opts, END).await.unwrap();
    store
}

fn database_url(pool: &PgPool) -> String {
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    format!("{}/{db}", base.rsplit_once('/').unwrap().0)
}

fn temp_dir(pool: &PgPool) -> PathBuf {
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or("x")
        .to_string();
    let dir = std::env::temp_dir().join(format!("headroom-report-test-{db}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn headroom(pool: &PgPool, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .env("HEADROOM_DATABASE__URL", database_url(pool))
        .env_remove("HEADROOM_ENV")
        .env_remove("HEADROOM_CONFIG")
        .output()
        .unwrap()
}

fn report_cli(pool: &PgPool, scope: &str, format: &str, out: &Path) -> Output {
    let now = END.to_string();
    let out = out.to_str().unwrap();
    headroom(
        pool,
        &[
            "report", "--scope", scope, "--period", "10d", "--format", format, "--now", &now,
            "--out", out,
        ],
    )
}

/// Splits one CSV line, honouring RFC 4180 quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[sqlx::test]
async fn the_fleet_report_covers_use_cost_risk_savings_and_accuracy(pool: PgPool) {
    let store = seeded_and_assessed(&pool).await;
    let opts = ReportOptions::from_settings(&Settings::from_toml("").unwrap());
    let d = report::build_with(&store, &opts, &Scope::Fleet, Span::from_secs(10 * DAY), END)
        .await
        .unwrap();
    assert_eq!(d.workloads, 11);
    for r in Resource::ALL {
        let t = d.totals(r).unwrap();
        assert!(
            t.requested > 0.0 && t.used_mean > 0.0 && t.recommended > 0.0,
            "{t:?}"
        );
        assert!(t.used_peak >= t.used_mean);
        let u = t.utilisation.unwrap();
        assert!(u > 0.0 && u < 5.0, "{r} utilisation {u}");
    }
    assert!(d.cost.requested_per_month > 0.0 && d.cost.used_per_month > 0.0);
    // The simulated cluster has an over-provisioned workload and a memory leak.
    assert!(!d.savings.is_empty() && d.savings[0].money_per_month > 0.0);
    assert!(
        d.at_risk.iter().any(|r| r.resource == Resource::Memory),
        "{:?}",
        d.at_risk
    );
    let ns_total: f64 = d
        .savings_by_namespace
        .iter()
        .map(|n| n.money_per_month)
        .sum();
    assert!((ns_total - d.cost.saving_per_month).abs() < 1e-6 * ns_total.abs().max(1.0));
    // Ten days of hourly totals and a forecast of them for 90 days.
    assert!(d.history.len() >= 9 * 24, "{}", d.history.len());
    assert_eq!(d.outlook.len(), 2, "{:?}", d.notes);
    let p = d
        .projections
        .iter()
        .find(|p| p.resource == Resource::Cpu && p.lead_days == 30)
        .unwrap();
    assert!(
        p.total_p50.is_some() && p.total_lower <= p.total_p50 && p.total_p50 <= p.total_upper,
        "{p:?}"
    );
    if let (Some(a), Some(together), Some(indep)) = (
        p.peaks_p50,
        p.peaks_upper_together,
        p.peaks_upper_independent,
    ) {
        assert!(a <= indep && indep <= together + 1e-9, "{p:?}");
    }
    // Forecasts made three days earlier are scored against what happened since.
    assert!(d.accuracy.backtest_forecasts > 0 && d.accuracy.mase_p50.is_some());
    assert_eq!(d.accuracy.realised.len(), 2, "{:?}", d.accuracy);
    for r in &d.accuracy.realised {
        assert!(
            r.points > 0 && r.wape.is_finite() && (0.0..=1.0).contains(&r.coverage),
            "{r:?}"
        );
        assert!((2.5..=3.5).contains(&r.median_age_days), "{r:?}");
    }
}

#[sqlx::test]
async fn team_and_namespace_scopes_narrow_the_report_and_unknown_ones_are_refused(pool: PgPool) {
    let store = seeded_and_assessed(&pool).await;
    let settings = Settings::from_toml("").unwrap();
    let period = Span::from_secs(10 * DAY);
    let fleet = report::build(&store, &settings, &Scope::Fleet, period, END)
        .await
        .unwrap();
    let blue = report::build(&store, &settings, &Scope::Team("blue".into()), period, END)
        .await
        .unwrap();
    let red = report::build(&store, &settings, &Scope::Team("red".into()), period, END)
        .await
        .unwrap();
    assert!(blue.workloads > 0 && red.workloads > 0);
    assert_eq!(blue.workloads + red.workloads, fleet.workloads);
    let cpu = |d: &report::ReportData| d.totals(Resource::Cpu).unwrap().requested;
    assert!((cpu(&blue) + cpu(&red) - cpu(&fleet)).abs() < 1e-6 * cpu(&fleet));

    let ns = &fleet.savings_by_namespace[0].namespace;
    let one = report::build(
        &store,
        &settings,
        &Scope::Namespace(ns.clone()),
        period,
        END,
    )
    .await
    .unwrap();
    assert!(one.workloads < fleet.workloads && one.namespaces == 1);

    let out = headroom(
        &pool,
        &[
            "report",
            "--scope",
            "cluster:nowhere",
            "--now",
            &END.to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no workload matches scope cluster:nowhere"),
        "{err}"
    );
    let out = headroom(&pool, &["report", "--scope", "region:eu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scope \"region:eu\""));
    let out = headroom(&pool, &["report", "--period", "ten days"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--period"));
}

#[sqlx::test]
async fn every_format_comes_from_the_command_and_the_csv_totals_match_the_json(pool: PgPool) {
    seeded_and_assessed(&pool).await;
    let dir = temp_dir(&pool);
    let mut files = Vec::new();
    for f in ["html", "md", "csv", "json"] {
        let path = dir.join(format!("report.{f}"));
        let out = report_cli(&pool, "fleet", f, &path);
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.push(std::fs::read_to_string(&path).unwrap());
    }
    let (html, md, csv, json) = (&files[0], &files[1], &files[2], &files[3]);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    assert!(md.starts_with("# Capacity report: fleet"));
    let json: serde_json::Value = serde_json::from_str(json).unwrap();

    let mut lines = csv.lines();
    let header = csv_fields(lines.next().unwrap());
    assert_eq!(header.join(","), report::CSV_HEADER);
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let value = |section: &str, resource: &str, metric: &str| -> f64 {
        rows.iter()
            .filter(|r| r[0] == section && r[5] == resource && r[6] == metric)
            .map(|r| r[8].parse::<f64>().unwrap())
            .sum()
    };
    for (i, res) in ["cpu", "memory"].into_iter().enumerate() {
        let t = &json["resources"][i];
        assert_eq!(t["resource"], res);
        for metric in [
            "requested",
            "limits",
            "used_mean",
            "used_peak",
            "recommended",
        ] {
            let (a, b) = (value("totals", res, metric), t[metric].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs(),
                "{res} {metric}: csv {a} json {b}"
            );
        }
    }
    let saving = json["cost"]["saving_per_month"].as_f64().unwrap();
    assert!((value("cost", "", "saving") - saving).abs() <= 1e-9 * saving.abs());
    assert!(
        (value("namespace_saving", "", "money") - saving).abs() <= 1e-6 * saving.abs().max(1.0)
    );
    let risks = rows
        .iter()
        .filter(|r| r[0] == "at_risk" && r[6].ends_with("_threshold"))
        .count();
    assert_eq!(risks, json["at_risk"].as_array().unwrap().len());
    assert!(risks > 0);

    // Each run kept its report.
    let stored: Vec<String> = sqlx::query_scalar("select format from report order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored, ["html", "md", "csv", "json"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[sqlx::test]
async fn generate_and_store_keeps_every_format_and_the_slack_summary_links_to_it(pool: PgPool) {
    let store = seeded_and_assessed(&pool).await;
    let settings = Settings::from_toml("").unwrap();
    let g = report::generate_and_store(
        &store,
        &settings,
        &Scope::Cluster("sim".into()),
        Span::from_secs(7 * DAY),
        END,
    )
    .await
    .unwrap();
    assert_eq!(g.ids.len(), 4);
    let html_id = g.id(Format::Html).unwrap();
    let (meta, content) = store.report_content(html_id).await.unwrap().unwrap();
    assert_eq!(
        (meta.scope.as_str(), meta.format.as_str()),
        ("cluster:sim", "html")
    );
    assert_eq!(meta.period_end - meta.period_start, 7 * DAY);
    assert_eq!(content, report::render(&g.data, Format::Html));
    let recent = store.recent_reports(10).await.unwrap();
    assert_eq!(recent.len(), 4);
    assert!(recent.iter().all(|r| r.bytes > 0));

    let link = format!("{}/reports/{html_id}", settings.server.public_url);
    let msg = report::slack_summary(&g.data, &link);
    assert!(msg.to_string().contains(&link));
    assert_eq!(msg["blocks"][0]["type"], "header");
}

/// Chromium's screenshot of a page (PNG bytes); fails with a clear message when Chromium is missing.
fn screenshot(page: &Path, png: &Path) -> Vec<u8> {
    let profile = page.parent().unwrap().join(format!(
        "chromium-profile-{}",
        png.file_stem().unwrap().to_string_lossy()
    ));
    let result = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,2000")
        .arg(format!("file://{}", page.display()))
        .output();
    let out = match result {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run chromium ({e}): install it (apt-get install -y chromium) to test the HTML report"
        ),
    };
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(png)
        .unwrap_or_else(|e| panic!("chromium wrote no screenshot {}: {e}", png.display()))
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[sqlx::test]
async fn the_html_report_renders_in_headless_chromium_and_is_not_blank(pool: PgPool) {
    seeded_and_assessed(&pool).await;
    let dir = temp_dir(&pool);
    let page = dir.join("report.html");
    let out = report_cli(&pool, "fleet", "html", &page);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();

    let shot = screenshot(&page, &dir.join("report.png"));
    let empty = screenshot(&blank, &dir.join("blank.png"));
    assert_eq!(png_size(&shot), (1200, 2000));
    assert_eq!(png_size(&empty), (1200, 2000));
    // A blank page compresses to almost nothing; text, tables and charts do not.
    assert!(
        shot.len() > 10 * empty.len() && shot.len() > 40_000,
        "the screenshot looks blank: {} bytes against {} for an empty page",
        shot.len(),
        empty.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
