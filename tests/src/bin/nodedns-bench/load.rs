//! One dnsperf run against one contender, with the server-side CPU it
//! caused: dnsperf pinned to the client CPU in the contender's pod.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nodedns_tests::lab::Lab;

use crate::counters::XdpCounters;
use crate::cpu;
use crate::servers::{CLIENT_CPU, Server};

/// dnsperf clients (sockets) and queries in flight.
const CLIENTS: &str = "8";
const OUTSTANDING: &str = "500";
/// A query unanswered after this long counts as lost.
const TIMEOUT_S: &str = "1";

#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub qps: f64,
    pub wall_s: f64,
    /// Server threads' CPU over the run.
    pub server_ns: u64,
    /// XDP program run time over the run (0 without XDP).
    pub xdp_ns: u64,
    pub xdp_runs: u64,
    /// Queries the XDP program answered.
    pub xdp_hits: u64,
    /// dnsperf's own CPU (user + system).
    pub client_ns: u64,
    /// Latencies in microseconds (only with `verbose`), sorted.
    pub latencies_us: Vec<f64>,
}

impl Sample {
    pub fn cpu_per_query_ns(&self) -> f64 {
        (self.server_ns + self.xdp_ns) as f64 / self.completed.max(1) as f64
    }
    pub fn loss(&self) -> f64 {
        self.lost as f64 / self.sent.max(1) as f64
    }
    pub fn percentile_us(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies_us, p)
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i])
}

pub struct Load<'a> {
    pub rate: Option<u32>,
    pub seconds: u32,
    /// Stop after this many passes through the file (warm-up).
    pub passes: Option<u32>,
    pub verbose: bool,
    pub file: &'a Path,
}

impl<'a> Load<'a> {
    /// `seconds` of `file` at `rate` (no limit: `None`), quiet, with no
    /// limit on passes.
    pub fn at(file: &'a Path, rate: Option<u32>, seconds: u32) -> Self {
        Self {
            rate,
            seconds,
            passes: None,
            verbose: false,
            file,
        }
    }
}

pub fn run(lab: &Lab, server: &Server, xdp_prog: Option<u32>, load: &Load) -> Result<Sample> {
    let counters = match (&server.bpffs, xdp_prog) {
        (Some(dir), Some(_)) => Some(XdpCounters::open(dir.path())?),
        _ => None,
    };
    let hits = || -> Result<u64> {
        counters
            .as_ref()
            .map_or(Ok(0), |c| c.get(dns_common::Counter::Hit))
    };
    let pod = lab.pod(server.pod);
    let addr = server.addr.to_string();
    let secs = load.seconds.to_string();
    let mut cmd = pod.netns().command("taskset");
    cmd.args(["-c", CLIENT_CPU, "dnsperf", "-s", &addr, "-d"])
        .arg(load.file)
        .args(["-l", &secs, "-c", CLIENTS, "-T", "1", "-q", OUTSTANDING])
        .args(["-t", TIMEOUT_S]);
    if let Some(rate) = load.rate {
        cmd.args(["-Q", &rate.to_string()]);
    }
    if let Some(n) = load.passes {
        cmd.args(["-n", &n.to_string()]);
    }
    if load.verbose {
        cmd.arg("-v");
    }
    let out_path = lab.log_dir().join("dnsperf.out");
    let out = std::fs::File::create(&out_path).context("create the dnsperf output file")?;
    cmd.stdout(out).stderr(std::process::Stdio::null());

    let xdp_before = xdp_prog.map(cpu::prog_stats).transpose()?;
    let hits_before = hits()?;
    let server_before = cpu::threads_ns(server.pid())?;
    let started = Instant::now();
    let child = cmd.spawn().context("start dnsperf")?;
    let (status, client_ns) = wait_rusage(child.id())?;
    let wall = started.elapsed();
    let server_after = cpu::threads_ns(server.pid())?;
    let xdp_after = xdp_prog.map(cpu::prog_stats).transpose()?;
    let hits_after = hits()?;
    let text = std::fs::read_to_string(&out_path).context("read the dnsperf output")?;
    if status != 0 {
        bail!("dnsperf exited with status {status}:\n{text}");
    }
    let mut sample = parse(&text, load.verbose)
        .with_context(|| format!("parse the dnsperf output:\n{}", head(&text)))?;
    sample.wall_s = wall.as_secs_f64();
    sample.server_ns = server_after.saturating_sub(server_before);
    sample.client_ns = client_ns;
    sample.xdp_hits = hits_after.saturating_sub(hits_before);
    if let (Some(b), Some(a)) = (xdp_before, xdp_after) {
        sample.xdp_ns = a.0.saturating_sub(b.0);
        sample.xdp_runs = a.1.saturating_sub(b.1);
    }
    Ok(sample)
}

fn head(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("> "))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for the child and returns its exit status and its CPU time
/// (user + system) from `wait4`'s rusage.
fn wait_rusage(pid: u32) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("wait for dnsperf");
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

fn field(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads dnsperf's summary and, with `-v`, one latency per answered query:
/// lines `> RCODE name type latency-seconds`.
fn parse(text: &str, verbose: bool) -> Result<Sample> {
    let get = |label: &str| field(text, label).with_context(|| format!("no {label:?}"));
    let mut sample = Sample {
        sent: get("Queries sent:")? as u64,
        completed: get("Queries completed:")? as u64,
        lost: get("Queries lost:")? as u64,
        qps: get("Queries per second:")?,
        ..Sample::default()
    };
    if verbose {
        sample.latencies_us = text
            .lines()
            .filter(|l| l.starts_with("> "))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map(|s| s * 1e6)
            .collect();
        sample.latencies_us.sort_by(f64::total_cmp);
    }
    Ok(sample)
}
