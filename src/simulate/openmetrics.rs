//! OpenMetrics text as `promtool tsdb create-blocks-from openmetrics` backfills it: family by family,
//! series by series, each series in time order, timestamps in seconds, `# EOF` at the end.

use std::fmt::{Display, Write as _};
use std::io::{self, Write};

use serde::Serialize;

use super::cluster::{Cluster, Container, Pod, Workload};

/// Counter families get `_total` on their samples, as OpenMetrics requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    Counter,
    Gauge,
}

/// What was written for one metric (named as queried: counters with `_total`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyStats {
    pub name: String,
    pub series: u64,
    pub samples: u64,
}

/// Series and sample counts per metric, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    pub families: Vec<FamilyStats>,
}

impl WriteStats {
    pub fn family(&self, name: &str) -> Option<&FamilyStats> {
        self.families.iter().find(|f| f.name == name)
    }

    pub fn samples(&self) -> u64 {
        self.families.iter().map(|f| f.samples).sum()
    }

    pub fn series(&self) -> u64 {
        self.families.iter().map(|f| f.series).sum()
    }
}

/// The low-level writer: it owns ordering and escaping so the generators only say what to write.
pub(crate) struct OmWriter<W: Write> {
    out: W,
    stats: WriteStats,
    line: String,
    /// A series is counted at its first sample: one without samples does not exist for Prometheus.
    fresh_series: bool,
}

