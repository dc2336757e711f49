//! Hand-written SVG charts for the HTML report: usage against requests with the forecast band, savings
//! by namespace, and the at-risk timeline. Small, dependency-free, and legible when printed in grey.

use std::fmt::Write;

use super::text::{date, html, number};

const W: f64 = 760.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;

pub const USED: &str = "#1f6feb";
pub const REQUESTED: &str = "#9a6700";
const FORECAST: &str = "#8250df";
const RISK: &str = "#cf222e";
const WARN: &str = "#bf8700";

/// A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten, at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * p)
}

/// Times of the x axis ticks: midnights, spaced so about six fit.
fn day_ticks(from: i64, to: i64) -> Vec<i64> {
    let days = ((to - from) / 86_400).max(1);
    let every = [1, 2, 7, 14, 30, 60, 90]
        .into_iter()
        .find(|d| days / d <= 7)
        .unwrap_or(180);
    let first = (from.div_euclid(86_400) + 1) * 86_400;
    (0..)
        .map(|k| first + k * every * 86_400)
        .take_while(|t| *t <= to)
        .collect()
}

/// One series of a time chart.
pub struct Line<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub points: Vec<(i64, f64)>,
    pub dashed: bool,
}

/// The forecast band of a time chart.
pub struct Band {
    pub label: String,
    pub points: Vec<(i64, f64, f64, f64)>,
}

/// Usage and requests over time, and the forecast (median line in a shaded band) after `now`.
pub fn time_chart(
    title: &str,
    unit: &str,
    lines: &[Line],
    band: Option<&Band>,
    now: i64,
) -> String {
    let h = 260.0;
    let (top, bottom) = (28.0, 36.0);
    let ts = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(band.into_iter().flat_map(|b| b.points.iter().map(|p| p.0)));
    let (t0, t1) = ts.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = html(title)
    );
    if t0 >= t1 {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="empty">no data in the period</text></svg>"#,
            W / 2.0,
            h / 2.0
        );
        return s;
    }
    let vmax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(band.into_iter().flat_map(|b| b.points.iter().map(|p| p.3)))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let ymax = nice_ceiling(vmax * 1.05);
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| top + (1.0 - v / ymax) * (h - top - bottom);
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            number(v),
            y = y(v)
        );
    }
    for t in day_ticks(t0, t1) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
            x(t),
            h - bottom + 16.0,
            &date(t)[5..]
        );
    }
    let _ = write!(
        s,
        r#"<text x="8" y="16" class="axis">{}</text>"#,
        html(unit)
    );
    if let Some(b) = band.filter(|b| !b.points.is_empty()) {
        let mut d = String::new();
        for (i, p) in b.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(p.0),
                y(p.3)
            );
        }
        for p in b.points.iter().rev() {
            let _ = write!(d, " L{:.1},{:.1}", x(p.0), y(p.2));
        }
        let _ = write!(
            s,
            r#"<path d="{d} Z" fill="{FORECAST}" fill-opacity="0.18" stroke="none"/>"#
        );
        let _ = write!(
            s,
            r#"{}"#,
            polyline(b.points.iter().map(|p| (x(p.0), y(p.1))), FORECAST, true)
        );
    }
    if now > t0 && now < t1 {
        let _ = write!(
            s,
            r#"<line x1="{n:.1}" x2="{n:.1}" y1="{top}" y2="{}" class="now"/><text x="{:.1}" y="{}" class="tick">now</text>"#,
            h - bottom,
            x(now) + 4.0,
            top + 10.0,
            n = x(now)
        );
    }
    for l in lines {
        s.push_str(&polyline(
            l.points.iter().map(|p| (x(p.0), y(p.1))),
            l.colour,
            l.dashed,
        ));
    }
    // Legend along the top.
    let mut lx = LEFT;
    let entries = lines
        .iter()
        .map(|l| (l.label.to_string(), l.colour))
        .chain(band.map(|b| (b.label.clone(), FORECAST)));
    for (label, colour) in entries {
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="8" width="12" height="4" fill="{colour}"/><text x="{}" y="14" class="legend">{}</text>"#,
            lx + 16.0,
            html(&label)
        );
        lx += 24.0 + 6.5 * label.len() as f64;
    }
    s.push_str("</svg>");
    s
}

