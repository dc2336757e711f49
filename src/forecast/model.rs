//! Candidate models as declared in `models/forecast/*.toml`: each file names a model, its kind, its
//! window and features. The built-in set is embedded; a directory of files can replace it.

use std::path::Path;

use serde::Deserialize;

/// What a candidate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Repeats the last observed day.
    SeasonalNaive,
    /// Least squares on intercept, optional linear trend and daily/weekly Fourier terms.
    Fourier,
}

/// One declared candidate model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub kind: ModelKind,
    /// Trailing window the model is fitted on.
    #[serde(default = "default_window_days")]
    pub window_days: f64,
    #[serde(default)]
    pub trend: bool,
    #[serde(default)]
    pub daily_harmonics: usize,
    #[serde(default)]
    pub weekly_harmonics: usize,
    /// Weekly terms need this much history in the window, or a week's noise passes for seasonality.
    #[serde(default = "default_weekly_min_days")]
    pub weekly_min_days: f64,
    /// A second, Huber-weighted pass so restarts and spikes do not bend the fit.
    #[serde(default)]
    pub robust: bool,
    /// Fit the logarithm (compounding growth, seasonality in proportion to the level); ignored
    /// for a window with a zero or negative value.
    #[serde(default)]
    pub log: bool,
    /// Half-life of the moving average of the last residuals that shifts the forecast; 0 disables it.
    #[serde(default)]
    pub offset_halflife_hours: f64,
    /// How fast that shift fades over the forecast; a huge value keeps it (a new level).
    #[serde(default = "default_offset_decay")]
    pub offset_decay_hours: f64,
    /// Ridge penalty relative to the number of rows; keeps gappy windows solvable.
    #[serde(default = "default_ridge")]
    pub ridge: f64,
}

fn default_window_days() -> f64 {
    28.0
}
fn default_weekly_min_days() -> f64 {
    21.0
}
fn default_offset_decay() -> f64 {
    6.0
}
fn default_ridge() -> f64 {
    1e-4
}

const BUILTIN: [(&str, &str); 4] = [
    (
        "seasonal_naive.toml",
        include_str!("../../models/forecast/seasonal_naive.toml"),
    ),
    (
        "fourier_trend.toml",
        include_str!("../../models/forecast/fourier_trend.toml"),
    ),
    (
        "fourier_growth.toml",
        include_str!("../../models/forecast/fourier_growth.toml"),
    ),
    (
        "fourier_recent.toml",
        include_str!("../../models/forecast/fourier_recent.toml"),
    ),
];

/// Why a model declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model file {file}: {message}")]
pub struct ModelError {
    pub file: String,
    pub message: String,
}

impl ModelSpec {
    /// Parses one declaration; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ModelError> {
        let err = |message: String| ModelError {
            file: file.to_string(),
            message,
        };
        use figment::providers::Format;
        let spec: ModelSpec = figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(|e| err(e.to_string()))?;
        if spec.window_days.is_nan() || spec.window_days <= 0.0 {
            return Err(err("window_days must be positive".into()));
        }
        if spec.offset_halflife_hours < 0.0
            || spec.offset_decay_hours.is_nan()
            || spec.offset_decay_hours <= 0.0
        {
            return Err(err(
                "offset_halflife_hours must be >= 0 and offset_decay_hours > 0".into(),
            ));
        }
        if spec.daily_harmonics > 24 || spec.weekly_harmonics > 14 || spec.ridge < 0.0 {
            return Err(err(
                "at most 24 daily and 14 weekly harmonics, ridge >= 0".into()
            ));
        }
        Ok(spec)
    }

    /// The embedded set from `models/forecast/`.
    pub fn builtin() -> Vec<ModelSpec> {
        BUILTIN
            .iter()
            .map(|(f, t)| Self::parse(f, t).expect("the embedded model files are valid"))
            .collect()
    }

    /// Every `*.toml` in `dir`, in name order (the first one wins ties in the backtest).
    pub fn load_dir(dir: &Path) -> Result<Vec<ModelSpec>, ModelError> {
        let name = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| ModelError {
            file: name.clone(),
            message: format!("cannot read directory: {e}"),
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            let file = p.display().to_string();
            let text = std::fs::read_to_string(&p).map_err(|e| ModelError {
                file: file.clone(),
                message: format!("cannot read: {e}"),
            })?;
            out.push(Self::parse(&file, &text)?);
        }
        if out.is_empty() {
            return Err(ModelError {
                file: name,
                message: "no *.toml model files".into(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_models_parse_and_include_the_seasonal_naive_floor() {
        let m = ModelSpec::builtin();
        assert!(m.iter().any(|s| s.kind == ModelKind::SeasonalNaive));
        assert!(m.iter().any(|s| s.kind == ModelKind::Fourier && s.trend));
    }

    #[test]
    fn an_unknown_key_in_a_model_file_is_refused_by_name() {
        let e = ModelSpec::parse(
            "x.toml",
            "name = \"a\"\nkind = \"fourier\"\nwindow_dayz = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("window_dayz"), "{e}");
    }
}
