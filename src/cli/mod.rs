//! The `headroom` command line: argument parsing, exit codes and the hand-over to each command.
//!
//! Exit status: 0 on success, 2 when the input or configuration is at fault (a one-line error naming
//! what was wrong), 1 when something else failed (database down, a peer unreachable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alert;
mod bench;
mod bench_api;
mod bench_assess;
mod bench_forecast;
mod bench_ingest;
mod bench_rightsizing;
mod exhaustion;
mod forecast;
mod recommend;
mod report;
mod retention;

mod scrape;
mod simulate;

use crate::config::{Settings, Sources};
use crate::store::{ConnectOptions, Store};

#[derive(Debug, Parser)]
#[command(
    name = "headroom",
    version,
    about = "Capacity assessor for services on Kubernetes"
)]
pub struct Cli {
    /// Configuration file laid over the built-in defaults (instead of config/<HEADROOM_ENV>.toml).
    #[arg(long, global = true, env = "HEADROOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scrape loop, assessment loop, HTTP API and dashboard.
    Serve,
    /// Apply database migrations (a no-op when they are applied already).
    Migrate,
    /// Load and validate the configuration, print a summary without secrets, and exit.
    CheckConfig,
    /// Recommend requests and limits from a usage CSV (offline; no database).
    Recommend(recommend::Args),
    /// Forecast usage with calibrated intervals from a usage CSV (offline; no database).
    Forecast(forecast::Args),
    /// When usage reaches each capacity (request, limit, capacity) of a capacity CSV (offline).
    Exhaustion(exhaustion::Args),
    /// Benchmarks on real data: speed and accuracy, never asserted in tests.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Pull new samples from the configured Prometheus sources into Postgres once, then exit.
    Scrape(scrape::Args),
    /// Roll up what is due and drop raw and rollup partitions older than their retention windows, once.
    Retention(retention::Args),
    /// Write a simulated cluster's history (or a replayed trace) as OpenMetrics text for promtool.
    Simulate(simulate::SimulateArgs),
    /// Capacity planning report of a scope and period (HTML, Markdown, CSV or JSON), kept in the database.
    Report(report::Args),
    /// Alert tools: `alert test --route NAME` sends a sample message through the real delivery path.
    #[command(subcommand)]
    Alert(alert::AlertCommand),
}

/// An error with the exit status it deserves.
#[derive(Debug)]
pub enum Failure {
    /// The caller's input or configuration is wrong: exit status 2.
    BadInput(anyhow::Error),
    /// Anything else: exit status 1.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Failed(e.into())
    }
}

pub type CliResult = Result<(), Failure>;

/// Parses the command line, runs the command and turns its outcome into an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every command may need besides its own arguments.
pub struct Context {
    pub config: Option<PathBuf>,
    pub log_json: bool,
}

impl Context {
    /// Loads the layered configuration (any fault is the caller's: exit status 2) and starts logging.
    pub fn settings(&self) -> Result<Settings, Failure> {
        let settings = Settings::load(&Sources::from_env(self.config.clone()))
            .map_err(|e| Failure::BadInput(e.into()))?;
        let format = if self.log_json {
            crate::config::LogFormat::Json
        } else {
            settings.telemetry.format
        };
        crate::telemetry::init(format, &settings.telemetry.filter);
        Ok(settings)
    }
}

fn run(cli: Cli) -> CliResult {
    let ctx = Context {
        config: cli.config,
        log_json: cli.log_json,
    };
    match cli.command {
        Command::CheckConfig => {
            let settings = Settings::load(&Sources::from_env(ctx.config.clone()))
                .map_err(|e| Failure::BadInput(e.into()))?;
            print!("{}", summary(&settings));
            Ok(())
        }
        Command::Recommend(ref args) => recommend::run(&ctx.settings()?, args),
        Command::Bench(ref which) => bench::run(&ctx, which),
        Command::Forecast(ref args) => forecast::run(args),
        Command::Exhaustion(ref args) => exhaustion::run(args),
        Command::Simulate(ref args) => simulate::run(args),
        Command::Report(ref args) => report::run(&ctx.settings()?, args),
        Command::Alert(ref cmd) => alert::run(&ctx, cmd),
        Command::Migrate => {
            let settings = ctx.settings()?;
            runtime()?.block_on(async {
                let store = connect(&settings)?;
                let applied = store
                    .migrate()
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("while migrating the database"))?;
                println!("migrations applied: {applied}");
                Ok(())
            })
        }
        Command::Scrape(args) => scrape::run(ctx.settings()?, args),
        Command::Retention(ref args) => retention::run(&ctx.settings()?, args),
        Command::Serve => {
            let settings = ctx.settings()?;
            let sources = Sources::from_env(ctx.config.clone());
            runtime()?.block_on(crate::server::serve(settings, sources))?;
            Ok(())
        }
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Opens the pool described by the configuration (lazily: nothing is contacted yet).
pub fn connect(settings: &Settings) -> Result<Store, Failure> {
    let url = settings
        .database
        .url
        .resolve("database.url")
        .map_err(|e| Failure::BadInput(e.into()))?
        .ok_or_else(|| {
            Failure::BadInput(anyhow::anyhow!(
                "configuration key `database.url`: must not be empty"
            ))
        })?;
    Ok(Store::connect_lazy(&ConnectOptions {
        url: url.expose().to_string(),
        max_connections: settings.database.max_connections,
        acquire_timeout: std::time::Duration::from_secs(settings.database.acquire_timeout_secs),
    })?)
}

/// What `check-config` prints: the effective settings with every secret shown only as where it comes from.
fn summary(s: &Settings) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "configuration is valid");
    let _ = writeln!(out, "server.listen_addr = {}", s.server.listen_addr);
    let _ = writeln!(out, "server.public_url = {}", s.server.public_url);
    let _ = writeln!(
        out,
        "server.api_token = {}",
        secret_origin(&s.server.api_token)
    );
    let _ = writeln!(out, "database.url = {}", secret_origin(&s.database.url));
    let _ = writeln!(
        out,
        "scrape: every {}s at step {}s, backfill {}d",
        s.scrape.interval_secs, s.scrape.step_secs, s.scrape.backfill_days
    );
    let _ = writeln!(
        out,
        "assess: every {}s, horizon {}d, level {}",
        s.assess.interval_secs, s.assess.horizon_days, s.assess.forecast_level
    );
    for src in &s.sources {
        let auth = match (&src.bearer_token, &src.basic_auth) {
            (Some(t), _) => format!("bearer token {}", secret_origin(t)),
            (None, Some(b)) => {
                format!("basic auth {} / {}", b.username, secret_origin(&b.password))
            }
            (None, None) => "no auth".into(),
        };
        let _ = writeln!(out, "source {} = {} ({auth})", src.name, src.url);
    }
    out
}

fn secret_origin(r: &crate::config::SecretRef) -> String {
    use crate::config::SecretRef;
    match r {
        SecretRef::Empty => "(empty)".into(),
        SecretRef::Env(name) => format!("(from environment variable {name})"),
        SecretRef::File(path) => format!("(from file {})", path.display()),
        SecretRef::Literal(_) => "(set literally, hidden)".into(),
    }
}
