//! A few seconds' cache of the list responses every dashboard polls. Results change only when an
//! assessment finishes (hourly by default), so answering the same list from memory for a few seconds
//! costs almost no freshness and keeps Postgres out of the hot path of many concurrent viewers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::OnceCell;

/// Responses by request URI, each kept `ttl` after it was produced, at most `capacity` of them.
pub struct ResponseCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    born: Instant,
    /// Shared by every request that arrives while the first one is still computing it, so a burst of
    /// identical requests runs the query once.
    cell: Arc<OnceCell<Cached>>,
}

struct Cached {
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl ResponseCache {
    pub fn new(ttl: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The cell for `key`: the live one, or a new one (not kept when the cache is full of live entries).
    fn cell(&self, key: &str) -> Arc<OnceCell<Cached>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get(key)
            && e.born.elapsed() < self.ttl
        {
            return Arc::clone(&e.cell);
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, e| e.born.elapsed() < ttl);
        }
        let cell = Arc::new(OnceCell::new());
        if entries.len() < self.capacity {
            entries.insert(
                key.to_string(),
                Entry {
                    born: Instant::now(),
                    cell: Arc::clone(&cell),
                },
            );
        }
        cell
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// Middleware: answers a GET from the cache, or runs the handler and keeps its answer if it is a 200.
/// Errors are never kept, so a database outage is not remembered once it is over.
pub async fn serve_cached(
    State(cache): State<Arc<ResponseCache>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let key = req.uri().to_string();
    let cell = cache.cell(&key);
    let outcome = cell
        .get_or_try_init(|| async move {
            let resp = next.run(req).await;
            if resp.status() != StatusCode::OK {
                return Err(resp);
            }
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
                Ok(body) => Ok(Cached { content_type, body }),
                Err(e) => {
                    tracing::error!(error = %e, "reading a response body to cache it");
                    Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
            }
        })
        .await;
    match outcome {
        Ok(c) => {
            let mut resp = Response::new(Body::from(c.body.clone()));
            if let Some(ct) = &c.content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            resp
        }
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(cache: Arc<ResponseCache>, calls: Arc<AtomicUsize>) -> Router {
        Router::new()
            .route(
                "/n",
                get(move || {
                    let calls = Arc::clone(&calls);
                    async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        if n == 0 {
                            (StatusCode::SERVICE_UNAVAILABLE, "down".to_string())
                        } else {
                            (StatusCode::OK, format!("answer {n}"))
                        }
                    }
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(cache, serve_cached))
    }

    async fn body(app: &Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn errors_are_not_kept_and_answers_are_kept_until_they_expire() {
        let cache = ResponseCache::new(Duration::from_millis(200), 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let app = app(Arc::clone(&cache), Arc::clone(&calls));
        assert_eq!(body(&app, "/n").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&app, "/n").await, (StatusCode::OK, "answer 1".into()));
        assert_eq!(body(&app, "/n").await, (StatusCode::OK, "answer 1".into()));
        // Another query string is another entry.
        assert_eq!(
            body(&app, "/n?x=1").await,
            (StatusCode::OK, "answer 2".into())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(body(&app, "/n").await, (StatusCode::OK, "answer 3".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_full_cache_still_answers_without_keeping_more() {
        let cache = ResponseCache::new(Duration::from_secs(60), 2);
        let calls = Arc::new(AtomicUsize::new(1));
        let app = app(Arc::clone(&cache), Arc::clone(&calls));
        for q in ["a", "b", "c", "d"] {
            assert_eq!(body(&app, &format!("/n?{q}")).await.0, StatusCode::OK);
        }
        assert_eq!(cache.len(), 2);
        // The ones that did not fit are computed again.
        let before = calls.load(Ordering::SeqCst);
        body(&app, "/n?d").await;
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);
        body(&app, "/n?a").await;
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);
    }
}
