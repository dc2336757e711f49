//! Alerts end to end against a local HTTP receiver standing in for Slack: the life cycle of a group, a 500
//! then success, a 429 with Retry-After, and a sender killed mid-send whose messages still arrive once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use headroom::alert::{self, Deliverer, Outgoing};
use headroom::config::{PayloadFormat, Settings};
use headroom::store::{ContainerKey, Store, WorkloadKey};
use serde_json::{Value, json};
use sqlx::PgPool;

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

/// What the receiver does with the next request.
#[derive(Clone)]
enum Reply {
    Status(u16, Option<&'static str>),
    /// Never answers: the sender is killed before the receiver accepts the message.
    Hang,
}

#[derive(Clone, Default)]
struct Receiver {
    /// Bodies accepted (answered 200).
    accepted: Arc<Mutex<Vec<Value>>>,
    /// Every request seen, accepted or not.
    attempts: Arc<Mutex<usize>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }
    fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap()
    }
    fn then(&self, r: Reply) {
        self.script.lock().unwrap().push_back(r);
    }
}

async fn hook(State(r): State<Receiver>, body: axum::Json<Value>) -> impl IntoResponse {
    *r.attempts.lock().unwrap() += 1;
    let next = r.script.lock().unwrap().pop_front();
    let mut headers = HeaderMap::new();
    match next {
        Some(Reply::Hang) => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Reply::Status(code, retry_after)) if code != 200 => {
            if let Some(ra) = retry_after {
                headers.insert("retry-after", ra.parse().unwrap());
            }
            (StatusCode::from_u16(code).unwrap(), headers, "no")
        }
        _ => {
            r.accepted.lock().unwrap().push(body.0);
            (StatusCode::OK, headers, "ok")
        }
    }
}

/// Starts the receiver on port 0; returns it and its webhook URL.
async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}/hook"))
}

fn settings(url: &str, format: &str) -> Settings {
    Settings::from_toml(&format!(
        "[server]\npublic_url = \"https://headroom.example\"\n\
         [alerts]\n[[alerts.routes]]\nname = \"team\"\nwebhook_url = \"{url}\"\nformat = \"{format}\"\n"
    ))
    .unwrap()
}

/// One workload `shop/api` with a container `app` and its memory peak series; returns the series id.
async fn workload(store: &Store) -> (i64, i64) {
    let cluster = store.upsert_cluster("prod").await.unwrap();
    let key = ContainerKey {
        workload: WorkloadKey {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "api".into(),
        },
        container: "app".into(),
    };
    let containers = store.upsert_containers(cluster, &[key], NOW).await.unwrap();
    let series = store
        .upsert_series(&[(containers[0], "memory_usage_max", "bytes")])
        .await
        .unwrap()[0];
    (containers[0], series)
}

/// What the assessment would have written: the memory limit reached at `eta` (or not at all).
async fn exhaustion(pool: &PgPool, series: i64, at: i64, eta: Option<i64>) {
    let status = if eta.is_some() {
        "within_horizon"
    } else {
        "not_within_horizon"
    };
    sqlx::query(
        "insert into exhaustion (series_id, computed_at, model, threshold_kind, threshold, status, eta, probability, horizon_secs)
         values ($1, to_timestamp($2), 'test', 'limit', 2147483648, $3, to_timestamp($4), 0.8, 2592000)",
    )
    .bind(series)
    .bind(at as f64)
    .bind(status)
    .bind(eta.map(|e| e as f64))
    .execute(pool)
    .await
    .unwrap();
}

