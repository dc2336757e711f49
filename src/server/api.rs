//! Handlers of `/api/v1`: JSON reads for dashboards, Kubernetes patches, and the token-protected triggers.
//! Query parameters are read by hand so every bad one gets a 400 naming it, before any SQL runs.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::domain::Resource;
use crate::domain::unix_now;
use crate::recommend::{self, Recommendation, Unit};
use crate::store::{RecommendationRecord, WorkloadQuery};

/// Query parameters, checked against the names an endpoint knows.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<String>, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad("query", e.to_string()))?;
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(
                    &k,
                    format!("unknown parameter; known: {}", known.join(", ")),
                ));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad(&k, "given more than once"));
            }
        }
        Ok(Self(map))
    }

    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.len() > 253 || v.chars().any(char::is_control) => {
                Err(ApiError::bad(name, "must be 1 to 253 printable characters"))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        let n: i64 = v
            .parse()
            .map_err(|_| ApiError::bad(name, format!("{v:?} is not a whole number")))?;
        if !(min..=max).contains(&n) {
            return Err(ApiError::bad(
                name,
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(Some(n))
    }

    pub fn float(&self, name: &str) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(ApiError::bad(name, format!("{v:?} is not a finite number"))),
        }
    }

    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
            Some(v) => Err(ApiError::bad(
                name,
                format!("{v:?} is not one of {}", allowed.join(", ")),
            )),
        }
    }

    /// `page` (from 1) and `per_page` (1..=500) as limit and offset.
    pub fn page(&self) -> Result<(i64, i64, i64, i64), ApiError> {
        let page = self.int("page", 1, 1_000_000)?.unwrap_or(1);
        let per_page = self.int("per_page", 1, 500)?.unwrap_or(50);
        Ok((per_page, (page - 1) * per_page, page, per_page))
    }
}

pub(super) fn parse_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad("id", e.body_text()))?;
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad(
            "id",
            format!("{raw:?} is not a workload id (a positive whole number)"),
        )
    })
}

/// `GET /api/v1/workloads`: summaries, filtered, sorted by urgency, saving or name, paginated.
pub async fn list_workloads(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(
        q,
        &[
            "cluster",
            "namespace",
            "kind",
            "label",
            "sort",
            "page",
            "per_page",
            "exhausts_within_days",
        ],
    )?;
    let label = match p.text("label")? {
        None => None,
        Some(l) => {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| ApiError::bad("label", "write it key=value"))?;
            Some((k.to_string(), v.to_string()))
        }
    };
    let (limit, offset, page, per_page) = p.page()?;
    let query = WorkloadQuery {
        cluster: p.text("cluster")?,
        namespace: p.text("namespace")?,
        kind: p.text("kind")?,
        label,
        exhausts_before: p
            .int("exhausts_within_days", 0, 3650)?
            .map(|d| unix_now() + d * 86_400),
        sort: p
            .one_of("sort", &["urgency", "saving", "name"])?
            .unwrap_or_else(|| "urgency".into()),
        limit,
        offset,
        ..Default::default()
    };
    let (rows, total) = state.store.list_workloads(&query).await?;
    Ok(Json(
        json!({ "total": total, "page": page, "per_page": per_page, "workloads": rows }),
    ))
}

/// `GET /api/v1/at-risk`: workloads expected to reach a request or limit within `within_days` (default 14).
pub async fn list_at_risk(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(
        q,
        &["within_days", "cluster", "namespace", "page", "per_page"],
    )?;
    let within = p.int("within_days", 0, 3650)?.unwrap_or(14);
    let (limit, offset, page, per_page) = p.page()?;
    let query = WorkloadQuery {
        cluster: p.text("cluster")?,
        namespace: p.text("namespace")?,
        exhausts_before: Some(unix_now() + within * 86_400),
        sort: "urgency".into(),
        limit,
        offset,
        ..Default::default()
    };
    let (rows, total) = state.store.list_workloads(&query).await?;
    Ok(Json(
        json!({ "within_days": within, "total": total, "page": page, "per_page": per_page, "workloads": rows }),
    ))
}

/// `GET /api/v1/workloads/{id}/history`: samples of one series of the workload (raw within `max_points`,
/// otherwise averaged into buckets, keeping each bucket's max as well).
pub async fn get_workload_history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(path)?;
    let p = Params::parse(q, &["container", "metric", "from", "to", "max_points"])?;
    let metric = p
        .text("metric")?
        .ok_or_else(|| ApiError::bad("metric", "required, e.g. cpu_usage"))?;
    let to = p.int("to", 0, 253_402_300_799)?.unwrap_or_else(unix_now);
    let from = p
        .int("from", 0, 253_402_300_799)?
        .unwrap_or(to - 7 * 86_400);
    if from >= to {
        return Err(ApiError::bad("from", "must be before `to`"));
    }
    let max_points = p.int("max_points", 10, 20_000)?.unwrap_or(2_000) as usize;
    let containers = state.store.workload_containers(id).await?;
    if containers.is_empty() && state.store.workload(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("workload {id}")));
    }
    let container = match p.text("container")? {
        Some(name) => containers.iter().find(|c| c.name == name).ok_or_else(|| {
            ApiError::bad(
                "container",
                format!("workload {id} has no container {name:?}"),
            )
        })?,
        None => containers
            .first()
            .ok_or_else(|| ApiError::NotFound(format!("containers of workload {id}")))?,
    };
    let series = *container.series.get(&metric).ok_or_else(|| {
        ApiError::bad(
            "metric",
            format!("container {:?} has no series {metric:?}", container.name),
        )
    })?;
    let points = state.store.read_samples(series, from, to).await?;
    let (resolution, pts) = thin(&points, max_points);
    Ok(Json(json!({
        "workload_id": id, "container": container.name, "metric": metric, "series_id": series,
        "resolution": resolution, "points": pts,
    })))
}

