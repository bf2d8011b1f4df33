//! `cargo xtask bench`: nodedns against dnsmasq and unbound on the lab
//! topology (pod netns → veth → node netns), dnsperf on one CPU, the servers
//! on the other. Method and limits: tests/bench/README.md.
//!
//! Flags: `--quick` (about 3 minutes), `--dry-run` (start every contender,
//! one query each, write the summary; no load), `--runs N`, `--out DIR`,
//! `--failover-only` (only the fail-open time, `--runs` rounds),
//! `--flood-only` (only the hot set under a flood, `--runs` rounds),
//! `--userspace-only` (the userspace path against the peers: fixed rates
//! and saturation, nothing else), `--kernel-only` (the kernel paths
//! against the peers: the XDP microbenchmark and the fixed rates, nothing
//! else), `--memory-only` (only the agent's RSS, peak RSS, idle CPU and
//! map memory at each cluster size, `--runs` rounds), `--sizes N,N..`
//! (the memory runs' cluster sizes).

mod chart;
mod cluster;
mod counters;
mod cpu;
mod failover;
mod flood;
mod load;
mod memory;
mod microbench;
mod png;
mod propagation;
mod report;
mod servers;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nodedns_tests::lab::Lab;

use cluster::Cluster;
use load::Load;
use report::Report;
use servers::{Kind, Server};

/// Services in the cluster the load runs against.
const SERVICES: usize = 1_000;

struct Plan {
    quick: bool,
    dry_run: bool,
    runs: usize,
    rates: Vec<u32>,
    seconds: u32,
    saturation_seconds: u32,
    idle_window: std::time::Duration,
    memory_sizes: Vec<usize>,
    propagation_rounds: usize,
    /// Rounds of each fail-open case (a dry run does one, to keep the
    /// harness working).
    failover_rounds: usize,
    /// Measure the fail-open time alone (`--failover-only`).
    failover_only: bool,
    /// Measure the hot set under a flood alone (`--flood-only`).
    flood_only: bool,
    /// Only the userspace agent and the peers, only the load figures
    /// (`--userspace-only`).
    userspace_only: bool,
    /// Only the memory runs, `runs` rounds of each size (`--memory-only`).
    memory_only: bool,
    /// Only the kernel paths and the peers, only the microbenchmark and
    /// the fixed rates (`--kernel-only`).
    kernel_only: bool,
    out: PathBuf,
}

impl Plan {
    fn from_args() -> Result<Self> {
        let mut args = std::env::args().skip(1);
        let (mut quick, mut dry_run, mut runs, mut out) = (false, false, None, None);
        let (mut failover_only, mut flood_only, mut userspace_only) = (false, false, false);
        let (mut memory_only, mut sizes) = (false, None);
        let mut kernel_only = false;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--dry-run" => dry_run = true,
                "--failover-only" => failover_only = true,
                "--flood-only" => flood_only = true,
                "--userspace-only" => userspace_only = true,
                "--memory-only" => memory_only = true,
                "--sizes" => {
                    let list = args
                        .next()
                        .context("--sizes needs a list like 1000,50000")?;
                    let parsed: Result<Vec<usize>, _> = list.split(',').map(str::parse).collect();
                    sizes = Some(parsed.context("--sizes needs a list like 1000,50000")?);
                }
                "--kernel-only" => kernel_only = true,
                "--runs" => runs = Some(args.next().context("--runs needs a number")?.parse()?),
                "--out" => out = Some(PathBuf::from(args.next().context("--out needs a folder")?)),
                "-h" | "--help" => {
                    println!(
                        "nodedns-bench [--quick] [--dry-run] [--runs N] [--out DIR] [--failover-only] [--flood-only] [--userspace-only] [--kernel-only] [--memory-only] [--sizes N,N..]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}; try --help"),
            }
        }
        let out = out.unwrap_or_else(|| target_dir().join("bench"));
        let full = Self {
            quick,
            dry_run,
            runs: runs.unwrap_or(5),
            rates: vec![20_000, 50_000],
            seconds: 10,
            saturation_seconds: 8,
            // Long enough to catch the agent's 30 s timers.
            idle_window: std::time::Duration::from_secs(30),
            memory_sizes: sizes
                .clone()
                .unwrap_or_else(|| vec![1_000, 10_000, 50_000, 100_000]),
            propagation_rounds: 7,
            failover_rounds: failover_rounds(dry_run, failover_only, runs, 5),
            failover_only,
            flood_only,
            userspace_only,
            memory_only,
            kernel_only,
            out,
        };
        Ok(if quick {
            Self {
                runs: runs.unwrap_or(3),
                rates: vec![20_000],
                seconds: 5,
                saturation_seconds: 4,
                idle_window: std::time::Duration::from_secs(5),
                memory_sizes: sizes.unwrap_or_else(|| vec![1_000, 10_000]),
                propagation_rounds: 3,
                failover_rounds: failover_rounds(dry_run, failover_only, runs, 3),
                ..full
            }
        } else {
            full
        })
    }
}

