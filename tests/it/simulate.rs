//! `headroom simulate` end to end: the OpenMetrics it writes is backfilled by `scripts/prometheus` into a
//! real Prometheus, and what Prometheus then holds (series, labels, sample counts, values, restarts) is
//! checked against the generator's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use headroom::simulate::{Behaviour, Cluster, ClusterSpec};
use serde_json::Value;

const END: i64 = 1_700_006_400;

fn headroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .output()
        .expect("runs headroom")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("headroom-it-sim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Prometheus started by `scripts/prometheus`, stopped (and its directory removed) on drop.
struct Prom {
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prom {
    fn start(dir: &Path, openmetrics: &Path) -> Prom {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("data");
        let out = script(&[
            "start",
            "--data",
            data.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--openmetrics",
            openmetrics.to_str().unwrap(),
        ]);
        let prom = Prom {
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        assert!(
            out.status.success(),
            "scripts/prometheus start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout);
        assert!(
            pid.trim().parse::<u32>().is_ok(),
            "printed {pid:?}, not a PID"
        );
        prom
    }

    /// An instant query at `END`; returns the result vector.
    async fn query(&self, q: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q), ("time", &END.to_string())])
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("json");
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    async fn scalar(&self, q: &str) -> f64 {
        let r = self.query(q).await;
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = script(&["stop", "--data", data.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script(args: &[&str]) -> Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prometheus"))
        .args(args)
        .output()
        .expect("runs scripts/prometheus")
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_cluster_backfills_into_prometheus_with_every_series_sample_and_label() {
    let dir = scratch("cluster");
    let om = dir.join("cluster.om");
    let truth = dir.join("truth.json");
    let end = END.to_string();
    let out = headroom(&[
        "simulate",
        "--workloads",
        "12",
        "--days",
        "3",
        "--step",
        "60s",
        "--seed",
        "7",
        "--end",
        &end,
        "--out",
        om.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let prom = Prom::start(&dir, &om);

    // Every family holds exactly the series and samples the generator says it wrote.
    let families = truth["written"]["families"].as_array().unwrap();
    assert_eq!(families.len(), 10);
    for f in families {
        let name = f["name"].as_str().unwrap();
        let series = prom
            .scalar(&format!("count(count_over_time({name}[4d]))"))
            .await;
        let samples = prom
            .scalar(&format!("sum(count_over_time({name}[4d]))"))
            .await;
        assert_eq!(series, f["series"].as_f64().unwrap(), "{name} series");
        assert_eq!(samples, f["samples"].as_f64().unwrap(), "{name} samples");
    }

    // The same plan from the library: the containers Prometheus knows are exactly the truth's.
    let cluster = Cluster::plan(&ClusterSpec {
        workloads: 12,
        start: END - 3 * 86_400,
        end: END,
        step: 60,
        seed: 7,
    })
    .unwrap();
    let expected: BTreeSet<(String, String, String)> = cluster
        .workloads
        .iter()
        .flat_map(|w| {
            let cluster = &cluster;
            w.pods
                .iter()
                .filter(move |p| cluster.sample_times(p).next().is_some())
                .flat_map(move |p| {
                    p.containers
                        .iter()
                        .map(move |c| (w.namespace.clone(), p.name.clone(), c.name.clone()))
                })
        })
        .collect();
    let got: BTreeSet<(String, String, String)> = prom
        .query(r#"count_over_time(container_memory_working_set_bytes{container!="",job="kubelet"}[4d])"#)
        .await
        .iter()
        .map(|s| {
            (
                label(s, "namespace").to_string(),
                label(s, "pod").to_string(),
                label(s, "container").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Ownership: pod -> ReplicaSet -> Deployment, StatefulSet and DaemonSet pods directly.
    let rs_owner: BTreeMap<String, String> = prom
        .query("max_over_time(kube_replicaset_owner[4d])")
        .await
        .iter()
        .map(|s| (label(s, "replicaset").into(), label(s, "owner_name").into()))
        .collect();
    let pod_owner: BTreeMap<String, (String, String)> = prom
        .query("max_over_time(kube_pod_owner[4d])")
        .await
        .iter()
        .map(|s| {
            let owner = (label(s, "owner_kind").into(), label(s, "owner_name").into());
            (label(s, "pod").into(), owner)
        })
        .collect();
    for w in &cluster.workloads {
        for p in &w.pods {
            let (kind, owner) = &pod_owner[&p.name];
            match kind.as_str() {
                "ReplicaSet" => assert_eq!(rs_owner[owner], w.name),
                other => {
                    assert_eq!(other, w.kind.as_str());
                    assert_eq!(owner, &w.name);
                }
            }
        }
    }

    // Values: raw samples of one container equal the generator's functions at those times.
    let w = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::CpuStarved)
        .unwrap();
    let (pod, c) = (&w.pods[0], &w.pods[0].containers[0]);
    let sel = format!(r#"{{pod="{}",container="{}"}}"#, pod.name, c.name);
    let raw = prom
        .query(&format!("container_cpu_usage_seconds_total{sel}[10m]"))
        .await;
    let points = raw[0]["values"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    for pair in points.windows(2) {
        let t = pair[1][0].as_f64().unwrap() as i64;
        let v = |p: &Value| p[1].as_str().unwrap().parse::<f64>().unwrap();
        let rate = (v(&pair[1]) - v(&pair[0])) / 60.0;
        assert!((rate - cluster.cpu_usage(w, c, t)).abs() < 1e-4, "at {t}");
    }
    let mem = prom
        .scalar(&format!("container_memory_working_set_bytes{sel}"))
        .await;
    assert_eq!(mem, cluster.memory_working_set(c, END - 60));
    let throttled = prom
        .scalar(&format!(
            "sum(increase(container_cpu_cfs_throttled_periods_total{sel}[1d])) / sum(increase(container_cpu_cfs_periods_total{sel}[1d]))"
        ))
        .await;
    assert!(
        throttled > 0.2,
        "the starved container is throttled {throttled}"
    );

    // The leaking container: OOMKilled, and its restarts climb with each kill.
    let leak = cluster
        .workloads
        .iter()
        .find(|w| w.behaviour == Behaviour::MemoryLeak)
        .unwrap();
    let (pod, c) = (&leak.pods[0], &leak.pods[0].containers[0]);
    assert!(c.oom_kills.len() >= 2, "{:?}", c.oom_kills);
    let sel = format!(r#"{{pod="{}",container="{}"}}"#, pod.name, c.name);
    let restarts = prom
        .query(&format!(
            "kube_pod_container_status_restarts_total{sel}[4d]"
        ))
        .await;
    let values: Vec<f64> = restarts[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[1] >= w[0]), "restarts go down");
    assert_eq!(values[0], 0.0);
    assert_eq!(*values.last().unwrap(), c.oom_kills.len() as f64);
    let oom = prom
        .query(r#"max_over_time(kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}[4d])"#)
        .await;
    let oom_pods: BTreeSet<&str> = oom.iter().map(|s| label(s, "pod")).collect();
    let leak_pods: BTreeSet<&str> = leak.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(oom_pods, leak_pods);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_trace_backfills_with_its_rate_and_limits() {
    let dir = scratch("replay");
    let usage = dir.join("usage.csv");
    let cap = dir.join("limits.csv");
    let mut csv = String::from("series_id,timestamp_unix,resource,value,unit\n");
    for k in 0..120 {
        let t = END - 7_200 + k * 60;
        csv.push_str(&format!("job/1,{t},cpu,{},percent\n", 10 + k % 7));
        csv.push_str(&format!("job/1,{t},memory,{},KB\n", 1_000_000 + k));
    }
    std::fs::write(&usage, csv).unwrap();
    std::fs::write(
        &cap,
        format!(
            "series_id,timestamp_unix,resource,value,unit\njob/1,{},memory_limit,2000000,KB\n",
            END - 7_200
        ),
    )
    .unwrap();
    let om = dir.join("replay.om");
    let out = headroom(&[
        "simulate",
        "--replay",
        usage.to_str().unwrap(),
        "--capacity",
        cap.to_str().unwrap(),
        "--cores",
        "8",
        "--out",
        om.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prom = Prom::start(&dir, &om);
    // 10 + (k % 7) percent of 8 cores: at the last sample k = 119, 119 % 7 = 0, so 10 % = 0.8 cores.
    let last = END - 60;
    let rate = prom
        .scalar(&format!(
            r#"rate(container_cpu_usage_seconds_total{{namespace="replay",pod=~"job-1-.*"}}[90s] @ {last})"#
        ))
        .await;
    assert!((rate - 0.8).abs() < 1e-6, "{rate}");
    let limit = prom
        .scalar(r#"kube_pod_container_resource_limits{resource="memory",unit="byte"}"#)
        .await;
    assert_eq!(limit, 2_000_000.0 * 1024.0);
    let owner = prom.query("kube_replicaset_owner").await;
    assert_eq!(label(&owner[0], "owner_name"), "job-1");
}

#[test]
fn the_same_seed_and_end_write_byte_identical_files() {
    let dir = scratch("determinism");
    let run = |name: &str, seed: &str| {
        let path = dir.join(name);
        let out = headroom(&[
            "simulate",
            "--workloads",
            "12",
            "--days",
            "1",
            "--step",
            "5m",
            "--seed",
            seed,
            "--end",
            "1700006400",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    };
    let a = run("a.om", "3");
    assert_eq!(a, run("b.om", "3"));
    assert_ne!(a, run("c.om", "4"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_simulate_arguments_exit_with_status_2_and_one_line_naming_the_fault() {
    let dir = scratch("bad");
    let out_path = dir.join("x.om");
    let out = out_path.to_str().unwrap();
    let bad_unit = dir.join("bad.csv");
    std::fs::write(
        &bad_unit,
        "series_id,timestamp_unix,resource,value,unit\na,1,cpu,1,parsecs\n",
    )
    .unwrap();
    let bad_value = dir.join("value.csv");
    std::fs::write(
        &bad_value,
        "series_id,timestamp_unix,resource,value,unit\na,1,cpu,lots,cores\n",
    )
    .unwrap();
    for (args, needle) in [
        (
            vec!["simulate", "--workloads", "0", "--out", out],
            "--workloads",
        ),
        (vec!["simulate", "--step", "5x", "--out", out], "5x"),
        (vec!["simulate", "--days", "0", "--out", out], "--days"),
        (
            vec![
                "simulate",
                "--replay",
                bad_unit.to_str().unwrap(),
                "--out",
                out,
            ],
            "parsecs",
        ),
        (
            vec![
                "simulate",
                "--replay",
                bad_value.to_str().unwrap(),
                "--out",
                out,
            ],
            "value.csv:2: column 4 (value)",
        ),
    ] {
        let o = headroom(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().next().map(|l| l.contains(needle)),
            Some(true),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
