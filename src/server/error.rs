//! The one error type of the HTTP API and its JSON envelope: `{"error": {"code", "message", "parameter"}}`.
//! 4xx name what was wrong; a database that cannot be reached is a 503; anything else is a 500 whose cause
//! is logged once here and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter could not be read.
    #[error("invalid parameter `{parameter}`: {message}")]
    BadParameter { parameter: String, message: String },
    /// 401: a protected endpoint without the right bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: the endpoint is disabled (no API token configured).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 503: the database is unreachable or the pool is exhausted; the process stays up.
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// 500: logged, never described to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad(parameter: &str, message: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter: parameter.to_string(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable while serving a request");
                ApiError::Unavailable
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, parameter) = match &self {
            ApiError::BadParameter { parameter, .. } => (
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                Some(parameter.as_str()),
            ),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let mut resp = (
            status,
            Json(Envelope {
                error: Body {
                    code,
                    message: self.to_string(),
                    parameter,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
