//! End to end: `headroom serve` as a process on a free port, scraping a real Prometheus backfilled by the
//! simulator, assessing, serving the API, and stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headroom::simulate::ClusterSpec;
use sqlx::PgPool;

use crate::prom::{TestPrometheus, temp_dir};

pub fn database_url(pool: &PgPool) -> String {
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

async fn get_json(url: &str) -> Option<serde_json::Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

#[sqlx::test]
async fn the_daemon_scrapes_assesses_serves_and_stops_on_sigterm(pool: PgPool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let spec = ClusterSpec {
        workloads: 4,
        start: now - 2 * 86_400,
        end: now,
        step: 300,
        seed: 3,
    };
    let (_, prom) = TestPrometheus::simulated(&spec);

    let dir = temp_dir("daemon");
    let config = dir.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten_addr = \"127.0.0.1:0\"\napi_token = \"env:IT_API_TOKEN\"\n\
             [database]\nurl = \"{}\"\n[scrape]\nstep_secs = 300\nbackfill_days = 2\ninterval_secs = 3600\n\
             [assess]\ninterval_secs = 3600\n[[sources]]\nname = \"sim\"\nurl = \"{}\"\n\
             [sources.queries]\ncpu_usage = 'sum by (namespace, pod, container) \
             (rate(container_cpu_usage_seconds_total{{container!=\"\"}}[15m]))'\n",
            database_url(&pool),
            prom.url
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("--config")
        .arg(&config)
        .arg("--log-json")
        .arg("serve")
        .env("IT_API_TOKEN", "it-token")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The daemon logs the address it bound (port 0 picks a free one).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the daemon stopped logging ({e}): {seen:#?}"));
        seen.push(line.clone());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening"
        {
            break v["addr"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no 'listening' line");
    };
    let base = format!("http://{addr}");

    // The first scrape runs at start; wait for samples.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = get_json(&format!("{base}/readyz")).await
            && v["newest_sample_age_secs"].is_number()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no samples stored within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/assess"))
        .bearer_auth("it-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    let workloads = loop {
        if let Some(v) = get_json(&format!("{base}/api/v1/workloads?per_page=100")).await
            && let Some(list) = v["workloads"].as_array()
            && !list.is_empty()
            && list.iter().all(|w| w["assessed_at"].is_number())
        {
            break list.clone();
        }
        assert!(Instant::now() < deadline, "no assessment within 120 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(workloads.len() >= 4, "{workloads:?}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("headroom_scrape_requests_total{source=\"sim\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("it-token"));

    // SIGTERM: a clean exit within a few seconds.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}
