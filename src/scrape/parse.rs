//! Pure parsing of Prometheus HTTP API answers (`/api/v1/query_range`, `/api/v1/query`, `/api/v1/series`,
//! `/federate`), apart from the loop that fetches them. Garbage, HTML error pages, truncated bodies and
//! Prometheus' error JSON all become a typed error; NaN and infinite values are dropped and counted.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One series of a range or instant query: its labels and its samples (Unix seconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// What aggregation reads of a series: its labels (a missing one reads as "") and its points in time
/// order. A parsed answer's series hold their points; an evaluated remote read's hold a value per step.
pub trait SeriesView {
    fn label(&self, name: &str) -> &str;
    fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_;
    fn point_count(&self) -> usize;
    /// How many values it takes memory for (its points, or the slots of its grid).
    fn held(&self) -> usize {
        self.point_count()
    }
    /// The earliest and latest times it may have a point at.
    fn span(&self) -> Option<(i64, i64)>;
    /// Its values on a step grid, when it is one (NaN where it has none).
    fn grid(&self) -> Option<&crate::store::Grid> {
        None
    }
    /// Calls `f(slot, value)` for its points in time order, as slots of the grid `t0 + slot·step`
    /// (which they lie on, none before `t0`). A grid on the same steps is read slot by slot, with no
    /// division per point.
    fn for_each_slot(&self, t0: i64, step: i64, mut f: impl FnMut(usize, f64)) {
        match self.grid() {
            Some(g) if g.step == step && g.t0 >= t0 => {
                let at = ((g.t0 - t0) / step) as usize;
                for (j, &v) in g.values.iter().enumerate() {
                    if !v.is_nan() {
                        f(at + j, v);
                    }
                }
            }
            _ => {
                for (t, v) in self.points() {
                    f(((t - t0) / step) as usize, v);
                }
            }
        }
    }
}

impl SeriesView for Series {
    fn label(&self, name: &str) -> &str {
        Series::label(self, name)
    }
    fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.points.iter().copied()
    }
    fn point_count(&self) -> usize {
        self.points.len()
    }
    fn span(&self) -> Option<(i64, i64)> {
        let times = || self.points.iter().map(|p| p.0);
        Some((times().min()?, times().max()?))
    }
}

/// A parsed answer, or an evaluated one (`eval::RangeEval`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult<S = Series> {
    pub series: Vec<S>,
    /// Samples dropped because they were NaN, ±Inf or stale markers.
    pub dropped_non_finite: u64,
}

impl<S> Default for QueryResult<S> {
    fn default() -> Self {
        Self {
            series: Vec::new(),
            dropped_non_finite: 0,
        }
    }
}

impl<S: SeriesView> QueryResult<S> {
    pub fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.point_count() as u64).sum()
    }
    pub fn held(&self) -> u64 {
        self.series.iter().map(|s| s.held() as u64).sum()
    }
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("Prometheus answered an error ({error_type}): {message}")]
    Prometheus { error_type: String, message: String },
    #[error("not JSON (starts with {prefix:?}): {reason}")]
    NotJson { prefix: String, reason: String },
    #[error("unexpected answer: {0}")]
    Shape(String),
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    #[serde(default = "none")]
    data: Option<T>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

/// `data` of an answer. Deserialized by hand so that the series go straight from the body into their final
/// form: no intermediate `serde_json::Value`, and no `String` per sample (answers run to millions of them).
struct Data {
    result_type: String,
    series: Vec<Series>,
    dropped_non_finite: u64,
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> serde::de::Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with resultType and result")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        use serde::de::Error as _;
        let mut result_type: Option<String> = None;
        let mut result: Option<(Vec<Series>, u64)> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "resultType" => result_type = Some(map.next_value()?),
                // Prometheus (and the Go servers compatible with it) write resultType first, so a scalar
                // or string answer is skipped here and reported as such below.
                "result" if matches!(result_type.as_deref(), None | Some("matrix" | "vector")) => {
                    let SeriesList(series, dropped) = map.next_value()?;
                    result = Some((series, dropped));
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let result_type = result_type.ok_or_else(|| A::Error::missing_field("resultType"))?;
        let (series, dropped_non_finite) = match result {
            Some(r) => r,
            None if !matches!(result_type.as_str(), "matrix" | "vector") => (Vec::new(), 0),
            None => return Err(A::Error::missing_field("result")),
        };
        Ok(Data {
            result_type,
            series,
            dropped_non_finite,
        })
    }
}

