//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no external assets) whose
//! print styles keep sections and charts whole, so printing to PDF gives the document people hand round.

use std::fmt::Write;

use super::data::ReportData;
use super::svg::{self, Band, Lane, Line};
use super::tables::{self, Table};
use super::text::{amount, chart_unit, date, datetime, html, in_chart_unit, money, percent};
use crate::domain::Resource;

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0 auto; max-width: 1100px; padding: 24px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: #59636e; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
.card .k { color: #59636e; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 20px; font-weight: 600; }
.card .s { color: #59636e; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
svg { display: block; margin: 4px 0 12px; }
svg .grid { stroke: #d0d7de; stroke-width: 1; }
svg .now { stroke: #59636e; stroke-dasharray: 2 3; }
svg .tick, svg .legend, svg .axis { font-size: 11px; fill: #59636e; }
svg .empty { font-size: 13px; fill: #59636e; text-anchor: middle; }
.note { background: #fff8c5; border: 1px solid #d4a72c66; padding: 6px 10px; border-radius: 6px; margin: 6px 0; }
.methods p { margin: 6px 0; color: #31363b; }
@page { size: A4; margin: 14mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  section, svg, table, .cards { break-inside: avoid; }
  .cards { grid-template-columns: repeat(4, 1fr); }
}
"#;

fn table(out: &mut String, t: &Table) {
    let _ = write!(out, "<h3>{}</h3>", html(t.title));
    if t.rows.is_empty() {
        let _ = write!(out, "<p class=\"meta\">{}</p>", html(t.empty));
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", html(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            let numeric = cell.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
            let _ = write!(
                out,
                "<td{}>{}</td>",
                if numeric { " class=\"n\"" } else { "" },
                html(cell)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if let Some(f) = &t.footer {
        let _ = write!(out, "<p class=\"meta\">{}</p>", html(f));
    }
}

fn card(out: &mut String, key: &str, value: &str, sub: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div><div class="s">{}</div></div>"#,
        html(key),
        html(value),
        html(sub)
    );
}

fn usage_chart(d: &ReportData, r: Resource) -> String {
    let pick = |p: &super::data::HistoryPoint| match r {
        Resource::Cpu => (p.cpu_used, p.cpu_requested),
        Resource::Memory => (p.memory_used, p.memory_requested),
    };
    let conv = |v: f64| in_chart_unit(r, v);
    let lines = [
        Line {
            label: "used",
            colour: svg::USED,
            points: d.history.iter().map(|p| (p.t, conv(pick(p).0))).collect(),
            dashed: false,
        },
        Line {
            label: "requested",
            colour: svg::REQUESTED,
            points: d.history.iter().map(|p| (p.t, conv(pick(p).1))).collect(),
            dashed: false,
        },
    ];
    // As far ahead as the period looks back (at least 30 days), so history keeps most of the width.
    let ahead = d.period_end + (d.period_end - d.period_start).max(30 * 86_400);
    let band = d.outlook(r).map(|o| Band {
        label: format!("forecast, median and {:.0} % interval", d.level * 100.0),
        points: (0..o.p50.len())
            .take_while(|i| o.start + *i as i64 * o.step <= ahead)
            .map(|i| {
                (
                    o.start + i as i64 * o.step,
                    conv(o.p50[i]),
                    conv(o.lower[i]),
                    conv(o.upper[i]),
                )
            })
            .collect(),
    });
    let title = format!(
        "{} usage against requests, with the forecast",
        r.to_string().to_uppercase()
    );
    svg::time_chart(&title, chart_unit(r), &lines, band.as_ref(), d.period_end)
}

/// Renders the whole page.
pub fn render(d: &ReportData) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let title = format!("Capacity report: {}", d.scope);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        html(&title)
    );
    let _ = write!(
        o,
        "<header><h1>{}</h1><p class=\"meta\">Period {} to {} · generated {} · {} workloads, {} containers</p></header>",
        html(&title),
        date(d.period_start),
        date(d.period_end),
        datetime(d.generated_at),
        d.workloads,
        d.containers
    );
    for n in &d.notes {
        let _ = write!(o, "<p class=\"note\">{}</p>", html(n));
    }

    o.push_str("<section><div class=\"cards\">");
    for r in Resource::ALL {
        if let Some(t) = d.totals(r) {
            card(
                &mut o,
                &format!("{r} requested"),
                &amount(r, t.requested),
                &format!(
                    "used {} · {} utilised",
                    amount(r, t.used_mean),
                    percent(t.utilisation)
                ),
            );
        }
    }
    card(
        &mut o,
        "cost per month",
        &money(&d.currency, d.cost.requested_per_month),
        &format!(
            "of which used {}",
            money(&d.currency, d.cost.used_per_month)
        ),
    );
    card(
        &mut o,
        "saving per month",
        &money(&d.currency, d.cost.saving_per_month),
        &format!("{} workloads at risk", d.workloads_at_risk()),
    );
    o.push_str("</div></section>");

    o.push_str("<section><h2>What we use and what we pay for</h2>");
    table(&mut o, &tables::totals(d));
    table(&mut o, &tables::cost(d));
    o.push_str("</section>");
    for r in Resource::ALL {
        let _ = write!(o, "<section>{}</section>", usage_chart(d, r));
    }

    o.push_str("<section><h2>What we will need</h2>");
    table(&mut o, &tables::projections(d));
    o.push_str("</section>");

    o.push_str("<section><h2>At risk</h2>");
    // The timeline shows what is still ahead; what is already over is counted and listed in the table.
    let over = d.at_risk.iter().filter(|r| r.eta.is_none()).count();
    let upcoming: Vec<&super::data::RiskItem> =
        d.at_risk.iter().filter(|r| r.eta.is_some()).collect();
    let lanes: Vec<Lane> = upcoming
        .iter()
        .take(30)
        .map(|r| Lane {
            label: tables::risk_label(r),
            eta: r.eta,
            early: r.eta_early,
            late: r.eta_late,
            limit: r.threshold_kind == "limit",
        })
        .collect();
    let horizon_end = upcoming
        .iter()
        .filter_map(|r| r.eta_late.or(r.eta))
        .max()
        .unwrap_or(d.period_end)
        .max(d.period_end + 86_400);
    let _ = write!(
        o,
        "<p>{over} container resources are already over their request or limit; {} are expected to reach one \
         before {}{}.</p>",
        upcoming.len(),
        date(d.period_end + (d.period_end - d.period_start)),
        if upcoming.len() > lanes.len() {
            format!(" (the first {} are drawn)", lanes.len())
        } else {
            String::new()
        }
    );
    o.push_str(&svg::timeline(
        "When each container reaches its request (amber) or limit (red): expected time and early-late range",
        &lanes,
        d.period_end,
        horizon_end,
    ));
    table(&mut o, &tables::at_risk(d));
    o.push_str("</section>");

    o.push_str("<section><h2>Savings</h2>");
    let bars: Vec<(String, f64)> = d
        .savings_by_namespace
        .iter()
        .take(15)
        .map(|n| (format!("{}/{}", n.cluster, n.namespace), n.money_per_month))
        .collect();
    let _ = write!(
        o,
        "<h3>Savings by namespace, per month ({})</h3>",
        html(&d.currency)
    );
    let currency = d.currency.clone();
    o.push_str(&svg::bar_chart("Savings by namespace", &bars, move |v| {
        money(&currency, v)
    }));
    table(&mut o, &tables::savings(d));
    o.push_str("</section>");

    o.push_str("<section><h2>How accurate the forecasts were</h2>");
    table(&mut o, &tables::backtest(d));
    table(&mut o, &tables::realised(d));
    o.push_str("</section>");

    o.push_str("<section class=\"methods\"><h2>Methods</h2>");
    for p in tables::methods(d) {
        let _ = write!(o, "<p>{}</p>", html(&p));
    }
    o.push_str("</section></body></html>\n");
    o
}
