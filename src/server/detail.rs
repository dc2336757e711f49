//! `GET /api/v1/workloads/{id}`, answered from memory. The rendered JSON of each workload's detail is kept
//! until the database says it changed: triggers notify every replica of the workloads a committed change
//! touched (migration 0011), and each replica sends itself a heartbeat through the same channel several
//! times a second. Notifications arrive in commit order, so once a heartbeat sent at instant T is back,
//! every change committed before T has been applied; entries are served only while that T is less than
//! `MAX_STALENESS` old, and otherwise the detail is read from the database. A replica therefore never
//! serves a detail older than what the database held `MAX_STALENESS` earlier, whatever the other replicas
//! or the network do.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;

use super::AppState;
use super::api::parse_id;
use super::error::ApiError;
use crate::domain::Resource;
use crate::store::{
    DetailChange, ExhaustionRecord, ForecastRecord, RecommendationRecord, Store, WorkloadRow,
};

/// How old the newest confirmed heartbeat may be for the cache to answer.
pub const MAX_STALENESS: Duration = Duration::from_secs(2);
/// How often a replica sends itself a heartbeat.
const BEAT_INTERVAL: Duration = Duration::from_millis(250);
/// How long to wait before listening again after the listening connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Rendered details by workload, bounded in bytes.
pub struct DetailCache {
    max_bytes: usize,
    /// Heartbeat times are milliseconds after this instant.
    origin: Instant,
    /// Send time (ms after `origin`) of the newest heartbeat received back; 0 before the first.
    synced_ms: AtomicU64,
    /// Tells this replica's heartbeats from other replicas'.
    nonce: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts invalidations; a render is kept only if nothing it covers was invalidated after it started.
    seq: u64,
    /// `seq` at the last "everything changed".
    cleared_at: u64,
    /// `seq` at the last invalidation of each workload since `cleared_at` (at most one per workload).
    invalidated: HashMap<i64, u64>,
    entries: HashMap<i64, Entry>,
    /// Insertion order for eviction: workload and the `seq` its entry was stored at.
    order: VecDeque<(i64, u64)>,
    bytes: usize,
}

#[derive(Clone)]
pub struct Entry {
    pub body: Bytes,
    pub etag: HeaderValue,
    stored_at: u64,
}

/// Permission to store a render, taken before the database is read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// Bytes of bookkeeping per entry besides the body (maps, order, ETag), for the byte bound.
const ENTRY_OVERHEAD: usize = 128;

