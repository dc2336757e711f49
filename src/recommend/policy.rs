//! Rightsizing policies: the declared knobs (quantiles, half-lives, margins, limits, OOM bump) that turn a
//! usage history into a request and a limit. Built-in policies live in `models/policies/*.toml`, compiled in,
//! and a file of the same shape can replace them.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

/// The built-in policies, by name, in the order `--policy` lists them.
pub const BUILTIN: [(&str, &str); 8] = [
    (
        "balanced",
        include_str!("../../models/policies/balanced.toml"),
    ),
    (
        "cautious",
        include_str!("../../models/policies/cautious.toml"),
    ),
    (
        "aggressive",
        include_str!("../../models/policies/aggressive.toml"),
    ),
    (
        "guaranteed",
        include_str!("../../models/policies/guaranteed.toml"),
    ),
    (
        "burstable",
        include_str!("../../models/policies/burstable.toml"),
    ),
    // Baselines other systems use, kept so the benchmark and anyone curious can run them.
    ("vpa", include_str!("../../models/policies/vpa.toml")),
    ("krr", include_str!("../../models/policies/krr.toml")),
    (
        "max-0.7",
        include_str!("../../models/policies/max-0.7.toml"),
    ),
];

/// Why a policy cannot be used; the text names the policy and the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown policy {name:?}: expected one of {known} or a path to a .toml policy file")]
    Unknown { name: String, known: String },
    #[error("policy {origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

/// A complete rightsizing policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    /// One sentence for service owners: what this policy trades for what.
    pub description: String,
    /// Below this much history the answer is "not enough history", not a guess.
    pub min_history_hours: f64,
    /// As above, in samples, so a long but nearly empty series is not trusted either.
    pub min_samples: usize,
    /// Growth the forecast expects within this horizon raises the request; beyond it, it is ignored.
    pub planning_horizon_days: f64,
    /// Cap on the growth adjustment, so one runaway forecast cannot multiply a request.
    pub max_growth_ratio: f64,
    pub cpu: ResourcePolicy,
    pub memory: ResourcePolicy,
}

/// What a rule looks at: every sample, or the peak of each window (memory must hold its peaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Samples,
    DailyPeaks,
}

/// The knobs for one resource.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicy {
    pub basis: Basis,
    /// The quantile of the (decayed) history the request covers.
    pub quantile: f64,
    /// Quantiles for the lower and upper bounds of the request.
    pub lower_quantile: f64,
    pub upper_quantile: f64,
    /// Half-life of sample weights; recent behaviour matters more. 0 weighs all history alike.
    pub half_life_hours: f64,
    /// History older than this is ignored.
    pub window_days: f64,
    /// Safety margin on top of the quantile (0.15 = +15 %).
    pub margin_ratio: f64,
    /// Request never goes below this multiple of the recent level (median of the last `recent_hours`),
    /// so a service whose load just rose is not sized for its quieter past.
    #[serde(default)]
    pub recent_floor_ratio: f64,
    #[serde(default = "default_recent_hours")]
    pub recent_hours: f64,
    /// When set, the request is the value minimising idle share + this cost x share of samples above it
    /// (see [`super::stats::cost_optimal`]), never below the `quantile` rule nor above `upper_quantile`.
    #[serde(default)]
    pub violation_cost: Option<f64>,
    /// When set, the margin is found per series by replaying this rule on the series' own history
    /// ([`super::calibrate`]) instead of `margin_ratio`, which stays the fallback for short histories.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// Ask the forecast engine for growth over the planning horizon and size for it.
    #[serde(default)]
    pub forecast_growth: bool,
    /// Limit as a multiple of the request; absent means no limit.
    #[serde(default)]
    pub limit_ratio: Option<f64>,
    /// The limit also covers the highest sample in the window times this (memory: never below the peak).
    #[serde(default)]
    pub limit_peak_ratio: Option<f64>,
    /// After an OOM kill: at least the memory at the kill times this ratio ...
    #[serde(default = "default_oom_ratio")]
    pub oom_bump_ratio: f64,
    /// ... and at least that memory plus this many MiB (when the unit is known).
    #[serde(default = "default_oom_mib")]
    pub oom_bump_mib: f64,
    /// CPU throttled in more than this share of periods means usage understates demand.
    #[serde(default = "default_throttle")]
    pub throttling_threshold: f64,
}