impl<W: Write> OmWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            stats: WriteStats::default(),
            line: String::with_capacity(512),
            fresh_series: false,
        }
    }

    pub(crate) fn family(&mut self, family: &str, kind: MetricType, help: &str) -> io::Result<()> {
        let (type_name, sample_name) = match kind {
            MetricType::Counter => ("counter", format!("{family}_total")),
            MetricType::Gauge => ("gauge", family.to_string()),
        };
        writeln!(self.out, "# HELP {family} {help}")?;
        writeln!(self.out, "# TYPE {family} {type_name}")?;
        self.stats.families.push(FamilyStats {
            name: sample_name,
            series: 0,
            samples: 0,
        });
        Ok(())
    }

    /// Starts a series of the current family; returns the text every sample line starts with.
    pub(crate) fn series(&mut self, labels: &[(&str, &str)]) -> String {
        let fam = self
            .stats
            .families
            .last()
            .expect("a family is declared before its series");
        self.fresh_series = true;
        let mut s = fam.name.clone();
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push_str("=\"");
            escape_into(&mut s, v);
            s.push('"');
        }
        s.push('}');
        s
    }

    pub(crate) fn sample(&mut self, prefix: &str, value: impl Display, t: i64) -> io::Result<()> {
        self.line.clear();
        let _ = writeln!(self.line, "{prefix} {value} {t}");
        self.out.write_all(self.line.as_bytes())?;
        if let Some(f) = self.stats.families.last_mut() {
            f.samples += 1;
            if self.fresh_series {
                f.series += 1;
                self.fresh_series = false;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<WriteStats> {
        self.out.write_all(b"# EOF\n")?;
        self.out.flush()?;
        Ok(self.stats)
    }
}

fn escape_into(s: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
}

pub(crate) const KSM_INSTANCE: &str = "10.0.255.10:8080";

/// Writes the whole simulated cluster as OpenMetrics text; returns what was written per metric.
/// Wrap a file in a `BufWriter`: the writer issues one small write per sample.
pub fn write_cluster<W: Write>(cluster: &Cluster, out: W) -> io::Result<WriteStats> {
    let mut w = OmWriter::new(out);
    let step = cluster.step as f64;

    w.family(
        "container_cpu_usage_seconds",
        MetricType::Counter,
        "Cumulative cpu time consumed in seconds.",
    )?;
    for (wl, pod) in pods(cluster) {
        for c in &pod.containers {
            let prefix = w.series(&cadvisor_labels(cluster, wl, pod, Some(c)));
            let (mut acc, mut restarts) = (0.0, 0);
            for t in cluster.sample_times(pod) {
                // A restarted container is a new cgroup: its counter starts again from zero.
                let r = cluster.restarts_at(c, t);
                if r != restarts {
                    (acc, restarts) = (0.0, r);
                }
                acc += cluster.cpu_usage(wl, c, t) * step;
                w.sample(&prefix, format_args!("{acc:.3}"), t)?;
            }
        }
        // The pod's own cgroup (no container label) sums its containers and survives their restarts.
        let prefix = w.series(&cadvisor_labels(cluster, wl, pod, None));
        let mut acc = 0.0;
        for t in cluster.sample_times(pod) {
            acc += pod
                .containers
                .iter()
                .map(|c| cluster.cpu_usage(wl, c, t))
                .sum::<f64>()
                * step;
            w.sample(&prefix, format_args!("{acc:.3}"), t)?;
        }
    }

    w.family(
        "container_memory_working_set_bytes",
        MetricType::Gauge,
        "Current working set in bytes.",
    )?;
    for (wl, pod) in pods(cluster) {
        for c in &pod.containers {
            let prefix = w.series(&cadvisor_labels(cluster, wl, pod, Some(c)));
            for t in cluster.sample_times(pod) {
                w.sample(&prefix, cluster.memory_working_set(c, t), t)?;
            }
        }
        let prefix = w.series(&cadvisor_labels(cluster, wl, pod, None));
        for t in cluster.sample_times(pod) {
            let total: f64 = pod
                .containers
                .iter()
                .map(|c| cluster.memory_working_set(c, t))
                .sum();
            w.sample(&prefix, total, t)?;
        }
    }

    // cAdvisor only exports CFS statistics for containers with a CPU quota (a limit).
    for (family, help, throttled) in [
        (
            "container_cpu_cfs_periods",
            "Number of elapsed enforcement period intervals.",
            false,
        ),
        (
            "container_cpu_cfs_throttled_periods",
            "Number of throttled period intervals.",
            true,
        ),
    ] {
        w.family(family, MetricType::Counter, help)?;
        for (wl, pod, c) in limited(cluster) {
            let prefix = w.series(&cadvisor_labels(cluster, wl, pod, Some(c)));
            let mut acc = 0.0f64;
            for t in cluster.sample_times(pod) {
                let share = if throttled {
                    cluster.throttled_share(wl, c, t)
                } else {
                    1.0
                };
                acc += cluster.cfs_periods(wl, c, t) * share;
                w.sample(&prefix, acc.floor(), t)?;
            }
        }
    }

    for (family, help, is_limit) in [
        (
            "kube_pod_container_resource_requests",
            "The number of requested request resource by a container.",
            false,
        ),
        (
            "kube_pod_container_resource_limits",
            "The number of requested limit resource by a container.",
            true,
        ),
    ] {
        w.family(family, MetricType::Gauge, help)?;
        for (wl, pod) in pods(cluster) {
            for c in &pod.containers {
                let (cpu, mem) = if is_limit {
                    (c.cpu_limit, c.memory_limit)
                } else {
                    (c.cpu_request, c.memory_request)
                };
                for (value, resource, unit) in [(cpu, "cpu", "core"), (mem, "memory", "byte")] {
                    let Some(value) = value else { continue };
                    let prefix = w.series(&[
                        ("container", &c.name),
                        ("instance", KSM_INSTANCE),
                        ("job", "kube-state-metrics"),
                        ("namespace", &wl.namespace),
                        ("node", &pod.node),
                        ("pod", &pod.name),
                        ("resource", resource),
                        ("uid", &pod.uid),
                        ("unit", unit),
                    ]);
                    for t in cluster.sample_times(pod) {
                        w.sample(&prefix, value, t)?;
                    }
                }
            }
        }
    }

    w.family(
        "kube_pod_owner",
        MetricType::Gauge,
        "Information about the Pod's owner.",
    )?;
    for (wl, pod) in pods(cluster) {
        let prefix = w.series(&owner_labels(
            &wl.namespace,
            ("pod", &pod.name),
            (&pod.owner_kind, &pod.owner_name),
            Some(&pod.uid),
        ));
        for t in cluster.sample_times(pod) {
            w.sample(&prefix, 1, t)?;
        }
    }

    // Old ReplicaSets stay (scaled to zero) for rollbacks, so kube-state-metrics keeps exporting them.
    w.family(
        "kube_replicaset_owner",
        MetricType::Gauge,
        "Information about the ReplicaSet's owner.",
    )?;
    for wl in &cluster.workloads {
        for rs in &wl.replica_sets {
            let prefix = w.series(&owner_labels(
                &wl.namespace,
                ("replicaset", &rs.name),
                (wl.kind.as_str(), &wl.name),
                None,
            ));
            for k in cluster.grid(rs.created, cluster.end) {
                w.sample(&prefix, 1, cluster.start + k * cluster.step)?;
            }
        }
    }

    w.family(
        "kube_pod_container_status_restarts",
        MetricType::Counter,
        "The number of container restarts per container.",
    )?;
    for (wl, pod) in pods(cluster) {
        for c in &pod.containers {
            let prefix = w.series(&ksm_container_labels(wl, pod, c, None));
            for t in cluster.sample_times(pod) {
                w.sample(&prefix, cluster.restarts_at(c, t), t)?;
            }
        }
    }

    w.family(
        "kube_pod_container_status_last_terminated_reason",
        MetricType::Gauge,
        "Describes the last reason the container was in terminated state.",
    )?;
    for (wl, pod) in pods(cluster) {
        for c in &pod.containers {
            let Some(&first) = c.oom_kills.first() else {
                continue;
            };
            let prefix = w.series(&ksm_container_labels(wl, pod, c, Some("OOMKilled")));
            for t in cluster.sample_times(pod).filter(|&t| t >= first) {
                w.sample(&prefix, 1, t)?;
            }
        }
    }

    w.finish()
}

fn pods(cluster: &Cluster) -> impl Iterator<Item = (&Workload, &Pod)> {
    cluster
        .workloads
        .iter()
        .flat_map(|w| w.pods.iter().map(move |p| (w, p)))
}

fn limited(cluster: &Cluster) -> impl Iterator<Item = (&Workload, &Pod, &Container)> {
    pods(cluster).flat_map(|(w, p)| {
        p.containers
            .iter()
            .filter(|c| c.cpu_limit.is_some())
            .map(move |c| (w, p, c))
    })
}

fn cadvisor_labels<'a>(
    cluster: &'a Cluster,
    wl: &'a Workload,
    pod: &'a Pod,
    c: Option<&'a Container>,
) -> Vec<(&'static str, &'a str)> {
    let mut l = Vec::with_capacity(8);
    if let Some(c) = c {
        l.push(("container", c.name.as_str()));
        l.push(("image", c.image.as_str()));
    }
    l.extend([
        ("instance", cluster.nodes[pod.node_index].instance.as_str()),
        ("job", "kubelet"),
        ("metrics_path", "/metrics/cadvisor"),
        ("namespace", wl.namespace.as_str()),
        ("node", pod.node.as_str()),
        ("pod", pod.name.as_str()),
    ]);
    l
}

/// Labels of `kube_pod_owner` (object `pod`) and `kube_replicaset_owner` (object `replicaset`).
pub(crate) fn owner_labels<'a>(
    namespace: &'a str,
    object: (&'static str, &'a str),
    owner: (&'a str, &'a str),
    uid: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut l = vec![
        ("instance", KSM_INSTANCE),
        ("job", "kube-state-metrics"),
        ("namespace", namespace),
        ("owner_is_controller", "true"),
        ("owner_kind", owner.0),
        ("owner_name", owner.1),
        object,
    ];
    l.extend(uid.map(|u| ("uid", u)));
    l
}

