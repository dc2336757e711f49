//! What a configuration reload changes: the keys the running daemon applies at once, and the keys that
//! keep their running value until a restart (what the process bound or opened at start-up).

use super::Settings;

/// The outcome of comparing the running configuration with a newly loaded, valid one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Keys or sections whose new values take effect at once.
    pub applied: Vec<&'static str>,
    /// Keys whose new values only a restart applies; their running values stay in effect until then.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

impl Settings {
    /// Compares the running settings with `new` and returns what to run with from now on: `new`, except
    /// that keys which need a restart keep their running values, so the live settings always say what is
    /// in effect.
    pub fn reloaded(&self, mut new: Settings) -> (Settings, ReloadPlan) {
        let mut plan = ReloadPlan::default();
        let mut restart = |key: &'static str, changed: bool| {
            if changed {
                plan.needs_restart.push(key);
            }
        };
        let (old_srv, new_srv) = (&self.server, &new.server);
        restart(
            "server.listen_addr",
            old_srv.listen_addr != new_srv.listen_addr,
        );
        restart("server.api_token", old_srv.api_token != new_srv.api_token);
        restart(
            "server.protect_reads",
            old_srv.protect_reads != new_srv.protect_reads,
        );
        restart("database.url", self.database.url != new.database.url);
        restart(
            "database.max_connections",
            self.database.max_connections != new.database.max_connections,
        );
        restart(
            "database.acquire_timeout_secs",
            self.database.acquire_timeout_secs != new.database.acquire_timeout_secs,
        );
        restart(
            "telemetry.format",
            self.telemetry.format != new.telemetry.format,
        );
        // Every other key of `server` is read once at start-up too.
        let public_url = new.server.public_url.clone();
        let mut same_server = self.server.clone();
        same_server.public_url = public_url.clone();
        let mut probe = new.server.clone();
        probe.listen_addr = same_server.listen_addr.clone();
        probe.api_token = same_server.api_token.clone();
        probe.protect_reads = same_server.protect_reads;
        restart("server (other keys)", probe != same_server);
        new.server = same_server;
        new.database = self.database.clone();
        new.telemetry.format = self.telemetry.format;

        let mut apply = |key: &'static str, changed: bool| {
            if changed {
                plan.applied.push(key);
            }
        };
        apply("server.public_url", self.server.public_url != public_url);
        apply(
            "telemetry.filter",
            self.telemetry.filter != new.telemetry.filter,
        );
        apply("scrape", self.scrape != new.scrape);
        apply("sources", self.sources != new.sources);
        apply("assess", self.assess != new.assess);
        apply("retention", self.retention != new.retention);
        apply("pricing", self.pricing != new.pricing);
        apply("alerts", self.alerts != new.alerts);
        apply("reports", self.reports != new.reports);
        (new, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(overlay: &str) -> Settings {
        Settings::from_toml(overlay).unwrap()
    }

    #[test]
    fn live_keys_are_applied_and_start_up_keys_keep_their_running_value() {
        let old = settings("[scrape]\ninterval_secs = 60\n");
        let new = settings(
            "[scrape]\ninterval_secs = 30\n[server]\nlisten_addr = \"127.0.0.1:9999\"\n\
             [database]\nmax_connections = 3\n[reports]\nperiod_days = 7\n",
        );
        let (running, plan) = old.reloaded(new);
        assert_eq!(plan.applied, ["scrape", "reports"]);
        assert_eq!(
            plan.needs_restart,
            ["server.listen_addr", "database.max_connections"]
        );
        assert_eq!(running.scrape.interval_secs, 30);
        assert_eq!(running.reports.period_days, 7);
        assert_eq!(running.server.listen_addr, old.server.listen_addr);
        assert_eq!(running.database.max_connections, 10);
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let old = settings("");
        let (running, plan) = old.reloaded(settings(""));
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(running, old);
    }
}
