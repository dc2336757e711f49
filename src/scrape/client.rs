//! The HTTP side of one source: one `reqwest::Client` with its auth, TLS and headers, a semaphore that
//! bounds the queries in flight, and retries with exponential backoff and jitter for failures a retry can
//! help (timeouts, refused connections, 5xx, 429, truncated or garbage bodies).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;

use super::parse::{ParseError, QueryResult, parse_query_response, parse_series_response};
use super::remote;
use crate::config::{Secret, SourceSettings};
use crate::metrics::{Metrics, SourceErrorLabels, SourceLabels};

/// Why a request to a source failed, after retries where they made sense.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error("source {source_name}: request timed out after {secs}s")]
    Timeout { source_name: String, secs: u64 },
    #[error("source {source_name}: cannot connect: {reason}")]
    Connect { source_name: String, reason: String },
    #[error("source {source_name}: HTTP {status}: {body}")]
    Http {
        source_name: String,
        status: u16,
        body: String,
    },
    #[error("source {source_name}: {error}")]
    Answer {
        source_name: String,
        error: ParseError,
    },
    #[error("source {source_name}: the query would load too many samples: {message}")]
    TooManySamples {
        source_name: String,
        message: String,
    },
    #[error("source {source_name}: invalid configuration: {reason}")]
    Config { source_name: String, reason: String },
}

impl ScrapeError {
    /// The `kind` label of the error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Timeout { .. } => "timeout",
            ScrapeError::Connect { .. } => "connect",
            ScrapeError::Http { status, .. } if *status >= 500 => "http_5xx",
            ScrapeError::Http { .. } => "http_4xx",
            ScrapeError::Answer {
                error: ParseError::Prometheus { .. },
                ..
            } => "prometheus_error",
            ScrapeError::Answer { .. } => "garbage",
            ScrapeError::TooManySamples { .. } => "too_many_samples",
            ScrapeError::Config { .. } => "config",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ScrapeError::Timeout { .. } | ScrapeError::Connect { .. } => true,
            ScrapeError::Http { status, .. } => *status >= 500 || *status == 429,
            ScrapeError::Answer { error, .. } => match error {
                ParseError::Prometheus { error_type, .. } => {
                    matches!(
                        error_type.as_str(),
                        "timeout" | "unavailable" | "internal" | "canceled"
                    )
                }
                // A proxy's HTML page or a body cut short: the next try may well be whole.
                ParseError::NotJson { .. } | ParseError::Shape(_) => true,
            },
            ScrapeError::TooManySamples { .. } | ScrapeError::Config { .. } => false,
        }
    }
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

/// A client for one Prometheus-compatible source.
#[derive(Clone)]
pub struct SourceClient {
    pub name: String,
    base: reqwest::Url,
    http: reqwest::Client,
    auth: Auth,
    /// Bounds concurrent queries so a backfill never floods the source.
    in_flight: Arc<Semaphore>,
    retry: RetryPolicy,
    timeout_secs: u64,
    metrics: Arc<Metrics>,
    /// Time spent decoding JSON answers, for the ingest benchmark's split of where the time goes.
    decode_nanos: Arc<AtomicU64>,
    /// Every request sent, when recording is on (the ingest benchmark replays them to measure how fast
    /// the source alone serves the same answers).
    recorded: Option<Arc<Mutex<Vec<RecordedRequest>>>>,
}

/// A request as it was sent: the API path and its query parameters, or the body of a POST (remote read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub path: String,
    pub params: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// What is sent: a GET with query parameters, or a remote-read POST.
#[derive(Clone, Copy)]
enum Request<'a> {
    Get(&'a [(&'a str, String)]),
    RemoteRead(&'a [u8]),
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(Secret),
    Basic(String, Secret),
}

