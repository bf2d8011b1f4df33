//! The figures: one entry per contender and metric (median and spread over
//! the runs), written as JSON and printed as tables with the targets.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::load::{Sample, percentile};

#[derive(Serialize)]
pub struct Entry {
    pub contender: String,
    pub metric: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

/// Issue 14's goal for the agent's CPU when no query comes (ms per s).
pub const IDLE_CPU_GOAL: f64 = 0.5;
/// Issue 14's goal for the agent's RSS at [`RSS_GOAL_SERVICES`] Services
/// (with 5 endpoints each).
pub const RSS_GOAL_BYTES: f64 = (64 << 20) as f64;
pub const RSS_GOAL_SERVICES: usize = 50_000;
/// Issue 16's goal for the share of a small hot set's answers the kernel
/// gives during a unique-name flood (300k names at a few thousand qps).
pub const HOT_SET_GOAL: f64 = 0.99;
/// Issue 14's goal for one kernel hit in `BPF_PROG_TEST_RUN` (ns).
pub const KERNEL_HIT_GOAL: f64 = 100.0;
/// Issue 14's goal for the kernel path: its server CPU per query at least
/// this many times below the better peer's, at every fixed rate.
pub const KERNEL_RATIO_GOAL: f64 = 50.0;
/// The contender of the XDP microbenchmark's figures.
pub const XDP_PROGRAM: &str = "xdp-program";
/// The kernel-path contenders.
pub const KERNEL_PATHS: [&str; 2] = ["nodedns-xdp-skb", "nodedns-xdp-native"];
/// The metric of the kernel path's ratio at `rate`: the better peer's
/// server CPU per query over its own.
pub fn peer_ratio_metric(rate: &str) -> String {
    format!("peer_cpu_ratio@{rate}")
}

/// The contender of the flood figures.
pub const FLOOD_LABEL: &str = "nodedns-flood";
/// The agent contenders whose idle CPU the goal covers.
pub const AGENTS: [&str; 3] = ["nodedns-xdp-skb", "nodedns-xdp-native", "nodedns-userspace"];

/// The agent without XDP: issue 14's userspace-path goals are against
/// the better peer (CPU per query) and unbound (saturation).
pub const USERSPACE: &str = "nodedns-userspace";

/// Which side of its goal a figure must be on.
#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtMost,
    AtLeast,
}

impl Bound {
    fn holds(self, value: f64, goal: f64) -> bool {
        match self {
            Self::AtMost => value <= goal,
            Self::AtLeast => value >= goal,
        }
    }

    pub fn sign(self) -> &'static str {
        match self {
            Self::AtMost => "<=",
            Self::AtLeast => ">=",
        }
    }
}

/// A figure next to its goal: `met` is None when the run did not measure
/// it (a quick or dry run).
#[derive(Serialize)]
pub struct Goal {
    pub figure: String,
    pub contender: String,
    pub metric: String,
    pub unit: String,
    pub value: Option<f64>,
    /// The figure must be `bound` this.
    pub goal: f64,
    pub bound: Bound,
    pub met: Option<bool>,
}

#[derive(Serialize)]
pub struct Report {
    pub quick: bool,
    pub dry_run: bool,
    pub services: usize,
    pub elapsed_s: f64,
    pub entries: Vec<Entry>,
    pub goals: Vec<Goal>,
}

/// The label of the memory run with `services` Services.
pub fn memory_label(services: usize) -> String {
    format!("nodedns-{services}svc")
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5).unwrap_or(f64::NAN)
}

impl Report {
    pub fn new(quick: bool, dry_run: bool, services: usize) -> Self {
        Self {
            quick,
            dry_run,
            services,
            elapsed_s: 0.0,
            entries: Vec::new(),
            goals: Vec::new(),
        }
    }

    pub fn push(&mut self, contender: &str, metric: &str, unit: &str, runs: Vec<f64>) {
        if runs.is_empty() {
            return;
        }
        let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.entries.push(Entry {
            contender: contender.to_string(),
            metric: metric.to_string(),
            unit: unit.to_string(),
            median: median(&runs),
            min,
            max,
            runs,
        });
    }

