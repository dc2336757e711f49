//! Pure: resolves pods to their owning workload (pod → ReplicaSet → Deployment, StatefulSet, DaemonSet,
//! Job, bare Pod) and aggregates per-pod series into per-workload container series (mean and max per
//! replica, replica count, requests, limits, restarts, OOM kills, throttling).

use std::collections::{BTreeMap, HashMap};

use super::parse::{QueryResult, Series};
use crate::store::{ContainerKey, WorkloadKey};

/// Who owns which pod, from `kube_pod_owner` and `kube_replicaset_owner`.
#[derive(Debug, Default, Clone)]
pub struct Ownership {
    pods: HashMap<(String, String), (String, String)>,
    replicasets: HashMap<(String, String), (String, String)>,
}

impl Ownership {
    pub fn from_results(pod_owner: &QueryResult, rs_owner: &QueryResult) -> Self {
        let mut o = Ownership::default();
        for s in &pod_owner.series {
            let kind = s.label("owner_kind");
            if s.label("owner_is_controller") == "false" {
                continue;
            }
            o.pods.insert(
                (s.label("namespace").into(), s.label("pod").into()),
                (kind.into(), s.label("owner_name").into()),
            );
        }
        for s in &rs_owner.series {
            o.replicasets.insert(
                (s.label("namespace").into(), s.label("replicaset").into()),
                (s.label("owner_kind").into(), s.label("owner_name").into()),
            );
        }
        o
    }

    /// Merges ownership learnt from another window (later windows win).
    pub fn extend(&mut self, other: Ownership) {
        self.pods.extend(other.pods);
        self.replicasets.extend(other.replicasets);
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// The workload owning a pod. Without ownership data the pod name is read the way controllers name
    /// pods (`deploy-5d9c7b8f4-x2x7q`, `sts-0`), so a missing kube-state-metrics does not split a
    /// Deployment into one workload per pod.
    pub fn workload_of(&self, namespace: &str, pod: &str) -> WorkloadKey {
        let key = |kind: &str, name: &str| WorkloadKey {
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        };
        match self.pods.get(&(namespace.to_string(), pod.to_string())) {
            Some((kind, name)) if kind == "ReplicaSet" => {
                match self.replicasets.get(&(namespace.to_string(), name.clone())) {
                    Some((k, n)) if !k.is_empty() && k != "<none>" && !n.is_empty() => key(k, n),
                    Some(_) => key("ReplicaSet", name),
                    None => match strip_hash(name) {
                        Some(deploy) => key("Deployment", deploy),
                        None => key("ReplicaSet", name),
                    },
                }
            }
            Some((kind, name)) if !kind.is_empty() && kind != "<none>" && !name.is_empty() => {
                key(kind, name)
            }
            Some(_) => key("Pod", pod),
            None => infer_from_pod_name(namespace, pod),
        }
    }
}

/// `api-5d9c7b8f4` → `api`: ReplicaSet names are the Deployment's name and a pod-template hash.
fn strip_hash(rs: &str) -> Option<&str> {
    let (base, hash) = rs.rsplit_once('-')?;
    let looks_like_hash = (5..=10).contains(&hash.len())
        && hash
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (looks_like_hash && !base.is_empty()).then_some(base)
}

fn infer_from_pod_name(namespace: &str, pod: &str) -> WorkloadKey {
    let key = |kind: &str, name: &str| WorkloadKey {
        namespace: namespace.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    };
    if let Some((rest, suffix)) = pod.rsplit_once('-') {
        if suffix.len() == 5
            && suffix.chars().all(|c| c.is_ascii_alphanumeric())
            && let Some(deploy) = strip_hash(rest)
        {
            return key("Deployment", deploy);
        }
        if !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_digit()) {
            return key("StatefulSet", rest);
        }
    }
    key("Pod", pod)
}

