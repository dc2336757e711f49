//! Small domain types parsed once at the edge: durations written `30m`, `24h`, `7d`, and the two resources.

use std::fmt;
use std::str::FromStr;

/// Now, in Unix seconds (0 if the clock reads before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A span of time as the CLI and the configuration write it: a whole number followed by a unit
/// (`s`, `m`, `h`, `d`, `w`), for example `30m`, `24h`, `7d`. Stored as whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    secs: i64,
}

impl Span {
    pub const fn from_secs(secs: i64) -> Self {
        Self { secs }
    }

    pub const fn secs(self) -> i64 {
        self.secs
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown duration {text:?}: write a whole number and a unit, for example 30m, 24h or 7d")]
pub struct SpanError {
    pub text: String,
}

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || SpanError {
            text: text.to_string(),
        };
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (digits, unit) = t.split_at(split);
        let n: i64 = digits.parse().map_err(|_| err())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(err()),
        };
        let secs = n.checked_mul(mult).ok_or_else(err)?;
        if secs <= 0 {
            return Err(err());
        }
        Ok(Self { secs })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        for (unit, mult) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
            if s % mult == 0 {
                return write!(f, "{}{unit}", s / mult);
            }
        }
        write!(f, "{s}s")
    }
}

/// The two resources Headroom sizes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    pub const fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Resource::Cpu),
            "memory" => Ok(Resource::Memory),
            other => Err(format!(
                "unknown resource {other:?}: expected cpu or memory"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_reads_the_documented_units() {
        assert_eq!("30m".parse::<Span>().unwrap().secs(), 1_800);
        assert_eq!("24h".parse::<Span>().unwrap().secs(), 86_400);
        assert_eq!("7d".parse::<Span>().unwrap().secs(), 604_800);
        assert_eq!("2w".parse::<Span>().unwrap().secs(), 1_209_600);
        assert_eq!("45s".parse::<Span>().unwrap().secs(), 45);
    }

    #[test]
    fn span_rejects_unknown_units_and_empty_numbers() {
        for bad in [
            "",
            "h",
            "10",
            "10y",
            "-5m",
            "0h",
            "1.5h",
            "99999999999999999w",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn span_prints_in_the_largest_whole_unit() {
        assert_eq!(Span::from_secs(86_400).to_string(), "1d");
        assert_eq!(Span::from_secs(5_400).to_string(), "90m");
        assert_eq!(Span::from_secs(61).to_string(), "61s");
    }
}
