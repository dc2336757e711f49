//! The daemon's periodic tasks. Each loop waits for its tick, a trigger, a configuration change that
//! concerns it, or shutdown; a failed iteration is logged with the task's name and the loop goes on. Every
//! iteration reads the running configuration, so a reload (SIGHUP) applies at each loop's next step.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::AppState;
use crate::alert::{self, Deliverer};
use crate::assess::{self, AssessOptions};
use crate::config::{AlertSettings, Settings};
use crate::domain::unix_now;
use crate::scrape::{RunOptions, SourceScraper};
use crate::store::StoreError;

pub fn spawn_all(state: AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(scrape_loop(state.clone(), stop.clone())),
        tokio::spawn(assess_loop(state.clone(), stop.clone())),
        tokio::spawn(alert_delivery_loop(state.clone(), stop.clone())),
        tokio::spawn(report_loop(state.clone(), stop.clone())),
        tokio::spawn(super::detail::keep_in_sync(
            Arc::clone(&state.details),
            state.store.clone(),
            stop.clone(),
        )),
        tokio::spawn(retention_loop(state, stop)),
    ]
}

/// Resolves once the running configuration differs from `used` in what `pick` selects: at once when a
/// reload happened while the loop was busy, otherwise at the next such reload.
async fn reconfigured<T: PartialEq>(
    live: &mut watch::Receiver<Arc<Settings>>,
    used: &Settings,
    pick: impl Fn(&Settings) -> T,
) {
    let before = pick(used);
    loop {
        if pick(&live.borrow_and_update()) != before {
            return;
        }
        if live.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// First wait before scraping again after the database was unavailable; doubled up to `DB_RETRY_MAX`.
const DB_RETRY_FIRST: Duration = Duration::from_secs(1);
const DB_RETRY_MAX: Duration = Duration::from_secs(30);

fn database_unavailable(e: &crate::scrape::Error) -> bool {
    matches!(e, crate::scrape::Error::Store(StoreError::Unavailable(_)))
}

async fn scrape_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut live = state.live.subscribe();
    // After a database outage the scrape is retried within seconds, not at the next interval: it resumes
    // from the marks (which only move once a window is stored) and rewrites nothing already stored.
    let mut db_retry = DB_RETRY_FIRST;
    loop {
        let settings = state.current();
        let mut db_down = false;
        for src in &settings.sources {
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
                    db_down |= matches!(e, StoreError::Unavailable(_));
                    tracing::warn!(task = "scrape", source = %src.name, error = %e, "cannot take the scrape lock");
                    continue;
                }
            };
            let result = async {
                let scraper = SourceScraper::new(
                    src,
                    &settings.scrape,
                    state.store.clone(),
                    Arc::clone(&state.metrics),
                )
                .await?;
                let opts = RunOptions {
                    end: unix_now() - settings.scrape.settle_secs as i64,
                    backfill_secs: settings.scrape.backfill_days as i64 * 86_400,
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
                    db_down |= database_unavailable(&e);
                    tracing::warn!(task = "scrape", source = %src.name, error = %e, "scrape failed; will retry")
                }
            }
            if let Err(e) = lock.release().await {
                tracing::warn!(task = "scrape", error = %e, "releasing the scrape lock failed");
            }
        }
        let interval = Duration::from_secs(settings.scrape.interval_secs);
        let pause = if db_down {
            let pause = db_retry.min(interval);
            tracing::info!(
                task = "scrape",
                retry_in_secs = pause.as_secs(),
                "database unavailable; scraping again soon"
            );
            db_retry = (db_retry * 2).min(DB_RETRY_MAX);
            pause
        } else {
            db_retry = DB_RETRY_FIRST;
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = state.triggers.scrape.notified() => {}
            _ = reconfigured(&mut live, &settings, |s| (s.scrape.clone(), s.sources.clone())) => {
                tracing::info!(task = "scrape", "scrape settings or sources changed; scraping now");
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn assess_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut live = state.live.subscribe();
    let me = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "headroom".into()),
        std::process::id()
    );
    // Give the first scrape a head start so the first assessment sees data.
    let head_start = Duration::from_secs(state.current().assess.initial_delay_secs);
    let mut triggered = tokio::select! {
        _ = tokio::time::sleep(head_start) => false,
        _ = state.triggers.assess.notified() => true,
        _ = stop.wait_for(|s| *s) => return,
    };
    loop {
        let settings = state.current();
        // Replicas compute the same cycle from the clock and share its batches; a trigger starts a cycle
        // of its own.
        let interval = settings.assess.interval_secs as i64;
        let t = unix_now();
        let cycle = if triggered {
            t
        } else {
            t.div_euclid(interval) * interval
        };
        let lease = settings.assess.lease_secs as i64;
        match AssessOptions::from_settings(&settings) {
            Err(e) => {
                tracing::error!(task = "assess", error = %e, "assessment skipped: bad policy")
            }
            Ok(opts) => {
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
                        match alert::evaluate_and_enqueue(&state.store, &settings, unix_now()).await
                        {
                            Ok(e) => tracing::info!(
                                task = "alerts",
                                firing = e.firing,
                                "alerts evaluated"
                            ),
                            Err(e) => {
                                tracing::warn!(task = "alerts", error = %e, "alert evaluation failed; will retry")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(task = "assess", error = %e, "assessment failed; will retry")
                    }
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        // Sleep to the next cycle boundary of the running interval, or until triggered; a reload that
        // changes the interval moves the boundary.
        triggered = loop {
            let settings = state.current();
            let interval = settings.assess.interval_secs as i64;
            let next = (unix_now().div_euclid(interval) + 1) * interval;
            let wait_for = Duration::from_secs((next - unix_now()).max(1) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait_for) => break false,
                _ = state.triggers.assess.notified() => break true,
                _ = reconfigured(&mut live, &settings, |s| s.assess.interval_secs) => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        };
    }
}

/// Sends what the outbox holds: every second while there is work, every 10 seconds otherwise. The
/// routes are those of the running configuration.
async fn alert_delivery_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let http = alert::http_client();
    let mut routes: Option<(AlertSettings, Option<Deliverer>)> = None;
    loop {
        let settings = state.current();
        if routes
            .as_ref()
            .is_none_or(|(used, _)| *used != settings.alerts)
        {
            let deliverer = match Deliverer::from_settings(&settings.alerts) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(task = "alert_delivery", error = %e, "alert delivery disabled until the configuration is fixed");
                    None
                }
            };
            routes = Some((settings.alerts.clone(), deliverer));
        }
        let busy = match routes.as_ref().and_then(|(_, d)| d.as_ref()) {
            None => false,
            Some(deliverer) => match deliverer.deliver_due(&state.store, &http, unix_now()).await {
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
            },
        };
        let pause = Duration::from_secs(if busy { 1 } else { 10 });
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Every `reports.check_interval_secs`: generates and keeps the scheduled report when the last stored
/// one is older than the interval, then writes the files of stored reports still waiting for
/// `reports.directory`. One replica at a time.
async fn report_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut live = state.live.subscribe();
    loop {
        let settings = state.current();
        // A restart neither skips nor repeats a report: what is due is read from the stored ones.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(settings.reports.check_interval_secs)) => {}
            _ = reconfigured(&mut live, &settings, |s| s.reports.clone()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let settings = state.current();
        state.metrics.report_checks.inc();
        if settings.reports.interval_secs == 0 && settings.reports.directory.is_none() {
            continue;
        }
        let lock = match state.store.try_lock("headroom.report").await {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(task = "report", error = %e, "cannot take the report lock; will retry");
                continue;
            }
        };
        if settings.reports.interval_secs > 0 {
            generate_if_due(&state, &settings).await;
        }
        if let Some(dir) = &settings.reports.directory {
            export_files(&state, dir).await;
        }
        if let Err(e) = lock.release().await {
            tracing::warn!(task = "report", error = %e, "releasing the report lock failed");
        }
    }
}

/// Generates and keeps the scheduled report if the last stored one is older than the interval. Runs
/// under the report lock, so two replicas never both find it due.
async fn generate_if_due(state: &AppState, settings: &Settings) {
    let r = &settings.reports;
    let scope: crate::report::Scope = match r.scope.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(task = "report", error = %e, "scheduled report skipped: bad scope");
            return;
        }
    };
    let due = match state.store.recent_reports(1).await {
        Ok(last) => last
            .first()
            .is_none_or(|l| l.generated_at + r.interval_secs as i64 <= unix_now()),
        Err(e) => {
            tracing::warn!(task = "report", error = %e, "cannot read stored reports");
            return;
        }
    };
    if !due {
        return;
    }
    let period = crate::domain::Span::from_secs(r.period_days as i64 * 86_400);
    match crate::report::generate_and_store(&state.store, settings, &scope, period, unix_now())
        .await
    {
        Ok(g) => {
            tracing::info!(
                task = "report",
                reports = g.ids.len(),
                "scheduled report stored"
            );
            post_report_summary(state, settings, &g).await;
        }
        Err(e) => {
            tracing::warn!(task = "report", error = %e, "scheduled report failed; will retry")
        }
    }
}

