//! The HTTP API in process (`tower::ServiceExt::oneshot`) over a seeded and assessed database.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use headroom::assess::{self, AssessOptions};
use headroom::config::Settings;
use headroom::server::{AppState, router};
use headroom::store::{ConnectOptions, ContainerKey, Store, WorkloadKey};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::assess::seeded;

const END: i64 = 1_704_067_200 + 14 * 86_400;

pub(crate) async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn app(pool: &PgPool, token: &str) -> axum::Router {
    let (store, _) = seeded(pool, 11, 8).await;
    let settings = Settings::from_toml(&format!("[server]\napi_token = \"{token}\"\n")).unwrap();
    assess::run(
        &store,
        &AssessOptions::from_settings(&settings).unwrap(),
        END,
    )
    .await
    .unwrap();
    router(AppState::new(store, settings).unwrap())
}

#[sqlx::test]
async fn workloads_are_listed_sorted_and_paginated(pool: PgPool) {
    let app = app(&pool, "t0ken").await;
    let (s, body) = call(
        &app,
        "GET",
        "/api/v1/workloads?sort=urgency&per_page=5",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["total"], 11);
    assert_eq!(v["workloads"].as_array().unwrap().len(), 5);
    let (_, body) = call(
        &app,
        "GET",
        "/api/v1/workloads?sort=saving&page=3&per_page=5",
        None,
    )
    .await;
    assert_eq!(json(&body)["workloads"].as_array().unwrap().len(), 1);
    let (_, body) = call(
        &app,
        "GET",
        "/api/v1/workloads?sort=saving&per_page=500",
        None,
    )
    .await;
    let savings: Vec<f64> = json(&body)["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["saving_money_per_month"].as_f64().unwrap())
        .collect();
    assert!(savings.windows(2).all(|w| w[0] >= w[1]), "{savings:?}");
}

#[sqlx::test]
async fn one_workload_has_history_forecast_exhaustion_and_recommendation(pool: PgPool) {
    let app = app(&pool, "t0ken").await;
    let (_, body) = call(&app, "GET", "/api/v1/workloads?sort=name&per_page=1", None).await;
    let id = json(&body)["workloads"][0]["id"].as_i64().unwrap();
    let (s, body) = call(&app, "GET", &format!("/api/v1/workloads/{id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v = json(&body);
    let mem = &v["containers"][0]["resources"]["memory"];
    assert!(
        mem["forecast"]["p50"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{mem}"
    );
    assert!(mem["recommendation"]["reason"].is_string(), "{mem}");
    let (s, body) = call(
        &app,
        "GET",
        &format!(
            "/api/v1/workloads/{id}/history?metric=memory_usage&from={}&to={END}",
            END - 86_400
        ),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["points"].as_array().unwrap().len(), 288);
    let (s, body) = call(
        &app,
        "GET",
        &format!("/api/v1/workloads/{id}/forecasts?resource=cpu"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["forecasts"].as_array().unwrap().len(), 1);
}

#[sqlx::test]
async fn bad_parameters_are_named_and_unknown_workloads_are_404(pool: PgPool) {
    let app = app(&pool, "t0ken").await;
    for (uri, param) in [
        ("/api/v1/workloads?sort=colour", "sort"),
        ("/api/v1/workloads?per_page=0", "per_page"),
        ("/api/v1/workloads?bogus=1", "bogus"),
        ("/api/v1/workloads/abc", "id"),
        ("/api/v1/workloads/1/history", "metric"),
        ("/api/v1/at-risk?within_days=-1", "within_days"),
        ("/api/v1/recommendations?min_saving=NaN", "min_saving"),
    ] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(json(&body)["error"]["parameter"], param, "{uri}: {body}");
    }
    let (s, body) = call(&app, "GET", "/api/v1/workloads/999999", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(json(&body)["error"]["code"], "not_found");
}

#[sqlx::test]
async fn triggers_need_the_token(pool: PgPool) {
    let app = app(&pool, "t0ken").await;
    assert_eq!(
        call(&app, "POST", "/api/v1/assess", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/assess", Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/assess", Some("t0ken")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/scrape", Some("t0ken")).await.0,
        StatusCode::ACCEPTED
    );
}

#[sqlx::test]
async fn protected_reads_need_the_token_but_probes_do_not(pool: PgPool) {
    let (store, _) = seeded(&pool, 3, 8).await;
    let settings =
        Settings::from_toml("[server]\napi_token = \"t0ken\"\nprotect_reads = true\n").unwrap();
    let app = router(AppState::new(store, settings).unwrap());
    for uri in [
        "/api/v1/workloads",
        "/api/v1/workloads/1",
        "/api/v1/at-risk",
        "/api/v1/recommendations",
        "/api/v1/patches",
        "/api/v1/silences",
        "/",
    ] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert_eq!(
            json(&body)["error"]["code"],
            "unauthorized",
            "{uri}: {body}"
        );
        let (s, _) = call(&app, "GET", uri, Some("wrong")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (s, body) = call(&app, "GET", "/api/v1/workloads", Some("t0ken")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["total"], 3);
    // A cached list is not handed out without the token either.
    let (s, _) = call(&app, "GET", "/api/v1/workloads", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for uri in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {body}");
    }
    // Without the flag, reads stay open.
    let app = router(
        AppState::new(
            Store::from_pool(pool.clone()),
            Settings::from_toml("[server]\napi_token = \"t0ken\"\n").unwrap(),
        )
        .unwrap(),
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/workloads", None).await.0,
        StatusCode::OK
    );
}

#[test]
fn protected_reads_without_a_token_are_refused_naming_the_key() {
    let e = Settings::from_toml("[server]\nprotect_reads = true\n").unwrap_err();
    assert!(e.to_string().contains("server.protect_reads"), "{e}");
}

#[sqlx::test]
async fn metrics_export_results_and_patches_are_yaml(pool: PgPool) {
    let app = app(&pool, "t0ken").await;
    let (s, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("headroom_recommended_request{"), "{body}");
    assert!(body.contains("headroom_saving_money_per_month{"), "{body}");
    assert!(body.ends_with("# EOF\n"));
    let (s, body) = call(&app, "GET", "/api/v1/patches", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("apiVersion: apps/v1") && body.contains("resources:"),
        "{body}"
    );
    let (s, body) = call(&app, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["openapi"], "3.0.3");
}

#[tokio::test]
async fn a_database_outage_is_a_503_and_the_process_stays_up() {
    // Nothing listens on port 1: every acquire fails fast.
    let store = Store::connect_lazy(&ConnectOptions {
        url: "postgres://postgres@127.0.0.1:1/none".into(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_millis(500),
    })
    .unwrap();
    let app = router(AppState::new(store, Settings::from_toml("").unwrap()).unwrap());
    for uri in [
        "/api/v1/workloads",
        "/api/v1/workloads/1",
        "/api/v1/at-risk",
        "/readyz",
    ] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
    }
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
}

/// Waits until this replica's detail cache has applied every change committed before the call.
async fn caught_up(state: &AppState) {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        state.details.caught_up(),
    )
    .await
    .expect("the detail cache never received its heartbeat back");
}

#[sqlx::test]
async fn a_cached_detail_is_replaced_once_a_new_assessment_or_container_commits(pool: PgPool) {
    let (store, _) = seeded(&pool, 11, 8).await;
    let settings = Settings::from_toml("").unwrap();
    let opts = AssessOptions::from_settings(&settings).unwrap();
    assess::run(&store, &opts, END - 86_400).await.unwrap();
    let state = AppState::new(store.clone(), settings).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(headroom::server::detail::keep_in_sync(
        state.details.clone(),
        store.clone(),
        stopped,
    ));
    let app = router(state.clone());
    caught_up(&state).await;
    let (_, body) = call(&app, "GET", "/api/v1/workloads?sort=name&per_page=1", None).await;
    let id = json(&body)["workloads"][0]["id"].as_i64().unwrap();
    let uri = format!("/api/v1/workloads/{id}");

    let (s, first) = call(&app, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(state.details.usage().0, 1, "the detail is kept");
    assert_eq!(call(&app, "GET", &uri, None).await.1, first);
    let old = json(&first);
    assert_eq!(old["workload"]["assessed_at"], END - 86_400);
    let mem = &old["containers"][0]["resources"]["memory"];
    assert_eq!(mem["forecast"]["computed_at"], END - 86_400, "{mem}");

    // Unknown workloads and bad ids are still answered, and nothing is kept for them.
    let (s, body) = call(&app, "GET", "/api/v1/workloads/999999", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = call(&app, "GET", "/api/v1/workloads/0", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json(&body)["error"]["parameter"], "id");
    assert_eq!(state.details.usage().0, 1);

    // A new assessment commits: once this replica has caught up, the detail shows it.
    assess::run(&store, &opts, END).await.unwrap();
    caught_up(&state).await;
    let (s, second) = call(&app, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let new = json(&second);
    assert_eq!(new["workload"]["assessed_at"], END, "{}", new["workload"]);
    for c in new["containers"].as_array().unwrap() {
        for r in ["cpu", "memory"] {
            let res = &c["resources"][r];
            assert_eq!(res["forecast"]["computed_at"], END, "{res}");
            assert_eq!(res["recommendation"]["computed_at"], END, "{res}");
            for e in res["exhaustion"].as_array().unwrap() {
                assert_eq!(e["computed_at"], END, "{e}");
            }
        }
    }

    // A scrape that only sees the same containers again does not touch the detail; a new container does.
    let w = &new["workload"];
    let key = |container: &str| ContainerKey {
        workload: WorkloadKey {
            namespace: w["namespace"].as_str().unwrap().into(),
            kind: w["kind"].as_str().unwrap().into(),
            name: w["name"].as_str().unwrap().into(),
        },
        container: container.into(),
    };
    let cluster = store
        .upsert_cluster(w["cluster"].as_str().unwrap())
        .await
        .unwrap();
    let existing = new["containers"][0]["name"].as_str().unwrap();
    store
        .upsert_containers(cluster, &[key(existing)], END + 600)
        .await
        .unwrap();
    caught_up(&state).await;
    assert_eq!(call(&app, "GET", &uri, None).await.1, second);
    store
        .upsert_containers(cluster, &[key("sidecar-added-later")], END + 600)
        .await
        .unwrap();
    caught_up(&state).await;
    let (_, third) = call(&app, "GET", &uri, None).await;
    let names: Vec<String> = json(&third)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "sidecar-added-later"),
        "{names:?}"
    );

    // A client holding the current copy gets a 304 without a body.
    let resp = app
        .clone()
        .oneshot(Request::builder().uri(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let etag = resp.headers()["etag"].clone();
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri(&uri)
                .header("if-none-match", etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    stop.send(true).unwrap();
    sync.await.unwrap();
}

#[sqlx::test]
async fn a_lost_listening_connection_empties_the_detail_cache(pool: PgPool) {
    let app_state = {
        let (store, _) = seeded(&pool, 3, 4).await;
        let settings = Settings::from_toml("").unwrap();
        let opts = AssessOptions::from_settings(&settings).unwrap();
        assess::run(&store, &opts, END).await.unwrap();
        AppState::new(store, settings).unwrap()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(headroom::server::detail::keep_in_sync(
        app_state.details.clone(),
        app_state.store.clone(),
        stopped,
    ));
    let app = router(app_state.clone());
    caught_up(&app_state).await;
    let (_, body) = call(&app, "GET", "/api/v1/workloads?per_page=1", None).await;
    let id = json(&body)["workloads"][0]["id"].as_i64().unwrap();
    let (s, _) = call(&app, "GET", &format!("/api/v1/workloads/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app_state.details.usage().0, 1);
    // Changes committed while the connection is down are never announced: everything kept goes.
    let killed: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
         where datname = current_database() and query ilike 'listen%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    caught_up(&app_state).await;
    assert_eq!(app_state.details.usage().0, 0);
    let (s, _) = call(&app, "GET", &format!("/api/v1/workloads/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    stop.send(true).unwrap();
    sync.await.unwrap();
}