impl DetailCache {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        let mut h = DefaultHasher::new();
        (
            std::process::id(),
            Instant::now(),
            std::time::SystemTime::now(),
        )
            .hash(&mut h);
        Arc::new(Self {
            max_bytes,
            origin: Instant::now(),
            synced_ms: AtomicU64::new(0),
            nonce: h.finish(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        // Starts at 1 so that 0 can mean "no heartbeat yet".
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// Whether every change committed up to `MAX_STALENESS` ago is known to have been applied.
    pub fn is_synced(&self) -> bool {
        let synced = self.synced_ms.load(Ordering::Acquire);
        synced > 0 && self.now_ms().saturating_sub(synced) <= MAX_STALENESS.as_millis() as u64
    }

    /// The stored detail of `id`, if there is one and the cache is in sync.
    pub fn get(&self, id: i64) -> Option<Entry> {
        if !self.is_synced() {
            return None;
        }
        self.lock().entries.get(&id).cloned()
    }

    /// To be taken before reading the database for a render; `None` when renders cannot be kept now.
    pub fn ticket(&self) -> Option<Ticket> {
        self.is_synced().then(|| Ticket(self.lock().seq))
    }

    /// Stores a render unless something it covers was invalidated since `ticket` was taken (the render
    /// may then predate that change) or it would not fit.
    pub fn store(&self, id: i64, ticket: Ticket, body: Bytes, etag: HeaderValue) {
        let size = body.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if inner.cleared_at > ticket.0 || inner.invalidated.get(&id).is_some_and(|&s| s > ticket.0)
        {
            return;
        }
        inner.remove(id);
        while inner.bytes + size > self.max_bytes {
            let Some((old, stored_at)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .entries
                .get(&old)
                .is_some_and(|e| e.stored_at == stored_at)
            {
                inner.remove(old);
            }
        }
        let stored_at = inner.seq;
        inner.bytes += size;
        inner.order.push_back((id, stored_at));
        inner.entries.insert(
            id,
            Entry {
                body,
                etag,
                stored_at,
            },
        );
    }

    /// The details of these workloads changed.
    pub fn invalidate(&self, ids: &[i64]) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        for &id in ids {
            inner.invalidated.insert(id, seq);
            inner.remove(id);
        }
    }

    /// Anything may have changed.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.seq += 1;
        inner.cleared_at = inner.seq;
        inner.invalidated.clear();
        inner.entries.clear();
        inner.order.clear();
        inner.bytes = 0;
    }

    /// Payload of a heartbeat sent now.
    fn beat(&self) -> String {
        format!("{:016x}:{}", self.nonce, self.now_ms())
    }

    /// A heartbeat came back: if it is ours, everything committed before it was sent has been applied.
    fn confirm(&self, payload: &str) {
        let Some((nonce, ms)) = payload.split_once(':') else {
            return;
        };
        if u64::from_str_radix(nonce, 16).ok() != Some(self.nonce) {
            return;
        }
        if let Ok(ms) = ms.parse::<u64>() {
            self.synced_ms.fetch_max(ms, Ordering::AcqRel);
        }
    }

    /// Resolves once a heartbeat sent after this call has come back: every change committed before the
    /// call has then been applied.
    pub async fn caught_up(&self) {
        let since = self.now_ms();
        while self.synced_ms.load(Ordering::Acquire) <= since {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Entries and bytes held (bodies plus bookkeeping).
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

impl Inner {
    fn remove(&mut self, id: i64) {
        if let Some(e) = self.entries.remove(&id) {
            self.bytes -= e.body.len() + ENTRY_OVERHEAD;
        }
        // Its slot in `order` is skipped when reached: the stored_at no longer matches.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(id, at)| entries.get(id).is_some_and(|e| e.stored_at == *at));
        }
    }
}

/// Applies committed changes to the cache until `stop`: listens, and sends heartbeats.
pub async fn keep_in_sync(cache: Arc<DetailCache>, store: Store, stop: watch::Receiver<bool>) {
    let beats = tokio::spawn(send_beats(Arc::clone(&cache), store.clone(), stop.clone()));
    listen(cache, store, stop).await;
    let _ = beats.await;
}

async fn send_beats(cache: Arc<DetailCache>, store: Store, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(BEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = store.send_detail_beat(&cache.beat()).await {
            tracing::debug!(task = "detail_cache", error = %e, "heartbeat not sent");
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn listen(cache: Arc<DetailCache>, store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        let listening = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = store.listen_detail_changes() => r,
        };
        let mut changes = match listening {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(task = "detail_cache", error = %e, "cannot listen for detail changes; details are read from the database");
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = tokio::time::sleep(RECONNECT_DELAY) => continue,
                }
            }
        };
        // Changes committed before the listening started were never announced to this connection.
        cache.clear();
        loop {
            let next = tokio::select! {
                _ = stopped(&mut stop) => return,
                next = changes.next() => next,
            };
            match next {
                Ok(Some(DetailChange::Workloads(ids))) => cache.invalidate(&ids),
                Ok(Some(DetailChange::All)) => cache.clear(),
                Ok(Some(DetailChange::Beat(payload))) => cache.confirm(&payload),
                // Reconnected: whatever committed in between is unknown.
                Ok(None) => cache.clear(),
                Err(e) => {
                    tracing::warn!(task = "detail_cache", error = %e, "listening for detail changes failed; listening again");
                    cache.clear();
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        _ = tokio::time::sleep(RECONNECT_DELAY) => break,
                    }
                }
            }
        }
    }
}

/// The detail's body: the workload's summary and, per container and resource, its series, the latest
/// forecast with its interval and backtest error, the exhaustion estimates and the recommendation.
#[derive(Serialize)]
struct Detail<'a> {
    workload: WorkloadDetail<'a>,
    containers: Vec<ContainerDetail<'a>>,
}

/// The summary as of the latest assessment. `last_seen`, which every scrape advances, is in the list.
#[derive(Serialize)]
struct WorkloadDetail<'a> {
    id: i64,
    cluster: &'a str,
    namespace: &'a str,
    kind: &'a str,
    name: &'a str,
    first_seen: i64,
    assessed_at: Option<i64>,
    containers: Option<i32>,
    replicas: Option<f64>,
    cpu_usage: Option<f64>,
    cpu_request: Option<f64>,
    cpu_limit: Option<f64>,
    memory_usage: Option<f64>,
    memory_request: Option<f64>,
    memory_limit: Option<f64>,
    already_over: bool,
    earliest_eta: Option<i64>,
    earliest_kind: Option<&'a str>,
    earliest_resource: Option<&'a str>,
    earliest_probability: Option<f64>,
    saving_money_per_month: f64,
    cpu_saving_cores: f64,
    memory_saving_bytes: f64,
}

