//! `cargo xtask demo [--keep]`: nodedns on a throwaway lab node, no cluster
//! needed. It creates a node namespace with two pods (veth pairs,
//! Kubernetes resolv.conf), a local upstream (dnsmasq) for external names,
//! starts the real `dns-agent run` on the `deploy/examples` manifests with
//! XDP on the pods' host-side veths, runs real lookups from the pods three
//! times, and prints who answered each (the kernel or userspace) and how fast,
//! then the counters. Everything is removed at the end, unless `--keep`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nodedns_tests::agent::{Agent, AgentSpec, Inspect};
use nodedns_tests::client::{Hosts, Reply};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, Pod, agent_binary};
use nodedns_tests::upstream::{Dnsmasq, EXAMPLE_ZONE, NODE_UPSTREAM, start_node_upstream};

/// Rounds of the same lookups: the first is answered by userspace, which
/// promotes cluster answers at once; later ones come from the kernel.
/// External names are promoted once asked more than the agent's
/// --hot-threshold (2) times, so they reach the kernel in the fourth round.
const ROUNDS: usize = 4;
/// Lets the agent's feeder write promoted answers before the next round.
const SETTLE: Duration = Duration::from_millis(300);

/// Client options left out of the report to keep it readable.
const HIDDEN_ARGS: &[&str] = &["+time", "+tries", "+timeout", "+retry", "+nocookie"];

const USAGE: &str = "usage: nodedns-demo [--keep]
  --keep   leave the lab node, pods, agent and upstream running for exploring,
           and print how to poke at them and how to remove them";

/// One lookup a pod makes.
struct Step {
    pod: usize,
    what: &'static str,
    /// The program and its arguments (dig gets its defaults added).
    command: Vec<String>,
}

