//! Pure: resolves pods to their owning workload (pod → ReplicaSet → Deployment, StatefulSet, DaemonSet,
//! Job, bare Pod) and aggregates per-pod series into per-workload container series (mean and max per
//! replica, replica count, requests, limits, restarts, OOM kills, throttling).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::parse::{QueryResult, SeriesView};
use crate::store::{ContainerKey, Grid, SamplePoints, Samples, WorkloadKey};

/// Who owns which pod, from `kube_pod_owner` and `kube_replicaset_owner`.
#[derive(Debug, Default, Clone)]
pub struct Ownership {
    pods: FxHashMap<(String, String), (String, String)>,
    replicasets: FxHashMap<(String, String), (String, String)>,
}

impl Ownership {
    pub fn from_results(pod_owner: &QueryResult, rs_owner: &QueryResult) -> Self {
        Self::from_labels(
            pod_owner.series.iter().map(|s| &s.labels),
            rs_owner.series.iter().map(|s| &s.labels),
        )
    }

    /// Ownership from the label sets of `kube_pod_owner` and `kube_replicaset_owner` series (the series
    /// API's answer), told apart by their metric name.
    pub fn from_label_sets(sets: &[BTreeMap<String, String>]) -> Self {
        let (pods, replicasets): (Vec<_>, Vec<_>) = sets
            .iter()
            .partition(|l| l.get("__name__").is_some_and(|n| n == "kube_pod_owner"));
        Self::from_labels(pods, replicasets)
    }

