//! Headroom: a capacity assessor for services on Kubernetes. It keeps each workload's CPU and memory
//! history in Postgres, forecasts usage with calibrated intervals, predicts when usage reaches requests and
//! limits, and recommends right-sized requests and limits.
//!
//! # Layout
//! Pure cores (no tokio, no sqlx; plain data in, plain data out):
//! - [`domain`]: durations and resources, parsed once at the edge.
//! - [`store::codec`]: the compact encoding of sample chunks.
//! - [`recommend`]: rightsizing: requests, limits, bounds, risk and saving from a history and a policy.
//! - [`forecast`]: resampling, candidate models chosen by backtest, calibrated intervals, exhaustion.
//! - [`offline`]: the CSV files of the offline commands (readers naming file/line/column, CSV/JSON writer).
//! - [`simulate`]: a seeded simulated cluster (and trace replay) written as OpenMetrics for promtool.
//! - [`report`]: capacity planning reports rendered as HTML (inline SVG), Markdown, CSV, JSON and Slack
//!   (its `build` is the shell that gathers the data through the store).
//!
//! Shells (I/O around the cores):
//! - [`config`]: layered configuration, validation that names the key, secrets.
//! - [`store`]: every SQL statement; migrations, partitions, idempotent sample writes.
//! - [`telemetry`]: the tracing subscriber (human or JSON).
//! - [`server`]: the HTTP API and the daemon's tasks.
//! - [`alert`]: alert rules, grouping and rendering (pure), state and outbox, webhook delivery.
//! - [`cli`]: the `headroom` command line.

pub mod alert;
pub mod assess;
pub mod cli;
pub mod config;
pub mod domain;
pub mod forecast;
pub mod metrics;
pub mod offline;
pub mod recommend;
pub mod report;
pub mod scrape;
pub mod seed;
pub mod server;
pub mod simulate;
pub mod store;
pub mod telemetry;
