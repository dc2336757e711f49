//! How numbers, amounts, money and times read in the human formats (HTML, Markdown, Slack), and escaping.
//! The machine formats (CSV, JSON) keep raw numbers in base units instead.

use crate::domain::Resource;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `1234567.8` as `1,234,568`; small values keep a few significant digits.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 1_000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        return if x < 0.0 { format!("-{out}") } else { out };
    }
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// An amount of a resource with its unit: cores, or GiB for memory.
pub fn amount(r: Resource, x: f64) -> String {
    match r {
        Resource::Cpu => format!("{} cores", number(x)),
        Resource::Memory => format!("{} GiB", number(x / GIB)),
    }
}

/// Per-container thresholds are small: millicores and MiB read better.
pub fn small_amount(r: Resource, x: f64) -> String {
    match r {
        Resource::Cpu if x < 1.0 => format!("{}m", number(x * 1_000.0)),
        Resource::Cpu => format!("{} cores", number(x)),
        Resource::Memory if x < GIB => format!("{} MiB", number(x / 1024.0 / 1024.0)),
        Resource::Memory => format!("{} GiB", number(x / GIB)),
    }
}

/// Amounts in a chart's unit: cores, or GiB.
pub fn in_chart_unit(r: Resource, x: f64) -> f64 {
    match r {
        Resource::Cpu => x,
        Resource::Memory => x / GIB,
    }
}

pub fn chart_unit(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "cores",
        Resource::Memory => "GiB",
    }
}

pub fn money(currency: &str, x: f64) -> String {
    format!("{currency} {}", number(x))
}

pub fn percent(x: Option<f64>) -> String {
    x.map(|v| format!("{:.0} %", v * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

/// Unix seconds as `2024-01-15 13:00 UTC`.
pub fn datetime(ts: i64) -> String {
    let (y, m, d) = civil(ts.div_euclid(86_400));
    let s = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3_600,
        s % 3_600 / 60
    )
}

/// Unix seconds as `2024-01-15`.
pub fn date(ts: i64) -> String {
    let (y, m, d) = civil(ts.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Text safe inside HTML elements and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text safe inside a Markdown table cell.
pub fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian_and_utc() {
        assert_eq!(datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(
            datetime(1_704_067_200 + 13 * 3_600 + 5 * 60),
            "2024-01-01 13:05 UTC"
        );
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(-86_400), "1969-12-31");
    }

    #[test]
    fn numbers_group_thousands_and_keep_small_digits() {
        assert_eq!(number(1_234_567.8), "1,234,568");
        assert_eq!(number(-12_345.0), "-12,345");
        assert_eq!(number(0.125), "0.12");
        assert_eq!(number(42.25), "42.2");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(amount(Resource::Memory, 3.0 * GIB), "3.00 GiB");
        assert_eq!(small_amount(Resource::Cpu, 0.25), "250m");
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
