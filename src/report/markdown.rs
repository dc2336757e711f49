//! The Markdown report: the HTML report's tables and prose without the charts, for wikis and pull requests.

use std::fmt::Write;

use super::data::ReportData;
use super::tables::{self, Table};
use super::text::{date, datetime, md};

fn table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "### {}\n", t.title);
    if t.rows.is_empty() {
        let _ = writeln!(out, "{}\n", t.empty);
        return;
    }
    let _ = writeln!(
        out,
        "| {} |",
        t.headers
            .iter()
            .map(|h| md(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(t.headers.len()));
    for row in &t.rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out.push('\n');
    if let Some(f) = &t.footer {
        let _ = writeln!(out, "{f}\n");
    }
}

pub fn render(d: &ReportData) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Capacity report: {}\n", d.scope);
    let _ = writeln!(
        o,
        "Period {} to {}, generated {}. {} workloads, {} containers.\n",
        date(d.period_start),
        date(d.period_end),
        datetime(d.generated_at),
        d.workloads,
        d.containers
    );
    for n in &d.notes {
        let _ = writeln!(o, "> {}\n", md(n));
    }
    o.push_str("## What we use and what we pay for\n\n");
    table(&mut o, &tables::totals(d));
    table(&mut o, &tables::cost(d));
    o.push_str("## What we will need\n\n");
    table(&mut o, &tables::projections(d));
    o.push_str("## At risk\n\n");
    table(&mut o, &tables::at_risk(d));
    o.push_str("## Savings\n\n");
    table(&mut o, &tables::savings(d));
    o.push_str("## How accurate the forecasts were\n\n");
    table(&mut o, &tables::backtest(d));
    table(&mut o, &tables::realised(d));
    o.push_str("## Methods\n\n");
    for p in tables::methods(d) {
        let _ = writeln!(o, "{p}\n");
    }
    o
}
