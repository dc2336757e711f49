//! A real Prometheus for tests: history backfilled with promtool into a temporary directory, the server
//! started on a free loopback port, killed (and the directory removed) on drop. Also a fault-injecting
//! proxy that stands between the scraper and that Prometheus.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `--query.lookback-delta` test servers run with, as `scripts/prometheus` does.
pub const LOOKBACK_SECS: i64 = 120;

pub struct TestPrometheus {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "headroom-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestPrometheus {
    /// Simulates the cluster of `spec` and starts Prometheus on its history.
    pub fn simulated(
        spec: &headroom::simulate::ClusterSpec,
    ) -> (headroom::simulate::Cluster, Self) {
        let mut om = Vec::new();
        let (cluster, _) = headroom::simulate::simulate(spec, &mut om).unwrap();
        (cluster, Self::start(&om))
    }

    /// Backfills `openmetrics` (text ending in `# EOF`) and starts Prometheus on it.
    pub fn start(openmetrics: &[u8]) -> Self {
        let dir = temp_dir("prom");
        let input = dir.join("input.om");
        std::fs::write(&input, openmetrics).unwrap();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let out = Command::new("promtool")
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=720h",
            ])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("promtool is installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&input).unwrap();
        let mut p = TestPrometheus {
            url: String::new(),
            port: 0,
            dir,
            child: None,
        };
        p.launch(free_port());
        p
    }

    fn launch(&mut self, port: u16) {
        let config = self.dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=3650d")
            // Backfilled series carry no staleness markers: with the default 5m a pod that ended would look
            // alive five more minutes. Tests that count replicas model this window (`LOOKBACK_SECS`).
            .arg(format!("--query.lookback-delta={LOOKBACK_SECS}s"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed");
        self.child = Some(child);
        self.port = port;
        self.url = format!("http://127.0.0.1:{port}");
        wait_ready(&self.url);
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch(self.port);
    }
}

fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = format!("{url}/-/ready");
    while Instant::now() < deadline {
        if let Ok(r) = reqwest_blocking_get(&ready)
            && r == 200
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("prometheus at {url} did not become ready");
}

/// A tiny blocking GET (status only) so the harness does not need a runtime.
fn reqwest_blocking_get(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the proxy does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Http500,
    Html502,
    Truncated,
    PrometheusError422,
    Slow,
    /// Range-query answers with every timestamp a second off the grid asked for.
    OffGrid,
}

/// A proxy in front of a real Prometheus that injects `faults` in order, one per request, then passes
/// everything through; optionally checks required headers (auth) first. Counts requests.
pub struct FaultProxy {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    /// Requests answered 401 for a missing or wrong required header.
    pub rejected: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
    _task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str, faults: Vec<Fault>) -> Self {
        Self::start_gated(upstream, faults, usize::MAX).await
    }

    /// Lets the first `open` requests through; later ones wait until `release` is called.
    pub async fn start_gated(upstream: &str, faults: Vec<Fault>, open: usize) -> Self {
        Self::start_with(upstream, faults, open, vec![]).await
    }

    /// Answers 401 to any request that lacks one of `required` (header name, exact value), as an
    /// authenticating gateway in front of Prometheus (or a multi-tenant Mimir) does.
    pub async fn start_requiring(upstream: &str, required: &[(&str, &str)]) -> Self {
        let required = required
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_with(upstream, vec![], usize::MAX, required).await
    }

    async fn start_with(
        upstream: &str,
        faults: Vec<Fault>,
        open: usize,
        required: Vec<(String, String)>,
    ) -> Self {
        use axum::body::Body;
        use axum::extract::{Request, State};
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};

        #[derive(Clone)]
        struct S {
            upstream: String,
            faults: Arc<Vec<Fault>>,
            n: Arc<AtomicUsize>,
            http: reqwest::Client,
            gate: Arc<tokio::sync::Semaphore>,
            open: usize,
            required: Arc<Vec<(String, String)>>,
            rejected: Arc<AtomicUsize>,
        }
        async fn handle(State(s): State<S>, req: Request) -> Response {
            let i = s.n.fetch_add(1, Ordering::SeqCst);
            let (req, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let missing = s.required.iter().any(|(k, v)| {
                req.headers.get(k.as_str()).and_then(|h| h.to_str().ok()) != Some(v.as_str())
            });
            if missing {
                s.rejected.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
            }
            if i >= s.open {
                let _ = s.gate.acquire().await;
            }
            let fault = s.faults.get(i).copied().unwrap_or(Fault::Pass);
            match fault {
                Fault::Http500 => {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
                }
                Fault::Html502 => {
                    return (
                        StatusCode::BAD_GATEWAY,
                        "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    )
                        .into_response();
                }
                Fault::PrometheusError422 => {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory in query execution"}"#,
                    )
                        .into_response();
                }
                Fault::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
                _ => {}
            }
            let url = format!(
                "{}{}",
                s.upstream,
                req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            // GETs of the HTTP API and remote read's POSTs alike, with the headers the latter needs.
            let mut fwd = s.http.request(req.method.clone(), url).body(body);
            for name in [
                "content-type",
                "content-encoding",
                "x-prometheus-remote-read-version",
            ] {
                if let Some(v) = req.headers.get(name) {
                    fwd = fwd.header(name, v.clone());
                }
            }
            let resp = match fwd.send().await {
                Ok(r) => r,
                Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
            };
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| axum::http::HeaderValue::from_static("application/json"));
            let mut body = resp.bytes().await.unwrap_or_default().to_vec();
            if fault == Fault::Truncated {
                body.truncate(body.len() / 2);
            }
            if fault == Fault::OffGrid && req.uri.path().ends_with("query_range") {
                let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                for s in v["data"]["result"].as_array_mut().into_iter().flatten() {
                    for p in s["values"].as_array_mut().into_iter().flatten() {
                        p[0] = (p[0].as_f64().unwrap() + 1.0).into();
                    }
                }
                body = serde_json::to_vec(&v).unwrap();
            }
            Response::builder()
                .status(status)
                .header("content-type", kind)
                .body(Body::from(body))
                .unwrap()
        }
        let n = Arc::new(AtomicUsize::new(0));
        let rejected = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let state = S {
            upstream: upstream.to_string(),
            faults: Arc::new(faults),
            n: n.clone(),
            http: reqwest::Client::new(),
            gate: gate.clone(),
            open,
            required: Arc::new(required),
            rejected: rejected.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            url,
            requests: n,
            rejected,
            gate,
            _task: task,
        }
    }

    /// Opens the gate for every waiting and future request.
    pub fn release(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}
