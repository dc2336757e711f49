//! Replay of offline traces (`series_id,timestamp_unix,resource,value,unit`) as the same cAdvisor and
//! kube-state-metrics families the simulator writes: one Deployment with one pod and one container per
//! trace series, usage converted to cores and bytes with documented machine-size assumptions.

use std::collections::HashSet;
use std::io::Write;

use serde::Serialize;

use super::openmetrics::{KSM_INSTANCE as KSM, MetricType, OmWriter, WriteStats, owner_labels};
use super::rng::{Rng, mix};
use crate::offline::{CapacityTable, UsageSeries};

const WEEK: i64 = 7 * 86_400;
const NODE: &str = "replay-000";
const KUBELET: &str = "10.0.0.10:10250";
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Assumptions that turn relative units into cores and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Namespace of every replayed workload.
    pub namespace: String,
    /// Cores of the machine a `percent` or `NCU`/`fraction` value is relative to.
    pub machine_cores: f64,
    /// Bytes of the machine a memory `percent` or `NMU`/`fraction` value is relative to.
    pub machine_memory_bytes: f64,
    /// MHz of one core, for `MHz` values of a series without `cpu_capacity` and `cpu_cores` rows.
    pub core_mhz: f64,
    /// When set, every timestamp moves by the same whole number of weeks (keeping weekday and time of
    /// day) so the latest sample falls in the week before `end`.
    pub end: Option<i64>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            namespace: "replay".into(),
            machine_cores: 16.0,
            machine_memory_bytes: 64.0 * GIB,
            core_mhz: 2_600.0,
            end: None,
        }
    }
}

/// Why a trace cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("series {series_id:?}, resource {resource}: unknown unit {unit:?} (known: {known})")]
    UnknownUnit {
        series_id: String,
        resource: String,
        unit: String,
        known: &'static str,
    },
    #[error("no cpu or memory series to replay (resources other than cpu and memory are skipped)")]
    Nothing,
    #[error("while writing OpenMetrics: {0}")]
    Io(#[from] std::io::Error),
}

const CPU_UNITS: &str = "cores, millicores, percent, fraction, NCU, percent_x_cores, MHz";
const MEMORY_UNITS: &str = "bytes, KB, MB, GB, KiB, MiB, GiB, percent, fraction, NMU";

/// Where one trace series went, and how its values were scaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayedSeries {
    pub series_id: String,
    pub namespace: String,
    /// The Deployment.
    pub workload: String,
    pub replica_set: String,
    pub pod: String,
    pub container: String,
    /// Cores per unit of the trace's cpu values (absent without a cpu series).
    pub cpu_scale: Option<f64>,
    /// Bytes per unit of the trace's memory values.
    pub memory_scale: Option<f64>,
}

/// The ground truth of a replay: the mapping, what was skipped, and the time shift applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    pub series: Vec<ReplayedSeries>,
    /// `(series_id, resource)` pairs that are neither cpu nor memory.
    pub skipped: Vec<(String, String)>,
    /// Seconds added to every trace timestamp.
    pub shift_secs: i64,
}

/// One replayed container: its trace series and the capacity resources bounding them.
struct Target<'a> {
    out: ReplayedSeries,
    cpu: Option<&'a UsageSeries>,
    memory: Option<&'a UsageSeries>,
}