/// One aggregated series to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    pub container: ContainerKey,
    pub metric: &'static str,
    pub unit: &'static str,
    pub points: Vec<(i64, f64)>,
}

fn container_key(own: &Ownership, s: &Series) -> Option<ContainerKey> {
    let (ns, pod, container) = (s.label("namespace"), s.label("pod"), s.label("container"));
    if ns.is_empty() || pod.is_empty() || container.is_empty() || container == "POD" {
        return None;
    }
    Some(ContainerKey {
        workload: own.workload_of(ns, pod),
        container: container.to_string(),
    })
}

#[derive(Default, Clone, Copy)]
struct Acc {
    sum: f64,
    n: u32,
    max: f64,
}

/// Usage per replica: the mean over the workload's pods, the max over them, and (for memory) the number of
/// replicas reporting at each step.
pub fn usage(
    own: &Ownership,
    result: &QueryResult,
    resource: &'static str,
    with_replicas: bool,
) -> Vec<Aggregated> {
    let mut groups: BTreeMap<ContainerKey, BTreeMap<i64, Acc>> = BTreeMap::new();
    for s in &result.series {
        let Some(key) = container_key(own, s) else {
            continue;
        };
        let g = groups.entry(key).or_default();
        for &(t, v) in &s.points {
            let a = g.entry(t).or_insert(Acc {
                sum: 0.0,
                n: 0,
                max: f64::MIN,
            });
            a.sum += v;
            a.n += 1;
            a.max = a.max.max(v);
        }
    }
    let (mean_metric, max_metric, unit) = match resource {
        "cpu" => ("cpu_usage", "cpu_usage_max", "cores"),
        _ => ("memory_usage", "memory_usage_max", "bytes"),
    };
    let mut out = Vec::new();
    for (key, accs) in groups {
        let mean = accs.iter().map(|(&t, a)| (t, a.sum / a.n as f64)).collect();
        let max = accs.iter().map(|(&t, a)| (t, a.max)).collect();
        if with_replicas {
            out.push(Aggregated {
                container: key.clone(),
                metric: "replicas",
                unit: "count",
                points: accs.iter().map(|(&t, a)| (t, a.n as f64)).collect(),
            });
        }
        out.push(Aggregated {
            container: key.clone(),
            metric: mean_metric,
            unit,
            points: mean,
        });
        out.push(Aggregated {
            container: key,
            metric: max_metric,
            unit,
            points: max,
        });
    }
    out
}

/// Requests or limits (`kind` is "request" or "limit"): the largest over the workload's pods at each step,
/// per resource; resources other than cpu and memory are ignored.
pub fn capacity(own: &Ownership, result: &QueryResult, kind: &'static str) -> Vec<Aggregated> {
    let mut groups: BTreeMap<(ContainerKey, &'static str), BTreeMap<i64, f64>> = BTreeMap::new();
    for s in &result.series {
        let resource: &'static str = match s.label("resource") {
            "cpu" => "cpu",
            "memory" => "memory",
            _ => continue,
        };
        let Some(key) = container_key(own, s) else {
            continue;
        };
        let g = groups.entry((key, resource)).or_default();
        for &(t, v) in &s.points {
            let e = g.entry(t).or_insert(f64::MIN);
            *e = e.max(v);
        }
    }
    groups
        .into_iter()
        .map(|((key, resource), pts)| Aggregated {
            container: key,
            metric: match (resource, kind) {
                ("cpu", "request") => "cpu_request",
                ("cpu", _) => "cpu_limit",
                (_, "request") => "memory_request",
                _ => "memory_limit",
            },
            unit: if resource == "cpu" { "cores" } else { "bytes" },
            points: pts.into_iter().collect(),
        })
        .collect()
}