fn polyline(points: impl Iterator<Item = (f64, f64)>, colour: &str, dashed: bool) -> String {
    let pts: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!(
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.6"{}/>"#,
        pts.join(" "),
        if dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        }
    )
}

/// Horizontal bars, largest first, labelled with their value.
pub fn bar_chart(
    title: &str,
    bars: &[(String, f64)],
    value_label: impl Fn(f64) -> String,
) -> String {
    let row = 22.0;
    let h = 16.0 + row * bars.len().max(1) as f64;
    let label_w = 220.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = html(title)
    );
    if bars.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="20" class="empty">nothing to show</text></svg>"#,
            W / 2.0
        );
        return s;
    }
    let vmax = bars
        .iter()
        .map(|b| b.1.abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let span = W - label_w - 120.0;
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 8.0 + row * i as f64;
        let w = (v.abs() / vmax * span).max(1.0);
        let colour = if *v >= 0.0 { USED } else { RISK };
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            label_w - 8.0,
            y + 13.0,
            html(label),
            row - 6.0,
            label_w + w + 6.0,
            y + 13.0,
            html(&value_label(*v))
        );
    }
    s.push_str("</svg>");
    s
}

/// One row of the at-risk timeline.
pub struct Lane {
    pub label: String,
    /// `None`: already over.
    pub eta: Option<i64>,
    pub early: Option<i64>,
    pub late: Option<i64>,
    pub limit: bool,
}

/// When each at-risk container is expected to cross, with its early-late range; already over at the left.
pub fn timeline(title: &str, lanes: &[Lane], from: i64, to: i64) -> String {
    let row = 20.0;
    let label_w = 300.0;
    let h = 40.0 + row * lanes.len().max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = html(title)
    );
    if lanes.is_empty() || to <= from {
        let _ = write!(
            s,
            r#"<text x="{}" y="24" class="empty">nothing at risk</text></svg>"#,
            W / 2.0
        );
        return s;
    }
    let x0 = label_w + 40.0;
    let x = |t: i64| x0 + (t.clamp(from, to) - from) as f64 / (to - from) as f64 * (W - x0 - RIGHT);
    let base = h - 22.0;
    for t in day_ticks(from, to) {
        let _ = write!(
            s,
            r#"<line x1="{p:.1}" x2="{p:.1}" y1="4" y2="{base}" class="grid"/><text x="{p:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
            base + 16.0,
            &date(t)[5..],
            p = x(t)
        );
    }
    for (i, l) in lanes.iter().enumerate() {
        let y = 12.0 + row * i as f64;
        let colour = if l.limit { RISK } else { WARN };
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + 4.0,
            html(&l.label)
        );
        match l.eta {
            None => {
                let _ = write!(
                    s,
                    r#"<rect x="{}" y="{:.1}" width="10" height="10" fill="{colour}"/>"#,
                    label_w + 11.0,
                    y - 5.0
                );
            }
            Some(eta) => {
                let (a, b) = (x(l.early.unwrap_or(eta)), x(l.late.unwrap_or(eta)));
                let _ = write!(
                    s,
                    r#"<line x1="{a:.1}" x2="{b:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="4" stroke-opacity="0.35"/><circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{colour}"/>"#,
                    x(eta)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bounds_are_round_numbers_at_or_above_the_data() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(0.21), 0.25);
        assert_eq!(nice_ceiling(1_800.0), 2_000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn a_time_chart_draws_each_line_and_the_band() {
        let lines = [Line {
            label: "used",
            colour: USED,
            points: vec![(0, 1.0), (86_400, 2.0)],
            dashed: false,
        }];
        let band = Band {
            label: "forecast".into(),
            points: vec![(86_400, 2.0, 1.0, 3.0), (172_800, 2.5, 1.0, 4.0)],
        };
        let svg = time_chart("CPU <total>", "cores", &lines, Some(&band), 86_400);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("fill-opacity"));
        assert!(svg.contains("CPU &lt;total&gt;"));
    }

    #[test]
    fn empty_charts_say_so_instead_of_drawing_nothing() {
        assert!(time_chart("t", "cores", &[], None, 0).contains("no data"));
        assert!(bar_chart("t", &[], number).contains("nothing to show"));
        assert!(timeline("t", &[], 0, 10).contains("nothing at risk"));
    }
}
