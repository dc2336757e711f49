//! Hand-written reader for `series_id,timestamp_unix,resource,value,unit`: the traces are tens of MB and a
//! byte-level split with `str::parse` reads them at well over 100 MB/s, which a generic CSV layer would not add to.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// One usage series: a `(series_id, resource)` pair with its points sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSeries {
    pub series_id: String,
    pub resource: String,
    /// The first non-empty `unit` seen for the series; `None` when the column is absent or empty.
    pub unit: Option<String>,
    /// `(timestamp_unix, value)`, strictly increasing in time (a repeated timestamp keeps its last value).
    pub points: Vec<(i64, f64)>,
}

/// Why an input file was refused. `Display` is one line naming the file and, when known, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    /// The file as the caller named it (never made absolute).
    pub file: String,
    /// 1-based line number, when the fault is on one line.
    pub line: Option<usize>,
    /// 1-based column number and header name, when the fault is in one field.
    pub column: Option<(usize, String)>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some((n, name)) = &self.column {
            write!(f, ": column {n} ({name})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl InputError {
    fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            ..Self::file(file, message)
        }
    }

    fn field(file: &str, line: usize, col: usize, name: &str, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some((col + 1, name.to_string())),
            ..Self::file(file, message)
        }
    }
}

/// Step functions read from a capacity file: a value holds from its row until the next row of the same
/// `(series_id, resource)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityTable {
    series: Vec<UsageSeries>,
    index: HashMap<(String, String), usize>,
}

impl CapacityTable {
    pub fn from_series(series: Vec<UsageSeries>) -> Self {
        let index = series
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.series_id.clone(), s.resource.clone()), i))
            .collect();
        Self { series, index }
    }

    /// The step function of one capacity resource (for example `memory_limit`) of one series.
    pub fn steps(&self, series_id: &str, capacity_resource: &str) -> Option<&UsageSeries> {
        self.index
            .get(&(series_id.to_string(), capacity_resource.to_string()))
            .map(|&i| &self.series[i])
    }

    /// The capacity in force at time `t`: the last row at or before `t`; `None` before the first row.
    pub fn value_at(&self, series_id: &str, capacity_resource: &str, t: i64) -> Option<f64> {
        let s = self.steps(series_id, capacity_resource)?;
        let n = s.points.partition_point(|&(ts, _)| ts <= t);
        (n > 0).then(|| s.points[n - 1].1)
    }

    /// The capacity resources that bound a usage resource of a series: names `<usage resource>_<kind>`,
    /// skipping those whose unit differs from the usage unit (Bitbrains' `cpu_cores` counts cores, not MHz).
    pub fn bounds_for(
        &self,
        series_id: &str,
        usage_resource: &str,
        usage_unit: Option<&str>,
    ) -> Vec<&UsageSeries> {
        let prefix = format!("{usage_resource}_");
        let mut out: Vec<&UsageSeries> = self
            .series
            .iter()
            .filter(|s| s.series_id == series_id && s.resource.starts_with(&prefix))
            .filter(|s| match (usage_unit, s.unit.as_deref()) {
                (Some(u), Some(c)) => u == c,
                _ => true,
            })
            .collect();
        out.sort_by(|a, b| a.resource.cmp(&b.resource));
        out
    }

    pub fn all(&self) -> &[UsageSeries] {
        &self.series
    }
}

/// Reads a usage file; series come out in order of first appearance.
pub fn read_usage(path: &Path) -> Result<Vec<UsageSeries>, InputError> {
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| InputError::file(&name, format!("cannot read: {e}")))?;
    parse_usage(&name, &bytes)
}

/// Reads a capacity file (same columns as a usage file, holding step functions).
pub fn read_capacity(path: &Path) -> Result<CapacityTable, InputError> {
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| InputError::file(&name, format!("cannot read: {e}")))?;
    parse_capacity(&name, &bytes)
}

pub fn parse_capacity(name: &str, bytes: &[u8]) -> Result<CapacityTable, InputError> {
    Ok(CapacityTable::from_series(parse_usage(name, bytes)?))
}

const REQUIRED: [&str; 4] = ["series_id", "timestamp_unix", "resource", "value"];

