//! Renderer tests on a hand-made report: every format says the same numbers, the HTML is self-contained.

use super::*;
use crate::domain::Resource;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const NOW: i64 = 1_705_276_800;

fn sample() -> ReportData {
    let history: Vec<HistoryPoint> = (0..48)
        .map(|h| HistoryPoint {
            t: NOW - (48 - h) * 3_600,
            cpu_used: 10.0 + (h % 24) as f64 / 4.0,
            cpu_requested: 40.0,
            memory_used: 30.0 * GIB,
            memory_requested: 64.0 * GIB,
        })
        .collect();
    let outlook = |r: Resource, v: f64| Outlook {
        resource: r,
        model: "trend_daily".into(),
        backtest_mase: Some(0.7),
        start: NOW,
        step: 3_600,
        p50: vec![v; 24],
        lower: vec![v * 0.8; 24],
        upper: vec![v * 1.3; 24],
    };
    ReportData {
        scope: Scope::Namespace("pay<ments>".into()),
        team_label: "team".into(),
        period_start: NOW - 2 * 86_400,
        period_end: NOW,
        generated_at: NOW,
        currency: "EUR".into(),
        cpu_core_hour: 0.03,
        memory_gib_hour: 0.004,
        level: 0.8,
        clusters: 1,
        namespaces: 1,
        workloads: 3,
        containers: 4,
        assessed_containers: 4,
        resources: vec![
            ResourceTotals {
                resource: Resource::Cpu,
                unit: "cores",
                requested: 40.0,
                limits: 80.0,
                used_mean: 12.5,
                used_peak: 15.75,
                recommended: 20.0,
                utilisation: Some(12.5 / 40.0),
                peak_utilisation: Some(15.75 / 40.0),
            },
            ResourceTotals {
                resource: Resource::Memory,
                unit: "bytes",
                requested: 64.0 * GIB,
                limits: 96.0 * GIB,
                used_mean: 30.0 * GIB,
                used_peak: 30.0 * GIB,
                recommended: 40.0 * GIB,
                utilisation: Some(30.0 / 64.0),
                peak_utilisation: Some(30.0 / 64.0),
            },
        ],
        cost: CostTotals {
            requested_per_month: 1_063.0,
            used_per_month: 360.0,
            recommended_per_month: 555.0,
            saving_per_month: 508.0,
        },
        projections: vec![Projection {
            resource: Resource::Cpu,
            lead_days: 30,
            at: NOW + 30 * 86_400,
            total_p50: Some(13.0),
            total_lower: Some(11.0),
            total_upper: Some(16.0),
            peaks_p50: Some(18.0),
            peaks_upper_together: Some(25.0),
            peaks_upper_independent: Some(21.0),
            forecasts_reaching: 4,
            forecasts: 4,
        }],
        at_risk: vec![
            RiskItem {
                cluster: "prod".into(),
                namespace: "payments".into(),
                workload: "ledger".into(),
                container: "app".into(),
                resource: Resource::Memory,
                threshold_kind: "limit".into(),
                threshold: 512.0 * 1024.0 * 1024.0,
                status: "already_over".into(),
                eta: None,
                eta_early: None,
                eta_late: None,
                probability: 1.0,
            },
            RiskItem {
                cluster: "prod".into(),
                namespace: "payments".into(),
                workload: "api".into(),
                container: "app".into(),
                resource: Resource::Cpu,
                threshold_kind: "request".into(),
                threshold: 0.5,
                status: "within_horizon".into(),
                eta: Some(NOW + 5 * 86_400),
                eta_early: Some(NOW + 3 * 86_400),
                eta_late: Some(NOW + 9 * 86_400),
                probability: 0.7,
            },
        ],
        savings: vec![SavingItem {
            cluster: "prod".into(),
            namespace: "payments".into(),
            workload: "batch,worker".into(),
            cpu_cores: 20.0,
            memory_bytes: 24.0 * GIB,
            money_per_month: 508.0,
        }],
        savings_by_namespace: vec![NamespaceSaving {
            cluster: "prod".into(),
            namespace: "payments".into(),
            money_per_month: 508.0,
        }],
        accuracy: Accuracy {
            backtest_forecasts: 8,
            mase_p10: Some(0.4),
            mase_p50: Some(0.8),
            mase_p90: Some(1.4),
            share_better_than_naive: Some(0.625),
            models: vec![("trend_daily".into(), 6), ("seasonal_naive".into(), 2)],
            realised: vec![Realised {
                resource: Resource::Cpu,
                forecasts: 4,
                points: 200,
                median_age_days: 3.0,
                wape: 0.12,
                bias: -0.03,
                coverage: 0.78,
            }],
        },
        history,
        history_step: 3_600,
        outlook: vec![
            outlook(Resource::Cpu, 13.0),
            outlook(Resource::Memory, 31.0 * GIB),
        ],
        notes: vec!["A note & a caveat.".into()],
    }
}