/// Writes the files of stored reports waiting for `dir`. A failure leaves them waiting for the next check;
/// the reports themselves are safe in the database.
async fn export_files(state: &AppState, dir: &std::path::Path) {
    let out = crate::report::export::export_pending(&state.store, dir).await;
    if !out.written.is_empty() {
        state
            .metrics
            .report_files_written
            .inc_by(out.written.len() as u64);
        tracing::info!(
            task = "report",
            files = out.written.len(),
            directory = %dir.display(),
            "report files written"
        );
    }
    if let Some(e) = out.error {
        state.metrics.report_export_errors.inc();
        tracing::error!(
            task = "report",
            path = %e.path().unwrap_or(dir).display(),
            error = %e,
            "report file export failed; the report stays in the database and the export is retried at the next check"
        );
    }
}

/// Hourly: rolls raw samples up into hourly rollups, then drops raw and rollup partitions past their
/// retention (rolled up first, dropped whole). One replica at a time.
async fn retention_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3_600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let r = state.current().retention.clone();
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
        match state.store.prune_results(t, r.results_days).await {
            Ok(p) => tracing::info!(
                task = "retention",
                forecasts = p.forecasts,
                exhaustions = p.exhaustions,
                recommendations = p.recommendations,
                "old results deleted"
            ),
            Err(e) => {
                tracing::warn!(task = "retention", error = %e, "pruning results failed; will retry")
            }
        }
        let _ = lock.release().await;
    }
}

/// Posts the scheduled report's summary, with a link to the stored HTML, to every Slack route through the
/// alert outbox (so it is delivered once, with the same retries as alerts).
async fn post_report_summary(state: &AppState, settings: &Settings, g: &crate::report::Generated) {
    let Some(id) = g.id(crate::report::Format::Html) else {
        return;
    };
    let link = format!(
        "{}/api/v1/reports/{id}",
        settings.server.public_url.trim_end_matches('/')
    );
    let payload = crate::report::slack_summary(&g.data, &link);
    for route in &settings.alerts.routes {
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
