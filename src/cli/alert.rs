//! `headroom alert test --route NAME`: queues a sample message for one route and delivers it through the
//! real path (outbox, claim, pacing, retries), so the wiring of a webhook can be checked end to end.

use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};

use super::{CliResult, Context, Failure, connect, runtime};
use crate::alert::{Deliverer, http_client, sample_message};
use crate::domain::Span;
use crate::domain::unix_now;

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a sample alert to one route through the outbox and report how it went.
    Test(TestArgs),
}

#[derive(Debug, ClapArgs)]
pub struct TestArgs {
    /// The route's `name` in `[[alerts.routes]]`.
    #[arg(long)]
    pub route: String,
    /// Give up waiting for the delivery after this long (the message stays queued for the daemon).
    #[arg(long, default_value = "2m")]
    pub wait: Span,
}

pub fn run(ctx: &Context, cmd: &AlertCommand) -> CliResult {
    match cmd {
        AlertCommand::Test(args) => test(ctx, args),
    }
}

fn test(ctx: &Context, args: &TestArgs) -> CliResult {
    let settings = ctx.settings()?;
    let all =
        Deliverer::from_settings(&settings.alerts).map_err(|e| Failure::BadInput(e.into()))?;
    let Some(deliverer) = all.only(&args.route) else {
        let names: Vec<&str> = all.route_names().collect();
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--route {:?}: no such route in [[alerts.routes]] (configured: {})",
            args.route,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let message = sample_message(&settings, &args.route, unix_now())
        .ok_or_else(|| anyhow::anyhow!("the sample alert did not render"))?;
    runtime()?.block_on(async {
        let store = connect(&settings)?;
        let id = store
            .enqueue_alert(&message, unix_now())
            .await
            .map_err(|e| anyhow::anyhow!(e).context("while queueing the test message"))?;
        println!("queued test message {id} for route {}", args.route);
        let http = http_client();
        let deadline = unix_now() + args.wait.secs();
        loop {
            let now = unix_now();
            deliverer
                .deliver_due(&store, &http, now)
                .await
                .map_err(|e| anyhow::anyhow!(e).context("while delivering"))?;
            let status = store
                .outbox_status(id)
                .await
                .map_err(|e| anyhow::anyhow!(e).context("while reading the outbox"))?
                .ok_or_else(|| anyhow::anyhow!("test message {id} disappeared from the outbox"))?;
            if status.delivered_at.is_some() {
                println!(
                    "delivered to route {} after {} attempt(s)",
                    args.route, status.attempts
                );
                return Ok(());
            }
            if status.failed_at.is_some() || now >= deadline {
                return Err(Failure::Failed(anyhow::anyhow!(
                    "route {}: not delivered after {} attempt(s): {}",
                    args.route,
                    status.attempts,
                    status
                        .last_error
                        .as_deref()
                        .unwrap_or("still queued behind older messages")
                )));
            }
            if let Some(e) = &status.last_error {
                eprintln!("attempt {} failed: {e}; retrying", status.attempts);
            }
            let wait = (status.next_attempt_at - now).clamp(1, (deadline - now).max(1));
            tokio::time::sleep(Duration::from_secs(wait as u64)).await;
        }
    })
}
