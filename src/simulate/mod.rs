//! The cluster simulator: a seeded, reproducible Kubernetes cluster (or a replayed offline trace) whose
//! cAdvisor and kube-state-metrics history is written as OpenMetrics text that `promtool` backfills.
//! Pure (no tokio, no sqlx): plans are plain data and samples are functions of (container, time).

mod cluster;
mod openmetrics;
mod replay;
mod rng;

use std::io::Write;

pub use cluster::{
    BEHAVIOURS, Behaviour, Cluster, ClusterSpec, Container, Kind, Node, Pod, ReplicaSet, SpecError,
    Workload,
};
pub use openmetrics::{FamilyStats, WriteStats, write_cluster};
pub use replay::{Replay, ReplayError, ReplayOptions, ReplayedSeries, replay};

/// What `--truth FILE.json` holds: the planned cluster and what was written per metric.
#[derive(Debug, serde::Serialize)]
pub struct Truth<'a> {
    pub cluster: &'a Cluster,
    pub written: &'a WriteStats,
}

/// Why a simulation could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("while writing OpenMetrics: {0}")]
    Io(#[from] std::io::Error),
}

/// Plans the cluster of `spec` and writes its metrics to `out`.
pub fn simulate<W: Write>(
    spec: &ClusterSpec,
    out: W,
) -> Result<(Cluster, WriteStats), SimulateError> {
    let cluster = Cluster::plan(spec)?;
    let stats = write_cluster(&cluster, out)?;
    Ok((cluster, stats))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const END: i64 = 1_700_006_400;

    fn spec(workloads: usize, days: i64, step: i64, seed: u64) -> ClusterSpec {
        ClusterSpec {
            workloads,
            start: END - days * 86_400,
            end: END,
            step,
            seed,
        }
    }

    fn text(spec: &ClusterSpec) -> (Cluster, WriteStats, String) {
        let mut out = Vec::new();
        let (c, s) = simulate(spec, &mut out).expect("simulates");
        (c, s, String::from_utf8(out).expect("utf-8"))
    }

    fn by_behaviour(c: &Cluster, b: Behaviour) -> &Workload {
        c.workloads
            .iter()
            .find(|w| w.behaviour == b)
            .expect("behaviour present")
    }

    #[test]
    fn the_same_seed_writes_byte_identical_text_and_another_seed_does_not() {
        let (_, _, a) = text(&spec(12, 1, 300, 42));
        let (_, _, b) = text(&spec(12, 1, 300, 42));
        let (_, _, c) = text(&spec(12, 1, 300, 43));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn adding_workloads_leaves_the_earlier_ones_unchanged() {
        let small = Cluster::plan(&spec(5, 1, 300, 9)).unwrap();
        let large = Cluster::plan(&spec(18, 1, 300, 9)).unwrap();
        assert_eq!(small.nodes, large.nodes);
        assert_eq!(small.workloads[..], large.workloads[..5]);
    }

    #[test]
    fn output_is_grouped_by_family_and_series_each_in_time_order_and_ends_with_eof() {
        // Also at the coarsest step allowed, where a short-lived pod could fall between two samples.
        for step in [300, 3_600] {
            check_layout(&spec(24, 2, step, 1));
        }
    }

    fn check_layout(spec: &ClusterSpec) {
        let (_, stats, text) = text(spec);
        assert!(text.ends_with("# EOF\n"));
        let mut families_seen = BTreeSet::new();
        let mut series_seen = BTreeSet::new();
        let (mut family, mut series, mut last_t) = (String::new(), String::new(), i64::MIN);
        let mut samples: BTreeMap<String, u64> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
                assert!(
                    families_seen.insert(family.clone()),
                    "family {family} twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (labels, rest) = line.rsplit_once("} ").expect("sample line");
            assert!(labels.starts_with(&family), "{labels} outside {family}");
            let mut parts = rest.split(' ');
            let value: f64 = parts.next().unwrap().parse().expect("numeric value");
            let t: i64 = parts.next().unwrap().parse().expect("integer seconds");
            assert!(value.is_finite() && value >= 0.0, "{line}");
            if labels != series {
                assert!(series_seen.insert(labels.to_string()), "{labels} split");
                series = labels.to_string();
            } else {
                assert!(t > last_t, "{labels} not in time order");
            }
            last_t = t;
            *samples
                .entry(labels.split('{').next().unwrap().to_string())
                .or_default() += 1;
        }
        for f in &stats.families {
            assert_eq!(
                samples.get(&f.name).copied().unwrap_or(0),
                f.samples,
                "{}",
                f.name
            );
            let series = series_seen
                .iter()
                .filter(|s| s.split('{').next() == Some(f.name.as_str()))
                .count();
            assert_eq!(series as u64, f.series, "{} series", f.name);
        }
        assert_eq!(families_seen.len(), 10);
    }

    #[test]
    fn every_behaviour_appears_once_the_cluster_has_eleven_workloads() {
        let c = Cluster::plan(&spec(11, 1, 300, 5)).unwrap();
        let seen: BTreeSet<_> = c
            .workloads
            .iter()
            .map(|w| format!("{:?}", w.behaviour))
            .collect();
        assert_eq!(seen.len(), BEHAVIOURS.len());
        let names: BTreeSet<_> = c
            .workloads
            .iter()
            .map(|w| (&w.namespace, &w.name))
            .collect();
        assert_eq!(names.len(), c.workloads.len(), "workload names collide");
    }

    #[test]
    fn a_leaking_container_climbs_to_its_limit_is_oom_killed_and_counts_restarts() {
        let c = Cluster::plan(&spec(12, 3, 60, 3)).unwrap();
        let w = by_behaviour(&c, Behaviour::MemoryLeak);
        let pod = &w.pods[0];
        let ctr = &pod.containers[0];
        let limit = ctr.memory_limit.unwrap();
        assert!(ctr.oom_kills.len() >= 2, "kills: {:?}", ctr.oom_kills);
        for &kill in &ctr.oom_kills {
            let before = c.memory_working_set(ctr, kill - 60);
            let after = c.memory_working_set(ctr, kill + 60);
            assert!(
                before > 0.97 * limit && before <= limit,
                "{before} vs {limit}"
            );
            assert!(after < 0.7 * limit, "{after} vs {limit}");
            assert_eq!(c.restarts_at(ctr, kill), c.restarts_at(ctr, kill - 1) + 1);
        }
        let last = c.sample_times(pod).last().unwrap();
        assert_eq!(c.restarts_at(ctr, last), ctr.oom_kills.len());
    }

    #[test]
    fn an_autoscaled_workload_runs_as_many_pods_as_its_replica_count() {
        let c = Cluster::plan(&spec(12, 2, 60, 4)).unwrap();
        let w = by_behaviour(&c, Behaviour::Autoscaled);
        let counts: BTreeSet<u32> = (c.start..c.end)
            .step_by(300)
            .map(|t| c.replicas_at(w, t))
            .collect();
        assert!(counts.len() >= 3, "replica counts {counts:?}");
        assert!(w.pods.len() > *counts.iter().max().unwrap() as usize);
        for t in (c.start + 120..c.end).step_by(600) {
            let live = w.pods.iter().filter(|p| p.start <= t && t < p.end).count();
            assert_eq!(live as u32, c.replicas_at(w, t), "at {t}");
        }
    }

    #[test]
    fn a_rolling_deployment_replaces_its_pods_under_new_replica_sets() {
        let c = Cluster::plan(&spec(12, 3, 60, 6)).unwrap();
        let w = by_behaviour(&c, Behaviour::Rolling);
        assert!(w.replica_sets.len() >= 2);
        for rs in &w.replica_sets {
            let pods: Vec<_> = w.pods.iter().filter(|p| p.owner_name == rs.name).collect();
            assert_eq!(pods.len(), 3, "{}", rs.name);
            assert!(pods.iter().all(|p| p.name.starts_with(&rs.name)));
        }
        let names: BTreeSet<_> = w.pods.iter().map(|p| &p.name).collect();
        assert_eq!(names.len(), w.pods.len());
    }

    #[test]
    fn stateful_and_daemon_pods_are_named_and_placed_as_kubernetes_does() {
        let c = Cluster::plan(&spec(12, 1, 60, 7)).unwrap();
        let s = by_behaviour(&c, Behaviour::Stateful);
        assert_eq!(s.kind, Kind::StatefulSet);
        let names: Vec<_> = s.pods.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["postgres-0", "postgres-1", "postgres-2"]);
        let d = by_behaviour(&c, Behaviour::Daemon);
        let nodes: BTreeSet<_> = d.pods.iter().map(|p| &p.node).collect();
        assert_eq!(nodes.len(), c.nodes.len());
        assert_eq!(d.pods.len(), c.nodes.len());
    }

    #[test]
    fn a_starved_container_is_throttled_and_capped_while_a_steady_one_is_not() {
        let c = Cluster::plan(&spec(12, 1, 60, 8)).unwrap();
        let share = |b: Behaviour| {
            let w = by_behaviour(&c, b);
            let ctr = &w.pods[0].containers[0];
            let times: Vec<i64> = c.sample_times(&w.pods[0]).collect();
            let mean = times
                .iter()
                .map(|&t| c.throttled_share(w, ctr, t))
                .sum::<f64>()
                / times.len() as f64;
            let max_use = times
                .iter()
                .map(|&t| c.cpu_usage(w, ctr, t))
                .fold(0.0, f64::max);
            (mean, max_use, ctr.cpu_limit.unwrap())
        };
        let (starved, used, limit) = share(Behaviour::CpuStarved);
        assert!(starved > 0.25, "starved throttled share {starved}");
        assert!(used <= limit + 1e-12);
        let (steady, _, _) = share(Behaviour::Steady);
        assert!(steady < 0.05, "steady throttled share {steady}");
    }

    #[test]
    fn an_over_provisioned_service_uses_a_small_fraction_of_its_requests() {
        let c = Cluster::plan(&spec(12, 1, 300, 10)).unwrap();
        let w = by_behaviour(&c, Behaviour::OverProvisioned);
        let ctr = &w.pods[0].containers[0];
        let t = c.start + 43_200;
        assert!(c.cpu_usage(w, ctr, t) < 0.15 * ctr.cpu_request.unwrap());
        assert!(c.memory_working_set(ctr, t) < 0.15 * ctr.memory_request.unwrap());
    }

    #[test]
    fn a_growing_service_uses_more_at_the_end_than_at_the_start() {
        let c = Cluster::plan(&spec(12, 7, 300, 11)).unwrap();
        let w = by_behaviour(&c, Behaviour::Growth);
        let ctr = &w.pods[0].containers[0];
        let day_mean = |d: i64| {
            let ts = (c.start + d * 86_400..c.start + (d + 1) * 86_400).step_by(300);
            ts.map(|t| c.cpu_usage(w, ctr, t)).sum::<f64>() / 288.0
        };
        assert!(
            day_mean(6) > 1.15 * day_mean(0),
            "{} vs {}",
            day_mean(6),
            day_mean(0)
        );
    }

    #[test]
    fn a_bad_spec_is_refused_with_the_reason() {
        assert_eq!(
            Cluster::plan(&spec(0, 1, 60, 1)).unwrap_err(),
            SpecError::NoWorkloads
        );
        assert_eq!(
            Cluster::plan(&spec(3, 1, 7_200, 1)).unwrap_err(),
            SpecError::Step(7_200)
        );
        let mut s = spec(3, 1, 60, 1);
        s.start = s.end;
        assert!(matches!(Cluster::plan(&s), Err(SpecError::Window { .. })));
    }
}
