//! The built-in dashboard: two self-contained HTML pages (the workload list with the at-risk list, and one
//! workload's charts) that draw themselves from the JSON API with inline JavaScript and SVG. No external
//! asset is loaded, so it works on machines without internet and needs no front-end build.

use std::sync::LazyLock;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::parse_id;
use super::error::ApiError;

const STYLE: &str = include_str!("dashboard/style.css");
const APP: &str = include_str!("dashboard/app.js");

/// The pages with the shared style and script inlined, built once.
static INDEX: LazyLock<String> = LazyLock::new(|| inline(include_str!("dashboard/index.html")));
static WORKLOAD: LazyLock<String> =
    LazyLock::new(|| inline(include_str!("dashboard/workload.html")));

fn inline(page: &str) -> String {
    page.replace("{{style}}", STYLE).replace("{{app}}", APP)
}

/// Only inline style and script from this page and requests to this origin: nothing the API returns can
/// pull in a script, and the browser never reaches out to another host.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'";

fn html(status: StatusCode, body: &str) -> Response {
    let mut resp = (status, body.to_owned()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /`: the at-risk list and the table of workloads.
pub async fn get_index() -> Response {
    html(StatusCode::OK, &INDEX)
}

/// `GET /workloads/{id}`: one workload's charts, exhaustion estimates and recommendations. An id that is
/// not a number is a 400 and an unknown workload a 404 (the page itself says so too).
pub async fn get_workload_page(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let status = match state.store.workload(id).await? {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    };
    Ok(html(status, &WORKLOAD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_inline_the_style_and_script_and_load_nothing_from_elsewhere() {
        for page in [&*INDEX, &*WORKLOAD] {
            assert!(!page.contains("{{"), "a placeholder was left");
            assert!(page.contains("function drawChart"));
            assert!(page.contains("--usage:"));
            for external in ["http://", "https://", "src=", "<link"] {
                let hits: Vec<_> = page.match_indices(external).collect();
                // The only URL allowed is the SVG namespace, which the browser never fetches.
                assert!(
                    hits.iter()
                        .all(|(i, _)| page[*i..].starts_with("http://www.w3.org/2000/svg")),
                    "{external} in a page"
                );
            }
        }
    }

    #[test]
    fn the_script_never_writes_markup_from_data() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
