//! Capacity planning reports: what a scope uses, pays for and will need, what is at risk, what can be
//! saved and how accurate past forecasts were. `build` gathers a [`ReportData`] through the store (the
//! shell); everything else renders it (pure: HTML with inline SVG, Markdown, CSV, JSON, a Slack summary).
//! `export` writes stored reports as files to the configured directory.

mod build;
pub mod compute;
mod csv;
mod data;
pub mod export;
mod html;
mod markdown;
mod slack;
mod svg;
mod tables;
pub mod text;

pub use build::{Generated, ReportError, ReportOptions, build, build_with, generate_and_store};
pub use csv::HEADER as CSV_HEADER;
pub use data::{
    Accuracy, CostTotals, Format, HistoryPoint, NamespaceSaving, Outlook, Projection, Realised,
    ReportData, ResourceTotals, RiskItem, SavingItem, Scope,
};

/// Renders `data` in one format.
pub fn render(data: &ReportData, format: Format) -> Vec<u8> {
    match format {
        Format::Html => html::render(data).into_bytes(),
        Format::Markdown => markdown::render(data).into_bytes(),
        Format::Csv => csv::render(data).into_bytes(),
        Format::Json => {
            // Plain structs with string keys: serialising cannot fail (NaN becomes null).
            let mut out = serde_json::to_vec_pretty(data).expect("report data serialises");
            out.push(b'\n');
            out
        }
    }
}

/// The Block Kit message the daemon posts when a scheduled report is ready; `link` opens the report.
pub fn slack_summary(data: &ReportData, link: &str) -> serde_json::Value {
    slack::summary(data, link)
}

#[cfg(test)]
mod tests;