/// Parses the contents of a usage-format file; `name` is used in errors only.
pub fn parse_usage(name: &str, bytes: &[u8]) -> Result<Vec<UsageSeries>, InputError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        InputError::at(name, line, "not valid UTF-8 text")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));

    let header = loop {
        match lines.next() {
            None => {
                return Err(InputError::file(
                    name,
                    "empty file: expected a header line and rows",
                ));
            }
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((n, l)) => break (n, l),
        }
    };
    let (header_line, header_text) = header;
    let mut fields: Vec<&str> = Vec::new();
    split_fields(header_text, &mut fields).map_err(|m| InputError::at(name, header_line, m))?;
    let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
    let find = |want: &str| names.iter().position(|n| n == want);
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| find(r).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(InputError::at(
            name,
            header_line,
            format!(
                "header lacks column(s) {}: expected series_id,timestamp_unix,resource,value[,unit]",
                missing.join(", ")
            ),
        ));
    }
    let [c_id, c_ts, c_res, c_val] = REQUIRED.map(|r| find(r).unwrap_or_default());
    let c_unit = find("unit");
    let needed = [c_id, c_ts, c_res, c_val]
        .into_iter()
        .max()
        .unwrap_or_default()
        + 1;

    let mut out: Vec<UsageSeries> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut current: Option<usize> = None;
    let mut rows = 0usize;
    for (line, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        fields.clear();
        split_fields(l, &mut fields).map_err(|m| InputError::at(name, line, m))?;
        if fields.len() < needed {
            return Err(InputError::at(
                name,
                line,
                format!(
                    "has {} column(s), the header names {}",
                    fields.len(),
                    names.len()
                ),
            ));
        }
        let id = fields[c_id].trim();
        let res = fields[c_res].trim();
        if id.is_empty() {
            return Err(InputError::field(name, line, c_id, "series_id", "is empty"));
        }
        if res.is_empty() {
            return Err(InputError::field(name, line, c_res, "resource", "is empty"));
        }
        let ts_text = fields[c_ts].trim();
        let ts: i64 = ts_text.parse().map_err(|_| {
            InputError::field(
                name,
                line,
                c_ts,
                "timestamp_unix",
                format!("{ts_text:?} is not an integer Unix timestamp"),
            )
        })?;
        let v_text = fields[c_val].trim();
        let value: f64 = match v_text.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            Ok(_) => {
                return Err(InputError::field(
                    name,
                    line,
                    c_val,
                    "value",
                    format!("{v_text:?} is not a finite number"),
                ));
            }
            Err(_) => {
                return Err(InputError::field(
                    name,
                    line,
                    c_val,
                    "value",
                    format!("{v_text:?} is not a number"),
                ));
            }
        };
        // Files are usually grouped by series: only hash when the key changes.
        let slot = match current {
            Some(i) if out[i].series_id == id && out[i].resource == res => i,
            _ => {
                let key = (id.to_string(), res.to_string());
                let i = *index.entry(key).or_insert_with(|| {
                    out.push(UsageSeries {
                        series_id: id.to_string(),
                        resource: res.to_string(),
                        unit: None,
                        points: Vec::new(),
                    });
                    out.len() - 1
                });
                current = Some(i);
                i
            }
        };
        let s = &mut out[slot];
        if s.unit.is_none()
            && let Some(u) = c_unit
                .and_then(|c| fields.get(c))
                .map(|u| u.trim())
                .filter(|u| !u.is_empty())
        {
            s.unit = Some(u.to_string());
        }
        s.points.push((ts, value));
        rows += 1;
    }
    if rows == 0 {
        return Err(InputError::file(name, "no data rows after the header"));
    }
    for s in &mut out {
        normalise(&mut s.points);
    }
    Ok(out)
}