    fn from_labels<'a>(
        pod_owner: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
        rs_owner: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    ) -> Self {
        let label = |l: &BTreeMap<String, String>, name: &str| -> String {
            l.get(name).cloned().unwrap_or_default()
        };
        let mut o = Ownership::default();
        for l in pod_owner {
            if l.get("owner_is_controller").is_some_and(|v| v == "false") {
                continue;
            }
            o.pods.insert(
                (label(l, "namespace"), label(l, "pod")),
                (label(l, "owner_kind"), label(l, "owner_name")),
            );
        }
        for l in rs_owner {
            o.replicasets.insert(
                (label(l, "namespace"), label(l, "replicaset")),
                (label(l, "owner_kind"), label(l, "owner_name")),
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
    pub points: Samples,
}

fn container_key(own: &Ownership, s: &impl SeriesView) -> Option<ContainerKey> {
    container_key_of(
        own,
        s.label("namespace"),
        s.label("pod"),
        s.label("container"),
    )
}

fn container_key_of(own: &Ownership, ns: &str, pod: &str, container: &str) -> Option<ContainerKey> {
    if ns.is_empty() || pod.is_empty() || container.is_empty() || container == "POD" {
        return None;
    }
    Some(ContainerKey {
        workload: own.workload_of(ns, pod),
        container: container.to_string(),
    })
}

/// Per-step sums, counts and maxima of a group's points, folded in series order with no sort: every answer's
/// points lie on its query's step grid (range queries by definition and checked by the client, remote-read
/// evaluation and federation by construction), so each step has one slot. Reused from group to group.
#[derive(Default)]
struct Steps {
    t0: i64,
    step: i64,
    sum: Vec<f64>,
    max: Vec<f64>,
    count: Vec<u32>,
}

impl Steps {
    /// Folds the members' points in, keeping sums where `SUM` and maxima where `MAX` (counts always):
    /// what a caller does not read is not kept up, value after value.
    fn fold<const SUM: bool, const MAX: bool, S: SeriesView>(&mut self, members: &[&S], step: i64) {
        let spans = || members.iter().filter_map(|m| m.span());
        self.reset(spans().map(|s| s.0).min(), spans().map(|s| s.1).max(), step);
        for m in members {
            match m.grid() {
                // A grid lies on the same steps, inside the span: slice by slice, no check per value.
                Some(g) if g.step == step && !g.values.is_empty() => {
                    let at = ((g.t0 - self.t0) / step) as usize;
                    let end = at + g.values.len();
                    let sum = &mut self.sum[at..end];
                    let max = &mut self.max[at..end];
                    let count = &mut self.count[at..end];
                    for (j, &v) in g.values.iter().enumerate() {
                        if !v.is_nan() {
                            if SUM {
                                sum[j] += v;
                            }
                            if MAX {
                                max[j] = max[j].max(v);
                            }
                            count[j] += 1;
                        }
                    }
                }
                _ => m.for_each_slot(self.t0, step, |i, v| self.add::<SUM, MAX>(i, v)),
            }
        }
    }

    /// Empty slots for the steps from `t0` to `t1`; none without them or when `t1` is before `t0`.
    fn reset(&mut self, t0: Option<i64>, t1: Option<i64>, step: i64) {
        let (Some(t0), Some(t1)) = (t0, t1) else {
            self.count.clear();
            return;
        };
        if t1 < t0 {
            self.count.clear();
            return;
        }
        let n = ((t1 - t0) / step + 1) as usize;
        (self.t0, self.step) = (t0, step);
        self.sum.clear();
        self.sum.resize(n, -0.0);
        self.max.clear();
        self.max.resize(n, f64::MIN);
        self.count.clear();
        self.count.resize(n, 0);
    }

    /// One point at slot `i`, kept up as `fold`'s are.
    fn add<const SUM: bool, const MAX: bool>(&mut self, i: usize, v: f64) {
        if SUM {
            self.sum[i] += v;
        }
        if MAX {
            self.max[i] = self.max[i].max(v);
        }
        self.count[i] += 1;
    }

    /// The sum at time `t`, if a point was folded there.
    fn sum_at(&self, t: i64) -> Option<f64> {
        let i = usize::try_from((t - self.t0) / self.step).ok()?;
        (*self.count.get(i)? > 0).then(|| self.sum[i])
    }

    /// One value per step from the first step to the last, NaN at steps without points.
    fn grid(&self, value: impl Fn(f64, u32, f64) -> f64) -> Grid {
        // In lockstep over the three slices: no index to check, and a loop the compiler can widen.
        let slots = self.count.iter().zip(&self.sum).zip(&self.max);
        let values = slots.map(|((&count, &sum), &max)| match count {
            0 => f64::NAN,
            n => value(sum, n, max),
        });
        Grid {
            t0: self.t0,
            step: self.step,
            values: values.collect(),
        }
    }

    /// (time, sum, count, max) of each step with points, in time order.
    fn iter(&self) -> impl Iterator<Item = (i64, f64, u32, f64)> + '_ {
        (0..self.count.len())
            .filter(|&i| self.count[i] > 0)
            .map(|i| {
                let t = self.t0 + i as i64 * self.step;
                (t, self.sum[i], self.count[i], self.max[i])
            })
    }
}

/// Time-ordered points of one series.
type Points = Vec<(i64, f64)>;

/// Groups the series of `result` by the key `key_of` gives (series without a key are skipped), in the
/// order they came.
fn group<'a, K: Ord, S: SeriesView>(
    result: &'a QueryResult<S>,
    mut key_of: impl FnMut(&S) -> Option<K>,
) -> BTreeMap<K, Vec<&'a S>> {
    let mut groups: BTreeMap<K, Vec<&'a S>> = BTreeMap::new();
    for s in &result.series {
        if let Some(key) = key_of(s) {
            groups.entry(key).or_default().push(s);
        }
    }
    groups
}

/// Usage per replica: the mean over the workload's pods, the max over them, and (for memory) the number of
/// replicas reporting at each step.
pub fn usage<S: SeriesView>(
    own: &Ownership,
    result: &QueryResult<S>,
    step: i64,
    resource: &'static str,
    with_replicas: bool,
) -> Vec<Aggregated> {
    let groups = group(result, |s| container_key(own, s));
    let (mean_metric, max_metric, unit) = match resource {
        "cpu" => ("cpu_usage", "cpu_usage_max", "cores"),
        _ => ("memory_usage", "memory_usage_max", "bytes"),
    };
    let mut out = Vec::with_capacity(groups.len() * if with_replicas { 3 } else { 2 });
    let mut steps = Steps::default();
    for (key, members) in groups {
        steps.fold::<true, true, _>(&members, step);
        if with_replicas {
            out.push(Aggregated {
                container: key.clone(),
                metric: "replicas",
                unit: "count",
                points: Samples::Grid(steps.grid(|_, count, _| f64::from(count))),
            });
        }
        out.push(Aggregated {
            container: key.clone(),
            metric: mean_metric,
            unit,
            points: Samples::Grid(steps.grid(|sum, count, _| sum / f64::from(count))),
        });
        out.push(Aggregated {
            container: key,
            metric: max_metric,
            unit,
            points: Samples::Grid(steps.grid(|_, _, top| top)),
        });
    }
    out
}

