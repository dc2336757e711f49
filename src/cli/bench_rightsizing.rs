//! `headroom bench rightsizing`: rightsizing quality on the real traces, side by side with the VPA
//! recommender, Robusta KRR's simple strategy and a Kubecost-style max/0.7 rule, plus the trade-off curve
//! (slack against samples above the request or limit) as the policy's quantile moves, drawn as an SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{CliResult, Failure};
use crate::domain::Resource;
use crate::offline::{self, UsageSeries};
use crate::recommend::evaluate::{self, Recorded, Score};
use crate::recommend::{Policy, Unit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of datasets, each a folder with a `usage.csv` in the offline format.
    #[arg(long, default_value = "../shared/data/traces")]
    pub traces: PathBuf,
    /// Days held out at the end of each series (half of a series shorter than twice this).
    #[arg(long, default_value_t = 7)]
    pub eval_days: i64,
    /// The policy to compare against the baselines (a built-in name or a .toml file).
    #[arg(long, default_value = "balanced")]
    pub policy: String,
    /// Also print each dataset's scores (series ids carry the dataset as prefix).
    #[arg(long)]
    pub by_dataset: bool,
    /// Score on the training part only: the held-out days are dropped first, then the last days of what
    /// is left are held out in their place. For choosing a policy's knobs without seeing the test days.
    #[arg(long)]
    pub validation: bool,
    /// Write each policy's per-series scores (request, held-out samples, slack, samples above) to this CSV.
    #[arg(long)]
    pub per_series: Option<PathBuf>,
    /// Write the trade-off plot (the policy's quantile swept, and KRR's) to this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

const BASELINES: [&str; 3] = ["vpa", "krr", "max-0.7"];

pub fn run(args: &Args) -> CliResult {
    let bad = |e: String| Failure::BadInput(anyhow::anyhow!(e));
    if args.eval_days <= 0 {
        return Err(bad(format!(
            "--eval-days: must be positive, got {}",
            args.eval_days
        )));
    }
    let policy = Policy::load(&args.policy).map_err(|e| bad(e.to_string()))?;
    let mut usage = load_traces(&args.traces).map_err(bad)?;
    let eval_secs = args.eval_days * 86_400;
    if args.validation {
        for s in &mut usage {
            let keep = evaluate::split(&s.points, eval_secs).0.len();
            s.points.truncate(keep);
        }
    }
    let cpu = recorded(&usage, Resource::Cpu);
    let memory = recorded(&usage, Resource::Memory);
    println!(
        "rightsizing on {}{} ({} cpu series, {} memory series), last {} days held out",
        args.traces.display(),
        if args.validation {
            " (validation: training part only)"
        } else {
            ""
        },
        cpu.len(),
        memory.len(),
        args.eval_days
    );
    println!(
        "| policy | CPU slack | CPU samples above request | CPU series above | memory slack | memory samples above limit | memory series above limit | memory samples above request | declined (cpu/mem) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut names = vec![policy.name.clone()];
    names.extend(BASELINES.iter().map(|s| s.to_string()));
    let mut per_series = String::from(
        "policy,series_id,resource,request,limit,samples,slack,above_request,above_limit\n",
    );
    for (i, name) in names.iter().enumerate() {
        let p = if i == 0 {
            policy.clone()
        } else {
            Policy::load(name).map_err(|e| bad(e.to_string()))?
        };
        let cs = evaluate::evaluate_series(&cpu, &p, eval_secs);
        let ms = evaluate::evaluate_series(&memory, &p, eval_secs);
        for (resource, scores) in [(Resource::Cpu, &cs), (Resource::Memory, &ms)] {
            for s in scores {
                let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
                let _ = writeln!(
                    per_series,
                    "{},{},{},{},{},{},{:.4},{},{}",
                    p.name,
                    s.id,
                    resource.as_str(),
                    num(s.request),
                    num(s.limit),
                    s.samples,
                    s.slack,
                    s.above_request,
                    s.above_limit
                );
            }
        }
        let (c, m) = (evaluate::aggregate(&cs), evaluate::aggregate(&ms));
        println!(
            "| {} | {:.1} % | {:.2} % | {} of {} | {:.1} % | {:.3} % ({} samples) | {} of {} | {:.2} % | {}/{} |",
            p.name,
            c.slack * 100.0,
            c.above_request_share() * 100.0,
            c.series_above_request,
            c.series,
            m.slack * 100.0,
            m.above_limit_share() * 100.0,
            m.above_limit,
            m.series_above_limit,
            m.series,
            m.above_request_share() * 100.0,
            c.declined,
            m.declined
        );
    }
    if let Some(path) = &args.per_series {
        std::fs::write(path, per_series)
            .map_err(|e| anyhow::anyhow!(e).context(format!("while writing {}", path.display())))?;
    }
    if args.by_dataset {
        let mut datasets: Vec<&str> = cpu
            .iter()
            .chain(&memory)
            .filter_map(|s| s.id.split('/').next())
            .collect();
        datasets.sort_unstable();
        datasets.dedup();
        for name in &names {
            let p = if *name == policy.name {
                policy.clone()
            } else {
                Policy::load(name).map_err(|e| bad(e.to_string()))?
            };
            for d in &datasets {
                let c = evaluate::evaluate(&of_dataset(&cpu, d), &p, eval_secs);
                let m = evaluate::evaluate(&of_dataset(&memory, d), &p, eval_secs);
                println!(
                    "{name:>10} {d:<22} cpu {:>2} series {:>7} samples slack {:5.1} % above {:6.2} % | memory {:>2} series slack {:5.1} % above limit {:.3} % ({} series)",
                    c.series,
                    c.samples,
                    c.slack * 100.0,
                    c.above_request_share() * 100.0,
                    m.series,
                    m.slack * 100.0,
                    m.above_limit_share() * 100.0,
                    m.series_above_limit
                );
            }
        }
    }
    if let Some(path) = &args.svg {
        let curves = sweep(&policy, &cpu, &memory, eval_secs)?;
        let svg = render_svg(&curves);
        std::fs::write(path, svg)
            .map_err(|e| anyhow::anyhow!(e).context(format!("while writing {}", path.display())))?;
        for c in &curves {
            println!("sweep {} {}:", c.resource, c.label);
            for (k, s) in &c.points {
                println!(
                    "  {k:.3}: slack {:.1} % above {:.3} %",
                    s.slack * 100.0,
                    violations(c.resource, s) * 100.0
                );
            }
        }
        println!("trade-off plot written to {}", path.display());
    }
    Ok(())
}

/// Every dataset's `usage.csv` under `dir`, in name order; series ids are prefixed with the dataset.
fn load_traces(dir: &Path) -> Result<Vec<UsageSeries>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("--traces {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path().join("usage.csv")))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "--traces {}: no dataset folder with a usage.csv",
            dir.display()
        ));
    }
    let mut all = Vec::new();
    for f in files {
        let dataset = f
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for mut s in offline::read_usage(&f).map_err(|e| e.to_string())? {
            s.series_id = format!("{dataset}/{}", s.series_id);
            all.push(s);
        }
    }
    Ok(all)
}