/// The `result` array: series with their finite samples, and how many samples were not finite.
struct SeriesList(Vec<Series>, u64);

impl<'de> Deserialize<'de> for SeriesList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SeriesList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of series")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SeriesList, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                let mut dropped = 0;
                while let Some(s) = seq.next_element::<RawSeries>()? {
                    let mut points = s.values.points;
                    dropped += s.values.dropped;
                    if let Some(Point(p)) = s.value {
                        match p {
                            Some(p) => points.push(p),
                            None => dropped += 1,
                        }
                    }
                    out.push(Series {
                        labels: s.metric,
                        points,
                    });
                }
                Ok(SeriesList(out, dropped))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Points,
    /// An instant query's one sample (`None` inside when it is not finite).
    #[serde(default)]
    value: Option<Point>,
}

/// The `values` of a range series, finite samples kept in order, the others counted.
#[derive(Default)]
struct Points {
    points: Vec<(i64, f64)>,
    dropped: u64,
}

impl<'de> Deserialize<'de> for Points {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Points;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of [timestamp, \"value\"] pairs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Points, A::Error> {
                let mut out = Points {
                    points: Vec::with_capacity(seq.size_hint().unwrap_or(0)),
                    dropped: 0,
                };
                while let Some(p) = seq.next_element::<Point>()? {
                    match p.0 {
                        Some(p) => out.points.push(p),
                        None => out.dropped += 1,
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// One `[timestamp, "value"]` pair; `None` when the value is NaN, infinite or a stale marker.
struct Point(Option<(i64, f64)>);

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Point;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [timestamp, \"value\"] pair")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Point, A::Error> {
                use serde::de::Error as _;
                let ts: f64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let SampleValue(v) = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(3, &self));
                }
                if !ts.is_finite() {
                    return Err(A::Error::custom(format!("timestamp {ts} is not finite")));
                }
                Ok(Point(v.is_finite().then_some((ts.round() as i64, v))))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sample value, sent by Prometheus as a string ("0.5", "NaN", "+Inf"), parsed without a copy.
struct SampleValue(f64);

impl<'de> Deserialize<'de> for SampleValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SampleValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number in a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SampleValue, E> {
                text.parse()
                    .map(SampleValue)
                    .map_err(|_| E::custom(format!("sample value {text:?} is not a number")))
            }
        }
        d.deserialize_str(V)
    }
}

/// Parses the body of a query or query_range answer (any HTTP status: Prometheus sends its error JSON with
/// 4xx and 5xx statuses too).
pub fn parse_query_response(body: &[u8]) -> Result<QueryResult, ParseError> {
    let data: Data = parse_envelope(body)?;
    match data.result_type.as_str() {
        "matrix" | "vector" => {}
        other => {
            return Err(ParseError::Shape(format!(
                "result type {other:?}, expected matrix or vector"
            )));
        }
    }
    Ok(QueryResult {
        series: data.series,
        dropped_non_finite: data.dropped_non_finite,
    })
}

/// Parses the body of a `/api/v1/series` answer: the label set of every matching series.
pub fn parse_series_response(body: &[u8]) -> Result<Vec<BTreeMap<String, String>>, ParseError> {
    parse_envelope(body)
}

/// The `data` of a successful answer of Prometheus' HTTP API, or the error it stands for.
fn parse_envelope<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    let env: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
        // A body that is JSON from its first byte but breaks the shape is an answer of the wrong form;
        // anything else (HTML, a cut-off body) is not JSON at all.
        if e.is_data() {
            ParseError::Shape(e.to_string())
        } else {
            ParseError::NotJson {
                prefix: String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned(),
                reason: e.to_string(),
            }
        }
    })?;
    if env.status != "success" {
        return Err(ParseError::Prometheus {
            error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
            message: env
                .error
                .unwrap_or_else(|| format!("status {:?}", env.status)),
        });
    }
    env.data
        .ok_or_else(|| ParseError::Shape("success without data".into()))
}