fn steps() -> Vec<Step> {
    let external = format!("api.{EXAMPLE_ZONE}");
    let v6 = format!("@{LISTEN_V6}");
    let table: [(usize, &'static str, &str, &[&str]); 9] = [
        (
            0,
            "short name, glibc search path, A+AAAA",
            "getent",
            &["ahosts", "web"],
        ),
        (1, "short name, dig +search", "dig", &["+search", "web"]),
        (
            0,
            "headless service: its ready endpoints",
            "dig",
            &["+search", "db"],
        ),
        (
            1,
            "another namespace via the search path",
            "dig",
            &["+search", "cart.shop"],
        ),
        (
            1,
            "AAAA over IPv6 to the IPv6 listen address",
            "kdig",
            &[&v6, "web.default.svc.cluster.local", "AAAA"],
        ),
        (
            0,
            "SRV of a named port",
            "kdig",
            &["_http._tcp.web.default.svc.cluster.local", "SRV"],
        ),
        (1, "PTR of a ClusterIP", "kdig", &["-x", "10.96.0.20"]),
        (
            0,
            "external name, forwarded to the local upstream",
            "kdig",
            &[&external, "A"],
        ),
        (
            1,
            "NXDOMAIN in the cluster zone",
            "kdig",
            &["nothere.default.svc.cluster.local", "A"],
        ),
    ];
    table
        .into_iter()
        .map(|(pod, what, tool, args)| {
            let bounds: &[&str] = match tool {
                // A DNS COOKIE is EDNS the kernel leaves to userspace; pods'
                // glibc sends none.
                "dig" => &["+nocookie", "+time=1", "+tries=1"],
                "kdig" => &["+timeout=1", "+retry=0"],
                _ => &[],
            };
            let command = [&[tool][..], bounds, args].concat();
            Step {
                pod,
                what,
                command: command.into_iter().map(String::from).collect(),
            }
        })
        .collect()
}

/// Counters that count DNS queries reaching the XDP program (not ARP, ND,
/// or other traffic on the veth).
fn dns_packets(counters: &BTreeMap<String, u64>) -> u64 {
    counters
        .iter()
        .filter(|(name, _)| name.as_str() != "pass_not_dns")
        .map(|(_, n)| n)
        .sum()
}

/// What one run of a step showed.
struct Outcome {
    answer: String,
    by: String,
    latency: String,
}

/// The counter `name` in a snapshot (0 when absent).
fn count(counters: &BTreeMap<String, u64>, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}

fn run_step(lab: &Lab, bpffs: &Path, step: &Step) -> Outcome {
    let pod: &Pod = lab.pod(step.pod);
    let before = Inspect::read(bpffs).counters();
    let started = Instant::now();
    let args: Vec<&str> = step.command[1..].iter().map(String::as_str).collect();
    let out = pod.netns().output(&step.command[0], &args);
    let elapsed = started.elapsed();
    let after = Inspect::read(bpffs).counters();
    let hits = count(&after, "hit") - count(&before, "hit");
    let queries = dns_packets(&after) - dns_packets(&before);
    let by = match (hits, queries) {
        (0, 0) => "nobody?".to_string(),
        (0, _) => "userspace".to_string(),
        (h, q) if h == q => "kernel".to_string(),
        (h, q) => format!("kernel {h}/{q}"),
    };
    let Ok(out) = out else {
        return Outcome {
            answer: format!("could not run {}", step.command[0]),
            by,
            latency: "-".into(),
        };
    };
    if step.command[0] == "getent" {
        let hosts = Hosts::parse(&out);
        let answer = if hosts.addresses.is_empty() {
            "(no answer)".to_string()
        } else {
            hosts.addresses.join(" ")
        };
        return Outcome {
            answer,
            by,
            latency: format!("{:.1} ms (process)", elapsed.as_secs_f64() * 1e3),
        };
    }
    let lookup = Reply::parse(&out);
    let answer = if !lookup.answered() {
        "(no answer)".to_string()
    } else if lookup.answers.is_empty() {
        lookup.status.clone()
    } else if step.command.iter().any(|a| a == "+search") {
        // Which search-list name matched is the point of these lookups.
        let owner = &lookup.answers[0].owner;
        format!("{} {owner} -> {}", lookup.status, lookup.data().join(", "))
    } else {
        format!("{} {}", lookup.status, lookup.data().join(", "))
    };
    let latency = lookup
        .millis
        .map(|ms| format!("{ms} ms"))
        .unwrap_or_else(|| "-".into());
    Outcome {
        answer,
        by,
        latency,
    }
}

fn print_metrics(lab: &Lab, agent: &Agent) {
    let metrics = agent.metrics(lab.node());
    println!("\nResolver (userspace) metrics, from /metrics:");
    for (path, n) in metrics.sum_by("nodedns_queries_total", "path") {
        println!("  queries answered, path={path:<12} {n}");
    }
    for sample in [
        "nodedns_cache_hits_total",
        "nodedns_cache_misses_total",
        "nodedns_map_writes_total",
        "nodedns_xdp_map_entries",
        "nodedns_cluster_services",
    ] {
        if let Some(v) = metrics.value(sample) {
            println!("  {sample:<34} {v}");
        }
    }
}

fn print_keep(lab: &Lab, running: &Agent, upstream: &Dnsmasq) {
    let bpffs = lab.bpffs();
    let node = lab.node().name();
    let agent = agent_binary()
        .map(|p| p.display().to_string())
        .unwrap_or("dns-agent".into());
    let pod0 = lab.pod(0).netns().name();
    println!("\nLeft running (--keep). Try:");
    println!("  ip netns exec {pod0} dig +nocookie +search web");
    println!("  ip netns exec {pod0} getent ahosts db");
    println!("  {agent} inspect --bpffs-path {}", bpffs.display());
    println!(
        "  bpftool map dump pinned {}/NODEDNS_COUNTERS",
        bpffs.display()
    );
    println!("  nsenter --net=/run/netns/{node} bpftool net");
    println!(
        "  ip netns exec {node} curl -s 127.0.0.1:{}/metrics | grep ^nodedns_",
        running.spec().metrics_addr().port()
    );
    println!("  logs: {}", lab.log_dir().display());
    println!("\nTo remove everything:");
    println!("  kill {} {}", running.pid(), upstream.pid());
    // In the node namespace: cleanup also removes the listen addresses.
    println!(
        "  nsenter --net=/run/netns/{node} {agent} cleanup --bpffs-path {}",
        bpffs.display()
    );
    let mut names = vec![node.to_string()];
    names.extend(lab.pods().iter().map(|p| p.netns().name().to_string()));
    for name in &names {
        println!("  ip netns del {name}; rm -rf /etc/netns/{name}");
    }
    println!("  rm -rf {}", lab.log_dir().display());
}

fn demo(keep: bool) -> Result<(), String> {
    let started = Instant::now();
    println!(
        "nodedns demo: a lab node with two pods, the agent on deploy/examples, XDP on the pods' veths\n"
    );
    let lab = Lab::new(2).map_err(|e| e.to_string())?;
    let mut upstream = start_node_upstream(&lab).map_err(|e| e.to_string())?;
    let mut spec = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .xdp_mode("auto");
    if keep {
        spec = spec.keep_on_exit();
    }
    let mut agent = spec.start(&lab, "agent");
    println!("node netns   {}", lab.node().name());
    for pod in lab.pods() {
        println!(
            "pod{} netns   {} (eth0 {}, host side {})",
            pod.index(),
            pod.netns().name(),
            pod.ipv4(),
            pod.node_ifname()
        );
    }
    println!(
        "listen       {LISTEN_V4}:53 (and IPv6), upstream dnsmasq 127.0.0.1:5353 for *.{EXAMPLE_ZONE}"
    );
    println!("pins         {}\n", lab.bpffs().display());

    let steps = steps();
    for round in 1..=ROUNDS {
        println!("Round {round}");
        println!(
            "  {:<4} {:<40} {:<70} {:<10} latency",
            "pod", "lookup", "answer", "by"
        );
        for step in &steps {
            let shown = step
                .command
                .iter()
                .filter(|a| !HIDDEN_ARGS.iter().any(|h| a.starts_with(h)))
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let o = run_step(&lab, lab.bpffs(), step);
            println!(
                "  pod{} {:<40} {:<70} {:<10} {}",
                step.pod,
                truncate(&shown, 40),
                truncate(&o.answer, 70),
                o.by,
                o.latency
            );
            println!("       ({})", step.what);
        }
        std::thread::sleep(SETTLE);
        println!();
    }

    println!(
        "latency: dig's and kdig's own query time (dig counts whole ms); getent: the whole process\n"
    );
    let kernel = Inspect::read(lab.bpffs());
    let counters = kernel.counters();
    println!("Kernel (XDP) counters, all CPUs:");
    for (name, n) in counters.iter().filter(|(_, n)| **n > 0) {
        println!("  {name:<22} {n}");
    }
    println!("Kernel map: {} entries", kernel.entries().len());
    print_metrics(&lab, &agent);

    if keep {
        print_keep(&lab, &agent, &upstream);
        // Leave every guard undropped: the processes, namespaces and pins
        // stay until the user runs the commands above.
        std::mem::forget(agent);
        std::mem::forget(upstream);
        std::mem::forget(lab);
        return Ok(());
    }
    let status = agent.stop();
    upstream
        .daemon_mut()
        .stop(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "the agent exited with {status}:\n{}",
            agent.log_tail()
        ));
    }
    drop((agent, upstream, lab));
    println!(
        "\nCleaned up (namespaces, veths, pins, processes). Demo took {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

fn main() -> ExitCode {
    let mut keep = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("nodedns-demo: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match demo(keep) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodedns-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
