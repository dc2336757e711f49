//! The daemon's periodic tasks. Each loop waits for its tick, a trigger or shutdown; a failed iteration
//! is logged with the task's name and the loop goes on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::AppState;
use crate::alert::{self, Deliverer};
use crate::assess::{self, AssessOptions};
use crate::domain::unix_now;
use crate::scrape::{RunOptions, SourceScraper};

pub fn spawn_all(state: AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(scrape_loop(state.clone(), stop.clone())),
        tokio::spawn(assess_loop(state.clone(), stop.clone())),
        tokio::spawn(alert_delivery_loop(state.clone(), stop.clone())),
        tokio::spawn(report_loop(state.clone(), stop.clone())),
        tokio::spawn(retention_loop(state, stop)),
    ]
}

/// Waits for the interval, a trigger or shutdown; `false` means stop.
async fn wait(
    interval: Duration,
    trigger: &tokio::sync::Notify,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => true,
        _ = trigger.notified() => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn scrape_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(state.settings.scrape.interval_secs);
    loop {
        for src in &state.settings.sources {
            if *stop.borrow() {
                return;
            }
            // One scraper per source across replicas: the holder of the source's advisory lock.
            let lock = match state
                .store
                .try_lock(&format!("headroom.scrape.{}", src.name))
                .await
            {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tracing::debug!(task = "scrape", source = %src.name, "another replica is scraping this source");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(task = "scrape", source = %src.name, error = %e, "cannot take the scrape lock");
                    continue;
                }
            };
            let result = async {
                let scraper = SourceScraper::new(
                    src,
                    &state.settings.scrape,
                    state.store.clone(),
                    Arc::clone(&state.metrics),
                )
                .await?;
                let opts = RunOptions {
                    end: unix_now() - state.settings.scrape.settle_secs as i64,
                    backfill_secs: state.settings.scrape.backfill_days as i64 * 86_400,
                    progress: false,
                };
                tokio::select! {
                    r = scraper.run(opts) => r.map(Some),
                    // Everything stored so far stays stored, and the marks say where to resume.
                    _ = stop.wait_for(|s| *s) => Ok(None),
                }
            }
            .await;
            match result {
                Ok(Some(r)) => tracing::info!(
                    task = "scrape", source = %r.source, queries = r.queries, samples_received = r.samples_received,
                    samples_written = r.samples_written, duration_ms = (r.seconds * 1e3) as u64, "scrape done"
                ),
                Ok(None) => {
                    tracing::info!(task = "scrape", source = %src.name, "scrape interrupted by shutdown")
                }
                Err(e) => {
                    tracing::warn!(task = "scrape", source = %src.name, error = %e, "scrape failed; will retry")
                }
            }
            if let Err(e) = lock.release().await {
                tracing::warn!(task = "scrape", error = %e, "releasing the scrape lock failed");
            }
        }
        if !wait(interval, &state.triggers.scrape, &mut stop).await {
            return;
        }
    }
}

async fn assess_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let interval = state.settings.assess.interval_secs as i64;
    let opts = match AssessOptions::from_settings(&state.settings) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(task = "assess", error = %e, "assessment disabled: bad policy");
            return;
        }
    };
    let me = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "headroom".into()),
        std::process::id()
    );
    // Give the first scrape a head start so the first assessment sees data.
    let mut triggered = tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(state.settings.assess.initial_delay_secs)) => false,
        _ = state.triggers.assess.notified() => true,
        _ = stop.wait_for(|s| *s) => return,
    };
    loop {
        // Replicas compute the same cycle from the clock and share its batches; a trigger starts a cycle
        // of its own.
        let t = unix_now();
        let cycle = if triggered {
            t
        } else {
            t.div_euclid(interval) * interval
        };
        let lease = state.settings.assess.lease_secs as i64;
        match assess::run_share(&state.store, &opts, cycle, &me, lease, &stop).await {
            Ok(r) => {
                tracing::info!(
                    task = "assess",
                    cycle,
                    containers = r.containers,
                    forecasts = r.forecasts,
                    not_enough_history = r.not_enough_history,
                    duration_ms = (r.seconds * 1e3) as u64,
                    "assessment share done"
                );
                // Alerts follow each assessment; their messages wait in the outbox.
                match alert::evaluate_and_enqueue(&state.store, &state.settings, unix_now()).await {
                    Ok(e) => tracing::info!(task = "alerts", firing = e.firing, "alerts evaluated"),
                    Err(e) => {
                        tracing::warn!(task = "alerts", error = %e, "alert evaluation failed; will retry")
                    }
                }
            }
            Err(e) => tracing::warn!(task = "assess", error = %e, "assessment failed; will retry"),
        }
        if *stop.borrow() {
            return;
        }
        // Sleep to the next cycle boundary, or until triggered.
        let next = (unix_now().div_euclid(interval) + 1) * interval;
        let wait_for = Duration::from_secs((next - unix_now()).max(1) as u64);
        triggered = tokio::select! {
            _ = tokio::time::sleep(wait_for) => false,
            _ = state.triggers.assess.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
    }
}