/// How a resource's margin is calibrated on the series' own history.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Share of the replayed samples allowed above the request (0: cover every one).
    #[serde(default)]
    pub target_exceedance: f64,
    /// Instead of a target share: the multiplier minimising idle share + this cost x share above, on
    /// the replayed samples (see [`super::calibrate`]).
    #[serde(default)]
    pub violation_cost: Option<f64>,
    /// Each replay sizes for this many days after its origin (half the history when shorter).
    pub horizon_days: f64,
    /// Replay origins, one a day apart back from the latest.
    pub origins: usize,
    /// An origin needs this much history before it.
    pub min_history_hours: f64,
    /// Bounds on the calibrated multiplier, so one odd replay cannot zero or explode a request.
    pub min_ratio: f64,
    pub max_ratio: f64,
}

fn default_recent_hours() -> f64 {
    24.0
}
fn default_oom_ratio() -> f64 {
    1.2
}
fn default_oom_mib() -> f64 {
    100.0
}
fn default_throttle() -> f64 {
    0.05
}

impl Policy {
    /// The built-in policy called `name`, or the policy file at `name` when it ends in `.toml`.
    pub fn load(name: &str) -> Result<Self, PolicyError> {
        if name.ends_with(".toml") {
            let text =
                std::fs::read_to_string(Path::new(name)).map_err(|e| PolicyError::Invalid {
                    origin: name.to_string(),
                    reason: e.to_string(),
                })?;
            return Self::parse(name, &text);
        }
        let (_, text) =
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| PolicyError::Unknown {
                    name: name.to_string(),
                    known: BUILTIN.map(|(n, _)| n).join(", "),
                })?;
        Self::parse(name, text)
    }

    /// Reads and validates a policy from TOML text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let policy: Policy = Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| invalid(e.to_string()))?;
        policy.validate().map_err(invalid)?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("`{key}` must be a positive number, got {v}"))
            }
        };
        positive("planning_horizon_days", self.planning_horizon_days)?;
        if !(self.max_growth_ratio.is_finite() && self.max_growth_ratio >= 1.0) {
            return Err("`max_growth_ratio` must be at least 1".into());
        }
        if !(self.min_history_hours.is_finite() && self.min_history_hours >= 0.0) {
            return Err("`min_history_hours` must not be negative".into());
        }
        for (section, r) in [("cpu", &self.cpu), ("memory", &self.memory)] {
            for (key, q) in [
                ("quantile", r.quantile),
                ("lower_quantile", r.lower_quantile),
                ("upper_quantile", r.upper_quantile),
            ] {
                if !(0.0..=1.0).contains(&q) {
                    return Err(format!(
                        "`{section}.{key}` must be between 0 and 1, got {q}"
                    ));
                }
            }
            if !(r.lower_quantile <= r.quantile && r.quantile <= r.upper_quantile) {
                return Err(format!(
                    "`{section}`: lower_quantile <= quantile <= upper_quantile must hold"
                ));
            }
            positive(&format!("{section}.window_days"), r.window_days)?;
            positive(&format!("{section}.recent_hours"), r.recent_hours)?;
            for (key, v) in [
                ("half_life_hours", r.half_life_hours),
                ("margin_ratio", r.margin_ratio),
                ("recent_floor_ratio", r.recent_floor_ratio),
                ("oom_bump_mib", r.oom_bump_mib),
                ("throttling_threshold", r.throttling_threshold),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("`{section}.{key}` must not be negative, got {v}"));
                }
            }
            if !(r.oom_bump_ratio.is_finite() && r.oom_bump_ratio >= 1.0) {
                return Err(format!("`{section}.oom_bump_ratio` must be at least 1"));
            }
            if let Some(c) = &r.calibration {
                if !(0.0..1.0).contains(&c.target_exceedance) {
                    return Err(format!(
                        "`{section}.calibration.target_exceedance` must be in [0, 1), got {}",
                        c.target_exceedance
                    ));
                }
                positive(
                    &format!("{section}.calibration.horizon_days"),
                    c.horizon_days,
                )?;
                if let Some(v) = c.violation_cost {
                    positive(&format!("{section}.calibration.violation_cost"), v)?;
                }
                if c.origins == 0 {
                    return Err(format!(
                        "`{section}.calibration.origins` must be at least 1"
                    ));
                }
                if !(c.min_history_hours.is_finite() && c.min_history_hours >= 0.0) {
                    return Err(format!(
                        "`{section}.calibration.min_history_hours` must not be negative"
                    ));
                }
                positive(&format!("{section}.calibration.min_ratio"), c.min_ratio)?;
                if !(c.max_ratio.is_finite() && c.max_ratio >= c.min_ratio) {
                    return Err(format!(
                        "`{section}.calibration.max_ratio` must be at least min_ratio"
                    ));
                }
            }
            if let Some(c) = r.violation_cost
                && !(c.is_finite() && c >= 0.0)
            {
                return Err(format!(
                    "`{section}.violation_cost` must not be negative, got {c}"
                ));
            }
            for (key, v) in [
                ("limit_ratio", r.limit_ratio),
                ("limit_peak_ratio", r.limit_peak_ratio),
            ] {
                if let Some(v) = v
                    && !(v >= 1.0 && v.is_finite())
                {
                    return Err(format!("`{section}.{key}` must be at least 1, got {v}"));
                }
            }
        }
        Ok(())
    }

    /// The policy for one workload from ordered `(pattern, policy)` rules, as a configuration lists them:
    /// the first pattern matching `namespace/workload` wins (a pattern without `/` matches the namespace
    /// alone; `*` matches any run of characters), and `balanced` applies when none matches. The policy is
    /// a built-in name or a `.toml` file, as for [`Policy::load`].
    pub fn for_workload(
        rules: &[(String, String)],
        namespace: &str,
        workload: &str,
    ) -> Result<Self, PolicyError> {
        let full = format!("{namespace}/{workload}");
        let chosen = rules
            .iter()
            .find(|(pattern, _)| {
                if pattern.contains('/') {
                    glob_match(pattern, &full)
                } else {
                    glob_match(pattern, namespace)
                }
            })
            .map_or("balanced", |(_, policy)| policy.as_str());
        Self::load(chosen)
    }

    /// The knobs for `resource`.
    pub fn for_resource(&self, resource: crate::domain::Resource) -> &ResourcePolicy {
        match resource {
            crate::domain::Resource::Cpu => &self.cpu,
            crate::domain::Resource::Memory => &self.memory,
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included).
/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn workload_policy_is_the_first_matching_rule_or_balanced() {
        let r = rules(&[
            ("prod/payments-*", "cautious"),
            ("prod", "guaranteed"),
            ("*/batch-*", "aggressive"),
        ]);
        let name = |ns: &str, w: &str| Policy::for_workload(&r, ns, w).unwrap().name;
        assert_eq!(name("prod", "payments-api"), "cautious");
        assert_eq!(name("prod", "web"), "guaranteed");
        assert_eq!(name("dev", "batch-nightly"), "aggressive");
        assert_eq!(name("dev", "web"), "balanced");
        assert_eq!(name("production", "web"), "balanced");
    }

    #[test]
    fn workload_rule_naming_an_unknown_policy_is_an_error() {
        let r = rules(&[("*", "reckless")]);
        assert!(Policy::for_workload(&r, "any", "thing").is_err());
    }

    #[test]
    fn glob_stars_match_any_run_including_none() {
        assert!(glob_match("a*b*c", "abc"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ab", "abc"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn every_builtin_policy_parses_and_carries_its_own_name() {
        for (name, _) in BUILTIN {
            let p = Policy::load(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name, name);
        }
    }

    #[test]
    fn unknown_policy_names_the_known_ones() {
        let err = Policy::load("reckless").unwrap_err().to_string();
        assert!(
            err.contains("reckless") && err.contains("balanced"),
            "{err}"
        );
    }

    #[test]
    fn policy_with_a_quantile_above_one_is_rejected_naming_the_key() {
        let text = BUILTIN[0].1.replacen("quantile = 0.", "quantile = 1.", 1);
        let err = Policy::parse("test", &text).unwrap_err().to_string();
        assert!(err.contains("quantile"), "{err}");
    }

    #[test]
    fn policy_with_an_unknown_key_is_rejected() {
        let text = format!("{}\nsurprise = 1\n", BUILTIN[0].1);
        assert!(Policy::parse("test", &text).is_err());
    }
}