/// Rounds of each fail-open case: one in a dry run, `--runs` when only
/// that is measured, else the plan's `default`.
fn failover_rounds(dry_run: bool, only: bool, runs: Option<usize>, default: usize) -> usize {
    match (dry_run, only, runs) {
        (true, _, _) => 1,
        (false, true, Some(runs)) => runs,
        _ => default,
    }
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn main() -> Result<()> {
    let plan = Plan::from_args()?;
    let started = Instant::now();
    std::fs::create_dir_all(&plan.out).with_context(|| format!("create {}", plan.out.display()))?;
    if plan.failover_only {
        let mut report = Report::new(plan.quick, plan.dry_run, SERVICES);
        failover(&plan, &mut report)?;
        return finish(&plan, report, started);
    }
    if plan.flood_only {
        let mut report = Report::new(plan.quick, plan.dry_run, SERVICES);
        let cluster = Cluster::new(SERVICES);
        let lab = Lab::new(1).context("create the lab (needs root)")?;
        let _upstream = servers::start_upstream(&lab, &cluster)?;
        let rounds = if plan.dry_run { 1 } else { plan.runs };
        hot_set_under_flood(&lab, &cluster, &plan, rounds, &mut report)?;
        return finish(&plan, report, started);
    }
    if plan.memory_only {
        let mut report = Report::new(plan.quick, plan.dry_run, SERVICES);
        let lab = Lab::new(1).context("create the lab (needs root)")?;
        let _upstream = servers::start_upstream(&lab, &Cluster::new(SERVICES))?;
        let (sizes, rounds) = if plan.dry_run {
            (vec![1_000], 1)
        } else {
            (plan.memory_sizes.clone(), plan.runs)
        };
        let mut runs = Vec::new();
        for round in 0..rounds {
            eprintln!("bench: memory round {}/{rounds}", round + 1);
            runs.extend(memory::measure(&lab, 0, &sizes, round)?);
        }
        push_memory(&mut report, &sizes, &runs);
        return finish(&plan, report, started);
    }
    // Before bpf_stats goes on: the stats add their own clock reads to
    // every run, TestRun included.
    let micro = (!plan.userspace_only).then(|| {
        eprintln!("bench: XDP microbenchmark");
        microbench::run(plan.quick || plan.dry_run)
    });
    let _stats = cpu::BpfStats::enable()?;
    let cluster = Cluster::new(SERVICES);
    // One pod per contender, plus one for the memory runs.
    let lab = Lab::new(Kind::ALL.len() + 1).context("create the lab (needs root)")?;
    let query_file = lab.log_dir().join("queries.txt");
    std::fs::write(&query_file, cluster.query_file()).context("write the query file")?;
    let _upstream = servers::start_upstream(&lab, &cluster)?;
    let mut contenders = Vec::new();
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        if (plan.userspace_only && kind.has_xdp()) || (plan.kernel_only && kind == Kind::AgentNoXdp)
        {
            continue;
        }
        let addr = Ipv4Addr::new(169, 254, 20, 21 + i as u8);
        eprintln!("bench: starting {} at {addr}", kind.label());
        let server = servers::start(&lab, kind, i, addr, &cluster, i as u16, &[])?;
        let prog = if kind.has_xdp() {
            Some(cpu::xdp_prog_id(lab.node(), lab.pod(i).node_ifname())?)
        } else {
            None
        };
        contenders.push((server, prog));
    }
    let mut report = Report::new(plan.quick, plan.dry_run, SERVICES);
    if plan.userspace_only && !plan.dry_run {
        warm(&lab, &contenders, &query_file)?;
        measure_rates(&lab, &plan, &contenders, &query_file, &mut report, true)?;
        return finish(&plan, report, started);
    }
    if plan.kernel_only && !plan.dry_run {
        warm(&lab, &contenders, &query_file)?;
        measure_rates(&lab, &plan, &contenders, &query_file, &mut report, false)?;
        push_micro(&mut report, micro);
        return finish(&plan, report, started);
    }
    if plan.dry_run {
        // Every contender already answered a cluster name; check the
        // forwarding path too.
        let external = &cluster.externals[0];
        for (server, _) in &contenders {
            let reply =
                lab.pod(server.pod)
                    .dig(&[&format!("@{}", server.addr), &external.name, "A"])?;
            if reply.rdata("A") != [external.v4.to_string()] {
                bail!(
                    "{} did not forward {} to the upstream: {}",
                    server.kind.label(),
                    external.name,
                    reply.raw
                );
            }
            report.push(server.kind.label(), "ready", "bool", vec![1.0]);
        }
    } else {
        idle_cpu(&contenders, plan.idle_window, &mut report)?;
        warm(&lab, &contenders, &query_file)?;
        measure_rates(&lab, &plan, &contenders, &query_file, &mut report, true)?;
        for (server, _) in &contenders {
            if let (Some(dir), true) = (&server.bpffs, server.kind.has_xdp()) {
                let counters = counters::XdpCounters::open(dir.path())?;
                for c in dns_common::Counter::ALL {
                    let n = counters.get(*c)? as f64;
                    report.push(
                        server.kind.label(),
                        &format!("xdp_counter_{}", c.name()),
                        "count",
                        vec![n],
                    );
                }
            }
            let rss = cpu::rss_bytes(server.pid())? as f64;
            if matches!(server.kind, Kind::Dnsmasq | Kind::Unbound) || server.bpffs.is_some() {
                report.push(server.kind.label(), "rss_after_load", "bytes", vec![rss]);
            }
        }
        eprintln!("bench: update propagation");
        let props =
            propagation::measure(&lab, &contenders[0].0, &cluster, plan.propagation_rounds)?;
        let label = contenders[0].0.kind.label();
        report.push(
            label,
            "propagation_any",
            "ms",
            props.iter().map(|p| p.any_ms).collect(),
        );
        report.push(
            label,
            "propagation_kernel",
            "ms",
            props.iter().filter_map(|p| p.kernel_ms).collect(),
        );
    }
    let memory_sizes = if plan.dry_run {
        vec![]
    } else {
        plan.memory_sizes.clone()
    };
    drop(contenders);
    let runs = memory::measure(&lab, Kind::ALL.len(), &memory_sizes, 0)?;
    push_memory(&mut report, &memory_sizes, &runs);
    hot_set_under_flood(&lab, &cluster, &plan, 1, &mut report)?;
    failover(&plan, &mut report)?;
    push_micro(&mut report, micro);
    finish(&plan, report, started)
}