/// Requests or limits (`kind` is "request" or "limit"): the largest over the workload's pods at each step,
/// per resource; resources other than cpu and memory are ignored.
pub fn capacity<S: SeriesView>(
    own: &Ownership,
    result: &QueryResult<S>,
    step: i64,
    kind: &'static str,
) -> Vec<Aggregated> {
    let groups = group(result, |s| capacity_key(own, |name| s.label(name)));
    let mut steps = Steps::default();
    groups
        .into_iter()
        .map(|((key, resource), members)| {
            steps.fold::<false, true, _>(&members, step);
            capacity_series(key, resource, kind, steps.grid(|_, _, top| top))
        })
        .collect()
}

/// `capacity` of maxima already folded per workload container and resource as the series came in
/// (`eval::FoldedMax` keyed by `capacity_key`).
pub fn capacity_of_maxima(
    maxima: Vec<((ContainerKey, &'static str), Grid)>,
    kind: &'static str,
) -> Vec<Aggregated> {
    maxima
        .into_iter()
        .map(|((key, resource), grid)| capacity_series(key, resource, kind, grid))
        .collect()
}

/// The workload container and resource a request or limit series counts for, from its labels; None for
/// a pod's sandbox, a series without pod or container, or a resource other than cpu and memory.
pub fn capacity_key<'a>(
    own: &Ownership,
    label: impl Fn(&str) -> &'a str,
) -> Option<(ContainerKey, &'static str)> {
    let resource: &'static str = match label("resource") {
        "cpu" => "cpu",
        "memory" => "memory",
        _ => return None,
    };
    let (ns, pod, container) = (label("namespace"), label("pod"), label("container"));
    Some((container_key_of(own, ns, pod, container)?, resource))
}

fn capacity_series(
    container: ContainerKey,
    resource: &'static str,
    kind: &'static str,
    grid: Grid,
) -> Aggregated {
    Aggregated {
        container,
        metric: match (resource, kind) {
            ("cpu", "request") => "cpu_request",
            ("cpu", _) => "cpu_limit",
            (_, "request") => "memory_request",
            _ => "memory_limit",
        },
        unit: if resource == "cpu" { "cores" } else { "bytes" },
        points: Samples::Grid(grid),
    }
}