/// Restarts and OOM kills per step, from the restart counters and the "last terminated reason" flag.
/// The first point of each pod is only a baseline: the caller queries one step before the window so that
/// a restart at the window's first step is still seen, and drops points before `from`.
pub fn restarts(
    own: &Ownership,
    counters: &QueryResult,
    oom_flags: &QueryResult,
    from: i64,
) -> Vec<Aggregated> {
    let mut flags: HashMap<(String, String, String), BTreeMap<i64, f64>> = HashMap::new();
    for s in &oom_flags.series {
        let k = (
            s.label("namespace").into(),
            s.label("pod").into(),
            s.label("container").into(),
        );
        flags.entry(k).or_default().extend(s.points.iter().copied());
    }
    let mut restarts: BTreeMap<ContainerKey, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut ooms: BTreeMap<ContainerKey, BTreeMap<i64, f64>> = BTreeMap::new();
    for s in &counters.series {
        let Some(key) = container_key(own, s) else {
            continue;
        };
        let flag = flags.get(&(
            s.label("namespace").into(),
            s.label("pod").into(),
            s.label("container").into(),
        ));
        let r = restarts.entry(key.clone()).or_default();
        let o = ooms.entry(key).or_default();
        for w in s.points.windows(2) {
            let ((_, prev), (t, v)) = (w[0], w[1]);
            if t < from {
                continue;
            }
            // A counter that went down was reset (a new pod with the same name): all of it is new.
            let inc = if v >= prev { v - prev } else { v };
            *r.entry(t).or_default() += inc;
            let oom = flag
                .and_then(|f| f.range(..=t).next_back())
                .is_some_and(|(_, &f)| f >= 1.0);
            *o.entry(t).or_default() += if oom { inc } else { 0.0 };
        }
    }
    let mut out = Vec::new();
    for (metric, groups) in [("restarts", restarts), ("oom_kills", ooms)] {
        for (key, pts) in groups {
            if pts.is_empty() {
                continue;
            }
            out.push(Aggregated {
                container: key,
                metric,
                unit: "count",
                points: pts.into_iter().collect(),
            });
        }
    }
    out
}

