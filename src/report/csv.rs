//! The CSV report: one long table with a `section` column, every number raw in base units (cores,
//! bytes, currency per month, ratios, Unix seconds), so a spreadsheet can filter and pivot it.
//! Columns: `section,cluster,namespace,workload,container,resource,metric,time_unix,value,unit`.

use std::fmt::Write;

use super::data::ReportData;

pub const HEADER: &str =
    "section,cluster,namespace,workload,container,resource,metric,time_unix,value,unit";

/// Quotes a field when it holds a separator, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[derive(Default, Clone, Copy)]
struct Who<'a> {
    cluster: &'a str,
    namespace: &'a str,
    workload: &'a str,
    container: &'a str,
    resource: &'a str,
}

struct Out(String);

impl Out {
    fn row(
        &mut self,
        section: &str,
        who: Who,
        metric: &str,
        time: Option<i64>,
        value: f64,
        unit: &str,
    ) {
        if !value.is_finite() {
            return;
        }
        let _ = writeln!(
            self.0,
            "{},{},{},{},{},{},{},{},{},{}",
            section,
            field(who.cluster),
            field(who.namespace),
            field(who.workload),
            field(who.container),
            who.resource,
            metric,
            time.map(|t| t.to_string()).unwrap_or_default(),
            value,
            field(unit)
        );
    }
}

