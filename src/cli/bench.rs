//! `headroom bench`: measurements on real and synthetic data (accuracy, quality, speed), never asserted
//! in tests. Each benchmark lives in its own `bench_*.rs` file; this only dispatches.

use super::{
    CliResult, Context, bench_api, bench_assess, bench_forecast, bench_ingest, bench_rightsizing,
};

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Rightsizing quality on the real traces against VPA, KRR and max/0.7.
    Rightsizing(bench_rightsizing::Args),
    /// Forecast throughput: N synthetic series with backtesting on all cores.
    Forecast(bench_forecast::ForecastArgs),
    /// Forecast accuracy on the traces: last daily origins per series, 24 h ahead, MASE and coverage.
    Accuracy(bench_forecast::AccuracyArgs),
    /// Exhaustion on synthetic leaks, growth and flat series, against a 6 h predict_linear.
    Exhaustion(bench_forecast::ExhaustionArgs),
    /// Load a simulated cluster into the configured database (and assess it), timing both.
    Seed(bench_api::SeedArgs),
    /// One full assessment of the configured database: time, stages and peak memory.
    Assess(bench_assess::AssessArgs),
    /// Scrape ingest speed against a raw binary COPY, and bytes per sample at rest.
    Ingest(bench_ingest::IngestArgs),
}

pub fn run(ctx: &Context, which: &Bench) -> CliResult {
    match which {
        Bench::Rightsizing(a) => bench_rightsizing::run(a),
        Bench::Forecast(a) => bench_forecast::run_forecast(a),
        Bench::Accuracy(a) => bench_forecast::run_accuracy(a),
        Bench::Exhaustion(a) => bench_forecast::run_exhaustion(a),
        Bench::Ingest(a) => bench_ingest::run(a),
        Bench::Seed(a) => bench_api::run(ctx, a),
        Bench::Assess(a) => bench_assess::run(ctx, a),
    }
}
