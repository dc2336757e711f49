//! One table, two renderings: CSV (the default) and JSON (an array of objects keyed by the CSV header),
//! so both formats always carry the same content.

use std::io::{self, Write};

/// Output format of an offline command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Csv,
    Json,
}

/// One value of a table; `Empty` is an empty CSV field and a JSON `null`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Str(String),
    Int(i64),
    Float(f64),
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Str(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Str(s)
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        if v.is_finite() {
            Cell::Float(v)
        } else {
            Cell::Empty
        }
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell::Empty, Into::into)
    }
}

/// A header and rows, written in either format.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    pub fn write(&self, format: Format, out: &mut impl Write) -> io::Result<()> {
        match format {
            Format::Csv => self.write_csv(out),
            Format::Json => self.write_json(out),
        }
    }

    fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{}", self.columns.join(","))?;
        let mut line = String::new();
        for row in &self.rows {
            line.clear();
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                match c {
                    Cell::Str(s) if s.contains([',', '"', '\n', '\r']) => {
                        line.push('"');
                        line.push_str(&s.replace('"', "\"\""));
                        line.push('"');
                    }
                    Cell::Str(s) => line.push_str(s),
                    Cell::Int(v) => line.push_str(&v.to_string()),
                    Cell::Float(v) => line.push_str(&format_float(*v)),
                    Cell::Empty => {}
                }
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(b"[")?;
        let keys: Vec<String> = self.columns.iter().map(|c| json_string(c)).collect();
        let mut obj = String::new();
        for (r, row) in self.rows.iter().enumerate() {
            obj.clear();
            obj.push_str(if r == 0 { "\n{" } else { ",\n{" });
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    obj.push(',');
                }
                obj.push_str(&keys[i]);
                obj.push(':');
                match c {
                    Cell::Str(s) => obj.push_str(&json_string(s)),
                    Cell::Int(v) => obj.push_str(&v.to_string()),
                    Cell::Float(v) => obj.push_str(&format_float(*v)),
                    Cell::Empty => obj.push_str("null"),
                }
            }
            obj.push('}');
            out.write_all(obj.as_bytes())?;
        }
        out.write_all(b"\n]\n")
    }
}

/// Shortest text that reads back to the same number; integral values keep no fraction.
fn format_float(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["series_id", "eta_unix", "probability"]);
        t.push(vec!["a,b".into(), Cell::Int(10), Cell::Float(0.25)]);
        t.push(vec!["c".into(), Cell::Empty, Cell::Float(1.0)]);
        t
    }

    fn render(t: &Table, f: Format) -> String {
        let mut buf = Vec::new();
        t.write(f, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn csv_quotes_fields_with_commas_and_leaves_empty_cells_empty() {
        assert_eq!(
            render(&sample(), Format::Csv),
            "series_id,eta_unix,probability\n\"a,b\",10,0.25\nc,,1\n"
        );
    }

    #[test]
    fn json_carries_the_same_rows_keyed_by_the_header() {
        let v: serde_json::Value = serde_json::from_str(&render(&sample(), Format::Json)).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"series_id": "a,b", "eta_unix": 10, "probability": 0.25},
                {"series_id": "c", "eta_unix": null, "probability": 1}
            ])
        );
    }

    #[test]
    fn non_finite_floats_become_empty_cells() {
        assert_eq!(Cell::from(f64::NAN), Cell::Empty);
        assert_eq!(Cell::from(Some(2.5)), Cell::Float(2.5));
    }
}