async fn deliver(d: &Deliverer, store: &Store, now: i64) -> alert::DeliveryReport {
    d.deliver_due(store, &alert::http_client(), now)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_group_fires_repeats_only_after_the_interval_and_resolves(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (r, url) = receiver().await;
    let s = settings(&url, "slack");
    let d = Deliverer::from_settings(&s.alerts).unwrap();
    let (container, series) = workload(&store).await;
    sqlx::query(
        "insert into recommendation (container_id, resource, computed_at, policy, request, limit_value,
             current_request, current_limit, rule, reason, risk)
         values ($1, 'memory', to_timestamp($2), 'balanced', 2684354560, 3221225472, 1073741824,
                 2147483648, 'peak', 'sized for the 30-day peak', 'low')",
    )
    .bind(container)
    .bind(NOW as f64)
    .execute(&pool)
    .await
    .unwrap();

    exhaustion(&pool, series, NOW, Some(NOW + 5 * DAY)).await;
    let first = alert::evaluate_and_enqueue(&store, &s, NOW).await.unwrap();
    assert_eq!((first.firing, first.enqueued), (1, 1));
    assert_eq!(deliver(&d, &store, NOW).await.delivered, 1);
    let text = r.accepted()[0].to_string();
    for expected in [
        "[FIRING:1]",
        "memory will reach its limit",
        "in 5 days",
        "Probability:* 80 %",
        "limit 2.0 GiB",
        "Recommendation:* request 2.5 GiB",
        "https://headroom.example/workloads/",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }

    // Nothing changed and the repeat interval has not passed: no message.
    let quiet = alert::evaluate_and_enqueue(&store, &s, NOW + 600)
        .await
        .unwrap();
    assert_eq!((quiet.firing, quiet.enqueued), (1, 0));

    // Four hours later, still firing: one repeat.
    let later = NOW + s.alerts.repeat_interval_secs as i64;
    exhaustion(&pool, series, later, Some(NOW + 5 * DAY)).await;
    let repeat = alert::evaluate_and_enqueue(&store, &s, later)
        .await
        .unwrap();
    assert_eq!(repeat.enqueued, 1);
    assert_eq!(deliver(&d, &store, later).await.delivered, 1);

    // The forecast no longer crosses: one resolved message, then silence.
    exhaustion(&pool, series, later + 60, None).await;
    let resolved = alert::evaluate_and_enqueue(&store, &s, later + 60)
        .await
        .unwrap();
    assert_eq!(
        (resolved.firing, resolved.resolved, resolved.enqueued),
        (0, 1, 1)
    );
    assert_eq!(deliver(&d, &store, later + 60).await.delivered, 1);
    let again = alert::evaluate_and_enqueue(&store, &s, later + 120)
        .await
        .unwrap();
    assert_eq!(again.enqueued, 0);

    let got = r.accepted();
    assert_eq!(got.len(), 3);
    assert!(got[2]["text"].as_str().unwrap().starts_with("[RESOLVED]"));
}

#[sqlx::test]
async fn the_alertmanager_format_carries_version_4_and_the_workload_labels(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (r, url) = receiver().await;
    let s = settings(&url, "alertmanager");
    let (_, series) = workload(&store).await;
    exhaustion(&pool, series, NOW, Some(NOW + 2 * DAY)).await;
    alert::evaluate_and_enqueue(&store, &s, NOW).await.unwrap();
    let d = Deliverer::from_settings(&s.alerts).unwrap();
    assert_eq!(deliver(&d, &store, NOW).await.delivered, 1);
    let v = &r.accepted()[0];
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["alerts"][0]["labels"]["alertname"], "LimitExhaustion");
    assert_eq!(v["alerts"][0]["labels"]["namespace"], "shop");
    assert_eq!(v["alerts"][0]["labels"]["cluster"], "prod");
}

#[sqlx::test]
async fn a_silenced_namespace_gets_no_message(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (_, url) = receiver().await;
    let s = settings(&url, "slack");
    let (_, series) = workload(&store).await;
    exhaustion(&pool, series, NOW, Some(NOW + 2 * DAY)).await;
    store
        .create_silence(&headroom::store::NewSilence {
            cluster: None,
            namespace: Some("shop".into()),
            workload: None,
            ends_at: NOW + 3_600,
            created_by: "test".into(),
            comment: "maintenance".into(),
        })
        .await
        .unwrap();
    let during = alert::evaluate_and_enqueue(&store, &s, NOW).await.unwrap();
    assert_eq!((during.silenced, during.enqueued), (1, 0));
    let after = alert::evaluate_and_enqueue(&store, &s, NOW + 3_600)
        .await
        .unwrap();
    assert_eq!(after.enqueued, 1);
}

fn message(n: usize) -> Outgoing {
    Outgoing {
        fingerprint: format!("m{n}"),
        route: "team".into(),
        format: PayloadFormat::Slack,
        payload: json!({"text": format!("message {n}")}),
    }
}

#[sqlx::test]
async fn a_server_error_is_retried_after_a_backoff_and_then_delivered(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (r, url) = receiver().await;
    let s = settings(&url, "slack");
    let d = Deliverer::from_settings(&s.alerts).unwrap();
    let id = store.enqueue_alert(&message(1), NOW).await.unwrap();
    r.then(Reply::Status(500, None));

    let failed = deliver(&d, &store, NOW).await;
    assert_eq!((failed.retried, failed.delivered), (1, 0));
    let status = store.outbox_status(id).await.unwrap().unwrap();
    assert_eq!(
        status.next_attempt_at,
        NOW + s.alerts.retry_base_secs as i64
    );
    assert!(status.last_error.unwrap().contains("HTTP 500"));
    assert!(!deliver(&d, &store, NOW + 2).await.busy(), "backing off");
    let ok = deliver(&d, &store, NOW + s.alerts.retry_base_secs as i64).await;
    assert_eq!(ok.delivered, 1);
    assert_eq!((r.attempts(), r.accepted().len()), (2, 1));
    assert_eq!(store.outbox_status(id).await.unwrap().unwrap().attempts, 2);
}