/// Raw points if there are few enough; otherwise `[t, mean, max]` per bucket.
fn thin(points: &[(i64, f64)], max_points: usize) -> (&'static str, Vec<Value>) {
    if points.len() <= max_points {
        return ("raw", points.iter().map(|(t, v)| json!([t, v])).collect());
    }
    let k = points.len().div_ceil(max_points);
    let out = points
        .chunks(k)
        .map(|c| {
            let mean = c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64;
            let max = c.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            json!([c[0].0, mean, max])
        })
        .collect();
    ("bucketed", out)
}

/// `GET /api/v1/workloads/{id}/forecasts`: how the forecast of one container's resource changed.
pub async fn get_forecast_history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(path)?;
    let p = Params::parse(q, &["container", "resource", "limit"])?;
    let resource = p
        .one_of("resource", &["cpu", "memory"])?
        .unwrap_or_else(|| "memory".into());
    let limit = p.int("limit", 1, 500)?.unwrap_or(20);
    let containers = state.store.workload_containers(id).await?;
    if containers.is_empty() {
        return Err(ApiError::NotFound(format!("workload {id}")));
    }
    let container = match p.text("container")? {
        Some(name) => containers.iter().find(|c| c.name == name).ok_or_else(|| {
            ApiError::bad(
                "container",
                format!("workload {id} has no container {name:?}"),
            )
        })?,
        None => &containers[0],
    };
    let Some(&series) = container.series.get(&format!("{resource}_usage_max")) else {
        return Ok(Json(
            json!({ "workload_id": id, "container": container.name, "forecasts": [] }),
        ));
    };
    let forecasts = state.store.forecasts(series, limit).await?;
    Ok(Json(
        json!({ "workload_id": id, "container": container.name, "resource": resource, "forecasts": forecasts }),
    ))
}

/// `GET /api/v1/recommendations`: the latest recommendations, largest saving first.
pub async fn list_recommendations(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["min_saving", "page", "per_page"])?;
    let min = p.float("min_saving")?.unwrap_or(0.0);
    let (limit, offset, page, per_page) = p.page()?;
    let recs = state
        .store
        .current_recommendations(None, min, limit, offset)
        .await?;
    Ok(Json(
        json!({ "page": page, "per_page": per_page, "recommendations": recs }),
    ))
}

/// `GET /api/v1/patches`: strategic-merge patches (YAML) applying the recommendations, for GitOps.
pub async fn get_patches(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q, &["namespace", "workload_id"])?;
    let namespace = p.text("namespace")?;
    let workload_id = p.int("workload_id", 1, i64::MAX)?;
    let recs = state
        .store
        .current_recommendations(workload_id, f64::MIN, 100_000, 0)
        .await?;
    let mut by_container: BTreeMap<String, Vec<(Recommendation, Unit)>> = BTreeMap::new();
    let mut names: HashMap<i64, (String, String, String)> = HashMap::new();
    for r in &recs {
        if !names.contains_key(&r.workload_id)
            && let Some(w) = state.store.workload(r.workload_id).await?
        {
            names.insert(r.workload_id, (w.namespace, w.kind, w.name));
        }
        let Some((ns, kind, name)) = names.get(&r.workload_id) else {
            continue;
        };
        if namespace.as_ref().is_some_and(|n| n != ns) {
            continue;
        }
        let key = format!("{ns}/{kind}/{name}/{}", r.container);
        by_container
            .entry(key)
            .or_default()
            .push(to_recommendation(r));
    }
    let patches: Vec<recommend::patch::ContainerPatch<'_>> = by_container
        .iter()
        .map(|(id, recs)| recommend::patch::ContainerPatch {
            series_id: id,
            recommendations: recs.iter().map(|(r, u)| (r, *u)).collect(),
        })
        .collect();
    let yaml = recommend::patch::render(&patches);
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

fn to_recommendation(r: &RecommendationRecord) -> (Recommendation, Unit) {
    let resource = if r.resource == "cpu" {
        Resource::Cpu
    } else {
        Resource::Memory
    };
    let unit = match resource {
        Resource::Cpu => Unit::Cores(1.0),
        Resource::Memory => Unit::Bytes(1.0),
    };
    (
        Recommendation {
            resource,
            request: r.request,
            limit: r.limit,
            request_lower: r.request_lower,
            request_upper: r.request_upper,
            rule: r.rule.clone(),
            reason: r.reason.clone(),
            risk: r.risk.clone(),
            saving: None,
        },
        unit,
    )
}

/// Compares in time independent of where the strings differ, so the token cannot be guessed byte by byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token of a protected request.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.api_token else {
        return Err(ApiError::Forbidden(
            "this endpoint is disabled: set server.api_token to enable it".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// `POST /api/v1/scrape`: wakes the scrape loop now.
pub async fn post_scrape(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    state.triggers.scrape.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "triggered": "scrape" }))).into_response())
}

/// `POST /api/v1/assess`: wakes the assessment loop now.
pub async fn post_assess(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    state.triggers.assess.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "triggered": "assess" }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let e = Params::parse(Some("sort=name&colour=red".into()), &["sort"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Params::parse(Some("sort=a&sort=b".into()), &["sort"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("sort"), "{e}");
    }

    #[test]
    fn numbers_out_of_range_are_rejected_with_their_name() {
        let p = Params::parse(Some("page=0&per_page=x".into()), &["page", "per_page"]).unwrap();
        assert!(p.page().err().unwrap().to_string().contains("page"));
    }

    #[test]
    fn constant_time_comparison_matches_only_equal_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