/// Converts a trace (and its capacity file) into OpenMetrics on `out`.
pub fn replay<W: Write>(
    usage: &[UsageSeries],
    capacity: Option<&CapacityTable>,
    opts: &ReplayOptions,
    out: W,
) -> Result<(Replay, WriteStats), ReplayError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut skipped = Vec::new();
    let mut names = HashSet::new();
    for s in usage {
        if s.resource != "cpu" && s.resource != "memory" {
            skipped.push((s.series_id.clone(), s.resource.clone()));
            continue;
        }
        let i = match targets.iter().position(|t| t.out.series_id == s.series_id) {
            Some(i) => i,
            None => {
                targets.push(Target {
                    out: names_for(&s.series_id, &opts.namespace, &mut names),
                    cpu: None,
                    memory: None,
                });
                targets.len() - 1
            }
        };
        let t = &mut targets[i];
        if s.resource == "cpu" {
            t.out.cpu_scale = Some(cpu_scale(s, capacity, opts)?);
            t.cpu = Some(s);
        } else {
            t.out.memory_scale = Some(memory_scale(
                &s.series_id,
                "memory",
                s.unit.as_deref(),
                opts,
            )?);
            t.memory = Some(s);
        }
    }
    if targets.is_empty() {
        return Err(ReplayError::Nothing);
    }
    let shift = match opts.end {
        None => 0,
        Some(end) => {
            let last = targets
                .iter()
                .flat_map(|t| [t.cpu, t.memory])
                .flatten()
                .filter_map(|s| s.points.last().map(|p| p.0))
                .max()
                .unwrap_or(end);
            // Whole weeks keep the trace's weekday and time of day, so its seasonality stays aligned.
            (end - 1 - last).div_euclid(WEEK) * WEEK
        }
    };

    let mut w = OmWriter::new(out);
    w.family(
        "container_cpu_usage_seconds",
        MetricType::Counter,
        "Cumulative cpu time consumed in seconds.",
    )?;
    for t in &targets {
        let (Some(s), Some(scale)) = (t.cpu, t.out.cpu_scale) else {
            continue;
        };
        let prefix = w.series(&cadvisor_labels(&t.out));
        let typical = typical_step(&s.points);
        let mut acc = 0.0;
        let mut prev: Option<i64> = None;
        for &(ts, v) in &s.points {
            // Across a gap the container was not running: count one typical step, not the gap.
            let dt = match prev {
                Some(p) if ts - p <= 3 * typical => ts - p,
                _ => typical,
            };
            acc += (v * scale).max(0.0) * dt as f64;
            prev = Some(ts);
            w.sample(&prefix, format_args!("{acc:.3}"), ts + shift)?;
        }
    }
    w.family(
        "container_memory_working_set_bytes",
        MetricType::Gauge,
        "Current working set in bytes.",
    )?;
    for t in &targets {
        let (Some(s), Some(scale)) = (t.memory, t.out.memory_scale) else {
            continue;
        };
        let prefix = w.series(&cadvisor_labels(&t.out));
        for &(ts, v) in &s.points {
            w.sample(&prefix, (v * scale).max(0.0).round(), ts + shift)?;
        }
    }

    for (family, help, kind) in [
        (
            "kube_pod_container_resource_requests",
            "The number of requested request resource by a container.",
            Bound::Request,
        ),
        (
            "kube_pod_container_resource_limits",
            "The number of requested limit resource by a container.",
            Bound::Limit,
        ),
    ] {
        w.family(family, MetricType::Gauge, help)?;
        let Some(cap) = capacity else { continue };
        for t in &targets {
            for (resource, unit, s) in [("cpu", "core", t.cpu), ("memory", "byte", t.memory)] {
                let Some(s) = s else { continue };
                let Some(steps) = bound_series(cap, &s.series_id, resource, kind) else {
                    continue;
                };
                let scale = if resource == "cpu" {
                    match steps.unit.as_deref() {
                        // A capacity in MHz converts with the same MHz-per-core as the usage.
                        Some("MHz") => t.out.cpu_scale.unwrap_or(1.0),
                        u => cpu_unit_scale(&s.series_id, &steps.resource, u, opts, None)?,
                    }
                } else {
                    memory_scale(&s.series_id, &steps.resource, steps.unit.as_deref(), opts)?
                };
                let labels = ksm_labels(&t.out, resource, unit);
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let prefix = w.series(&labels);
                for &(ts, _) in &s.points {
                    if let Some(v) = cap.value_at(&s.series_id, &steps.resource, ts) {
                        w.sample(&prefix, v * scale, ts + shift)?;
                    }
                }
            }
        }
    }

    for (family, help, of_pod) in [
        ("kube_pod_owner", "Information about the Pod's owner.", true),
        (
            "kube_replicaset_owner",
            "Information about the ReplicaSet's owner.",
            false,
        ),
    ] {
        w.family(family, MetricType::Gauge, help)?;
        for t in &targets {
            let o = &t.out;
            let labels = if of_pod {
                owner_labels(
                    &o.namespace,
                    ("pod", &o.pod),
                    ("ReplicaSet", &o.replica_set),
                    None,
                )
            } else {
                owner_labels(
                    &o.namespace,
                    ("replicaset", &o.replica_set),
                    ("Deployment", &o.workload),
                    None,
                )
            };
            let prefix = w.series(&labels);
            for ts in times(t) {
                w.sample(&prefix, 1, ts + shift)?;
            }
        }
    }
    let stats = w.finish()?;
    Ok((
        Replay {
            series: targets.into_iter().map(|t| t.out).collect(),
            skipped,
            shift_secs: shift,
        },
        stats,
    ))
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Request,
    Limit,
}

