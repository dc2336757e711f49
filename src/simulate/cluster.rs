//! The simulated cluster: workloads, their pods over time, and what each container uses at any instant.
//! Planning (names, rollouts, autoscaling, OOM kills) happens once; every sample is then a pure function
//! of (container, time), so the writer can emit family by family without holding samples in memory.

use std::f64::consts::TAU;
use std::ops::Range;

use serde::Serialize;

use super::rng::{Rng, gauss, hash2, mix};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
/// The autoscaler re-evaluates every 5 minutes, like the HPA's default sync period scaled to samples.
const HPA_SLOT_SECS: i64 = 300;
/// Smooth noise changes its direction about every 15 minutes, as real load drifts.
const NOISE_KNOT_SECS: i64 = 900;
const DAY: f64 = 86_400.0;
/// One CFS period is 100 ms.
const CFS_PERIODS_PER_SEC: f64 = 10.0;

/// What to simulate: `workloads` controllers, samples every `step` seconds at `start + k * step` for
/// every `k` with the time before `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub workloads: usize,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub seed: u64,
}

/// Why a spec cannot be simulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--workloads must be at least 1")]
    NoWorkloads,
    #[error("--step must be between 1s and 1h, got {0}s")]
    Step(i64),
    #[error("the simulated window must hold at least one step (start {start}, end {end})")]
    Window { start: i64, end: i64 },
}

/// The controller that owns a workload's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }
}

/// The pattern a workload was built to show; tests use it to find the workload with a given trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Flat usage with a little noise, sized sensibly.
    Steady,
    /// Strong daily cycle (peak in the afternoon, UTC).
    Daily,
    /// Daily cycle plus quiet weekends.
    Weekly,
    /// CPU and memory growing a few percent a day toward their requests.
    Growth,
    /// Memory climbs to the limit, the container is OOM-killed and restarts, again and again.
    MemoryLeak,
    /// Requests many times what the service uses.
    OverProvisioned,
    /// CPU limit below typical demand: usage is capped and CFS throttling is high.
    CpuStarved,
    /// Replica count follows load (HPA): pods appear at peaks and disappear at night.
    Autoscaled,
    /// Rolled out about daily: new ReplicaSet hash, new pod names, old pods retired one by one.
    Rolling,
    /// A StatefulSet with stable pod names (`name-0`, `name-1`, ...), large slowly growing memory.
    Stateful,
    /// A DaemonSet: one pod per node.
    Daemon,
}

/// The cycle of behaviours: any cluster of at least this many workloads shows every one of them.
pub const BEHAVIOURS: [Behaviour; 11] = [
    Behaviour::Steady,
    Behaviour::Daily,
    Behaviour::Weekly,
    Behaviour::Growth,
    Behaviour::MemoryLeak,
    Behaviour::OverProvisioned,
    Behaviour::CpuStarved,
    Behaviour::Autoscaled,
    Behaviour::Rolling,
    Behaviour::Stateful,
    Behaviour::Daemon,
];

/// A node: where pods run and where cAdvisor (the kubelet) is scraped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    /// `ip:10250`, the kubelet endpoint a real scrape puts in `instance`.
    pub instance: String,
}

/// A controller (namespace, kind, name) with its pods over the simulated window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
    pub behaviour: Behaviour,
    /// Container names of every pod of the workload, main container first.
    pub containers: Vec<String>,
    /// Deployments only: every ReplicaSet, oldest first.
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    /// Autoscaled only: replica count per 5-minute slot from the window start.
    #[serde(skip)]
    pub(crate) replicas: Vec<u32>,
    /// Autoscaled only: the replica count at which a pod sees its profile's nominal CPU.
    #[serde(skip)]
    pub(crate) nominal_replicas: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaSet {
    pub name: String,
    /// When it was created (the window start for the one that was there already).
    pub created: i64,
}

/// One pod's life inside the window: it has samples at the grid times in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    pub node: String,
    /// `ReplicaSet`, `StatefulSet` or `DaemonSet`, as `kube_pod_owner` says.
    pub owner_kind: String,
    pub owner_name: String,
    pub start: i64,
    pub end: i64,
    pub containers: Vec<Container>,
    #[serde(skip)]
    pub(crate) node_index: usize,
}