    pub fn get(&self, contender: &str, metric: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.contender == contender && e.metric == metric)
    }

    pub fn contenders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.contender) {
                out.push(e.contender.clone());
            }
        }
        out
    }

    pub fn add_fixed_rate(&mut self, label: &str, rate: u32, samples: &[Sample]) {
        let each = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        let per_q = |ns: u64, s: &Sample| ns as f64 / s.completed.max(1) as f64;
        let m = |name: &str| format!("{name}@{rate}");
        self.push(
            label,
            &m("cpu_per_query"),
            "ns",
            each(&|s| s.cpu_per_query_ns()),
        );
        self.push(
            label,
            &m("server_threads_per_query"),
            "ns",
            each(&|s| per_q(s.server_ns, s)),
        );
        self.push(
            label,
            &m("xdp_per_query"),
            "ns",
            each(&|s| per_q(s.xdp_ns, s)),
        );
        self.push(
            label,
            &m("xdp_runs_per_query"),
            "ratio",
            each(&|s| s.xdp_runs as f64 / s.completed.max(1) as f64),
        );
        self.push(
            label,
            &m("xdp_answered_share"),
            "ratio",
            each(&|s| s.xdp_hits as f64 / s.completed.max(1) as f64),
        );
        self.push(
            label,
            &m("client_cpu_per_query"),
            "ns",
            each(&|s| per_q(s.client_ns, s)),
        );
        self.push(
            label,
            &m("latency_p50"),
            "us",
            each(&|s| s.percentile_us(0.5).unwrap_or(f64::NAN)),
        );
        self.push(
            label,
            &m("latency_p99"),
            "us",
            each(&|s| s.percentile_us(0.99).unwrap_or(f64::NAN)),
        );
        self.push(label, &m("loss"), "ratio", each(&|s| s.loss()));
        self.push(
            label,
            &m("answered_qps"),
            "qps",
            each(&|s| s.completed as f64 / s.wall_s.max(1e-9)),
        );
    }

    pub fn add_saturation(&mut self, label: &str, samples: &[Sample]) {
        let each = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        self.push(label, "saturation_qps", "qps", each(&|s| s.qps));
        self.push(
            label,
            "saturation_client_cpu",
            "ratio",
            each(&|s| s.client_ns as f64 / 1e9 / s.wall_s),
        );
        self.push(
            label,
            "saturation_server_cpu",
            "ratio",
            each(&|s| (s.server_ns + s.xdp_ns) as f64 / 1e9 / s.wall_s),
        );
        self.push(label, "saturation_loss", "ratio", each(&|s| s.loss()));
    }

    /// The kernel path's ratio to the better peer at each rate, one per
    /// run (run `i` of each contender measured in the same round).
    fn add_peer_ratios(&mut self) {
        let mut add = Vec::new();
        for rate in self.rates() {
            let metric = format!("cpu_per_query@{rate}");
            let runs = |c: &str| self.get(c, &metric).map(|e| e.runs.clone());
            let (Some(d), Some(u)) = (runs("dnsmasq"), runs("unbound")) else {
                continue;
            };
            for xdp in KERNEL_PATHS {
                let Some(x) = runs(xdp) else { continue };
                let ratios = x
                    .iter()
                    .zip(d.iter().zip(&u))
                    .map(|(x, (d, u))| d.min(*u) / x.max(1e-9))
                    .collect();
                add.push((xdp, peer_ratio_metric(&rate), ratios));
            }
        }
        for (xdp, metric, ratios) in add {
            self.push(xdp, &metric, "times", ratios);
        }
    }

    /// The goals with figures of their own (idle CPU, memory), from the
    /// entries; call once every figure is in.
    pub fn evaluate_goals(&mut self) {
        self.add_peer_ratios();
        let mut goals = Vec::new();
        let med = |c: &str, m: &str| self.get(c, m).map(|e| e.median);
        let mut goal = |figure: &str, contender: &str, metric: &str, unit: &str, limit: f64| {
            // Throughput, shares and ratios are floors; costs are ceilings.
            let bound = if unit == "qps" || unit == "ratio" || unit == "times" {
                Bound::AtLeast
            } else {
                Bound::AtMost
            };
            let value = med(contender, metric);
            goals.push(Goal {
                figure: figure.to_string(),
                contender: contender.to_string(),
                metric: metric.to_string(),
                unit: unit.to_string(),
                value,
                goal: limit,
                bound,
                met: value.map(|v| bound.holds(v, limit)),
            });
        };
        goal(
            "XDP program hit in BPF_PROG_TEST_RUN",
            XDP_PROGRAM,
            "testrun_hit",
            "ns",
            KERNEL_HIT_GOAL,
        );
        for rate in self.rates() {
            for xdp in KERNEL_PATHS {
                let metric = peer_ratio_metric(&rate);
                if med(xdp, &metric).is_some() {
                    let figure =
                        format!("kernel path: better peer's CPU/query over its own @{rate} qps");
                    goal(&figure, xdp, &metric, "times", KERNEL_RATIO_GOAL);
                }
            }
        }
        for agent in AGENTS {
            goal("idle CPU", agent, "idle_cpu", "ms/s", IDLE_CPU_GOAL);
        }
        let at_scale = memory_label(RSS_GOAL_SERVICES);
        goal(
            "RSS at 50k Services, 250k endpoints",
            &at_scale,
            "agent_rss",
            "bytes",
            RSS_GOAL_BYTES,
        );
        let flood = |m: &str| med(FLOOD_LABEL, m).unwrap_or(0.0);
        let figure = format!(
            "hot-set kernel share during a {:.0}k unique-name flood at {:.0} qps",
            flood("flood_names") / 1000.0,
            flood("flood_qps")
        );
        goal(
            &figure,
            FLOOD_LABEL,
            "hot_set_kernel_share",
            "ratio",
            HOT_SET_GOAL,
        );
        for rate in self.rates() {
            let metric = format!("cpu_per_query@{rate}");
            if let Some(best) = self.best_peer(&metric) {
                let figure = format!("userspace path CPU/query @{rate} qps vs the better peer");
                goal(&figure, USERSPACE, &metric, "ns", best);
            }
        }
        if let Some(unbound) = med("unbound", "saturation_qps") {
            let figure = "userspace path saturation vs unbound";
            goal(figure, USERSPACE, "saturation_qps", "qps", unbound);
        }
        if self.dry_run {
            // A token flood: it runs the harness, too small to judge by.
            for g in goals.iter_mut() {
                if g.metric == "hot_set_kernel_share" {
                    g.met = None;
                }
            }
        }
        self.goals = goals;
    }

    /// The lower median of dnsmasq and unbound for `metric`, when both
    /// were measured.
    pub fn best_peer(&self, metric: &str) -> Option<f64> {
        let [d, u] = ["dnsmasq", "unbound"].map(|p| self.get(p, metric).map(|e| e.median));
        Some(d?.min(u?))
    }

    /// The goal on `metric` of the userspace path, if the run has one.
    pub fn userspace_goal(&self, metric: &str) -> Option<&Goal> {
        self.goals
            .iter()
            .find(|g| g.contender == USERSPACE && g.metric == metric)
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("encode the summary")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
    }

    /// The rates that have figures, from the metric names.
    pub fn rates(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.entries {
            if let Some(rate) = e.metric.strip_prefix("cpu_per_query@")
                && !out.iter().any(|r| r == rate)
            {
                out.push(rate.to_string());
            }
        }
        out
    }

    fn cell(&self, c: &str, metric: &str, scale: f64, digits: usize) -> String {
        match self.get(c, metric) {
            Some(e) if e.runs.len() > 1 => format!(
                "{:.d$} [{:.d$}-{:.d$}]",
                e.median * scale,
                e.min * scale,
                e.max * scale,
                d = digits
            ),
            Some(e) => format!("{:.d$}", e.median * scale, d = digits),
            None => "-".into(),
        }
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let mode = match (self.quick, self.dry_run) {
            (_, true) => "dry run",
            (true, _) => "quick",
            _ => "full",
        };
        let _ = writeln!(
            t,
            "\nnodedns bench ({mode}, {} services, {:.0} s); median [min-max] over runs",
            self.services, self.elapsed_s
        );
        let med = |c: &str, m: &str| self.get(c, m).map(|e| e.median);
        for rate in self.rates() {
            let m = |n: &str| format!("{n}@{rate}");
            let _ = writeln!(t, "\n## fixed offered rate {rate} qps");
            let _ = writeln!(
                t,
                "{:<20} {:>22} {:>9} {:>9} {:>18} {:>18} {:>9} {:>8} {:>9}",
                "contender",
                "server CPU/q ns",
                "x dnsmasq",
                "x unbound",
                "p50 us",
                "p99 us",
                "loss %",
                "XDP ans%",
                "client ns/q"
            );
            let dnsmasq = med("dnsmasq", &m("cpu_per_query"));
            let unbound = med("unbound", &m("cpu_per_query"));
            for c in self.contenders() {
                let Some(cpu) = med(&c, &m("cpu_per_query")) else {
                    continue;
                };
                let ratio =
                    |peer: Option<f64>| peer.map_or("-".into(), |p| format!("{:.1}", p / cpu));
                let _ = writeln!(
                    t,
                    "{:<20} {:>22} {:>9} {:>9} {:>18} {:>18} {:>9} {:>8} {:>9}",
                    c,
                    self.cell(&c, &m("cpu_per_query"), 1.0, 0),
                    ratio(dnsmasq),
                    ratio(unbound),
                    self.cell(&c, &m("latency_p50"), 1.0, 0),
                    self.cell(&c, &m("latency_p99"), 1.0, 0),
                    self.cell(&c, &m("loss"), 100.0, 2),
                    med(&c, &m("xdp_answered_share"))
                        .map_or("-".into(), |x| format!("{:.0}", x * 100.0)),
                    self.cell(&c, &m("client_cpu_per_query"), 1.0, 0),
                );
            }
        }
        if self.entries.iter().any(|e| e.metric == "saturation_qps") {
            let _ = writeln!(
                t,
                "\n## saturation (no rate limit; server on one CPU, dnsperf on the other)"
            );
            let _ = writeln!(
                t,
                "{:<20} {:>24} {:>12} {:>12}  bottleneck",
                "contender", "answered qps", "dnsperf CPU", "server CPU"
            );
            for c in self.contenders() {
                let Some(qps) = self.get(&c, "saturation_qps") else {
                    continue;
                };
                let client = med(&c, "saturation_client_cpu").unwrap_or(0.0);
                let server = med(&c, "saturation_server_cpu").unwrap_or(0.0);
                let bottleneck = if client > 0.9 {
                    "dnsperf's CPU (incl. softirq work it carries)"
                } else if server > 0.9 {
                    "server CPU"
                } else {
                    "neither saturated"
                };
                let _ = writeln!(
                    t,
                    "{:<20} {:>24} {:>11.0}% {:>11.0}%  {bottleneck}",
                    c,
                    self.cell(&c, "saturation_qps", 1.0, 0),
                    client * 100.0,
                    server * 100.0
                );
                let _ = qps;
            }
        }
        let _ = writeln!(t, "\n## other figures");
        for e in &self.entries {
            if e.metric.contains('@') || e.metric.starts_with("saturation") {
                continue;
            }
            let (v, unit) = match e.unit.as_str() {
                "bytes" => (format!("{:.1}", e.median / (1 << 20) as f64), "MiB"),
                u => (format!("{:.1}", e.median), u),
            };
            let spread = if e.runs.len() > 1 {
                format!(" [{:.1}-{:.1}] n={}", e.min, e.max, e.runs.len())
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "{:<20} {:<24} {v:>10} {unit}{spread}",
                e.contender, e.metric
            );
        }
        t.push_str(&self.targets());
        t
    }

    fn targets(&self) -> String {
        let mut t = String::from("\n## targets\n");
        let med = |c: &str, m: &str| self.get(c, m).map(|e| e.median);
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        for rate in self.rates() {
            let m = |n: &str| format!("{n}@{rate}");
            let peer_p50 = ["dnsmasq", "unbound"].map(|p| med(p, &m("latency_p50")));
            for xdp in KERNEL_PATHS {
                if let (Some(p99), [Some(a), Some(b)]) = (med(xdp, &m("latency_p99")), peer_p50) {
                    let _ = writeln!(
                        t,
                        "@{rate}: {xdp} p99 {p99:.0} us < peers' p50 ({a:.0}, {b:.0} us): {}",
                        verdict(p99 < a.min(b))
                    );
                }
            }
        }
        for e in self
            .entries
            .iter()
            .filter(|e| e.metric.starts_with("failopen_after_"))
        {
            let _ = writeln!(
                t,
                "{}: {:.0} ms (max {:.0}) < 1000 ms: {}",
                e.metric,
                e.median,
                e.max,
                verdict(e.max < 1000.0)
            );
        }
        for g in &self.goals {
            let show = |v: f64| match g.unit.as_str() {
                "bytes" => format!("{:.1} MiB", v / (1 << 20) as f64),
                "times" => format!("{v:.1}x"),
                "ratio" => format!("{:.2}%", v * 100.0),
                u => format!("{v:.2} {u}"),
            };
            let ratio = match g.value {
                Some(v) if g.goal > 0.0 => format!(" ({:.2}x the goal)", v / g.goal),
                _ => String::new(),
            };
            let _ = writeln!(
                t,
                "{} of {}: {} {} {}{ratio}: {}",
                g.figure,
                g.contender,
                g.value.map_or("-".into(), show),
                g.bound.sign(),
                show(g.goal),
                g.met.map_or("not measured", verdict)
            );
        }
        t
    }
}
