//! Assessment results as Prometheus gauges, so Grafana can chart them: time to exhaustion, recommended
//! and current requests and limits, and the forecast at fixed horizons.

use std::collections::HashMap;
use std::fmt::Write;

use crate::store::{Store, StoreError, WorkloadQuery};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(store: &Store) -> Result<String, StoreError> {
    let (workloads, _) = store
        .list_workloads(&WorkloadQuery {
            sort: "name".into(),
            limit: 1_000_000,
            ..Default::default()
        })
        .await?;
    let now = crate::domain::unix_now();
    let mut out = String::new();
    let labels: HashMap<i64, String> = workloads
        .iter()
        .map(|w| {
            (
                w.id,
                format!(
                    "cluster=\"{}\",namespace=\"{}\",kind=\"{}\",workload=\"{}\"",
                    escape(&w.cluster),
                    escape(&w.namespace),
                    escape(&w.kind),
                    escape(&w.name)
                ),
            )
        })
        .collect();
    out.push_str("# HELP headroom_exhaustion_seconds Seconds until usage is expected to reach a request or limit (0: already over).\n");
    out.push_str("# TYPE headroom_exhaustion_seconds gauge\n");
    for w in &workloads {
        let secs = if w.already_over {
            Some(0)
        } else {
            w.earliest_eta.map(|e| (e - now).max(0))
        };
        if let (Some(secs), Some(res), Some(kind)) = (secs, &w.earliest_resource, &w.earliest_kind)
        {
            let _ = writeln!(
                out,
                "headroom_exhaustion_seconds{{{},resource=\"{}\",threshold=\"{}\"}} {secs}",
                labels[&w.id],
                escape(res),
                escape(kind)
            );
        }
    }
    out.push_str(
        "# HELP headroom_saving_money_per_month Money per month the recommendations would free.\n",
    );
    out.push_str("# TYPE headroom_saving_money_per_month gauge\n");
    for w in &workloads {
        let _ = writeln!(
            out,
            "headroom_saving_money_per_month{{{}}} {}",
            labels[&w.id], w.saving_money_per_month
        );
    }
    let recs = store
        .current_recommendations(None, f64::MIN, 1_000_000, 0)
        .await?;
    for (name, help) in [
        (
            "headroom_recommended_request",
            "Recommended request per container (cores or bytes).",
        ),
        (
            "headroom_recommended_limit",
            "Recommended limit per container (cores or bytes); absent means none.",
        ),
        (
            "headroom_current_request",
            "Current request per container (cores or bytes).",
        ),
        (
            "headroom_current_limit",
            "Current limit per container (cores or bytes).",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &recs {
            let v = match name {
                "headroom_recommended_request" => r.request,
                "headroom_recommended_limit" => r.limit,
                "headroom_current_request" => r.current_request,
                _ => r.current_limit,
            };
            if let (Some(v), Some(l)) = (v, labels.get(&r.workload_id)) {
                let _ = writeln!(
                    out,
                    "{name}{{{l},container=\"{}\",resource=\"{}\"}} {v}",
                    escape(&r.container),
                    escape(&r.resource)
                );
            }
        }
    }
    Ok(out)
}
