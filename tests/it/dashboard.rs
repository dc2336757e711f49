//! The built-in dashboard in headless Chromium, served by the real server (port 0) over a seeded and
//! assessed database; and the Grafana dashboard in deploy/grafana, whose every query must name a family
//! that `/metrics` really exports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use headroom::assess::{self, AssessOptions};
use headroom::config::Settings;
use headroom::metrics::{Metrics, SourceErrorLabels, SourceLabels};
use headroom::server::{AppState, Application};
use headroom::simulate::{Behaviour, Cluster};
use headroom::store::{ContainerKey, WorkloadKey};
use serde_json::Value;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::assess::seeded;

const END: i64 = 1_704_067_200 + 14 * 86_400;

/// A workload name that would run script if the page ever inserted data as markup.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Seeds 11 simulated workloads over 8 days, assesses them, adds one unassessed workload with a hostile
/// name, and starts the real HTTP server on a free port.
async fn start(pool: &PgPool) -> (Server, Cluster) {
    let (store, cluster) = seeded(pool, 11, 8).await;
    let settings = Settings::from_toml("").unwrap();
    assess::run(
        &store,
        &AssessOptions::from_settings(&settings).unwrap(),
        END,
    )
    .await
    .unwrap();
    let cluster_id = store.upsert_cluster("sim").await.unwrap();
    let key = ContainerKey {
        workload: WorkloadKey {
            namespace: "zz-hostile".into(),
            kind: "Deployment".into(),
            name: HOSTILE.into(),
        },
        container: "app".into(),
    };
    store
        .upsert_containers(cluster_id, &[key], END)
        .await
        .unwrap();
    let state = AppState::new(store, settings).unwrap();
    record_one_scrape(&state.metrics);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build(listener, state).unwrap();
    let addr = app.addr;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    (
        Server {
            addr,
            stop: Some(tx),
            task,
        },
        cluster,
    )
}

/// The registry leaves out families without a series; one recorded scrape makes every family appear,
/// as it does in a running daemon.
fn record_one_scrape(m: &Metrics) {
    let source = SourceLabels {
        source: "sim".into(),
    };
    m.scrape_requests.get_or_create(&source).inc();
    m.scrape_retries.get_or_create(&source).inc();
    m.scrape_samples.get_or_create(&source).inc_by(10);
    m.scrape_dropped_samples.get_or_create(&source).inc();
    m.scrape_request_seconds
        .get_or_create(&source)
        .observe(0.02);
    m.scrape_last_success.get_or_create(&source).set(END);
    m.scrape_errors
        .get_or_create(&SourceErrorLabels {
            source: "sim".into(),
            kind: "timeout".into(),
        })
        .inc();
}

fn chromium_binary() -> String {
    std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into())
}

/// A fresh profile directory per run, so parallel tests never share Chromium's lock.
fn profile_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "headroom-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `extra` arguments and returns its standard output. Fails the test
/// with instructions when Chromium is not installed: these tests must never pass by skipping.
async fn chromium(url: &str, extra: &[&str]) -> String {
    let profile = profile_dir();
    let bin = chromium_binary();
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let run = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output()).await;
    let _ = std::fs::remove_dir_all(&profile);
    let out = match run {
        Err(_) => panic!("headless Chromium did not finish within 120 s on {url}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` not found: the dashboard tests need headless Chromium; install Debian's `chromium` \
             package (apt-get install -y --no-install-recommends chromium) or set CHROMIUM_BIN to its path"
        ),
        Ok(Err(e)) => panic!("cannot run `{bin}`: {e}"),
        Ok(Ok(out)) => out,
    };
    assert!(
        out.status.success(),
        "{bin} failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dump_dom(url: &str) -> String {
    chromium(url, &["--dump-dom"]).await
}

async fn screenshot(url: &str, path: &Path) -> u64 {
    let arg = format!("--screenshot={}", path.display());
    chromium(url, &["--window-size=1280,1400", &arg]).await;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()))
        .len()
}