/// Splits a `/federate` answer by metric name into results shaped like an instant query's, with each
/// sample at its own timestamp (Unix seconds, aligned down to `step` so it lands on the range path's grid).
/// Histograms and summaries are not capacity data and are skipped; NaN and infinite values are counted.
pub fn federated(
    samples: Vec<prometheus_parse::Sample>,
    step: i64,
) -> BTreeMap<String, QueryResult> {
    let mut out: BTreeMap<String, QueryResult> = BTreeMap::new();
    for s in samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let r = out.entry(s.metric).or_default();
        if !v.is_finite() {
            r.dropped_non_finite += 1;
            continue;
        }
        let t = s.timestamp.timestamp().div_euclid(step.max(1)) * step.max(1);
        r.series.push(Series {
            labels: s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            points: vec![(t, v)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_is_read_with_labels_and_points() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"namespace":"a","pod":"p"},"values":[[1700000000,"0.5"],[1700000060.000,"1e3"]]}]}}"#;
        let r = parse_query_response(body).unwrap();
        assert_eq!(r.series.len(), 1);
        assert_eq!(r.series[0].label("pod"), "p");
        assert_eq!(
            r.series[0].points,
            vec![(1_700_000_000, 0.5), (1_700_000_060, 1000.0)]
        );
    }

    #[test]
    fn nan_and_infinite_samples_are_dropped_and_counted() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1,"NaN"],[2,"+Inf"],[3,"-Inf"],[4,"2"]]}]}}"#;
        let r = parse_query_response(body).unwrap();
        assert_eq!(r.series[0].points, vec![(4, 2.0)]);
        assert_eq!(r.dropped_non_finite, 3);
    }

    #[test]
    fn prometheus_error_json_is_reported_with_its_type() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        match parse_query_response(body) {
            Err(ParseError::Prometheus {
                error_type,
                message,
            }) => {
                assert_eq!(error_type, "bad_data");
                assert!(message.contains("parse error"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_series_answer_gives_label_sets_and_errors_like_the_others() {
        let body = br#"{"status":"success","data":[{"__name__":"kube_pod_owner","pod":"p"},{"__name__":"kube_replicaset_owner","replicaset":"r"}]}"#;
        let sets = parse_series_response(body).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1]["replicaset"], "r");
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\""}"#;
        assert!(matches!(
            parse_series_response(body),
            Err(ParseError::Prometheus { error_type, .. }) if error_type == "bad_data"
        ));
        assert!(matches!(
            parse_series_response(br#"{"status":"success","data":{"resultType":"matrix"}}"#),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(
            parse_series_response(b"<html>502</html>"),
            Err(ParseError::NotJson { .. })
        ));
    }

    #[test]
    fn a_federate_answer_is_split_by_metric_with_timestamps_on_the_step_grid() {
        let text = "# TYPE kube_pod_owner untyped\n\
            kube_pod_owner{namespace=\"a\",pod=\"p\",owner_kind=\"ReplicaSet\",owner_name=\"rs\"} 1 1700000059000\n\
            # TYPE kube_pod_container_resource_requests untyped\n\
            kube_pod_container_resource_requests{namespace=\"a\",pod=\"p\",container=\"c\",resource=\"cpu\"} 0.25 1700000101000\n\
            kube_pod_container_resource_requests{namespace=\"a\",pod=\"q\",container=\"c\",resource=\"cpu\"} NaN 1700000061000\n";
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let by_metric = federated(scrape.samples, 60);
        let owners = &by_metric["kube_pod_owner"];
        assert_eq!(owners.series[0].label("owner_name"), "rs");
        assert_eq!(owners.series[0].points, vec![(1_700_000_040, 1.0)]);
        let req = &by_metric["kube_pod_container_resource_requests"];
        assert_eq!(req.series.len(), 1);
        assert_eq!(req.series[0].points, vec![(1_700_000_100, 0.25)]);
        assert_eq!(req.dropped_non_finite, 1);
    }

    #[test]
    fn html_pages_and_truncated_bodies_are_errors() {
        assert!(matches!(
            parse_query_response(b"<html><body>502 Bad Gateway</body></html>"),
            Err(ParseError::NotJson { .. })
        ));
        let full = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]]}]}}"#;
        for cut in 1..full.len() {
            assert!(parse_query_response(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_query_response(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#).is_err());
    }
}