/// The XDP microbenchmark's figures, when it ran.
fn push_micro(report: &mut Report, micro: Option<microbench::Figures>) {
    if let Some(micro) = micro {
        for (metric, ns) in [
            ("testrun_hit", micro.hit_ns),
            ("testrun_miss", micro.miss_ns),
            ("testrun_pass", micro.pass_ns),
        ] {
            report.push(report::XDP_PROGRAM, metric, "ns", vec![ns as f64]);
        }
    }
}

/// The memory figures of `runs` (any number of rounds), per size.
fn push_memory(report: &mut Report, sizes: &[usize], runs: &[memory::Memory]) {
    for &n in sizes {
        let at: Vec<&memory::Memory> = runs.iter().filter(|m| m.services == n).collect();
        let label = report::memory_label(n);
        let each = |f: &dyn Fn(&memory::Memory) -> f64| at.iter().map(|m| f(m)).collect();
        report.push(&label, "agent_rss", "bytes", each(&|m| m.rss_bytes as f64));
        report.push(
            &label,
            "agent_rss_peak",
            "bytes",
            each(&|m| m.hwm_bytes as f64),
        );
        report.push(
            &label,
            "agent_rss_anon",
            "bytes",
            each(&|m| m.anon_bytes as f64),
        );
        report.push(
            &label,
            "agent_rss_file",
            "bytes",
            each(&|m| m.file_bytes as f64),
        );
        report.push(&label, "idle_cpu", "ms/s", each(&|m| m.idle_ms_per_s));
        report.push(
            &label,
            "bpf_map_memory",
            "bytes",
            each(&|m| m.map_bytes as f64),
        );
        let Some(first) = at.first() else { continue };
        for (map, _) in &first.maps {
            let bytes = |m: &memory::Memory| {
                m.maps
                    .iter()
                    .find(|(name, _)| name == map)
                    .map_or(0.0, |(_, b)| *b as f64)
            };
            report.push(&label, &format!("bpf_map_{map}"), "bytes", each(&bytes));
        }
    }
}