/// A container with its resources (`None`: not set) and the times it was OOM-killed and restarted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Cores.
    pub cpu_request: Option<f64>,
    pub cpu_limit: Option<f64>,
    /// Bytes.
    pub memory_request: Option<f64>,
    pub memory_limit: Option<f64>,
    /// OOM kills inside the pod's life, in time order; each one restarts the container.
    pub oom_kills: Vec<i64>,
    #[serde(skip)]
    pub(crate) profile: Profile,
}

/// How a container's usage moves; private because tests should read usage through [`Cluster`].
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Profile {
    /// Mean CPU in cores at the window start, before daily and weekly shape.
    cpu: f64,
    /// Working set in bytes at the window start.
    mem: f64,
    daily: f64,
    weekly: f64,
    /// Relative growth per day of CPU and of memory.
    growth: f64,
    mem_growth: f64,
    noise: f64,
    peak_hour: f64,
    /// How much of the daily and weekly shape memory follows (0: none, 1: as much as CPU).
    mem_load: f64,
    key: u64,
    /// Leaking containers: the leak's start, then each kill, then the first kill after the pod ends.
    leak_marks: Vec<i64>,
    autoscaled: bool,
}

/// The whole simulated cluster: the ground truth the metrics are written from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub seed: u64,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub nodes: Vec<Node>,
    pub workloads: Vec<Workload>,
}

impl Cluster {
    /// Plans the cluster: the same spec always gives the same cluster, and workload `i` does not depend
    /// on how many workloads follow it as long as the node count (one per six workloads, 3 to 40) is the same.
    pub fn plan(spec: &ClusterSpec) -> Result<Cluster, SpecError> {
        if spec.workloads == 0 {
            return Err(SpecError::NoWorkloads);
        }
        if !(1..=3_600).contains(&spec.step) {
            return Err(SpecError::Step(spec.step));
        }
        if spec.end - spec.start < spec.step {
            return Err(SpecError::Window {
                start: spec.start,
                end: spec.end,
            });
        }
        let n_nodes = spec.workloads.div_ceil(6).clamp(3, 40);
        let nodes = (0..n_nodes)
            .map(|i| Node {
                name: format!("node-{i:03}"),
                instance: format!("10.0.{}.{}:10250", i / 200, i % 200 + 10),
            })
            .collect();
        let mut cluster = Cluster {
            seed: spec.seed,
            start: spec.start,
            end: spec.end,
            step: spec.step,
            nodes,
            workloads: Vec::with_capacity(spec.workloads),
        };
        for i in 0..spec.workloads {
            let mut rng = Rng::new(hash2(spec.seed, i as u64));
            let w = cluster.plan_workload(i, &mut rng);
            cluster.workloads.push(w);
        }
        Ok(cluster)
    }

    /// Number of grid times in the window.
    pub fn steps(&self) -> i64 {
        (self.end - self.start + self.step - 1) / self.step
    }

    /// Grid indices `k` (time `start + k * step`) at which something alive in `[from, to)` has samples.
    pub fn grid(&self, from: i64, to: i64) -> Range<i64> {
        let first = (from.max(self.start) - self.start + self.step - 1).div_euclid(self.step);
        let last = (to.min(self.end) - self.start + self.step - 1).div_euclid(self.step);
        first.max(0)..last.max(first.max(0))
    }

    /// The sample times of a pod.
    pub fn sample_times(&self, pod: &Pod) -> impl Iterator<Item = i64> + use<> {
        let (start, step) = (self.start, self.step);
        self.grid(pod.start, pod.end).map(move |k| start + k * step)
    }

    /// CPU the container would use at `t` without a limit, in cores.
    pub fn cpu_demand(&self, w: &Workload, c: &Container, t: i64) -> f64 {
        let p = &c.profile;
        let noise =
            1.0 + p.noise * (smooth_noise(p.key, t) + 0.5 * gauss(hash2(p.key ^ 1, t as u64)));
        let mut v = p.cpu * self.level(p, t, p.growth) * noise.max(0.05);
        if p.autoscaled {
            v *= w.nominal_replicas / f64::from(self.replicas_at(w, t).max(1));
        }
        v.max(0.0005)
    }