fn text(d: &ReportData, f: Format) -> String {
    String::from_utf8(render(d, f)).unwrap()
}

#[test]
fn html_report_is_self_contained_and_escapes_names() {
    let h = text(&sample(), Format::Html);
    assert!(h.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(
            !h.contains(external),
            "the page refers to something outside it: {external}"
        );
    }
    assert_eq!(
        h.matches("<svg").count(),
        4,
        "two usage charts, the timeline and the savings bars"
    );
    assert!(h.contains("@media print"));
    assert!(h.contains("pay&lt;ments&gt;") && !h.contains("pay<ments>"));
    assert!(h.contains("already over"));
    assert!(h.contains("A note &amp; a caveat."));
}

#[test]
fn markdown_report_has_every_section_as_a_table() {
    let m = text(&sample(), Format::Markdown);
    for heading in [
        "## What we use and what we pay for",
        "## What we will need",
        "## At risk",
        "## Savings",
        "## How accurate the forecasts were",
        "## Methods",
    ] {
        assert!(m.contains(heading), "missing {heading}");
    }
    assert!(
        m.contains("| cpu | 40.0 cores | 80.0 cores | 12.5 cores |"),
        "{m}"
    );
    assert!(m.contains("EUR 508"));
}

#[test]
fn csv_report_is_one_table_whose_totals_are_the_data() {
    let d = sample();
    let c = text(&d, Format::Csv);
    let mut lines = c.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let mut requested_cpu = None;
    let mut fields_per_row = std::collections::BTreeSet::new();
    for line in lines {
        // The only quoted field in the sample is the workload "batch,worker".
        let unquoted = line.replace("\"batch,worker\"", "batch;worker");
        let f: Vec<&str> = unquoted.split(',').collect();
        fields_per_row.insert(f.len());
        if f[0] == "totals" && f[5] == "cpu" && f[6] == "requested" {
            requested_cpu = Some(f[8].parse::<f64>().unwrap());
        }
    }
    assert_eq!(fields_per_row.into_iter().collect::<Vec<_>>(), vec![10]);
    assert_eq!(requested_cpu, Some(40.0));
    assert!(c.contains("saving,prod,payments,\"batch,worker\",,,money,,508,EUR/month"));
    assert_eq!(
        c.lines().filter(|l| l.starts_with("history,")).count(),
        48 * 4
    );
}

#[test]
fn json_report_serialises_the_data_as_is() {
    let d = sample();
    let v: serde_json::Value = serde_json::from_slice(&render(&d, Format::Json)).unwrap();
    assert_eq!(v["scope"], "namespace:pay<ments>");
    assert_eq!(v["resources"][0]["resource"], "cpu");
    assert_eq!(v["resources"][0]["requested"], 40.0);
    assert_eq!(v["at_risk"].as_array().unwrap().len(), 2);
    assert_eq!(v["history"].as_array().unwrap().len(), 48);
}

#[test]
fn slack_summary_links_to_the_report_and_lists_risks() {
    let v = slack_summary(&sample(), "https://headroom.example/reports/7");
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let last = blocks.last().unwrap();
    assert_eq!(
        last["elements"][0]["url"],
        "https://headroom.example/reports/7"
    );
    let all = v.to_string();
    assert!(all.contains("payments/ledger/app"), "{all}");
    assert!(all.contains("already over"));
    assert!(v["text"].as_str().unwrap().contains("2 at risk"));
}