/// The capacity resource that bounds `resource`: an explicit request or limit first, then what the
/// trace has instead (a VM's provisioned capacity is its hard limit; Borg's assigned memory is what the
/// scheduler reserved, a request).
fn bound_series<'a>(
    cap: &'a CapacityTable,
    series_id: &str,
    resource: &str,
    kind: Bound,
) -> Option<&'a UsageSeries> {
    let names: &[&str] = match (resource, kind) {
        ("cpu", Bound::Request) => &["cpu_request"],
        ("cpu", Bound::Limit) => &["cpu_limit", "cpu_capacity"],
        (_, Bound::Request) => &["memory_request", "assigned_memory"],
        (_, Bound::Limit) => &["memory_limit", "memory_capacity"],
    };
    names.iter().find_map(|n| cap.steps(series_id, n))
}

/// Timestamps of a container's pod: those of its cpu series, or of its memory series without one.
fn times<'a>(t: &'a Target) -> impl Iterator<Item = i64> + 'a {
    t.cpu
        .or(t.memory)
        .into_iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
}

fn cpu_scale(
    s: &UsageSeries,
    capacity: Option<&CapacityTable>,
    opts: &ReplayOptions,
) -> Result<f64, ReplayError> {
    // Bitbrains gives each VM's capacity both in MHz and in cores: their ratio is that VM's core speed.
    let first = s.points.first().map_or(0, |p| p.0);
    let mhz = capacity.and_then(|c| {
        let mhz = c.value_at(&s.series_id, "cpu_capacity", first)?;
        let cores = c.value_at(&s.series_id, "cpu_cores", first)?;
        (cores > 0.0 && mhz > 0.0).then(|| mhz / cores)
    });
    cpu_unit_scale(&s.series_id, "cpu", s.unit.as_deref(), opts, mhz)
}

fn cpu_unit_scale(
    series_id: &str,
    resource: &str,
    unit: Option<&str>,
    opts: &ReplayOptions,
    core_mhz: Option<f64>,
) -> Result<f64, ReplayError> {
    Ok(match unit {
        None | Some("cores" | "core") => 1.0,
        Some("millicores" | "m") => 1e-3,
        Some("percent") => opts.machine_cores / 100.0,
        Some("fraction" | "NCU") => opts.machine_cores,
        Some("percent_x_cores") => 0.01,
        Some("MHz") => 1.0 / core_mhz.unwrap_or(opts.core_mhz),
        Some(u) => {
            return Err(ReplayError::UnknownUnit {
                series_id: series_id.into(),
                resource: resource.into(),
                unit: u.into(),
                known: CPU_UNITS,
            });
        }
    })
}

fn memory_scale(
    series_id: &str,
    resource: &str,
    unit: Option<&str>,
    opts: &ReplayOptions,
) -> Result<f64, ReplayError> {
    Ok(match unit {
        None | Some("bytes" | "byte" | "B") => 1.0,
        // Trace "KB" are kibibytes (Bitbrains reports the kernel's KiB).
        Some("KB" | "KiB") => 1024.0,
        Some("MB" | "MiB") => 1024.0 * 1024.0,
        Some("GB" | "GiB") => GIB,
        Some("percent") => opts.machine_memory_bytes / 100.0,
        Some("fraction" | "NMU") => opts.machine_memory_bytes,
        Some(u) => {
            return Err(ReplayError::UnknownUnit {
                series_id: series_id.into(),
                resource: resource.into(),
                unit: u.into(),
                known: MEMORY_UNITS,
            });
        }
    })
}

