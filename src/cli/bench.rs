//! `headroom bench`: measurements on real and synthetic data (accuracy, quality, speed), never asserted
//! in tests. Each benchmark lives in its own `bench_*.rs` file; this only dispatches.

use super::{CliResult, bench_rightsizing};

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Rightsizing quality on the real traces against VPA, KRR and max/0.7.
    Rightsizing(bench_rightsizing::Args),
}

pub fn run(which: &Bench) -> CliResult {
    match which {
        Bench::Rightsizing(a) => bench_rightsizing::run(a),
    }
}