/// The text between the first `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} is not in the page"));
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The `d` attribute of every `<path class="{class}" d="...">`.
fn paths<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let open = format!("<path class=\"{class}\" d=\"");
    dom.match_indices(&open)
        .map(|(i, _)| {
            let rest = &dom[i + open.len()..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .collect()
}

#[sqlx::test]
async fn the_list_page_shows_every_simulated_workload_in_headless_chromium(pool: PgPool) {
    let (server, cluster) = start(&pool).await;
    let dom = dump_dom(&format!("http://{}/", server.addr)).await;
    for w in &cluster.workloads {
        assert!(
            dom.contains(&format!(">{}</a>", w.name)),
            "{} is not listed:\n{dom}",
            w.name
        );
    }
    assert_eq!(
        dom.matches("<tr class=\"workload\">").count(),
        cluster.workloads.len() + 1,
        "{dom}"
    );
    // The leaking service is in the at-risk list.
    let leak = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::MemoryLeak)
        .unwrap();
    let at_risk = between(&dom, "<table class=\"at-risk\">", "</table>");
    assert!(
        at_risk.contains(&format!(">{}</a>", leak.name)),
        "{at_risk}"
    );
    // Data is inserted as text: the hostile name shows escaped, never as an element.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");

    let sorted = dump_dom(&format!(
        "http://{}/?sort=saving&namespace={}",
        server.addr, leak.namespace
    ))
    .await;
    let table = between(&sorted, "<table class=\"workloads\">", "</table>");
    let expected = cluster
        .workloads
        .iter()
        .filter(|w| w.namespace == leak.namespace)
        .count();
    assert_eq!(
        table.matches("<tr class=\"workload\">").count(),
        expected,
        "{table}"
    );
    server.stop().await;
}

#[sqlx::test]
async fn the_workload_page_draws_usage_requests_limits_and_the_forecast_band(pool: PgPool) {
    let (server, cluster) = start(&pool).await;
    let leak = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::MemoryLeak)
        .unwrap();
    let id: i64 = sqlx::query_scalar("select id from workload where name = $1")
        .bind(&leak.name)
        .fetch_one(&pool)
        .await
        .unwrap();
    let url = format!("http://{}/workloads/{id}", server.addr);
    let dom = dump_dom(&url).await;
    let charts = leak.containers.len() * 2;
    let bands = paths(&dom, "forecast-band");
    assert_eq!(
        bands.len(),
        charts,
        "one forecast band per container and resource:\n{dom}"
    );
    assert!(
        bands.iter().all(|d| d.starts_with('M') && d.ends_with('Z')),
        "{bands:?}"
    );
    let usage = paths(&dom, "usage");
    assert_eq!(usage.len(), charts, "{dom}");
    for d in &usage {
        // 7 days at 5 minutes, thinned to at most 600 points: hundreds of segments.
        assert!(d.matches('L').count() > 300, "too few usage points: {d}");
    }
    assert_eq!(paths(&dom, "forecast-p50").len(), charts, "{dom}");
    assert!(
        !paths(&dom, "limit").is_empty() && !paths(&dom, "request").is_empty(),
        "{dom}"
    );
    assert!(
        dom.contains("Recommendation") && dom.contains("Why: "),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("{} / {}", leak.namespace, leak.name)),
        "{dom}"
    );

    // A rendered chart is far from blank: compare with the same window showing an empty page.
    let dir = profile_dir();
    let page = screenshot(&url, &dir.join("workload.png")).await;
    let blank = screenshot("about:blank", &dir.join("blank.png")).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        page > 20 * blank,
        "the screenshot looks blank: {page} bytes against {blank} for an empty page"
    );

    let missing = dump_dom(&format!("http://{}/workloads/999999", server.addr)).await;
    assert!(missing.contains("workload 999999 not found"), "{missing}");
    server.stop().await;
}

/// Every metric name a PromQL expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("headroom_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn panels(v: &Value, out: &mut Vec<Value>) {
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(p, out);
    }
}

#[sqlx::test]
async fn the_grafana_dashboard_queries_only_families_that_metrics_exports(pool: PgPool) {
    let (server, _) = start(&pool).await;
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.stop().await;
    // Family name → type, from the `# TYPE` lines.
    let families: BTreeMap<String, String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let exported = |name: &str| {
        families.iter().any(|(f, t)| {
            let suffixes: &[&str] = match t.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            suffixes.iter().any(|s| format!("{f}{s}") == name)
        })
    };

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/headroom.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let mut all = Vec::new();
    panels(&dash, &mut all);
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in &all {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate panel id: {p}"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel without targets: {p}"));
        assert!(!targets.is_empty(), "{p}");
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{p}");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("target without expr: {t}"));
            for name in metric_names(expr) {
                assert!(
                    exported(&name),
                    "panel {:?} queries {name}, which /metrics does not export",
                    p["title"]
                );
                used.insert(name);
            }
        }
    }
    for needed in [
        "headroom_exhaustion_seconds",
        "headroom_recommended_request",
        "headroom_recommended_limit",
        "headroom_current_request",
        "headroom_current_limit",
        "headroom_saving_money_per_month",
        "headroom_scrape_requests_total",
        "headroom_scrape_errors_total",
        "headroom_scrape_request_duration_seconds_bucket",
        "headroom_scrape_last_success_timestamp_seconds",
    ] {
        assert!(
            used.contains(needed),
            "no panel charts {needed}; used: {used:?}"
        );
    }
}
