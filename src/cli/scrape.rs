//! `headroom scrape`: one pass of the scraper over every configured source (or one), then exit; with
//! `--federate`, one read of each source's live state instead.

use std::sync::Arc;

use anyhow::Context;

use super::{CliResult, Failure};
use crate::config::Settings;
use crate::domain::Span;
use crate::metrics::Metrics;
use crate::scrape::{RunOptions, SourceScraper};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source (by its configured name).
    #[arg(long)]
    pub source: Option<String>,
    /// History to fetch for jobs that have never been scraped, e.g. 30d (default: scrape.backfill_days).
    #[arg(long)]
    pub backfill: Option<Span>,
    /// Scrape up to this Unix time instead of now (minus scrape.settle_secs).
    #[arg(long)]
    pub end: Option<i64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Read only the live state (current requests, limits, ownership) through /federate, not history.
    #[arg(long, conflicts_with_all = ["backfill", "end"])]
    pub federate: bool,
}

pub fn run(settings: Settings, args: Args) -> CliResult {
    let sources: Vec<_> = settings
        .sources
        .iter()
        .filter(|s| args.source.as_ref().is_none_or(|n| &s.name == n))
        .cloned()
        .collect();
    if sources.is_empty() {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "no configured source named {:?}",
            args.source.unwrap_or_default()
        )));
    }
    let now = crate::domain::unix_now();
    let opts = RunOptions {
        end: args.end.unwrap_or(now - settings.scrape.settle_secs as i64),
        backfill_secs: args
            .backfill
            .map(Span::secs)
            .unwrap_or(settings.scrape.backfill_days as i64 * 86_400),
        progress: !args.quiet,
    };
    super::runtime()?.block_on(async {
        // The pool needs the runtime, so it is made inside it.
        let store = super::connect(&settings)?;
        store.migrate().await.context("while migrating the database")?;
        let metrics = Metrics::new();
        // Sources are independent clusters: scrape them at once (each client bounds its own queries in
        // flight). One progress bar per terminal line only works for one source.
        let progress = opts.progress && sources.len() == 1;
        let runs = sources.iter().map(|src| {
            let (store, metrics, scrape) = (store.clone(), Arc::clone(&metrics), &settings.scrape);
            async move {
                let scraper = Arc::new(SourceScraper::new(src, scrape, store, metrics).await?);
                if args.federate {
                    let r = scraper.run_live().await?;
                    return Ok(format!(
                        "source {}: /federate: {} series read, {} pods owned, {} containers, {} samples stored, {:.1}s",
                        r.source, r.series_read, r.pods, r.containers, r.samples_written, r.seconds
                    ));
                }
                let r = scraper
                    .run_spawned(RunOptions { progress, ..opts })
                    .await?;
                Ok::<_, crate::scrape::Error>(format!(
                    "source {}: {} queries, {} samples received, {} samples stored, {} series, {:.1}s ({:.0} samples/s)",
                    r.source,
                    r.queries,
                    r.samples_received,
                    r.samples_written,
                    r.series,
                    r.seconds,
                    r.samples_received as f64 / r.seconds.max(1e-3)
                ))
            }
        });
        let mut failed = 0;
        for (src, result) in sources.iter().zip(futures_util::future::join_all(runs).await) {
            match result {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("source {}: {e}", src.name);
                }
            }
        }
        if failed > 0 {
            return Err(Failure::Failed(anyhow::anyhow!(
                "{failed} of {} sources failed; what was stored before the failure is kept and the next scrape resumes there",
                sources.len()
            )));
        }
        Ok(())
    })
}
