//! Kubernetes strategic-merge patches: one YAML document per workload setting each container's requests
//! and limits, so a team can apply recommendations through GitOps. Written by hand: the shape is fixed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Recommendation, Unit};
use crate::domain::Resource;

/// Where a series lives in the cluster, read from its id: `namespace/kind/name/container`,
/// `namespace/name/container` (a Deployment) or, for anything else, a Deployment named after the id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub container: String,
}

impl WorkloadRef {
    pub fn from_series_id(id: &str) -> Self {
        let parts: Vec<&str> = id.split('/').collect();
        let (namespace, kind, name, container) = match parts.as_slice() {
            [ns, kind, name, c] => (*ns, *kind, *name, *c),
            [ns, name, c] => (*ns, "Deployment", *name, *c),
            _ => ("default", "Deployment", id, id),
        };
        Self {
            namespace: namespace.into(),
            kind: kind_name(kind),
            name: dns_name(name),
            container: dns_name(container),
        }
    }
}

fn kind_name(kind: &str) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deploy" => "Deployment".into(),
        "statefulset" | "sts" => "StatefulSet".into(),
        "daemonset" | "ds" => "DaemonSet".into(),
        "job" => "Job".into(),
        "cronjob" => "CronJob".into(),
        _ => kind.into(),
    }
}

/// Kubernetes names are lowercase alphanumerics and dashes; anything else becomes a dash.
fn dns_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    n.trim_matches('-').to_string()
}

/// A Kubernetes quantity for `value` in `unit`: millicores for CPU, Mi for memory; `None` when the unit
/// has no Kubernetes meaning (percent, MHz, normalised units).
pub fn quantity(resource: Resource, unit: Unit, value: f64) -> Option<String> {
    match (resource, unit) {
        (Resource::Cpu, Unit::Cores(c)) => {
            Some(format!("{}m", (value * c * 1000.0).ceil().max(1.0)))
        }
        (Resource::Memory, Unit::Bytes(b)) => {
            Some(format!("{}Mi", (value * b / 1_048_576.0).ceil().max(1.0)))
        }
        _ => None,
    }
}

/// Containers of one workload, keyed by (namespace, kind, name).
type ByWorkload<'a, 'b> =
    BTreeMap<(String, String, String), Vec<(WorkloadRef, &'b ContainerPatch<'a>)>>;

/// One container's recommendations, with the unit of each resource's input.
pub struct ContainerPatch<'a> {
    pub series_id: &'a str,
    pub recommendations: Vec<(&'a Recommendation, Unit)>,
}

/// The patch documents, one per workload, separated by `---`.
pub fn render(containers: &[ContainerPatch<'_>]) -> String {
    let mut by_workload: ByWorkload<'_, '_> = BTreeMap::new();
    for c in containers {
        let w = WorkloadRef::from_series_id(c.series_id);
        by_workload
            .entry((w.namespace.clone(), w.kind.clone(), w.name.clone()))
            .or_default()
            .push((w, c));
    }
    let mut out = String::new();
    for (i, ((ns, kind, name), members)) in by_workload.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let api = match kind.as_str() {
            "Job" | "CronJob" => "batch/v1",
            _ => "apps/v1",
        };
        let _ = writeln!(
            out,
            "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}"
        );
        let pod_spec_indent = if kind == "CronJob" {
            out.push_str("spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n");
            "          "
        } else {
            out.push_str("spec:\n  template:\n    spec:\n");
            "      "
        };
        let _ = writeln!(out, "{pod_spec_indent}containers:");
        for (w, c) in members {
            let ind = pod_spec_indent;
            let _ = writeln!(out, "{ind}  - name: {}", w.container);
            let mut requests = String::new();
            let mut limits = String::new();
            for (rec, unit) in &c.recommendations {
                let r = rec.resource.as_str();
                let Some(req) = rec.request else {
                    let _ = writeln!(out, "{ind}    # {r}: {}", rec.reason);
                    continue;
                };
                let Some(q) = quantity(rec.resource, *unit, req) else {
                    let _ = writeln!(
                        out,
                        "{ind}    # {r}: the input unit is not a Kubernetes quantity; recommended request {req} in that unit"
                    );
                    continue;
                };
                let _ = writeln!(requests, "{ind}        {r}: {q}");
                match rec.limit.and_then(|l| quantity(rec.resource, *unit, l)) {
                    Some(l) => {
                        let _ = writeln!(limits, "{ind}        {r}: {l}");
                    }
                    // `null` deletes an existing limit in a strategic-merge patch.
                    None => {
                        let _ = writeln!(limits, "{ind}        {r}: null");
                    }
                }
            }
            if requests.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{ind}    resources:\n{ind}      requests:");
            out.push_str(&requests);
            let _ = writeln!(out, "{ind}      limits:");
            out.push_str(&limits);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(resource: Resource, request: f64, limit: Option<f64>) -> Recommendation {
        Recommendation {
            resource,
            request: Some(request),
            limit,
            request_lower: None,
            request_upper: None,
            rule: "test".into(),
            reason: "test".into(),
            risk: "test".into(),
            saving: None,
        }
    }

    #[test]
    fn series_id_with_four_parts_names_namespace_kind_workload_and_container() {
        let w = WorkloadRef::from_series_id("shop/statefulset/db/postgres");
        assert_eq!(w.namespace, "shop");
        assert_eq!(w.kind, "StatefulSet");
        assert_eq!(w.name, "db");
        assert_eq!(w.container, "postgres");
    }

    #[test]
    fn quantities_are_millicores_and_mebibytes_rounded_up() {
        assert_eq!(
            quantity(Resource::Cpu, Unit::Cores(1.0), 0.2501).as_deref(),
            Some("251m")
        );
        assert_eq!(
            quantity(Resource::Memory, Unit::Bytes(1.0), 1_048_577.0).as_deref(),
            Some("2Mi")
        );
        assert_eq!(quantity(Resource::Cpu, Unit::Unknown, 50.0), None);
    }

    #[test]
    fn patch_groups_containers_by_workload_and_removes_a_missing_limit() {
        let cpu = rec(Resource::Cpu, 0.5, None);
        let mem = rec(Resource::Memory, 512.0, Some(512.0));
        let other = rec(Resource::Cpu, 1.0, Some(2.0));
        let yaml = render(&[
            ContainerPatch {
                series_id: "shop/web/app",
                recommendations: vec![(&cpu, Unit::Cores(1.0)), (&mem, Unit::Bytes(1_048_576.0))],
            },
            ContainerPatch {
                series_id: "shop/web/sidecar",
                recommendations: vec![(&other, Unit::Cores(1.0))],
            },
        ]);
        let expected = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    spec:
      containers:
        - name: app
          resources:
            requests:
              cpu: 500m
              memory: 512Mi
            limits:
              cpu: null
              memory: 512Mi
        - name: sidecar
          resources:
            requests:
              cpu: 1000m
            limits:
              cpu: 2000m
";
        assert_eq!(yaml, expected);
    }
}
