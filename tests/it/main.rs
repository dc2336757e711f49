//! The one integration-test binary (one binary keeps link time down). Tests that need Postgres use
//! `#[sqlx::test]`, which creates a fresh database per test from `DATABASE_URL` and drops it afterwards.

mod alerts;
mod api;
mod api_ops;
mod assess;
mod config;
mod daemon;
mod dashboard;
mod offline_forecast;
mod offline_recommend;
mod postgres_restart;
mod prom;
mod reload;
mod remote_read;
mod replicas;
mod report;
mod report_export;
mod retention;
mod scrape;
mod serve;
mod simulate;
mod store;