pub fn render(d: &ReportData) -> String {
    let mut o = Out(String::with_capacity(64 * 1024));
    let _ = writeln!(o.0, "{HEADER}");
    let none = Who::default();
    for (metric, v) in [
        ("clusters", d.clusters),
        ("namespaces", d.namespaces),
        ("workloads", d.workloads),
        ("containers", d.containers),
        ("assessed_containers", d.assessed_containers),
        ("at_risk", d.at_risk.len()),
    ] {
        o.row("summary", none, metric, None, v as f64, "count");
    }
    o.row(
        "summary",
        none,
        "period_start",
        Some(d.period_start),
        0.0,
        "",
    );
    o.row("summary", none, "period_end", Some(d.period_end), 0.0, "");
    o.row("summary", none, "level", None, d.level, "ratio");

    for t in &d.resources {
        let who = Who {
            resource: t.resource.as_str(),
            ..none
        };
        for (metric, v) in [
            ("requested", t.requested),
            ("limits", t.limits),
            ("used_mean", t.used_mean),
            ("used_peak", t.used_peak),
            ("recommended", t.recommended),
        ] {
            o.row("totals", who, metric, None, v, t.unit);
        }
        for (metric, v) in [
            ("utilisation", t.utilisation),
            ("peak_utilisation", t.peak_utilisation),
        ] {
            if let Some(v) = v {
                o.row("totals", who, metric, None, v, "ratio");
            }
        }
    }
    let money_unit = format!("{}/month", d.currency);
    for (metric, v) in [
        ("requested", d.cost.requested_per_month),
        ("used", d.cost.used_per_month),
        ("recommended", d.cost.recommended_per_month),
        ("saving", d.cost.saving_per_month),
    ] {
        o.row("cost", none, metric, None, v, &money_unit);
    }

    for p in &d.projections {
        let who = Who {
            resource: p.resource.as_str(),
            ..none
        };
        let unit = unit_of(p.resource);
        for (metric, v) in [
            ("total_p50", p.total_p50),
            ("total_lower", p.total_lower),
            ("total_upper", p.total_upper),
            ("peaks_p50", p.peaks_p50),
            ("peaks_upper_together", p.peaks_upper_together),
            ("peaks_upper_independent", p.peaks_upper_independent),
        ] {
            if let Some(v) = v {
                o.row("projection", who, metric, Some(p.at), v, unit);
            }
        }
        o.row(
            "projection",
            who,
            "lead_days",
            Some(p.at),
            p.lead_days as f64,
            "days",
        );
        o.row(
            "projection",
            who,
            "forecasts_reaching",
            Some(p.at),
            p.forecasts_reaching as f64,
            "count",
        );
    }

    for r in &d.at_risk {
        let who = Who {
            cluster: &r.cluster,
            namespace: &r.namespace,
            workload: &r.workload,
            container: &r.container,
            resource: r.resource.as_str(),
        };
        let kind = &r.threshold_kind;
        o.row(
            "at_risk",
            who,
            &format!("{kind}_threshold"),
            None,
            r.threshold,
            unit_of(r.resource),
        );
        o.row(
            "at_risk",
            who,
            &format!("{kind}_{}", r.status),
            r.eta,
            r.probability,
            "probability",
        );
    }

    for s in &d.savings {
        let who = Who {
            cluster: &s.cluster,
            namespace: &s.namespace,
            workload: &s.workload,
            ..none
        };
        o.row(
            "saving",
            Who {
                resource: "cpu",
                ..who
            },
            "freed",
            None,
            s.cpu_cores,
            "cores",
        );
        o.row(
            "saving",
            Who {
                resource: "memory",
                ..who
            },
            "freed",
            None,
            s.memory_bytes,
            "bytes",
        );
        o.row("saving", who, "money", None, s.money_per_month, &money_unit);
    }
    for n in &d.savings_by_namespace {
        let who = Who {
            cluster: &n.cluster,
            namespace: &n.namespace,
            ..none
        };
        o.row(
            "namespace_saving",
            who,
            "money",
            None,
            n.money_per_month,
            &money_unit,
        );
    }

    let a = &d.accuracy;
    o.row(
        "accuracy",
        none,
        "backtest_forecasts",
        None,
        a.backtest_forecasts as f64,
        "count",
    );
    for (metric, v) in [
        ("mase_p10", a.mase_p10),
        ("mase_p50", a.mase_p50),
        ("mase_p90", a.mase_p90),
        ("share_better_than_naive", a.share_better_than_naive),
    ] {
        if let Some(v) = v {
            o.row("accuracy", none, metric, None, v, "ratio");
        }
    }
    for r in &a.realised {
        let who = Who {
            resource: r.resource.as_str(),
            ..none
        };
        o.row(
            "accuracy",
            who,
            "realised_forecasts",
            None,
            r.forecasts as f64,
            "count",
        );
        o.row(
            "accuracy",
            who,
            "realised_points",
            None,
            r.points as f64,
            "count",
        );
        o.row(
            "accuracy",
            who,
            "realised_median_age",
            None,
            r.median_age_days,
            "days",
        );
        o.row("accuracy", who, "realised_wape", None, r.wape, "ratio");
        o.row("accuracy", who, "realised_bias", None, r.bias, "ratio");
        o.row(
            "accuracy",
            who,
            "realised_coverage",
            None,
            r.coverage,
            "ratio",
        );
    }

    for p in &d.history {
        for (res, metric, v, unit) in [
            ("cpu", "used", p.cpu_used, "cores"),
            ("cpu", "requested", p.cpu_requested, "cores"),
            ("memory", "used", p.memory_used, "bytes"),
            ("memory", "requested", p.memory_requested, "bytes"),
        ] {
            o.row(
                "history",
                Who {
                    resource: res,
                    ..none
                },
                metric,
                Some(p.t),
                v,
                unit,
            );
        }
    }
    for f in &d.outlook {
        let who = Who {
            resource: f.resource.as_str(),
            ..none
        };
        for i in 0..f.p50.len() {
            let t = Some(f.start + i as i64 * f.step);
            o.row("outlook", who, "p50", t, f.p50[i], unit_of(f.resource));
            o.row("outlook", who, "lower", t, f.lower[i], unit_of(f.resource));
            o.row("outlook", who, "upper", t, f.upper[i], unit_of(f.resource));
        }
    }
    o.0
}

fn unit_of(r: crate::domain::Resource) -> &'static str {
    match r {
        crate::domain::Resource::Cpu => "cores",
        crate::domain::Resource::Memory => "bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_or_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