impl<'a> From<&'a WorkloadRow> for WorkloadDetail<'a> {
    fn from(w: &'a WorkloadRow) -> Self {
        Self {
            id: w.id,
            cluster: &w.cluster,
            namespace: &w.namespace,
            kind: &w.kind,
            name: &w.name,
            first_seen: w.first_seen,
            assessed_at: w.assessed_at,
            containers: w.containers,
            replicas: w.replicas,
            cpu_usage: w.cpu_usage,
            cpu_request: w.cpu_request,
            cpu_limit: w.cpu_limit,
            memory_usage: w.memory_usage,
            memory_request: w.memory_request,
            memory_limit: w.memory_limit,
            already_over: w.already_over,
            earliest_eta: w.earliest_eta,
            earliest_kind: w.earliest_kind.as_deref(),
            earliest_resource: w.earliest_resource.as_deref(),
            earliest_probability: w.earliest_probability,
            saving_money_per_month: w.saving_money_per_month,
            cpu_saving_cores: w.cpu_saving_cores,
            memory_saving_bytes: w.memory_saving_bytes,
        }
    }
}

#[derive(Serialize)]
struct ContainerDetail<'a> {
    id: i64,
    name: &'a str,
    series: &'a BTreeMap<String, i64>,
    resources: BTreeMap<&'static str, ResourceDetail<'a>>,
}

#[derive(Serialize)]
struct ResourceDetail<'a> {
    series: BTreeMap<&'a str, i64>,
    forecast: Option<&'a ForecastRecord>,
    exhaustion: Vec<&'a ExhaustionRecord>,
    recommendation: Option<&'a RecommendationRecord>,
}

/// Reads one workload's detail from the database and renders it; `None` when there is no such workload.
async fn render(store: &Store, id: i64) -> Result<Option<Bytes>, ApiError> {
    let Some(workload) = store.workload(id).await? else {
        return Ok(None);
    };
    let containers = store.workload_containers(id).await?;
    let recs = store
        .current_recommendations(Some(id), f64::MIN, 1_000, 0)
        .await?;
    let peaks: Vec<i64> = containers
        .iter()
        .flat_map(|c| Resource::ALL.map(|r| c.series.get(&format!("{r}_usage_max")).copied()))
        .flatten()
        .collect();
    let exhaustions = store.current_exhaustions(&peaks).await?;
    let forecasts = store.latest_forecasts(&peaks).await?;
    let detail = Detail {
        workload: WorkloadDetail::from(&workload),
        containers: containers
            .iter()
            .map(|c| {
                let resources = Resource::ALL
                    .into_iter()
                    .map(|r| {
                        let peak = c.series.get(&format!("{r}_usage_max")).copied();
                        let detail = ResourceDetail {
                            series: c
                                .series
                                .iter()
                                .filter(|(m, _)| m.starts_with(r.as_str()))
                                .map(|(m, id)| (m.as_str(), *id))
                                .collect(),
                            forecast: forecasts.iter().find(|f| Some(f.series_id) == peak),
                            exhaustion: exhaustions
                                .iter()
                                .filter(|e| Some(e.series_id) == peak)
                                .collect(),
                            recommendation: recs.iter().find(|x| {
                                x.container_id == c.container_id && x.resource == r.as_str()
                            }),
                        };
                        (r.as_str(), detail)
                    })
                    .collect();
                ContainerDetail {
                    id: c.container_id,
                    name: &c.name,
                    series: &c.series,
                    resources,
                }
            })
            .collect(),
    };
    let body = serde_json::to_vec(&detail).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Some(Bytes::from(body)))
}