/// Restarts and OOM kills per step, from the restart counters and the "last terminated reason" flag.
/// The first point of each pod is only a baseline: the caller queries one step before the window so that
/// a restart at the window's first step is still seen, and drops points before `from`.
pub fn restarts<S: SeriesView>(
    own: &Ownership,
    counters: &QueryResult<S>,
    oom_flags: &QueryResult<S>,
    (from, step): (i64, i64),
) -> Vec<Aggregated> {
    let mut flags: FxHashMap<(&str, &str, &str), Points> = FxHashMap::default();
    for s in &oom_flags.series {
        let k = (s.label("namespace"), s.label("pod"), s.label("container"));
        flags.entry(k).or_default().extend(s.points());
    }
    for f in flags.values_mut() {
        // Time order; where two series give the same time, the later one counts.
        f.sort_by_key(|p| p.0);
        f.reverse();
        f.dedup_by_key(|p| p.0);
        f.reverse();
    }
    // Per workload container, its pods' restarts and, at the same times, OOM kills among them, summed
    // per step as they are read.
    let groups = group(counters, |s| container_key(own, s));
    let (mut restarts, mut ooms) = (Vec::new(), Vec::new());
    let (mut r, mut o) = (Steps::default(), Steps::default());
    let mut slots = Vec::new();
    for (key, members) in groups {
        let spans = || members.iter().filter_map(|m| m.span());
        // Points before `from` are only baselines: no slots for them.
        let (t0, t1) = (
            spans().map(|s| s.0.max(from)).min(),
            spans().map(|s| s.1).max(),
        );
        r.reset(t0, t1, step);
        o.reset(t0, t1, step);
        // Points are read as slots from the earliest baseline on: `shift` slots before the first kept.
        let (Some(lo), Some(t0)) = (spans().map(|s| s.0).min(), t0) else {
            continue;
        };
        let shift = ((t0 - lo) / step) as usize;
        for s in members {
            let flag: &[(i64, f64)] = flags
                .get(&(s.label("namespace"), s.label("pod"), s.label("container")))
                .map_or(&[], Vec::as_slice);
            // The counter's slots first, then one plain loop over them (a closure per point would keep
            // the cursor and the last value in memory rather than in registers).
            slots.clear();
            s.for_each_slot(lo, step, |j, v| slots.push((j, v)));
            // Flags at or before the current time: the counter's points are in time order, so a cursor
            // will do.
            let mut seen = 0;
            for w in slots.windows(2) {
                let ((_, prev), (j, v)) = (w[0], w[1]);
                let t = lo + j as i64 * step;
                while seen < flag.len() && flag[seen].0 <= t {
                    seen += 1;
                }
                if t < from {
                    continue;
                }
                // A counter that went down was reset (a new pod with the same name): all of it is new.
                let inc = if v >= prev { v - prev } else { v };
                let oom = seen > 0 && flag[seen - 1].1 >= 1.0;
                r.add::<true, false>(j - shift, inc);
                o.add::<true, false>(j - shift, if oom { inc } else { 0.0 });
            }
        }
        if r.count.iter().all(|&c| c == 0) {
            continue;
        }
        restarts.push(Aggregated {
            container: key.clone(),
            metric: "restarts",
            unit: "count",
            points: Samples::Grid(r.grid(|sum, _, _| sum)),
        });
        ooms.push(Aggregated {
            container: key,
            metric: "oom_kills",
            unit: "count",
            points: Samples::Grid(o.grid(|sum, _, _| sum)),
        });
    }
    restarts.extend(ooms);
    restarts
}

