//! Reports and silences over the HTTP API.

use axum::http::StatusCode;
use headroom::assess::{self, AssessOptions};
use headroom::config::Settings;
use headroom::server::{AppState, router};
use sqlx::PgPool;

use crate::api::call;
use crate::assess::seeded_until;

async fn app(pool: &PgPool) -> axum::Router {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % 300;
    let (store, _) = seeded_until(pool, 6, 5, end).await;
    let settings = Settings::from_toml("[server]\napi_token = \"tok\"\n").unwrap();
    assess::run(
        &store,
        &AssessOptions::from_settings(&settings).unwrap(),
        end,
    )
    .await
    .unwrap();
    router(AppState::new(store, settings).unwrap())
}

#[sqlx::test]
async fn silences_are_created_listed_and_ended_with_the_token(pool: PgPool) {
    let app = app(&pool).await;
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/silences?namespace=shop&duration=4h",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = call(&app, "POST", "/api/v1/silences?duration=4h", Some("tok")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"parameter\":\"namespace\""), "{body}");
    let (s, body) = call(
        &app,
        "POST",
        "/api/v1/silences?namespace=shop&duration=forever",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = call(
        &app,
        "POST",
        "/api/v1/silences?namespace=shop&duration=4h&comment=deploy",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (_, body) = call(&app, "GET", "/api/v1/silences", None).await;
    assert!(body.contains("\"namespace\":\"shop\""), "{body}");
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, body) = call(&app, "GET", "/api/v1/silences", None).await;
    assert!(!body.contains("\"namespace\":\"shop\""), "{body}");
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn reports_are_built_on_demand_in_every_format(pool: PgPool) {
    let app = app(&pool).await;
    let (s, body) = call(&app, "GET", "/api/v1/report?format=json&period=7d", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
    let (s, body) = call(&app, "GET", "/api/v1/report?format=html", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<svg"), "no chart in the report");
    let (s, body) = call(&app, "GET", "/api/v1/report?scope=planet:earth", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"parameter\":\"scope\""), "{body}");
    let (s, body) = call(&app, "GET", "/api/v1/reports", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = call(&app, "GET", "/api/v1/reports/424242", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