/// The share of CFS periods in which the container was throttled, over the workload's pods.
pub fn throttling(
    own: &Ownership,
    throttled: &QueryResult,
    periods: &QueryResult,
) -> Vec<Aggregated> {
    let mut sums: BTreeMap<ContainerKey, BTreeMap<i64, (f64, f64)>> = BTreeMap::new();
    for (res, is_throttled) in [(throttled, true), (periods, false)] {
        for s in &res.series {
            let Some(key) = container_key(own, s) else {
                continue;
            };
            let g = sums.entry(key).or_default();
            for &(t, v) in &s.points {
                let e = g.entry(t).or_default();
                if is_throttled { e.0 += v } else { e.1 += v }
            }
        }
    }
    sums.into_iter()
        .map(|(key, pts)| Aggregated {
            container: key,
            metric: "cpu_throttled_ratio",
            unit: "ratio",
            points: pts
                .into_iter()
                .filter(|(_, (_, p))| *p > 0.0)
                .map(|(t, (th, p))| (t, (th / p).clamp(0.0, 1.0)))
                .collect(),
        })
        .filter(|a| !a.points.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: points.to_vec(),
        }
    }

    fn owners() -> Ownership {
        let pods = QueryResult {
            series: vec![
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "api-7f9c8-abcde"),
                        ("owner_kind", "ReplicaSet"),
                        ("owner_name", "api-7f9c8"),
                    ],
                    &[],
                ),
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "db-0"),
                        ("owner_kind", "StatefulSet"),
                        ("owner_name", "db"),
                    ],
                    &[],
                ),
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "debug"),
                        ("owner_kind", "<none>"),
                        ("owner_name", "<none>"),
                    ],
                    &[],
                ),
            ],
            dropped_non_finite: 0,
        };
        let rs = QueryResult {
            series: vec![series(
                &[
                    ("namespace", "shop"),
                    ("replicaset", "api-7f9c8"),
                    ("owner_kind", "Deployment"),
                    ("owner_name", "api"),
                ],
                &[],
            )],
            dropped_non_finite: 0,
        };
        Ownership::from_results(&pods, &rs)
    }

    #[test]
    fn pods_resolve_through_replicasets_to_their_deployment() {
        let o = owners();
        assert_eq!(o.workload_of("shop", "api-7f9c8-abcde").kind, "Deployment");
        assert_eq!(o.workload_of("shop", "api-7f9c8-abcde").name, "api");
        assert_eq!(o.workload_of("shop", "db-0").kind, "StatefulSet");
        assert_eq!(o.workload_of("shop", "debug").kind, "Pod");
    }

    #[test]
    fn pods_without_ownership_data_are_inferred_from_their_names() {
        let o = Ownership::default();
        let w = o.workload_of("a", "checkout-5d9c7b8f4-x2x7q");
        assert_eq!(
            (w.kind.as_str(), w.name.as_str()),
            ("Deployment", "checkout")
        );
        let w = o.workload_of("a", "kafka-2");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("StatefulSet", "kafka"));
    }

    #[test]
    fn usage_is_averaged_per_replica_and_replicas_counted() {
        let o = owners();
        let r = QueryResult {
            series: vec![
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "api-7f9c8-abcde"),
                        ("container", "app"),
                    ],
                    &[(0, 1.0), (60, 2.0)],
                ),
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "api-7f9c8-zzzzz"),
                        ("container", "app"),
                    ],
                    &[(60, 4.0)],
                ),
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "api-7f9c8-zzzzz"),
                        ("container", "POD"),
                    ],
                    &[(60, 9.0)],
                ),
            ],
            dropped_non_finite: 0,
        };
        let out = usage(&o, &r, "memory", true);
        let get = |m: &str| out.iter().find(|a| a.metric == m).unwrap().points.clone();
        assert_eq!(get("memory_usage"), vec![(0, 1.0), (60, 3.0)]);
        assert_eq!(get("memory_usage_max"), vec![(0, 1.0), (60, 4.0)]);
        assert_eq!(get("replicas"), vec![(0, 1.0), (60, 2.0)]);
        assert!(out.iter().all(|a| a.container.workload.name == "api"));
    }

    #[test]
    fn restarts_count_increases_and_oom_kills_follow_the_flag() {
        let o = owners();
        let l = [("namespace", "shop"), ("pod", "db-0"), ("container", "db")];
        let counters = QueryResult {
            series: vec![series(
                &l,
                &[(0, 3.0), (60, 3.0), (120, 4.0), (180, 4.0), (240, 1.0)],
            )],
            dropped_non_finite: 0,
        };
        let flags = QueryResult {
            series: vec![series(&l, &[(120, 1.0), (240, 0.0)])],
            dropped_non_finite: 0,
        };
        let out = restarts(&o, &counters, &flags, 60);
        let get = |m: &str| out.iter().find(|a| a.metric == m).unwrap().points.clone();
        assert_eq!(
            get("restarts"),
            vec![(60, 0.0), (120, 1.0), (180, 0.0), (240, 1.0)]
        );
        assert_eq!(
            get("oom_kills"),
            vec![(60, 0.0), (120, 1.0), (180, 0.0), (240, 0.0)]
        );
    }

    #[test]
    fn throttling_is_the_share_of_throttled_periods() {
        let o = owners();
        let l = [("namespace", "shop"), ("pod", "db-0"), ("container", "db")];
        let th = QueryResult {
            series: vec![series(&l, &[(0, 1.0), (60, 0.0)])],
            dropped_non_finite: 0,
        };
        let pe = QueryResult {
            series: vec![series(&l, &[(0, 4.0), (60, 0.0)])],
            dropped_non_finite: 0,
        };
        let out = throttling(&o, &th, &pe);
        assert_eq!(out[0].points, vec![(0, 0.25)]);
    }
}