#[sqlx::test]
async fn too_many_requests_pauses_the_webhook_for_its_retry_after(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (r, url) = receiver().await;
    let s = settings(&url, "slack");
    let d = Deliverer::from_settings(&s.alerts).unwrap();
    store.enqueue_alert(&message(1), NOW).await.unwrap();
    store.enqueue_alert(&message(2), NOW).await.unwrap();
    r.then(Reply::Status(429, Some("30")));

    assert_eq!(deliver(&d, &store, NOW).await.retried, 1);
    // The whole webhook waits, not only the message that got the 429.
    for t in [NOW + 1, NOW + 15, NOW + 29] {
        assert!(!deliver(&d, &store, t).await.busy(), "sent at {t}");
    }
    assert_eq!(deliver(&d, &store, NOW + 30).await.delivered, 1);
    // At most one message per second per webhook.
    assert!(!deliver(&d, &store, NOW + 30).await.busy());
    assert_eq!(deliver(&d, &store, NOW + 31).await.delivered, 1);
    let texts: Vec<String> = r
        .accepted()
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["message 1", "message 2"]);
    assert_eq!(r.attempts(), 3);
}

#[sqlx::test]
async fn a_sender_killed_mid_send_loses_nothing_and_duplicates_nothing(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (r, url) = receiver().await;
    let s = settings(&url, "slack");
    for n in 1..=3 {
        store.enqueue_alert(&message(n), NOW).await.unwrap();
    }
    // The first daemon claims message 1 and dies while the request is in flight.
    r.then(Reply::Hang);
    let first = Deliverer::from_settings(&s.alerts).unwrap();
    let killed =
        tokio::time::timeout(Duration::from_millis(300), deliver(&first, &store, NOW)).await;
    assert!(
        killed.is_err(),
        "the first sender should still be in flight"
    );

    // The restarted daemon skips the claimed message while its lease holds and sends the others.
    let second = Deliverer::from_settings(&s.alerts).unwrap();
    let lease = s.alerts.delivery_lease_secs as i64;
    let mut t = NOW + 1;
    while t < NOW + lease {
        deliver(&second, &store, t).await;
        t += 1;
    }
    let texts = |r: &Receiver| -> Vec<String> {
        let mut v: Vec<String> = r
            .accepted()
            .iter()
            .map(|v| v["text"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(texts(&r), ["message 2", "message 3"]);
    // After the lease runs out, the abandoned message goes out; then there is nothing left to send.
    for t in NOW + lease..NOW + lease + 10 {
        deliver(&second, &store, t).await;
    }
    assert_eq!(texts(&r), ["message 1", "message 2", "message 3"]);
    assert!(store.pending_alerts().await.unwrap().is_empty());
}

#[sqlx::test]
async fn a_sender_whose_lease_ran_out_cannot_complete_the_message(pool: PgPool) {
    use headroom::store::Completion;
    let store = Store::from_pool(pool);
    store.enqueue_alert(&message(1), NOW).await.unwrap();
    let a = store
        .claim_alert("team", NOW, 60, 1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .claim_alert("team", NOW + 30, 60, 1)
            .await
            .unwrap()
            .is_none()
    );
    let b = store
        .claim_alert("team", NOW + 60, 60, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.id, b.id);
    assert!(
        !store
            .complete_alert(&a, &Completion::Delivered, NOW + 61)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_alert(&b, &Completion::Delivered, NOW + 61)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_alert("team", NOW + 200, 60, 1)
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_route_with_an_unusable_webhook_names_the_key_without_the_url() {
    let e = Settings::from_toml(
        "[alerts]\n[[alerts.routes]]\nname = \"team\"\nwebhook_url = \"ftp://secret-token@example\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerts.routes[0].webhook_url"), "{e}");
    assert!(!e.contains("secret-token"), "{e}");
}

#[test]
fn alert_test_with_an_unknown_route_exits_with_status_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["alert", "test", "--route", "nope"])
        .env_remove("HEADROOM_CONFIG")
        .env_remove("HEADROOM_ENV")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--route \"nope\""), "{err}");
}

#[sqlx::test]
async fn alert_test_sends_a_sample_through_the_outbox(pool: PgPool) {
    let (r, url) = receiver().await;
    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let db_url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    let dir = std::env::temp_dir().join(format!("headroom-alert-test-{db}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[alerts]\n[[alerts.routes]]\nname = \"team\"\nwebhook_url = \"env:ALERT_TEST_WEBHOOK_URL\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["alert", "test", "--route", "team", "--wait", "30s"])
        .arg("--config")
        .arg(&config)
        .env("ALERT_TEST_WEBHOOK_URL", &url)
        .env("HEADROOM_DATABASE__URL", &db_url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("delivered to route team"), "{stdout}");
    let got = r.accepted();
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("[test of route team]"));
    std::fs::remove_dir_all(&dir).ok();
}