/// A strong validator of the body's content, the same on every replica running the same build.
fn etag_of(body: &[u8]) -> HeaderValue {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", h.finish(), body.len()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` names this ETag (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn answer(headers: &HeaderMap, body: Bytes, etag: HeaderValue) -> Response {
    let mut resp = if not_modified(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    // Clients may keep it but must ask again (cheaply, with If-None-Match) before using it.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /api/v1/workloads/{id}`: per container and resource the series, the latest forecast with its
/// interval and backtest error, the exhaustion estimates and the recommendation with its reason.
pub async fn get_workload(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    if let Some(e) = state.details.get(id) {
        return Ok(answer(&headers, e.body, e.etag));
    }
    let ticket = state.details.ticket();
    let body = render(&state.store, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workload {id}")))?;
    let etag = etag_of(&body);
    if let Some(t) = ticket {
        state.details.store(id, t, body.clone(), etag.clone());
    }
    Ok(answer(&headers, body, etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced() -> Arc<DetailCache> {
        let c = DetailCache::new(10_000);
        c.confirm(&c.beat());
        c
    }

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn nothing_is_served_or_kept_before_the_first_heartbeat_is_back() {
        let c = DetailCache::new(10_000);
        assert!(c.ticket().is_none());
        c.confirm(&format!("{:016x}:5", c.nonce.wrapping_add(1)));
        assert!(!c.is_synced(), "another replica's heartbeat proves nothing");
        c.confirm(&c.beat());
        let t = c.ticket().unwrap();
        c.store(1, t, body(10), etag_of(b"x"));
        assert_eq!(c.get(1).unwrap().body.len(), 10);
    }

    #[test]
    fn a_render_that_started_before_an_invalidation_is_not_kept() {
        let c = synced();
        let before = c.ticket().unwrap();
        c.invalidate(&[1]);
        c.store(1, before, body(10), etag_of(b"old"));
        assert!(c.get(1).is_none());
        // Another workload's render is unaffected by that invalidation.
        c.store(2, before, body(10), etag_of(b"two"));
        assert!(c.get(2).is_some());
        c.clear();
        c.store(3, before, body(10), etag_of(b"three"));
        assert!(c.get(3).is_none());
        let after = c.ticket().unwrap();
        c.store(1, after, body(10), etag_of(b"new"));
        assert!(c.get(1).is_some());
        c.invalidate(&[1]);
        assert!(c.get(1).is_none());
    }

    #[test]
    fn the_byte_bound_evicts_the_oldest_entries() {
        let c = synced();
        let size = 1_000 + ENTRY_OVERHEAD;
        for id in 0..20 {
            let t = c.ticket().unwrap();
            c.store(id, t, body(1_000), etag_of(&id.to_le_bytes()));
        }
        let (n, bytes) = c.usage();
        assert_eq!(n, 10_000 / size);
        assert!(bytes <= 10_000);
        assert!(c.get(19).is_some() && c.get(0).is_none());
        // Too large to keep at all.
        let t = c.ticket().unwrap();
        c.store(99, t, body(20_000), etag_of(b"big"));
        assert!(c.get(99).is_none());
    }

    #[test]
    fn if_none_match_is_compared_with_the_etag() {
        let etag = etag_of(b"{}");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &etag));
        h.append(header::IF_NONE_MATCH, etag.clone());
        assert!(not_modified(&h, &etag));
        assert_eq!(
            answer(&h, Bytes::from_static(b"{}"), etag).status(),
            StatusCode::NOT_MODIFIED
        );
    }
}
