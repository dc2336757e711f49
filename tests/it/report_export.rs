//! The report directory missing (or a file in its place): the daemon's scheduled report stays stored in
//! Postgres, the failed file export is logged with the path and counted, retried at every check, and
//! written once the directory is back, with no report generated twice and no file missing or extra.

use std::time::Duration;

use sqlx::PgPool;

use crate::assess::seeded_until;
use crate::daemon::database_url;
use crate::prom::temp_dir;
use crate::serve::Daemon;

const ERRORS: &str = "headroom_report_export_errors_total";
const WRITTEN: &str = "headroom_report_files_written_total";
const CHECKS: &str = "headroom_report_checks_total";

#[sqlx::test]
async fn a_missing_report_directory_keeps_the_report_and_is_retried_until_it_is_back(pool: PgPool) {
    let now = headroom::domain::unix_now();
    seeded_until(&pool, 4, 3, now - now % 300).await;
    let dir = temp_dir("report-export");
    let out = dir.join("reports");
    let config = dir.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "sources = []\n[server]\nlisten_addr = \"127.0.0.1:0\"\n[database]\nurl = \"{}\"\n\
             [assess]\ninitial_delay_secs = 86400\n\
             [reports]\ninterval_secs = 86400\ncheck_interval_secs = 1\nperiod_days = 3\ndirectory = \"{}\"\n",
            database_url(&pool),
            out.display()
        ),
    )
    .unwrap();
    // First a file where the directory should be (a volume mounted wrong), then nothing at all.
    std::fs::write(&out, "not a directory").unwrap();
    let mut daemon = Daemon::start(&config).await;

    // Stored, but the files cannot be written: logged with the path, counted, tried again.
    let errors = daemon
        .wait_metric(ERRORS, Duration::from_secs(120), |n| n >= 2.0)
        .await;
    let export_errors = |d: &Daemon| {
        d.logs()
            .into_iter()
            .filter(|v| v["level"] == "ERROR" && v["task"] == "report")
            .collect::<Vec<_>>()
    };
    let failed = export_errors(&daemon);
    assert_eq!(failed[0]["path"], out.display().to_string(), "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{failed:?}"
    );
    std::fs::remove_file(&out).unwrap();
    daemon
        .wait_metric(ERRORS, Duration::from_secs(30), |n| n >= errors + 2.0)
        .await;
    let failed = export_errors(&daemon);
    let last = failed.last().unwrap();
    assert_eq!(last["path"], out.display().to_string(), "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("No such file"),
        "{last}"
    );
    let pending: Vec<(i64, bool)> =
        sqlx::query_as("select id, export_pending from report order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(pending.len(), 4, "one report in four formats: {pending:?}");
    assert!(pending.iter().all(|p| p.1), "{pending:?}");
    assert!(!out.exists(), "the daemon must not create the directory");

    // The directory comes back: the next check writes every file.
    std::fs::create_dir_all(&out).unwrap();
    daemon
        .wait_metric(WRITTEN, Duration::from_secs(30), |n| n >= 4.0)
        .await;
    let checks = daemon.metric(CHECKS).await.unwrap();
    daemon
        .wait_metric(CHECKS, Duration::from_secs(30), |n| n >= checks + 3.0)
        .await;
    assert_eq!(daemon.metric(WRITTEN).await, Some(4.0));
    assert!(daemon.stop().success());

    let stored: Vec<(i64, String, Vec<u8>, bool)> =
        sqlx::query_as("select id, format, content, export_pending from report order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 4, "the report was generated again");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (id, format, content, pending) in &stored {
        assert!(!pending);
        let suffix = format!("-{id}.{format}");
        let file = files
            .iter()
            .find(|f| f.0.starts_with("headroom-fleet-") && f.0.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no file for report {id} ({format})"));
        assert_eq!(&file.1, content, "{}", file.0);
    }
    let _ = std::fs::remove_dir_all(dir);
}