    /// CPU the container uses at `t`: its demand, capped by its limit.
    pub fn cpu_usage(&self, w: &Workload, c: &Container, t: i64) -> f64 {
        let d = self.cpu_demand(w, c, t);
        c.cpu_limit.map_or(d, |l| d.min(l))
    }

    /// Share of CFS periods throttled at `t` (zero without a CPU limit).
    pub fn throttled_share(&self, w: &Workload, c: &Container, t: i64) -> f64 {
        let Some(limit) = c.cpu_limit else { return 0.0 };
        let x = self.cpu_demand(w, c, t) / limit;
        // Bursts inside a sample throttle a little before the average reaches the limit.
        ((x - 0.6) / 0.8).clamp(0.0, 1.0) + 0.01 * x.min(1.0)
    }

    /// CFS periods the container is runnable in during one step ending at `t`.
    pub fn cfs_periods(&self, w: &Workload, c: &Container, t: i64) -> f64 {
        let Some(limit) = c.cpu_limit else { return 0.0 };
        let busy = (0.3 + 0.7 * self.cpu_demand(w, c, t) / limit).min(1.0);
        self.step as f64 * CFS_PERIODS_PER_SEC * busy
    }

    /// Working set of the container at `t`, in bytes.
    pub fn memory_working_set(&self, c: &Container, t: i64) -> f64 {
        let p = &c.profile;
        let shape = self.level(p, t, 0.0);
        let mut v = p.mem
            * (1.0 + p.mem_growth * (t - self.start) as f64 / DAY)
            * (1.0 + p.mem_load * (shape - 1.0))
            * (1.0 + 0.015 * smooth_noise(p.key ^ 2, t));
        if let (Some(limit), false) = (c.memory_limit, p.leak_marks.is_empty()) {
            let i = p.leak_marks.partition_point(|&m| m <= t).max(1);
            let (from, to) = (
                p.leak_marks[i - 1],
                p.leak_marks[i.min(p.leak_marks.len() - 1)],
            );
            let progress = ((t - from) as f64 / (to - from).max(1) as f64).clamp(0.0, 1.0);
            v += (limit * 0.999 - p.mem) * progress;
        }
        // The kernel keeps the working set under the limit: reaching it is the OOM kill.
        c.memory_limit.map_or(v, |l| v.min(l)).max(MIB).round()
    }

    /// Restarts of the container up to and including `t`.
    pub fn restarts_at(&self, c: &Container, t: i64) -> usize {
        c.oom_kills.partition_point(|&k| k <= t)
    }

    /// Replica count of an autoscaled workload at `t` (the pod count for the others).
    pub fn replicas_at(&self, w: &Workload, t: i64) -> u32 {
        if w.replicas.is_empty() {
            return w.pods.iter().filter(|p| p.start <= t && t < p.end).count() as u32;
        }
        let slot =
            ((t - self.start).div_euclid(HPA_SLOT_SECS)).clamp(0, w.replicas.len() as i64 - 1);
        w.replicas[slot as usize]
    }

    /// Daily and weekly shape times growth (no noise), 1.0 on average.
    fn level(&self, p: &Profile, t: i64, growth: f64) -> f64 {
        let hour = t.rem_euclid(86_400) as f64 / 3_600.0;
        let x = TAU * (hour - p.peak_hour) / 24.0;
        let daily = 1.0 + p.daily * (0.8 * x.cos() + 0.2 * (2.0 * x).cos());
        // 1970-01-01 was a Thursday: day 0 of the week is Sunday.
        let dow = (t.div_euclid(86_400) + 4).rem_euclid(7);
        let weekly = if dow == 0 || dow == 6 {
            1.0 - p.weekly
        } else {
            1.0 + p.weekly * 0.4
        };
        (1.0 + growth * (t - self.start) as f64 / DAY) * daily * weekly
    }