/// Sends what the outbox holds: every second while there is work, every 10 seconds otherwise.
async fn alert_delivery_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let deliverer = match Deliverer::from_settings(&state.settings.alerts) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(task = "alert_delivery", error = %e, "alert delivery disabled");
            return;
        }
    };
    let http = alert::http_client();
    loop {
        let busy = match deliverer.deliver_due(&state.store, &http, unix_now()).await {
            Ok(r) => {
                if r.busy() {
                    tracing::info!(
                        task = "alert_delivery",
                        delivered = r.delivered,
                        retried = r.retried,
                        failed = r.failed,
                        "alert delivery"
                    );
                }
                r.busy()
            }
            Err(e) => {
                tracing::warn!(task = "alert_delivery", error = %e, "alert delivery failed; will retry");
                false
            }
        };
        let pause = Duration::from_secs(if busy { 1 } else { 10 });
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Generates and keeps the scheduled report when the last stored one is older than the interval; one
/// replica at a time.
async fn report_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let r = &state.settings.reports;
    if r.interval_secs == 0 {
        return;
    }
    let scope: crate::report::Scope = match r.scope.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(task = "report", error = %e, "scheduled reports disabled");
            return;
        }
    };
    let period = crate::domain::Span::from_secs(r.period_days as i64 * 86_400);
    loop {
        // Checked every 10 minutes: cheap, and a restart neither skips nor repeats a report.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let due = match state.store.recent_reports(1).await {
            Ok(last) => last
                .first()
                .is_none_or(|l| l.generated_at + r.interval_secs as i64 <= unix_now()),
            Err(e) => {
                tracing::warn!(task = "report", error = %e, "cannot read stored reports");
                continue;
            }
        };
        if !due {
            continue;
        }
        let Ok(Some(lock)) = state.store.try_lock("headroom.report").await else {
            continue;
        };
        match crate::report::generate_and_store(
            &state.store,
            &state.settings,
            &scope,
            period,
            unix_now(),
        )
        .await
        {
            Ok(g) => {
                tracing::info!(
                    task = "report",
                    reports = g.ids.len(),
                    "scheduled report stored"
                );
                post_report_summary(&state, &g).await;
            }
            Err(e) => {
                tracing::warn!(task = "report", error = %e, "scheduled report failed; will retry")
            }
        }
        let _ = lock.release().await;
    }
}

/// Hourly: rolls raw samples up into hourly rollups, then drops raw and rollup partitions past their
/// retention (rolled up first, dropped whole). One replica at a time.
async fn retention_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let r = &state.settings.retention;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3_600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(Some(lock)) = state.store.try_lock("headroom.retention").await else {
            continue;
        };
        let t = unix_now();
        match state.store.rollup_pending(t).await {
            Ok(s) => tracing::info!(
                task = "retention",
                hours = s.hours_written,
                "rollups written"
            ),
            Err(e) => tracing::warn!(task = "retention", error = %e, "rollup failed; will retry"),
        }
        match state
            .store
            .apply_retention(t, r.raw_days, r.rollup_days)
            .await
        {
            Ok(rep) => tracing::info!(
                task = "retention",
                raw_dropped = rep.raw_partitions_dropped.len(),
                rollup_dropped = rep.rollup_partitions_dropped.len(),
                "retention applied"
            ),
            Err(e) => {
                tracing::warn!(task = "retention", error = %e, "retention failed; will retry")
            }
        }
        let _ = lock.release().await;
    }
}

/// Posts the scheduled report's summary, with a link to the stored HTML, to every Slack route through the
/// alert outbox (so it is delivered once, with the same retries as alerts).
async fn post_report_summary(state: &AppState, g: &crate::report::Generated) {
    let Some(id) = g.id(crate::report::Format::Html) else {
        return;
    };
    let link = format!(
        "{}/api/v1/reports/{id}",
        state.settings.server.public_url.trim_end_matches('/')
    );
    let payload = crate::report::slack_summary(&g.data, &link);
    for route in &state.settings.alerts.routes {
        if route.format != crate::config::PayloadFormat::Slack {
            continue;
        }
        let message = alert::Outgoing {
            fingerprint: format!("report-{id}"),
            route: route.name.clone(),
            format: route.format,
            payload: payload.clone(),
        };
        if let Err(e) = state.store.enqueue_alert(&message, unix_now()).await {
            tracing::warn!(task = "report", route = %route.name, error = %e, "report summary not queued");
        }
    }
}