/// The median spacing of a series (60 s when it has a single point).
fn typical_step(points: &[(i64, f64)]) -> i64 {
    let mut d: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if d.is_empty() {
        return 60;
    }
    let mid = d.len() / 2;
    *d.select_nth_unstable(mid).1
}

/// Kubernetes names for a series: a DNS-1123 Deployment name, a ReplicaSet and a pod with the
/// hash-like suffixes Kubernetes adds, stable for the same series id.
fn names_for(series_id: &str, namespace: &str, taken: &mut HashSet<String>) -> ReplayedSeries {
    let mut base: String = series_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    base = base.trim_matches('-').chars().take(40).collect();
    base = base.trim_end_matches('-').to_string();
    if base.is_empty() {
        base = "series".into();
    }
    let mut name = base.clone();
    let mut k = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{k}");
        k += 1;
    }
    let seed = series_id.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)));
    let mut rng = Rng::new(seed);
    let replica_set = format!("{name}-{}", rng.suffix(10));
    let pod = format!("{replica_set}-{}", rng.suffix(5));
    ReplayedSeries {
        series_id: series_id.to_string(),
        namespace: namespace.to_string(),
        workload: name.clone(),
        replica_set,
        pod,
        container: name,
        cpu_scale: None,
        memory_scale: None,
    }
}