    fn plan_workload(&self, i: usize, rng: &mut Rng) -> Workload {
        let round = i / BEHAVIOURS.len();
        let mut behaviour = BEHAVIOURS[i % BEHAVIOURS.len()];
        let names = names_of(behaviour);
        // A real cluster runs a handful of DaemonSets, not one per dozen services.
        if behaviour == Behaviour::Daemon && round >= names.len() {
            behaviour = Behaviour::Steady;
        }
        let name =
            if behaviour == Behaviour::Steady && BEHAVIOURS[i % BEHAVIOURS.len()] != behaviour {
                format!("worker-{round}")
            } else {
                let names = names_of(behaviour);
                let base = names[round % names.len()];
                match round / names.len() {
                    0 => base.to_string(),
                    k => format!("{base}-{}", k + 1),
                }
            };
        let namespace = match behaviour {
            Behaviour::Stateful => "data".to_string(),
            Behaviour::Daemon => "kube-system".to_string(),
            _ => ["shop", "payments", "search", "accounts"][i % 4].to_string(),
        };
        let kind = match behaviour {
            Behaviour::Stateful => Kind::StatefulSet,
            Behaviour::Daemon => Kind::DaemonSet,
            _ => Kind::Deployment,
        };
        let main = main_draft(behaviour, rng);
        let sidecar = match behaviour {
            Behaviour::Autoscaled | Behaviour::Rolling => {
                Some(("istio-proxy", sidecar_draft(&main, rng)))
            }
            Behaviour::Stateful => Some(("exporter", sidecar_draft(&main, rng))),
            _ => None,
        };
        let mut containers = vec![name.clone()];
        if let Some((n, _)) = &sidecar {
            containers.push(n.to_string());
        }
        let mut w = Workload {
            namespace,
            kind,
            name,
            behaviour,
            containers,
            replica_sets: Vec::new(),
            pods: Vec::new(),
            replicas: Vec::new(),
            nominal_replicas: 1.0,
        };
        let version = (rng.below(5) + 1, rng.below(20));
        let mut tmpl = Template {
            main,
            sidecar,
            version,
        };
        match behaviour {
            Behaviour::Stateful => {
                for r in 0..3 {
                    let pod_name = format!("{}-{r}", w.name);
                    let owner = w.name.clone();
                    self.add_pod(
                        &mut w,
                        rng,
                        &tmpl,
                        pod_name,
                        ("StatefulSet", owner),
                        self.start,
                        self.end,
                    );
                }
            }
            Behaviour::Daemon => {
                for node in 0..self.nodes.len() {
                    let pod_name = format!("{}-{}", w.name, rng.suffix(5));
                    let owner = w.name.clone();
                    let pod = self.add_pod(
                        &mut w,
                        rng,
                        &tmpl,
                        pod_name,
                        ("DaemonSet", owner),
                        self.start,
                        self.end,
                    );
                    w.pods[pod].node_index = node;
                    w.pods[pod].node = self.nodes[node].name.clone();
                }
            }
            Behaviour::Autoscaled => self.plan_autoscaled(&mut w, rng, &tmpl),
            Behaviour::Rolling => {
                let replicas = 3;
                let mut rs = self.new_replica_set(&mut w, rng, self.start);
                let mut live: Vec<usize> = (0..replicas)
                    .map(|_| self.add_replica(&mut w, rng, &tmpl, &rs, self.start))
                    .collect();
                let mut t = self.start + (rng.range(8.0, 30.0) * 3_600.0) as i64;
                while t < self.end - 3_600 {
                    tmpl.version.1 += 1;
                    // Every other release asks for a little more memory, as releases tend to.
                    if tmpl.version.1.is_multiple_of(2) {
                        tmpl.main.mem_req = tmpl.main.mem_req.map(|m| round_mib(m * 1.1));
                    }
                    rs = self.new_replica_set(&mut w, rng, t);
                    for (j, old) in live.iter_mut().enumerate() {
                        let at = t + 90 * j as i64;
                        let new = self.add_replica(&mut w, rng, &tmpl, &rs, at);
                        w.pods[*old].end = at + 40;
                        *old = new;
                    }
                    t += (rng.range(18.0, 36.0) * 3_600.0) as i64;
                }
            }
            _ => {
                let replicas = match behaviour {
                    Behaviour::MemoryLeak => 2,
                    Behaviour::Steady | Behaviour::OverProvisioned => 1 + rng.below(3),
                    _ => 2 + rng.below(2),
                };
                let rs = self.new_replica_set(&mut w, rng, self.start);
                for _ in 0..replicas {
                    self.add_replica(&mut w, rng, &tmpl, &rs, self.start);
                }
            }
        }
        w
    }

