//! `headroom serve` as a child process for end-to-end fault tests: started with a configuration file,
//! its JSON log lines collected, its `/readyz` and `/metrics` read, signals sent, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Daemon {
    child: Child,
    /// `http://ADDR` of the bound listener.
    pub base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `headroom --config CONFIG --log-json serve` and waits for its `listening` line.
    pub async fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .arg("--config")
            .arg(config)
            .arg("--log-json")
            .arg("serve")
            .env_remove("RUST_LOG")
            .env_remove("HEADROOM_ENV")
            .env_remove("HEADROOM_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the headroom binary starts");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            child,
            base: String::new(),
            lines,
        };
        let listening = d
            .wait_log("the 'listening' line", Duration::from_secs(30), |v| {
                v["message"] == "listening"
            })
            .await;
        d.base = format!("http://{}", listening["addr"].as_str().unwrap());
        d
    }

    /// Every log line so far, parsed (lines that are not JSON are skipped).
    pub fn logs(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first log line matching `pred`, waiting up to `within` for it.
    pub async fn wait_log(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.poll_log(what, deadline, &pred) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The matching line if there is one yet; panics once the process exited or the deadline passed.
    fn poll_log(
        &mut self,
        what: &str,
        deadline: Instant,
        pred: &impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(v) = self.logs().into_iter().find(|v| pred(v)) {
            return Some(v);
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the daemon exited ({status}) before {what}: {:#?}",
                self.raw()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in time: {:#?}",
            self.raw()
        );
        None
    }

    fn raw(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Status and JSON body of `/readyz`.
    pub async fn readyz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("{}/readyz", self.base)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The value of one series of `/metrics` (name with labels, as printed), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, series)
    }

    /// Waits until the series exists and `pred` holds for its value; returns the value.
    pub async fn wait_metric(
        &mut self,
        series: &str,
        within: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(series).await;
            if let Some(v) = v
                && pred(v)
            {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) waiting for {series}: {:#?}",
                    self.raw()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {v:?} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits up to 30 s for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `series` (for example `headroom_config_reloads_total{result="ok"}`) in exposition text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}
