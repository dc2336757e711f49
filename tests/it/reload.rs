//! Configuration reload on SIGHUP through the real binary: an invalid file is refused with an error that
//! names the key and the daemon goes on with its running configuration; a valid one is applied at once,
//! and a changed key that needs a restart is named.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::daemon::database_url;
use crate::prom::temp_dir;
use crate::serve::Daemon;

const RELOADED_OK: &str = "headroom_config_reloads_total{result=\"ok\"}";
const RELOADED_ERROR: &str = "headroom_config_reloads_total{result=\"error\"}";
const LAST_RELOAD: &str = "headroom_config_last_reload_success_timestamp_seconds";

fn requests(source: &str) -> String {
    format!("headroom_scrape_requests_total{{source=\"{source}\"}}")
}

/// Scrape failures of `source` logged after line `after`.
fn failures_after(logs: &[Value], after: usize, source: &str) -> usize {
    logs[after..]
        .iter()
        .filter(|v| v["message"] == "scrape failed; will retry" && v["source"] == source)
        .count()
}

#[sqlx::test]
async fn sighup_refuses_an_invalid_configuration_and_applies_a_valid_one(pool: PgPool) {
    // Sources point at port 1, which nothing serves: each scrape fails quickly and is counted per source.
    let dir = temp_dir("reload");
    let config = dir.join("headroom.toml");
    let write = |listen: &str, filter: &str, interval: u64, source: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten_addr = \"{listen}\"\n[database]\nurl = \"{}\"\n\
                 [telemetry]\nfilter = \"{filter}\"\n\
                 [scrape]\ninterval_secs = {interval}\ntimeout_secs = 1\n\
                 [assess]\ninitial_delay_secs = 86400\n[reports]\ninterval_secs = 0\n\
                 [[sources]]\nname = \"{source}\"\nurl = \"http://127.0.0.1:1\"\n",
                database_url(&pool)
            ),
        )
        .unwrap();
    };
    write("127.0.0.1:0", "info", 1, "a");
    let mut daemon = Daemon::start(&config).await;
    daemon
        .wait_metric(&requests("a"), Duration::from_secs(30), |n| n >= 1.0)
        .await;
    let loaded_at = daemon
        .metric(LAST_RELOAD)
        .await
        .expect("start-up load time");

    // Invalid: a zero interval, along with a new source that must not be picked up.
    write("127.0.0.1:0", "info", 0, "b");
    daemon.signal("HUP");
    let refused = daemon
        .wait_log("the refused reload", Duration::from_secs(20), |v| {
            v["level"] == "ERROR"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("configuration reload refused"))
        })
        .await;
    assert_eq!(refused["key"], "scrape.interval_secs", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("scrape.interval_secs"),
        "{refused}"
    );
    assert_eq!(daemon.metric(RELOADED_ERROR).await, Some(1.0));
    assert_eq!(daemon.metric(LAST_RELOAD).await, Some(loaded_at));
    // The running configuration goes on: two more scrape rounds of source a (the second one started
    // after the refusal), none of b.
    let at = daemon.logs().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while failures_after(&daemon.logs(), at, "a") < 2 {
        assert!(
            daemon.running(),
            "the daemon stopped after a refused reload"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "source a is no longer scraped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.metric(&requests("b")).await, None);

    // Valid: source b replaces a at once, the log filter opens up to debug lines; the new listen
    // address waits for a restart.
    let debug_lines = |d: &Daemon| d.logs().iter().filter(|v| v["level"] == "DEBUG").count();
    assert_eq!(debug_lines(&daemon), 0);
    write("127.0.0.1:1", "debug", 1, "b");
    daemon.signal("HUP");
    let applied = daemon
        .wait_log("the applied reload", Duration::from_secs(20), |v| {
            v["message"] == "configuration reloaded"
        })
        .await;
    assert_eq!(applied["applied"], "telemetry.filter, sources", "{applied}");
    assert_eq!(applied["needs_restart"], "server.listen_addr", "{applied}");
    let restart = daemon
        .wait_log("the restart warning", Duration::from_secs(5), |v| {
            v["level"] == "WARN" && v["keys"] == "server.listen_addr"
        })
        .await;
    assert!(restart["message"].as_str().unwrap().contains("restart"));
    daemon
        .wait_metric(&requests("b"), Duration::from_secs(30), |n| n >= 1.0)
        .await;
    assert_eq!(daemon.metric(RELOADED_OK).await, Some(1.0));
    assert!(
        debug_lines(&daemon) > 0,
        "the new log filter was not applied"
    );
    assert!(daemon.metric(LAST_RELOAD).await.unwrap() >= loaded_at);
    // Still served on the address bound at start-up.
    assert_eq!(daemon.readyz().await.0, 200);
    assert!(daemon.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}