    fn plan_autoscaled(&self, w: &mut Workload, rng: &mut Rng, tmpl: &Template) {
        let rs = self.new_replica_set(w, rng, self.start);
        let nominal = 4.0;
        w.nominal_replicas = nominal;
        let target = 0.7 * tmpl.main.cpu_req.unwrap_or(tmpl.main.profile.cpu);
        let slots = (self.end - self.start + HPA_SLOT_SECS - 1) / HPA_SLOT_SECS;
        let mut desired = Vec::with_capacity(slots as usize);
        for k in 0..slots {
            let t = self.start + k * HPA_SLOT_SECS;
            let load = tmpl.main.profile.cpu * nominal * self.level(&tmpl.main.profile, t, 0.0);
            desired.push(((load / target).ceil() as u32).clamp(2, 12));
        }
        // Scale down only after the lower count held for 10 minutes (the HPA's stabilization window).
        w.replicas = (0..desired.len())
            .map(|k| {
                desired[k.saturating_sub(1)..=k]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(2)
            })
            .collect();
        let mut live: Vec<usize> = Vec::new();
        for (k, &r) in w.replicas.clone().iter().enumerate() {
            let t = self.start + k as i64 * HPA_SLOT_SECS;
            while live.len() < r as usize {
                let at = if k == 0 { t } else { t + 15 };
                live.push(self.add_replica(w, rng, tmpl, &rs, at));
            }
            while live.len() > r as usize {
                if let Some(p) = live.pop() {
                    w.pods[p].end = t;
                }
            }
        }
    }

    fn new_replica_set(&self, w: &mut Workload, rng: &mut Rng, at: i64) -> String {
        let name = format!("{}-{}", w.name, rng.suffix(10));
        w.replica_sets.push(ReplicaSet {
            name: name.clone(),
            created: at,
        });
        name
    }

