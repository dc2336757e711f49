//! `headroom report`: builds the capacity planning report of a scope and period from what the assessment
//! stored, keeps it in the `report` table, and writes it to a file or standard output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::{CliResult, Failure};
use crate::domain::Span;
use crate::report::{self, Format, ReportError, ReportOptions, Scope};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// fleet, cluster:NAME, namespace:NAME or team:VALUE (the value of the team label on workloads).
    #[arg(long, default_value = "fleet")]
    pub scope: String,
    /// The period the report looks back over (and ahead, for risks), e.g. 7d or 30d.
    #[arg(long, default_value = "30d")]
    pub period: String,
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The workload label key `team:` scopes select on.
    #[arg(long)]
    pub team_label: Option<String>,
    /// Report as of this Unix time instead of now (for reproducible reports and tests).
    #[arg(long)]
    pub now: Option<i64>,
    /// Do not keep the report in the database.
    #[arg(long)]
    pub no_store: bool,
}

pub fn run(settings: &crate::config::Settings, args: &Args) -> CliResult {
    let bad = |e: String| Failure::BadInput(anyhow::anyhow!(e));
    let scope: Scope = args.scope.parse().map_err(bad)?;
    let period: Span = args
        .period
        .parse()
        .map_err(|e: crate::domain::SpanError| bad(format!("--period: {e}")))?;
    let mut opts = ReportOptions::from_settings(settings);
    if let Some(label) = &args.team_label {
        opts.team_label = label.clone();
    }
    let now = args.now.unwrap_or_else(crate::domain::unix_now);
    let (data, content, id) = super::runtime()?.block_on(async {
        let store = super::connect(settings)?;
        let data = report::build_with(&store, &opts, &scope, period, now)
            .await
            .map_err(|e| match e {
                ReportError::EmptyScope(_) => Failure::BadInput(e.into()),
                e => Failure::Failed(anyhow::Error::from(e).context("while gathering the report")),
            })?;
        let content = report::render(&data, args.format);
        let id = if args.no_store {
            None
        } else {
            Some(
                store
                    .insert_report(
                        &scope.to_string(),
                        (data.period_start, data.period_end),
                        args.format.as_str(),
                        &content,
                        now,
                    )
                    .await
                    .context("while storing the report")?,
            )
        };
        Ok::<_, Failure>((data, content, id))
    })?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &content)
                .with_context(|| format!("while writing {}", path.display()))?;
            eprintln!(
                "report of {} ({} workloads, {} at risk) written to {}{}",
                data.scope,
                data.workloads,
                data.at_risk.len(),
                path.display(),
                id.map(|i| format!(", stored as report {i}"))
                    .unwrap_or_default()
            );
        }
        None => std::io::stdout()
            .lock()
            .write_all(&content)
            .context("while writing the report to standard output")?,
    }
    Ok(())
}