/// Sorts by time (stable, so a repeated timestamp keeps the row that came last) and drops repeats.
fn normalise(points: &mut Vec<(i64, f64)>) {
    if !points.windows(2).all(|w| w[0].0 < w[1].0) {
        points.sort_by_key(|p| p.0);
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(points.len());
        for &p in points.iter() {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        *points = out;
    }
}

/// Splits one CSV line; quoted fields (RFC 4180, `""` for a quote) are returned without their quotes
/// when they contain no escaped quote, which is all the offline format needs.
fn split_fields<'a>(line: &'a str, out: &mut Vec<&'a str>) -> Result<(), String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !line.contains('"') {
        out.extend(line.split(','));
        return Ok(());
    }
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            loop {
                match b.get(j) {
                    None => return Err("unterminated quoted field".into()),
                    Some(b'"') if b.get(j + 1) == Some(&b'"') => {
                        return Err("escaped quotes inside a field are not supported".into());
                    }
                    Some(b'"') => break,
                    _ => j += 1,
                }
            }
            out.push(&line[start..j]);
            i = j + 1;
            match b.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            let end = line[i..].find(',').map_or(line.len(), |k| i + k);
            out.push(&line[i..end]);
            if end == line.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<UsageSeries>, InputError> {
        parse_usage("usage.csv", text.as_bytes())
    }

    #[test]
    fn usage_groups_rows_by_series_and_resource_and_sorts_them() {
        let s = parse(
            "series_id,timestamp_unix,resource,value,unit\n\
             a,20,cpu,2,cores\nb,10,memory,5,bytes\na,10,cpu,1,cores\na,10,memory,7,\n",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].series_id.as_str(), s[0].resource.as_str()),
            ("a", "cpu")
        );
        assert_eq!(s[0].points, vec![(10, 1.0), (20, 2.0)]);
        assert_eq!(s[0].unit.as_deref(), Some("cores"));
        assert_eq!(s[2].unit, None);
    }

    #[test]
    fn usage_locates_columns_by_header_name_and_ignores_extra_ones() {
        let s =
            parse("value,extra,resource,series_id,timestamp_unix\n3.5,x,cpu,svc,100\r\n").unwrap();
        assert_eq!(s[0].series_id, "svc");
        assert_eq!(s[0].points, vec![(100, 3.5)]);
        assert_eq!(s[0].unit, None);
    }

    #[test]
    fn usage_keeps_the_last_value_of_a_repeated_timestamp() {
        let s = parse("series_id,timestamp_unix,resource,value\na,5,cpu,1\na,5,cpu,2\na,4,cpu,0\n")
            .unwrap();
        assert_eq!(s[0].points, vec![(4, 0.0), (5, 2.0)]);
    }

    #[test]
    fn usage_accepts_quoted_fields() {
        let s = parse("series_id,timestamp_unix,resource,value\n\"a,b\",5,\"cpu\",1\n").unwrap();
        assert_eq!(s[0].series_id, "a,b");
    }

    #[test]
    fn a_non_numeric_value_names_file_line_and_column() {
        let e = parse("series_id,timestamp_unix,resource,value,unit\na,1,cpu,1,x\na,2,cpu,abc,x\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"usage.csv:3: column 4 (value): "abc" is not a number"#
        );
    }

    #[test]
    fn a_non_integer_timestamp_names_its_column() {
        let e = parse("series_id,timestamp_unix,resource,value\na,1.5,cpu,1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"usage.csv:2: column 2 (timestamp_unix): "1.5" is not an integer Unix timestamp"#
        );
    }

    #[test]
    fn infinite_and_nan_values_are_refused() {
        for bad in ["inf", "NaN"] {
            let e = parse(&format!(
                "series_id,timestamp_unix,resource,value\na,1,cpu,{bad}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("not a finite number"), "{e}");
        }
    }

    #[test]
    fn a_header_without_required_columns_is_refused() {
        let e = parse("id,time,value\na,1,2\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "usage.csv:1: header lacks column(s) series_id, timestamp_unix, resource"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_file_whose_first_line_is_data_reports_a_missing_header() {
        let e = parse("a,1,cpu,2,cores\n").unwrap_err();
        assert!(e.to_string().contains("header lacks"), "{e}");
    }

    #[test]
    fn empty_files_and_header_only_files_are_refused() {
        assert_eq!(
            parse("").unwrap_err().to_string(),
            "usage.csv: empty file: expected a header line and rows"
        );
        assert_eq!(
            parse("series_id,timestamp_unix,resource,value\n\n")
                .unwrap_err()
                .to_string(),
            "usage.csv: no data rows after the header"
        );
    }

    #[test]
    fn a_short_row_is_refused_with_its_line() {
        let e = parse("series_id,timestamp_unix,resource,value\na,1,cpu,1\na,2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage.csv:3: has 2 column(s), the header names 4"
        );
    }

    #[test]
    fn capacity_is_a_step_function_holding_until_the_next_row() {
        let t = parse_capacity(
            "cap.csv",
            b"series_id,timestamp_unix,resource,value,unit\n\
              a,100,memory_limit,10,GB\na,200,memory_limit,20,GB\na,100,cpu_cores,4,cores\n",
        )
        .unwrap();
        assert_eq!(t.value_at("a", "memory_limit", 99), None);
        assert_eq!(t.value_at("a", "memory_limit", 100), Some(10.0));
        assert_eq!(t.value_at("a", "memory_limit", 199), Some(10.0));
        assert_eq!(t.value_at("a", "memory_limit", 10_000), Some(20.0));
        assert_eq!(t.value_at("b", "memory_limit", 150), None);
    }

    #[test]
    fn capacity_bounds_skip_other_resources_and_other_units() {
        let t = parse_capacity(
            "cap.csv",
            b"series_id,timestamp_unix,resource,value,unit\n\
              a,1,cpu_capacity,4000,MHz\na,1,cpu_cores,4,cores\na,1,memory_limit,1,KB\na,1,cpu_limit,3000,\n",
        )
        .unwrap();
        let names: Vec<&str> = t
            .bounds_for("a", "cpu", Some("MHz"))
            .iter()
            .map(|s| s.resource.as_str())
            .collect();
        assert_eq!(names, vec!["cpu_capacity", "cpu_limit"]);
    }
}