impl SourceClient {
    pub fn new(
        src: &SourceSettings,
        timeout_secs: u64,
        max_in_flight: usize,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ScrapeError> {
        let cfg = |reason: String| ScrapeError::Config {
            source_name: src.name.clone(),
            reason,
        };
        let mut base = reqwest::Url::parse(&src.url).map_err(|e| cfg(format!("url: {e}")))?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &src.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| cfg(format!("header {k}: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| cfg(format!("header {k}: {e}")))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(timeout_secs))
            .connect_timeout(Duration::from_secs(timeout_secs.min(10)))
            .default_headers(headers);
        if src.tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &src.tls.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| cfg(format!("tls.ca_file {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| cfg(format!("tls.ca_file: {e}")))?
            {
                builder = builder.tls_certs_merge([cert]);
            }
        }
        let http = builder.build().map_err(|e| cfg(e.to_string()))?;
        let resolve = |r: &crate::config::SecretRef, key: &str| {
            r.resolve(key)
                .map_err(|e| cfg(e.to_string()))?
                .ok_or_else(|| cfg(format!("{key} is empty")))
        };
        let auth = match (&src.bearer_token, &src.basic_auth) {
            (Some(t), _) => Auth::Bearer(resolve(t, "bearer_token")?),
            (None, Some(b)) => Auth::Basic(
                b.username.clone(),
                resolve(&b.password, "basic_auth.password")?,
            ),
            (None, None) => Auth::None,
        };
        Ok(Self {
            name: src.name.clone(),
            base,
            http,
            auth,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            retry,
            timeout_secs,
            metrics,
            decode_nanos: Arc::default(),
            recorded: None,
        })
    }

    /// Keeps a copy of every request sent from now on (see `recorded_requests`).
    pub fn record_requests(&mut self) {
        self.recorded = Some(Arc::default());
    }

    /// The requests sent since `record_requests` or the previous call, in the order they were sent.
    pub fn take_recorded_requests(&self) -> Vec<RecordedRequest> {
        self.recorded
            .as_ref()
            .map(|r| std::mem::take(&mut *r.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
    }

    /// Seconds spent decoding JSON answers so far.
    pub fn decode_seconds(&self) -> f64 {
        self.decode_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The URL of an API path of this source (for tools that send their own requests).
    pub fn url(&self, path: &str) -> Result<reqwest::Url, ScrapeError> {
        self.base.join(path).map_err(|e| ScrapeError::Config {
            source_name: self.name.clone(),
            reason: e.to_string(),
        })
    }

    fn labels(&self) -> SourceLabels {
        SourceLabels {
            source: self.name.clone(),
        }
    }

    /// `/api/v1/query_range` from `start` to `end` inclusive at `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, ScrapeError> {
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        let result = self
            .get_json("api/v1/query_range", &params, parse_query_response)
            .await?;
        // Aggregation places points by step; a source answering off the grid it was asked for is wrong.
        let off_grid = result.series.iter().find_map(|s| {
            let p = s
                .points
                .iter()
                .find(|p| (p.0 - start).rem_euclid(step) != 0)?;
            Some((s, p.0))
        });
        if let Some((series, t)) = off_grid {
            return Err(ScrapeError::Answer {
                source_name: self.name.clone(),
                error: ParseError::Shape(format!(
                    "series {:?} has a point at {t}, off the query's grid (start {start}, step {step}s)",
                    series.labels
                )),
            });
        }
        Ok(result)
    }

    /// `/api/v1/query` at `time`.
    pub async fn query(&self, query: &str, time: i64) -> Result<QueryResult, ScrapeError> {
        let params = [("query", query.to_string()), ("time", time.to_string())];
        self.get_json("api/v1/query", &params, parse_query_response)
            .await
    }

    /// `/api/v1/series`: the label sets of the series matching any of `selectors` with samples between
    /// `start` and `end` (Unix seconds). Prometheus answers from its index, without reading samples.
    pub async fn series(
        &self,
        selectors: &[&str],
        start: i64,
        end: i64,
    ) -> Result<Vec<BTreeMap<String, String>>, ScrapeError> {
        let mut params: Vec<(&str, String)> = selectors
            .iter()
            .map(|s| ("match[]", s.to_string()))
            .collect();
        params.push(("start", start.to_string()));
        params.push(("end", end.to_string()));
        self.get_json("api/v1/series", &params, parse_series_response)
            .await
    }

    /// `/federate` with the given series selectors: the current value of every matching series, in the text
    /// exposition format.
    pub async fn federate(
        &self,
        selectors: &[&str],
    ) -> Result<Vec<prometheus_parse::Sample>, ScrapeError> {
        let params: Vec<(&str, String)> = selectors
            .iter()
            .map(|s| ("match[]", s.to_string()))
            .collect();
        self.send_and_parse("federate", Request::Get(&params), false, |body| {
            let text = String::from_utf8_lossy(&body);
            let lines = text.lines().map(|l| Ok(l.to_string()));
            let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| ScrapeError::Answer {
                source_name: self.name.clone(),
                error: ParseError::Shape(format!("federate body: {e}")),
            });
            std::future::ready(scrape.map(|s| s.samples))
        })
        .await
    }

    /// A GET of Prometheus' JSON API, its answer parsed with `parse` (which also reads the error JSON).
    async fn get_json<T>(
        &self,
        path: &str,
        params: &[(&str, String)],
        parse: fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<T, ScrapeError> {
        self.send_and_parse(path, Request::Get(params), true, |body| {
            let started = Instant::now();
            let parsed = parse(&body).map_err(|error| self.classify_answer(error));
            self.decode_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            std::future::ready(parsed)
        })
        .await
    }

    /// `/api/v1/read`: the answer to `queries` decoded into a sink made by `make` as it arrives, each
    /// query's samples cut to its range (milliseconds, inclusive); `finish` turns the sink into the result.
    /// An answer that grows past `budget` values held (`SeriesSink::held`) is dropped unread with
    /// `TooManySamples`: the window was too large. A body that does not decode is retried like one cut short.
    pub async fn remote_read<S: remote::SeriesSink, T>(
        &self,
        queries: Vec<remote::Query>,
        budget: u64,
        make: impl Fn() -> S,
        finish: impl Fn(S) -> T,
    ) -> Result<T, ScrapeError> {
        let ranges: Vec<(i64, i64)> = queries
            .iter()
            .map(|q| (q.start_timestamp_ms, q.end_timestamp_ms))
            .collect();
        let body = remote::encode_request(queries);
        let request = Request::RemoteRead(&body);
        let bad = |e: remote::WireError| ScrapeError::Answer {
            source_name: self.name.clone(),
            error: ParseError::Shape(e.to_string()),
        };
        self.send_with_retries("api/v1/read", || async {
            let _permit = self.permit().await;
            let (mut resp, started) = self.respond("api/v1/read", request, false).await?;
            let (mut sink, mut decoder) = (make(), remote::StreamDecoder::new(&ranges));
            let mut decoding = Duration::ZERO;
            let outcome = async {
                while let Some(piece) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
                    let at = Instant::now();
                    decoder.feed(piece, &mut sink).map_err(bad)?;
                    decoding += at.elapsed();
                    if sink.held() > budget {
                        return Err(ScrapeError::TooManySamples {
                            source_name: self.name.clone(),
                            message: format!(
                                "the answer holds more than scrape.max_samples_per_read ({budget}) values"
                            ),
                        });
                    }
                }
                decoder.finish(&mut sink).map_err(bad)
            }
            .await;
            self.observe_request(started);
            self.decode_nanos
                .fetch_add(decoding.as_nanos() as u64, Ordering::Relaxed);
            outcome.map(|()| finish(sink))
        })
        .await
    }

    fn classify_answer(&self, error: ParseError) -> ScrapeError {
        if let ParseError::Prometheus { message, .. } = &error
            && (message.contains("too many samples") || message.contains("11,000 points"))
        {
            return ScrapeError::TooManySamples {
                source_name: self.name.clone(),
                message: message.clone(),
            };
        }
        ScrapeError::Answer {
            source_name: self.name.clone(),
            error,
        }
    }

    /// Sends the request and parses the answer, retrying both: a body cut short parses badly, and the
    /// next try may well be whole. The answer is parsed once its request no longer counts as in flight.
    async fn send_and_parse<T, F: Future<Output = Result<T, ScrapeError>>>(
        &self,
        path: &str,
        request: Request<'_>,
        json: bool,
        parse: impl Fn(bytes::Bytes) -> F,
    ) -> Result<T, ScrapeError> {
        self.send_with_retries(path, || async {
            let body = {
                let _permit = self.permit().await;
                self.send_once(path, request, json).await?
            };
            parse(body).await
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out, with backoff between.
    async fn send_with_retries<T, F: Future<Output = Result<T, ScrapeError>>>(
        &self,
        path: &str,
        attempt_once: impl Fn() -> F,
    ) -> Result<T, ScrapeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match attempt_once().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.metrics
                        .scrape_errors
                        .get_or_create(&SourceErrorLabels {
                            source: self.name.clone(),
                            kind: e.kind().into(),
                        })
                        .inc();
                    if !e.retryable() || attempt >= self.retry.attempts {
                        return Err(e);
                    }
                    let delay = backoff(self.retry, attempt);
                    tracing::warn!(source = %self.name, path, attempt, error = %e, delay_ms = delay.as_millis() as u64, "request failed; retrying");
                    self.metrics
                        .scrape_retries
                        .get_or_create(&self.labels())
                        .inc();
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// A place among the requests in flight.
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.in_flight
            .acquire()
            .await
            .expect("semaphore never closed")
    }

    fn observe_request(&self, started: Instant) {
        self.metrics
            .scrape_request_seconds
            .get_or_create(&self.labels())
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sends the request and reads the whole answer.
    async fn send_once(
        &self,
        path: &str,
        request: Request<'_>,
        json: bool,
    ) -> Result<bytes::Bytes, ScrapeError> {
        let (resp, started) = self.respond(path, request, json).await?;
        let body = resp.bytes().await.map_err(|e| self.transport_error(e));
        self.observe_request(started);
        body
    }

    /// Sends the request; a successful answer comes back unread, with when the request went out. Any
    /// other is read and turned into the error it names.
    async fn respond(
        &self,
        path: &str,
        request: Request<'_>,
        json: bool,
    ) -> Result<(reqwest::Response, Instant), ScrapeError> {
        let url = self.url(path)?;
        if let Some(log) = &self.recorded {
            let (params, body) = match request {
                Request::Get(params) => (
                    params
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                    None,
                ),
                Request::RemoteRead(body) => (Vec::new(), Some(body.to_vec())),
            };
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RecordedRequest {
                    path: path.to_string(),
                    params,
                    body,
                });
        }
        let mut req = match request {
            Request::Get(params) => self.http.get(url).query(params),
            Request::RemoteRead(body) => remote_read_request(self.http.post(url), body),
        };
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
        };
        let started = Instant::now();
        self.metrics
            .scrape_requests
            .get_or_create(&self.labels())
            .inc();
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                self.observe_request(started);
                return Err(self.transport_error(e));
            }
        };
        let status = resp.status();
        if status.is_success() {
            if matches!(request, Request::RemoteRead(_))
                && let Err(e) = self.check_streamed(&resp)
            {
                self.observe_request(started);
                return Err(e);
            }
            return Ok((resp, started));
        }
        let body = resp.bytes().await.map_err(|e| self.transport_error(e));
        self.observe_request(started);
        let body = body?;
        // Prometheus sends its error JSON with 400, 422, 503...: prefer its words to a bare status.
        if json
            && let Err(error) = parse_query_response(&body)
            && matches!(error, ParseError::Prometheus { .. })
        {
            let e = self.classify_answer(error);
            if status.is_server_error() && !matches!(e, ScrapeError::TooManySamples { .. }) {
                return Err(ScrapeError::Http {
                    source_name: self.name.clone(),
                    status: status.as_u16(),
                    body: e.to_string(),
                });
            }
            return Err(e);
        }
        Err(ScrapeError::Http {
            source_name: self.name.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string(),
        })
    }

    /// A remote-read answer must be streamed chunks. A proxy's HTML page may pass on the next try; a
    /// source that only sends whole sample responses never will.
    fn check_streamed(&self, resp: &reqwest::Response) -> Result<(), ScrapeError> {
        let kind = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if kind.starts_with(remote::STREAMED_CONTENT_TYPE) {
            Ok(())
        } else if kind.starts_with("application/x-protobuf") {
            Err(ScrapeError::Config {
                source_name: self.name.clone(),
                reason: "the source answers remote read without streamed chunks (Prometheus 2.13 or later streams them); set read = \"query_range\" for it".into(),
            })
        } else {
            Err(ScrapeError::Answer {
                source_name: self.name.clone(),
                error: ParseError::Shape(format!(
                    "remote read answered with content type {kind:?}, not streamed chunks"
                )),
            })
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> ScrapeError {
        if e.is_timeout() {
            ScrapeError::Timeout {
                source_name: self.name.clone(),
                secs: self.timeout_secs,
            }
        } else if e.is_connect() {
            ScrapeError::Connect {
                source_name: self.name.clone(),
                reason: e.to_string(),
            }
        } else {
            // The body was cut off or the connection dropped mid-answer.
            ScrapeError::Answer {
                source_name: self.name.clone(),
                error: ParseError::Shape(format!("transfer failed: {e}")),
            }
        }
    }
}

/// The headers Prometheus expects on a remote-read request.
pub fn remote_read_request(req: reqwest::RequestBuilder, body: &[u8]) -> reqwest::RequestBuilder {
    req.header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body.to_vec())
}

/// Exponential backoff with full jitter: a random delay up to `base * 2^(attempt-1)`, capped.
fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let cap = policy
        .base
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 of the clock's nanoseconds: enough spread that replicas do not retry in lockstep.
    let mut z = nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let frac = (z >> 11) as f64 / (1u64 << 53) as f64;
    cap.mul_f64(0.5 + 0.5 * frac)
}