/// The share of CFS periods in which the container was throttled, over the workload's pods.
pub fn throttling<S: SeriesView>(
    own: &Ownership,
    throttled: &QueryResult<S>,
    periods: &QueryResult<S>,
    step: i64,
) -> Vec<Aggregated> {
    let throttled = group(throttled, |s| container_key(own, s));
    let periods = group(periods, |s| container_key(own, s));
    let (mut th, mut pe) = (Steps::default(), Steps::default());
    periods
        .into_iter()
        .map(|(key, members)| {
            pe.fold::<true, false, _>(&members, step);
            th.fold::<true, false, _>(throttled.get(&key).map_or(&[][..], Vec::as_slice), step);
            let points = pe
                .iter()
                .filter(|&(_, p, _, _)| p > 0.0)
                .map(|(t, p, _, _)| (t, (th.sum_at(t).unwrap_or(0.0) / p).clamp(0.0, 1.0)))
                .collect::<Vec<_>>();
            Aggregated {
                container: key,
                metric: "cpu_throttled_ratio",
                unit: "ratio",
                points: Samples::Pairs(points),
            }
        })
        .filter(|a| a.points.count() > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse::Series;

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: points.to_vec(),
        }
    }

    /// The points of the output's series named `metric`.
    fn points_of(out: &[Aggregated], metric: &str) -> Vec<(i64, f64)> {
        let a = out.iter().find(|a| a.metric == metric);
        a.expect("the metric is in the output")
            .points
            .points()
            .collect()
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
                // A pod that began before the others comes last: steps are placed by time.
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "api-7f9c8-yyyyy"),
                        ("container", "app"),
                    ],
                    &[(-60, 5.0)],
                ),
            ],
            dropped_non_finite: 0,
        };
        let out = usage(&o, &r, 60, "memory", true);
        let get = |m: &str| points_of(&out, m);
        assert_eq!(get("memory_usage"), vec![(-60, 5.0), (0, 1.0), (60, 3.0)]);
        assert_eq!(
            get("memory_usage_max"),
            vec![(-60, 5.0), (0, 1.0), (60, 4.0)]
        );
        assert_eq!(get("replicas"), vec![(-60, 1.0), (0, 1.0), (60, 2.0)]);
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
        let out = restarts(&o, &counters, &flags, (60, 60));
        let get = |m: &str| points_of(&out, m);
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
    fn restarts_of_pods_that_began_at_different_times_add_up_per_step() {
        let o = owners();
        let pod = |name| [("namespace", "shop"), ("pod", name), ("container", "db")];
        let counters = QueryResult {
            series: vec![
                series(&pod("db-0"), &[(120, 0.0), (180, 1.0)]),
                series(&pod("db-1"), &[(0, 0.0), (60, 2.0), (120, 2.0)]),
            ],
            dropped_non_finite: 0,
        };
        let out = restarts(&o, &counters, &QueryResult::default(), (0, 60));
        let get = |m: &str| points_of(&out, m);
        assert_eq!(get("restarts"), vec![(60, 2.0), (120, 0.0), (180, 1.0)]);
        assert_eq!(get("oom_kills"), vec![(60, 0.0), (120, 0.0), (180, 0.0)]);
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
        let out = throttling(&o, &th, &pe, 60);
        assert_eq!(points_of(&out, "cpu_throttled_ratio"), vec![(0, 0.25)]);
    }

    proptest::proptest! {
        /// Requests folded into each workload container's maxima as the series stream in store what
        /// evaluating each pod's `max by` and then taking the largest over the pods stores: pods of one
        /// Deployment, of a StatefulSet and a bare pod, a pod's series twice (two exporters), samples
        /// that come and go, stale markers and NaN, both resources and one to ignore, in any order.
        #[test]
        fn requests_folded_per_workload_equal_the_pods_maxima(
            series in proptest::collection::vec(
                (0usize..5, 0usize..3, 0usize..2, proptest::collection::vec((1i64..400, 0u8..12), 1..30)),
                1..14,
            ),
        ) {
            use crate::scrape::eval::{FoldedMax, KeyOf, RangeEval};
            let own = owners();
            let pods = ["api-7f9c8-abcde", "api-7f9c8-fghij", "db-0", "debug", "cache-6c9d7f5b8-zz9kq"];
            let resources = ["cpu", "memory", "ephemeral-storage"];
            // A value from its code: most repeat (requests rarely change), a few are stale or NaN.
            let value = |c: u8| match c {
                0 => f64::from_bits(0x7ff0_0000_0000_0002),
                1 => f64::NAN,
                c => f64::from(c % 4) * 0.25 + 0.5,
            };
            type Raw<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);
            let raw: Vec<Raw> = series
                .iter()
                .map(|(pod, resource, exporter, samples)| {
                    let labels = vec![
                        ("__name__", "kube_pod_container_resource_requests"),
                        ("container", "app"),
                        ("instance", ["ksm-a", "ksm-b"][*exporter]),
                        ("namespace", "shop"),
                        ("pod", pods[*pod]),
                        ("resource", resources[*resource]),
                    ];
                    let mut t = 0;
                    let points = samples.iter().map(|&(gap, c)| { t += gap * 1_000; (t, value(c)) });
                    (labels, points.collect())
                })
                .collect();
            let expr = crate::scrape::exprs::REQUESTS;
            let span = (60, 9_000, 60);
            let lookback = 300_000;
            let mut per_pod = RangeEval::new(expr, span, lookback);
            let key_of: KeyOf<(ContainerKey, &'static str)> = std::sync::Arc::new(move |labels| {
                capacity_key(&own, |name| crate::scrape::remote::label(labels, name))
            });
            let mut folded = FoldedMax::new(expr, span, lookback, key_of);
            for (labels, samples) in &raw {
                per_pod.push(labels, samples);
                folded.push(labels, samples);
            }
            let want = capacity(&owners(), &per_pod.finish(), 60, "request");
            let got = capacity_of_maxima(folded.finish().groups, "request");
            let points = |out: &[Aggregated]| -> Vec<_> {
                out.iter()
                    .map(|a| (a.container.clone(), a.metric, a.points.points().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>()))
                    .collect()
            };
            proptest::prop_assert_eq!(points(&got), points(&want));
        }
    }
}