/// The hot set's kernel share during a unique-name flood, `rounds` times
/// with a fresh agent each, from the first pod (its contender, if any, has
/// stopped by now).
fn hot_set_under_flood(
    lab: &Lab,
    cluster: &Cluster,
    plan: &Plan,
    rounds: usize,
    report: &mut Report,
) -> Result<()> {
    let flood = flood::Flood::plan(plan.quick, plan.dry_run);
    let mut results = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "bench: hot set under a {}-name flood at {} qps into {} entries, run {}/{rounds}",
            flood.names,
            flood.qps,
            flood.map_entries,
            round + 1
        );
        results.push(flood::measure(lab, cluster, 0, &flood)?);
    }
    let each = |f: &dyn Fn(&nodedns_tests::client::HotSetResult) -> f64| {
        results.iter().map(f).collect::<Vec<_>>()
    };
    let label = report::FLOOD_LABEL;
    report.push(
        label,
        "hot_set_kernel_share",
        "ratio",
        each(&|r| r.kernel_share()),
    );
    report.push(
        label,
        "hot_set_answers",
        "count",
        each(&|r| r.hot.completed as f64),
    );
    report.push(label, "flood_names", "count", vec![flood.names as f64]);
    report.push(
        label,
        "flood_answered",
        "count",
        each(&|r| r.flood.completed as f64),
    );
    report.push(
        label,
        "flood_qps",
        "qps",
        each(&|r| r.flood.qps.unwrap_or(0.0)),
    );
    report.push(
        label,
        "map_entries",
        "count",
        vec![flood.map_entries as f64],
    );
    Ok(())
}

fn failover(plan: &Plan, report: &mut Report) -> Result<()> {
    eprintln!("bench: fail-open after the agent's death");
    for f in failover::measure(plan.failover_rounds)? {
        report.push("nodedns-failover", f.metric, "ms", f.ms);
    }
    Ok(())
}

/// Writes the summary and the chart, and prints the table.
fn finish(plan: &Plan, mut report: Report, started: Instant) -> Result<()> {
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.evaluate_goals();
    let summary = plan.out.join("summary.json");
    report.write_json(&summary)?;
    let png = plan.out.join("bench.png");
    chart::write(&report, &png)?;
    println!("{}", report.table());
    println!("summary: {}\nchart:   {}", summary.display(), png.display());
    Ok(())
}

/// Background CPU of every server with no queries (timers, rescans): what
/// the per-query figures carry besides the queries.
fn idle_cpu(
    contenders: &[(Server, Option<u32>)],
    window: std::time::Duration,
    report: &mut Report,
) -> Result<()> {
    eprintln!("bench: idle CPU over {window:?}");
    let before = contenders
        .iter()
        .map(|(s, _)| cpu::threads_ns(s.pid()))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(window);
    for ((server, _), before) in contenders.iter().zip(before) {
        let used = cpu::threads_ns(server.pid())?.saturating_sub(before);
        let ms_per_s = used as f64 / 1e6 / window.as_secs_f64();
        report.push(server.kind.label(), "idle_cpu", "ms/s", vec![ms_per_s]);
    }
    Ok(())
}

/// Two passes through the query file at a moderate rate: caches filled,
/// hot names promoted into the XDP map.
fn warm(lab: &Lab, contenders: &[(Server, Option<u32>)], file: &std::path::Path) -> Result<()> {
    for (server, prog) in contenders {
        eprintln!("bench: warming {}", server.kind.label());
        let load = Load {
            passes: Some(2),
            ..Load::at(file, Some(10_000), 20)
        };
        load::run(lab, server, *prog, &load)?;
    }
    Ok(())
}

/// The fixed rates of the plan, then, with `saturation`, the saturation
/// runs (no rate limit).
fn measure_rates(
    lab: &Lab,
    plan: &Plan,
    contenders: &[(Server, Option<u32>)],
    file: &std::path::Path,
    report: &mut Report,
    saturation: bool,
) -> Result<()> {
    for &rate in &plan.rates {
        let load = Load {
            verbose: true,
            ..Load::at(file, Some(rate), plan.seconds)
        };
        let samples = interleaved(lab, plan, contenders, &format!("{rate} qps"), &load)?;
        for ((server, _), s) in contenders.iter().zip(&samples) {
            report.add_fixed_rate(server.kind.label(), rate, s);
        }
    }
    if saturation {
        let load = Load::at(file, None, plan.saturation_seconds);
        let samples = interleaved(lab, plan, contenders, "saturation", &load)?;
        for ((server, _), s) in contenders.iter().zip(&samples) {
            report.add_saturation(server.kind.label(), s);
        }
    }
    Ok(())
}

/// `plan.runs` rounds of `load`, every contender once per round (so a
/// slow drift of the machine hits them all alike); samples by contender.
fn interleaved(
    lab: &Lab,
    plan: &Plan,
    contenders: &[(Server, Option<u32>)],
    what: &str,
    load: &Load,
) -> Result<Vec<Vec<load::Sample>>> {
    let mut samples: Vec<Vec<load::Sample>> = vec![Vec::new(); contenders.len()];
    for run in 0..plan.runs {
        for (i, (server, prog)) in contenders.iter().enumerate() {
            eprintln!(
                "bench: {what}, run {}/{}, {}",
                run + 1,
                plan.runs,
                server.kind.label()
            );
            samples[i].push(load::run(lab, server, *prog, load)?);
        }
    }
    Ok(samples)
}