fn ksm_container_labels<'a>(
    wl: &'a Workload,
    pod: &'a Pod,
    c: &'a Container,
    reason: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut l = vec![
        ("container", c.name.as_str()),
        ("instance", KSM_INSTANCE),
        ("job", "kube-state-metrics"),
        ("namespace", wl.namespace.as_str()),
        ("pod", pod.name.as_str()),
    ];
    if let Some(r) = reason {
        l.push(("reason", r));
    }
    l.push(("uid", pod.uid.as_str()));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_total_labels_are_escaped_and_empty_series_are_not_counted() {
        let mut out = Vec::new();
        let mut w = OmWriter::new(&mut out);
        w.family("jobs", MetricType::Counter, "Jobs done.").unwrap();
        let p = w.series(&[("path", "C:\\x"), ("quote", "say \"hi\"\n")]);
        w.sample(&p, 1, 10).unwrap();
        w.sample(&p, 2, 20).unwrap();
        let _never_sampled = w.series(&[("path", "unused")]);
        w.family("temp", MetricType::Gauge, "Temperature.").unwrap();
        let stats = w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# HELP jobs Jobs done.\n# TYPE jobs counter\n\
             jobs_total{path=\"C:\\\\x\",quote=\"say \\\"hi\\\"\\n\"} 1 10\n\
             jobs_total{path=\"C:\\\\x\",quote=\"say \\\"hi\\\"\\n\"} 2 20\n\
             # HELP temp Temperature.\n# TYPE temp gauge\n# EOF\n"
        );
        assert_eq!(stats.family("jobs_total").unwrap().series, 1);
        assert_eq!(stats.family("jobs_total").unwrap().samples, 2);
        assert_eq!(stats.family("temp").unwrap().series, 0);
    }
}
