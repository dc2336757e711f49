//! Pure parsing of Prometheus HTTP API answers (`/api/v1/query_range`, `/api/v1/query`, `/federate`), apart
//! from the loop that fetches them. Garbage, HTML error pages, truncated bodies and Prometheus' error JSON all become
//! a typed error; NaN and infinite values are dropped and counted.

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

/// A parsed answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub series: Vec<Series>,
    /// Samples dropped because they were NaN, ±Inf or stale markers.
    pub dropped_non_finite: u64,
}

impl QueryResult {
    pub fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.points.len() as u64).sum()
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
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Parses the body of a query or query_range answer (any HTTP status: Prometheus sends its error JSON with
/// 4xx and 5xx statuses too).
pub fn parse_query_response(body: &[u8]) -> Result<QueryResult, ParseError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| ParseError::NotJson {
        prefix: String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned(),
        reason: e.to_string(),
    })?;
    if env.status != "success" {
        return Err(ParseError::Prometheus {
            error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
            message: env
                .error
                .unwrap_or_else(|| format!("status {:?}", env.status)),
        });
    }
    let data = env
        .data
        .ok_or_else(|| ParseError::Shape("success without data".into()))?;
    match data.result_type.as_str() {
        "matrix" | "vector" => {}
        other => {
            return Err(ParseError::Shape(format!(
                "result type {other:?}, expected matrix or vector"
            )));
        }
    }
    let raw: Vec<RawSeries> =
        serde_json::from_value(data.result).map_err(|e| ParseError::Shape(e.to_string()))?;
    let mut out = QueryResult::default();
    for s in raw {
        let mut points = Vec::with_capacity(s.values.len() + 1);
        for (ts, text) in s.values.into_iter().chain(s.value) {
            let v: f64 = text
                .parse()
                .map_err(|_| ParseError::Shape(format!("sample value {text:?} is not a number")))?;
            if !ts.is_finite() {
                return Err(ParseError::Shape(format!("timestamp {ts} is not finite")));
            }
            if v.is_finite() {
                points.push((ts.round() as i64, v));
            } else {
                out.dropped_non_finite += 1;
            }
        }
        out.series.push(Series {
            labels: s.metric,
            points,
        });
    }
    Ok(out)
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