fn cadvisor_labels(s: &ReplayedSeries) -> [(&'static str, &str); 8] {
    [
        ("container", &s.container),
        ("image", "registry.example.com/replay/trace:1"),
        ("instance", KUBELET),
        ("job", "kubelet"),
        ("metrics_path", "/metrics/cadvisor"),
        ("namespace", &s.namespace),
        ("node", NODE),
        ("pod", &s.pod),
    ]
}

fn ksm_labels(s: &ReplayedSeries, resource: &str, unit: &str) -> Vec<(&'static str, String)> {
    vec![
        ("container", s.container.clone()),
        ("instance", KSM.into()),
        ("job", "kube-state-metrics".into()),
        ("namespace", s.namespace.clone()),
        ("node", NODE.into()),
        ("pod", s.pod.clone()),
        ("resource", resource.into()),
        ("unit", unit.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::{parse_capacity, parse_usage};

    fn run(usage: &str, cap: Option<&str>, opts: &ReplayOptions) -> (Replay, WriteStats, String) {
        let u = parse_usage("usage.csv", usage.as_bytes()).unwrap();
        let c = cap.map(|c| parse_capacity("cap.csv", c.as_bytes()).unwrap());
        let mut out = Vec::new();
        let (r, s) = replay(&u, c.as_ref(), opts, &mut out).unwrap();
        (r, s, String::from_utf8(out).unwrap())
    }

    fn values(text: &str, metric: &str) -> Vec<(f64, i64)> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .map(|l| {
                let mut p = l.rsplit(' ');
                let t = p.next().unwrap().parse().unwrap();
                (p.next().unwrap().parse().unwrap(), t)
            })
            .collect()
    }

    const USAGE: &str = "series_id,timestamp_unix,resource,value,unit\n\
        VM/7,1000,cpu,50,percent\nVM/7,1060,cpu,25,percent\nVM/7,1120,cpu,50,percent\n\
        VM/7,1000,memory,1024,KB\nVM/7,1060,memory,2048,KB\n\
        VM/7,1000,network_in,5,bytes\n";

    #[test]
    fn percent_of_a_machine_becomes_a_counter_whose_rate_is_the_share_of_its_cores() {
        let opts = ReplayOptions {
            machine_cores: 4.0,
            ..ReplayOptions::default()
        };
        let (r, _, text) = run(USAGE, None, &opts);
        let cpu = values(&text, "container_cpu_usage_seconds_total");
        assert_eq!(cpu.len(), 3);
        // 50 % of 4 cores = 2 cores; 25 % = 1 core, over 60 s steps.
        assert!((cpu[1].0 - cpu[0].0 - 60.0).abs() < 1e-6, "{cpu:?}");
        assert!((cpu[2].0 - cpu[1].0 - 120.0).abs() < 1e-6, "{cpu:?}");
        let mem = values(&text, "container_memory_working_set_bytes");
        assert_eq!(mem, [(1_048_576.0, 1000), (2_097_152.0, 1060)]);
        assert_eq!(r.skipped, [("VM/7".to_string(), "network_in".to_string())]);
        assert_eq!(r.series[0].workload, "vm-7");
        assert!(r.series[0].pod.starts_with("vm-7-"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn capacity_rows_become_requests_and_limits_in_cores_and_bytes() {
        let usage = "series_id,timestamp_unix,resource,value,unit\n\
            t,1000,cpu,0.01,NCU\nt,1300,cpu,0.02,NCU\nt,1000,memory,0.001,NMU\nt,1300,memory,0.002,NMU\n";
        let cap = "series_id,timestamp_unix,resource,value,unit\n\
            t,1000,cpu_limit,0.05,NCU\nt,1000,memory_limit,0.01,NMU\nt,1300,memory_limit,0.02,NMU\n\
            t,1000,assigned_memory,0.005,NMU\n";
        let opts = ReplayOptions {
            machine_cores: 100.0,
            machine_memory_bytes: 1e9,
            ..ReplayOptions::default()
        };
        let (_, stats, text) = run(usage, Some(cap), &opts);
        let limits = values(&text, "kube_pod_container_resource_limits");
        assert_eq!(limits, [(5.0, 1000), (5.0, 1300), (1e7, 1000), (2e7, 1300)]);
        let requests = values(&text, "kube_pod_container_resource_requests");
        assert_eq!(requests, [(5e6, 1000), (5e6, 1300)]);
        assert_eq!(stats.family("kube_pod_owner").unwrap().samples, 2);
    }

    #[test]
    fn mhz_convert_with_the_vms_own_core_speed_when_the_capacity_file_gives_it() {
        let usage = "series_id,timestamp_unix,resource,value,unit\nvm,0,cpu,3000,MHz\nvm,300,cpu,3000,MHz\n";
        let cap = "series_id,timestamp_unix,resource,value,unit\n\
            vm,0,cpu_capacity,6000,MHz\nvm,0,cpu_cores,2,cores\n";
        let (r, _, text) = run(usage, Some(cap), &ReplayOptions::default());
        assert_eq!(r.series[0].cpu_scale, Some(1.0 / 3000.0));
        let limits = values(&text, "kube_pod_container_resource_limits");
        assert_eq!(limits, [(2.0, 0), (2.0, 300)]);
    }

    #[test]
    fn a_gap_in_the_trace_does_not_count_the_missing_time_as_usage() {
        let usage = "series_id,timestamp_unix,resource,value,unit\n\
            s,0,cpu,1,cores\ns,60,cpu,1,cores\ns,120,cpu,1,cores\ns,86400,cpu,1,cores\n";
        let (_, _, text) = run(usage, None, &ReplayOptions::default());
        let cpu = values(&text, "container_cpu_usage_seconds_total");
        assert!((cpu[3].0 - cpu[2].0 - 60.0).abs() < 1e-6, "{cpu:?}");
    }

    #[test]
    fn an_end_shifts_the_trace_by_whole_weeks_so_it_ends_in_the_last_week() {
        let end = 1_700_000_000;
        let opts = ReplayOptions {
            end: Some(end),
            ..ReplayOptions::default()
        };
        let (r, _, text) = run(USAGE, None, &opts);
        assert_eq!(r.shift_secs % WEEK, 0);
        let last = values(&text, "container_cpu_usage_seconds_total")[2].1;
        assert!(last < end && last >= end - WEEK, "{last}");
    }

    #[test]
    fn an_unknown_unit_is_refused_by_name() {
        let usage = "series_id,timestamp_unix,resource,value,unit\ns,0,cpu,1,furlongs\n";
        let u = parse_usage("u.csv", usage.as_bytes()).unwrap();
        let e = replay(&u, None, &ReplayOptions::default(), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("\"furlongs\""), "{e}");
        let only_net = "series_id,timestamp_unix,resource,value,unit\ns,0,network_in,1,bytes\n";
        let u = parse_usage("u.csv", only_net.as_bytes()).unwrap();
        let e = replay(&u, None, &ReplayOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(e, ReplayError::Nothing));
    }
}