fn recorded(usage: &[UsageSeries], resource: Resource) -> Vec<Recorded<'_>> {
    usage
        .iter()
        .filter(|s| s.resource == resource.as_str())
        .map(|s| Recorded {
            id: &s.series_id,
            resource,
            unit: s.unit.as_deref().map_or(Unit::Unknown, Unit::parse),
            points: &s.points,
        })
        .collect()
}

fn of_dataset<'a>(series: &[Recorded<'a>], dataset: &str) -> Vec<Recorded<'a>> {
    series
        .iter()
        .filter(|s| s.id.split('/').next() == Some(dataset))
        .copied()
        .collect()
}

/// CPU is judged by samples above the request, memory by samples above the limit (an OOM kill).
fn violations(resource: Resource, s: &Score) -> f64 {
    match resource {
        Resource::Cpu => s.above_request_share(),
        Resource::Memory => s.above_limit_share(),
    }
}

struct Curve {
    resource: Resource,
    label: String,
    /// (knob value, score) in knob order.
    points: Vec<(f64, Score)>,
    /// Where the policy as declared sits (drawn as a ring).
    marker: Option<Score>,
}

const QUANTILES: [f64; 10] = [0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99, 1.0];
const COSTS: [f64; 9] = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 20.0];

fn sweep(
    policy: &Policy,
    cpu: &[Recorded<'_>],
    memory: &[Recorded<'_>],
    eval_secs: i64,
) -> Result<Vec<Curve>, Failure> {
    let mut curves = Vec::new();
    for (resource, series) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
        for base in [policy.name.as_str(), "vpa", "krr"] {
            let p = if base == policy.name {
                policy.clone()
            } else {
                Policy::load(base).map_err(|e| Failure::BadInput(e.into()))?
            };
            let calibrated = match resource {
                Resource::Cpu => p.cpu.calibration.as_ref(),
                Resource::Memory => p.memory.calibration.as_ref(),
            }
            .is_some_and(|c| c.violation_cost.is_some());
            let mut points = Vec::new();
            // A calibrated policy's knob is its violation cost; the others' is their quantile.
            let knobs: &[f64] = if calibrated { &COSTS } else { &QUANTILES };
            for &k in knobs {
                let mut v = p.clone();
                let r = match resource {
                    Resource::Cpu => &mut v.cpu,
                    Resource::Memory => &mut v.memory,
                };
                match r.calibration.as_mut() {
                    Some(c) if calibrated => c.violation_cost = Some(k),
                    _ => {
                        r.quantile = k;
                        r.lower_quantile = r.lower_quantile.min(k);
                        r.upper_quantile = r.upper_quantile.max(k);
                    }
                }
                points.push((k, evaluate::evaluate(series, &v, eval_secs)));
            }
            let knob = if calibrated {
                "violation cost"
            } else {
                "quantile"
            };
            curves.push(Curve {
                resource,
                label: format!("{base} ({knob} swept)"),
                points,
                marker: Some(evaluate::evaluate(series, &p, eval_secs)),
            });
        }
        let max07 = Policy::load("max-0.7").map_err(|e| Failure::BadInput(e.into()))?;
        curves.push(Curve {
            resource,
            label: "max-0.7".into(),
            points: Vec::new(),
            marker: Some(evaluate::evaluate(series, &max07, eval_secs)),
        });
    }
    Ok(curves)
}

const COLOURS: [&str; 4] = ["#1b6ac9", "#d1495b", "#2e8b57", "#8a6d3b"];

/// Two panels (CPU, memory): x = share of held-out samples above the request (CPU) or the limit
/// (memory), on a log scale since the interesting range spans decades; y = mean slack.
fn render_svg(curves: &[Curve]) -> String {
    let (w, h, pad) = (460.0, 340.0, 56.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        2.0 * w,
        h + 40.0
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (panel, resource) in Resource::ALL.iter().enumerate() {
        let x0 = panel as f64 * w;
        let (lo, hi) = (1e-5_f64, 0.5_f64);
        let px = |v: f64| {
            x0 + pad
                + (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (w - 1.5 * pad)
        };
        let py = |s: f64| 20.0 + (1.0 - s) * (h - pad - 20.0);
        let axis = match resource {
            Resource::Cpu => "CPU: share of samples above the request",
            Resource::Memory => "memory: share of samples above the limit",
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{a}" y1="{b}" x2="{c}" y2="{b}" stroke="#444"/><line x1="{a}" y1="20" x2="{a}" y2="{b}" stroke="#444"/><text x="{tx}" y="{ty}" text-anchor="middle">{axis} (log)</text><text x="{lx}" y="{my}" text-anchor="middle" transform="rotate(-90 {lx} {my})">mean slack (unused share of the request)</text>"##,
            a = x0 + pad,
            b = h - pad,
            c = x0 + w - pad / 2.0,
            tx = x0 + w / 2.0,
            ty = h - pad + 34.0,
            lx = x0 + 16.0,
            my = h / 2.0 - 10.0
        );
        for tick in [1e-5, 1e-4, 1e-3, 1e-2, 1e-1] {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                px(tick),
                h - pad + 14.0,
                fmt_pct(tick)
            );
        }
        for s in [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#444">{:.0} %</text><line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##,
                x0 + pad - 4.0,
                py(s) + 4.0,
                s * 100.0,
                x0 + pad,
                x0 + w - pad / 2.0,
                y = py(s)
            );
        }
        for (i, c) in curves
            .iter()
            .filter(|c| c.resource == *resource)
            .enumerate()
        {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<String> = c
                .points
                .iter()
                .map(|(_, s)| format!("{:.1},{:.1}", px(violations(c.resource, s)), py(s.slack)))
                .collect();
            if !pts.is_empty() {
                let _ = writeln!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
                    pts.join(" ")
                );
                for (q, s) in &c.points {
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{colour}"><title>{} {q}</title></circle>"#,
                        px(violations(c.resource, s)),
                        py(s.slack),
                        c.label
                    );
                }
            }
            if let Some(m) = &c.marker {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                    px(violations(c.resource, m)),
                    py(m.slack)
                );
            }
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
                x0 + w - pad / 2.0 - 150.0,
                34.0 + 14.0 * i as f64,
                c.label
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">rings: each policy as declared; dots: its knob swept (quantile 0.5 … 1.0, or violation cost 1 … 20)</text></svg>"##,
        w,
        h + 28.0
    );
    svg
}

fn fmt_pct(v: f64) -> String {
    let p = v * 100.0;
    if p >= 1.0 {
        format!("{p:.0} %")
    } else {
        format!("{p} %")
    }
}