    fn add_replica(
        &self,
        w: &mut Workload,
        rng: &mut Rng,
        tmpl: &Template,
        rs: &str,
        at: i64,
    ) -> usize {
        let pod_name = format!("{rs}-{}", rng.suffix(5));
        self.add_pod(
            w,
            rng,
            tmpl,
            pod_name,
            ("ReplicaSet", rs.to_string()),
            at,
            self.end,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn add_pod(
        &self,
        w: &mut Workload,
        rng: &mut Rng,
        tmpl: &Template,
        name: String,
        owner: (&str, String),
        start: i64,
        end: i64,
    ) -> usize {
        let node_index = rng.below(self.nodes.len());
        let mut containers = vec![self.container(
            rng,
            &w.name,
            &w.namespace,
            &tmpl.main,
            tmpl.version,
            start,
            end,
        )];
        if let Some((n, d)) = &tmpl.sidecar {
            let image = if *n == "istio-proxy" {
                "docker.io/istio/proxyv2:1.20.3"
            } else {
                "quay.io/prometheus-community/exporter:0.15.0"
            };
            let mut c = self.container(rng, n, &w.namespace, d, tmpl.version, start, end);
            c.image = image.to_string();
            containers.push(c);
        }
        w.pods.push(Pod {
            name,
            uid: rng.uuid(),
            node: self.nodes[node_index].name.clone(),
            owner_kind: owner.0.to_string(),
            owner_name: owner.1,
            start,
            end,
            containers,
            node_index,
        });
        w.pods.len() - 1
    }

    #[allow(clippy::too_many_arguments)]
    fn container(
        &self,
        rng: &mut Rng,
        name: &str,
        namespace: &str,
        d: &Draft,
        version: (usize, usize),
        start: i64,
        end: i64,
    ) -> Container {
        let mut profile = d.profile.clone();
        profile.key = mix(rng.next_u64());
        // Replicas of one workload differ a little, as real pods on different nodes do.
        profile.cpu *= rng.range(0.9, 1.1);
        profile.mem *= rng.range(0.95, 1.05);
        let mut oom_kills = Vec::new();
        if let Some(period_h) = d.leak_period_hours {
            let period = period_h * 3_600.0;
            let mut t = start - (period * rng.range(0.1, 0.9)) as i64;
            profile.leak_marks.push(t);
            while t < end {
                t += (period * rng.range(0.85, 1.15)) as i64;
                profile.leak_marks.push(t);
                if t < end {
                    oom_kills.push(t);
                }
            }
        }
        Container {
            name: name.to_string(),
            image: format!(
                "registry.example.com/{namespace}/{name}:{}.{}.{}",
                version.0, version.1, 0
            ),
            cpu_request: d.cpu_req,
            cpu_limit: d.cpu_lim,
            memory_request: d.mem_req,
            memory_limit: d.mem_lim,
            oom_kills,
            profile,
        }
    }
}

/// A container before it is placed in a pod: its usage profile and resources.
#[derive(Debug, Clone)]
struct Draft {
    profile: Profile,
    cpu_req: Option<f64>,
    cpu_lim: Option<f64>,
    mem_req: Option<f64>,
    mem_lim: Option<f64>,
    leak_period_hours: Option<f64>,
}

/// What every new pod of a workload gets (it changes at a rollout).
struct Template {
    main: Draft,
    sidecar: Option<(&'static str, Draft)>,
    version: (usize, usize),
}

fn names_of(b: Behaviour) -> &'static [&'static str] {
    match b {
        Behaviour::Steady => &[
            "catalog",
            "inventory",
            "pricing",
            "profile",
            "notifications",
            "geo",
        ],
        Behaviour::Daily => &["frontend", "storefront", "web", "mobile-bff"],
        Behaviour::Weekly => &["checkout", "orders", "reporting", "invoicing"],
        Behaviour::Growth => &["search", "recommendations", "analytics", "feed"],
        Behaviour::MemoryLeak => &["image-resizer", "pdf-renderer", "session-cache"],
        Behaviour::OverProvisioned => &["legacy-admin", "audit-log", "email-worker"],
        Behaviour::CpuStarved => &["thumbnailer", "encoder", "ml-scorer"],
        Behaviour::Autoscaled => &["api-gateway", "cart", "payments-api"],
        Behaviour::Rolling => &["accounts", "auth", "ratings"],
        Behaviour::Stateful => &["postgres", "kafka", "redis", "elasticsearch"],
        Behaviour::Daemon => &["node-exporter", "fluent-bit", "kube-proxy", "cilium-agent"],
    }
}

fn round_cores(x: f64) -> f64 {
    ((x * 1_000.0 / 50.0).round().max(1.0) * 50.0) / 1_000.0
}

fn round_mib(x: f64) -> f64 {
    (x / MIB).round().max(1.0) * MIB
}

fn main_draft(b: Behaviour, rng: &mut Rng) -> Draft {
    let mut p = Profile {
        cpu: rng.range(0.1, 0.8),
        mem: rng.range(150.0, 1_000.0) * MIB,
        daily: 0.1,
        weekly: 0.0,
        noise: 0.08,
        peak_hour: rng.range(12.0, 18.0),
        mem_load: 0.1,
        ..Profile::default()
    };
    let (mut cpu_req, mut cpu_lim, mut mem_req, mut mem_lim) = (1.4, Some(2.0), 1.3, Some(1.5));
    let mut leak = None;
    match b {
        Behaviour::Steady => {}
        Behaviour::Daily => {
            p.daily = 0.5;
            p.weekly = 0.05;
            p.noise = 0.1;
            p.mem_load = 0.3;
            cpu_req = 1.6;
            cpu_lim = None;
        }
        Behaviour::Weekly => {
            p.daily = 0.4;
            p.weekly = 0.4;
            p.mem_load = 0.3;
            cpu_req = 1.5;
        }
        Behaviour::Growth => {
            p.daily = 0.2;
            p.growth = 0.04;
            p.mem_growth = 0.03;
            cpu_req = 1.5;
            mem_req = 1.4;
        }
        Behaviour::MemoryLeak => {
            p.mem = rng.range(200.0, 400.0) * MIB;
            p.mem_load = 0.0;
            mem_req = 1.5;
            mem_lim = Some(2.5);
            leak = Some(rng.range(14.0, 30.0));
        }
        Behaviour::OverProvisioned => {
            p.cpu = rng.range(0.03, 0.12);
            p.mem = rng.range(100.0, 250.0) * MIB;
            cpu_req = 2.0 / p.cpu;
            mem_req = 4.0 * GIB / p.mem;
            mem_lim = Some(1.0);
        }
        Behaviour::CpuStarved => {
            p.cpu = rng.range(0.5, 1.0);
            p.daily = 0.4;
            cpu_req = 0.85;
            cpu_lim = Some(1.0);
        }
        Behaviour::Autoscaled => {
            p.cpu = rng.range(0.2, 0.5);
            p.daily = 0.6;
            p.weekly = 0.3;
            p.noise = 0.1;
            p.autoscaled = true;
            cpu_req = 1.3;
            cpu_lim = None;
        }
        Behaviour::Rolling => {
            p.daily = 0.3;
        }
        Behaviour::Stateful => {
            p.cpu = rng.range(0.3, 1.0);
            p.mem = rng.range(2.0, 6.0) * GIB;
            p.mem_growth = 0.01;
            p.daily = 0.2;
            p.mem_load = 0.05;
            cpu_req = 1.5;
            cpu_lim = None;
            mem_req = 1.4;
            mem_lim = Some(1.0);
        }
        Behaviour::Daemon => {
            p.cpu = rng.range(0.02, 0.1);
            p.mem = rng.range(40.0, 150.0) * MIB;
            p.noise = 0.2;
            cpu_req = 0.1 / p.cpu;
            cpu_lim = None;
            mem_req = 1.5;
            mem_lim = Some(2.0);
        }
    }
    let cpu_request = round_cores(p.cpu * cpu_req);
    let mem_request = round_mib(p.mem * mem_req);
    Draft {
        cpu_req: Some(cpu_request),
        cpu_lim: cpu_lim.map(|f| {
            if b == Behaviour::CpuStarved {
                // Starved: the limit sits below the mean demand, so the daily peak is cut off.
                round_cores(p.cpu * 0.85)
            } else {
                round_cores(cpu_request * f)
            }
        }),
        mem_req: Some(mem_request),
        mem_lim: mem_lim.map(|f| {
            if b == Behaviour::MemoryLeak {
                round_mib(p.mem * f)
            } else {
                round_mib(mem_request * f)
            }
        }),
        leak_period_hours: leak,
        profile: p,
    }
}

/// A sidecar (proxy, exporter): small, following the main container's traffic.
fn sidecar_draft(main: &Draft, rng: &mut Rng) -> Draft {
    let p = Profile {
        cpu: rng.range(0.01, 0.05),
        mem: rng.range(40.0, 90.0) * MIB,
        daily: main.profile.daily,
        weekly: main.profile.weekly,
        noise: 0.15,
        peak_hour: main.profile.peak_hour,
        mem_load: 0.05,
        autoscaled: main.profile.autoscaled,
        ..Profile::default()
    };
    Draft {
        profile: p,
        cpu_req: Some(0.1),
        cpu_lim: Some(2.0),
        mem_req: Some(128.0 * MIB),
        mem_lim: Some(1_024.0 * MIB),
        leak_period_hours: None,
    }
}

/// Value noise: unit-variance knots every 15 minutes, joined smoothly, so usage drifts rather than jitters.
fn smooth_noise(key: u64, t: i64) -> f64 {
    let k = t.div_euclid(NOISE_KNOT_SECS);
    let f = t.rem_euclid(NOISE_KNOT_SECS) as f64 / NOISE_KNOT_SECS as f64;
    let a = gauss(hash2(key, k as u64));
    let b = gauss(hash2(key, (k + 1) as u64));
    let s = f * f * (3.0 - 2.0 * f);
    a + (b - a) * s
}
