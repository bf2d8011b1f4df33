//! Restart and upgrade without a DNS outage (issue 6 acceptance): dnsperf
//! sends a fixed rate of hot names (answered from the kernel map) and cold
//! names (NXDOMAINs of the cluster zone and external names through a local
//! dnsmasq, each asked once, so userspace answers them) from a pod, while
//!
//! - A, a rolling update: agent #2 starts with the same flags and binds next
//!   to agent #1 (SO_REUSEPORT), #1 is frozen for longer than the clients'
//!   timeout (it must receive nothing new), then gets SIGTERM
//!   (`--keep-on-exit`);
//! - B, a crash: the agent is SIGKILLed and a new one starts a second later.
//!
//! Each case prints sent/lost/failed queries for hot and cold names and
//! checks that the new agent adopted the pinned maps and links: one XDP
//! program per interface, the same pins as before, nothing leaked.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::node_support::{
    AgentSpec, UPSTREAM_ZONE, pin_files, start_upstream, warm_kernel, xdp_attachments,
};
use nodedns_tests::lab::{BpffsDir, Daemon, LISTEN_V4, Lab, Pod, Signal};

/// Length of each dnsperf run, in seconds.
const RUN_SECS: u64 = 8;
/// When the restart happens, after dnsperf started.
const RESTART_AT: Duration = Duration::from_millis(2500);
/// How long agent 1 is frozen (SIGSTOP) after agent 2 bound: longer than
/// dnsperf's timeout.
const FREEZE: Duration = Duration::from_millis(2500);
/// Lets agent 1 answer what it received before agent 2 bound, before the freeze.
const BACKLOG_GRACE: Duration = Duration::from_millis(500);
/// Time with no agent process at all in the crash case (Kubernetes restarts
/// a crashed container after a back-off of at least this much).
const CRASH_GAP: Duration = Duration::from_secs(1);
/// Query rates: hot names, and cold names (each cold name is asked once).
const HOT_QPS: u64 = 1200;
const COLD_QPS: u64 = 800;
/// dnsperf's wait for an answer before it counts the query lost, seconds.
const PERF_TIMEOUT_SECS: u64 = 2;
/// Client sockets per dnsperf, so SO_REUSEPORT spreads them over both agents.
const PERF_CLIENTS: &str = "8";
/// Queries dnsperf keeps outstanding: enough that it never pauses while no
/// agent answers (a pause would hide losses from the figures).
const PERF_OUTSTANDING: &str = "5000";

/// Names the kernel answers: cluster names (positive and NODATA) and the
/// search-path NXDOMAINs a pod with ndots:5 sends.
const HOT: &[(&str, &str)] = &[
    ("web.default.svc.cluster.local", "A"),
    ("web.default.svc.cluster.local", "AAAA"),
    ("db.default.svc.cluster.local", "A"),
    ("kubernetes.default.svc.cluster.local", "A"),
    ("kubernetes.default.svc.cluster.local", "AAAA"),
    ("kube-dns.kube-system.svc.cluster.local", "A"),
    ("cart.shop.svc.cluster.local", "A"),
    (
        "web.default.svc.cluster.local.default.svc.cluster.local",
        "A",
    ),
    ("web.default.svc.cluster.local.svc.cluster.local", "A"),
];

/// dnsperf's summary of one run.
#[derive(Debug, Default)]
struct Perf {
    sent: u64,
    completed: u64,
    lost: u64,
    rcodes: BTreeMap<String, u64>,
}

impl Perf {
    /// Parses the "Statistics:" block dnsperf prints at the end.
    fn parse(log: &str) -> Option<Self> {
        let number = |line: &str| -> Option<u64> { line.split_whitespace().next()?.parse().ok() };
        let mut perf = Perf::default();
        let mut seen = false;
        for line in log.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Queries sent:") {
                perf.sent = number(rest)?;
                seen = true;
            } else if let Some(rest) = line.strip_prefix("Queries completed:") {
                perf.completed = number(rest)?;
            } else if let Some(rest) = line.strip_prefix("Queries lost:") {
                perf.lost = number(rest)?;
            } else if let Some(rest) = line.strip_prefix("Response codes:") {
                // "NOERROR 100 (50.00%), NXDOMAIN 100 (50.00%)"
                for part in rest.split(',') {
                    let mut f = part.split_whitespace();
                    if let (Some(code), Some(n)) = (f.next(), f.next().and_then(|n| n.parse().ok()))
                    {
                        perf.rcodes.insert(code.to_string(), n);
                    }
                }
            }
        }
        seen.then_some(perf)
    }

    /// Answers other than NOERROR and NXDOMAIN (SERVFAIL, REFUSED, ...).
    fn failed(&self) -> u64 {
        self.rcodes
            .iter()
            .filter(|(code, _)| !matches!(code.as_str(), "NOERROR" | "NXDOMAIN"))
            .map(|(_, n)| n)
            .sum()
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<5} sent {:>6}  completed {:>6}  lost {:>4}  failed {:>4}  {:?}",
            self.sent,
            self.completed,
            self.lost,
            self.failed(),
            self.rcodes
        )
    }
}

/// A hot and a cold dnsperf running side by side from one pod.
struct Load {
    hot: Daemon,
    cold: Daemon,
}

impl Load {
    fn start(lab: &Lab, pod: &Pod, case: &str) -> Self {
        let dir = lab.log_dir();
        let hot_file = dir.join(format!("hot-{case}.txt"));
        let hot: String = HOT.iter().map(|(n, t)| format!("{n} {t}\n")).collect();
        std::fs::write(&hot_file, hot).unwrap();
        // Each cold name once: half NXDOMAIN in the cluster zone, half
        // external names the agent forwards to dnsmasq.
        let cold_file = dir.join(format!("cold-{case}.txt"));
        let cold: String = (0..COLD_QPS * RUN_SECS)
            .map(|i| match i % 2 {
                0 => format!("c{case}{i}.nx.default.svc.cluster.local A\n"),
                _ => format!("c{case}{i}.{UPSTREAM_ZONE} A\n"),
            })
            .collect();
        std::fs::write(&cold_file, cold).unwrap();
        let perf = |name: &str, file: &Path, qps: u64, once: bool| {
            let (qps, secs, timeout) = (
                qps.to_string(),
                RUN_SECS.to_string(),
                PERF_TIMEOUT_SECS.to_string(),
            );
            let server = LISTEN_V4.to_string();
            let mut args = vec![
                "-s",
                &server,
                "-d",
                file.to_str().unwrap(),
                "-Q",
                &qps,
                "-l",
                &secs,
                "-t",
                &timeout,
                "-c",
                PERF_CLIENTS,
                "-q",
                PERF_OUTSTANDING,
            ];
            if once {
                args.extend(["-n", "1"]);
            }
            lab.start_in(pod.netns(), name, "dnsperf", &args)
                .expect("start dnsperf (apt-get install dnsperf)")
        };
        Self {
            hot: perf(&format!("dnsperf-hot-{case}"), &hot_file, HOT_QPS, false),
            cold: perf(&format!("dnsperf-cold-{case}"), &cold_file, COLD_QPS, true),
        }
    }

    /// Waits for both runs to finish and parses their summaries.
    fn finish(mut self) -> (Perf, Perf) {
        let bound = Duration::from_secs(RUN_SECS + PERF_TIMEOUT_SECS + 10);
        let result = |d: &mut Daemon| {
            let status = d.wait(bound).expect("dnsperf finishes");
            assert!(
                status.success(),
                "{} failed: {status}\n{}",
                d.name(),
                d.log()
            );
            Perf::parse(&d.log()).unwrap_or_else(|| panic!("no dnsperf summary:\n{}", d.log()))
        };
        (result(&mut self.hot), result(&mut self.cold))
    }
}

/// What the node must look like whatever agent runs: one XDP program on the
/// pod's veth and exactly the pins of the first agent.
fn assert_adopted(lab: &Lab, bpffs: &BpffsDir, pins: &[String], after: &str) {
    let attached = xdp_attachments(lab.node());
    assert_eq!(
        attached.len(),
        1,
        "after {after}: one XDP attachment, on the pod's veth: {attached:?}"
    );
    assert_eq!(attached[0].0, lab.pod(0).node_ifname(), "after {after}");
    assert_eq!(
        pin_files(bpffs.path()),
        pins,
        "after {after}: the same pins"
    );
}

fn report(case: &str, hot: &Perf, cold: &Perf) {
    println!(
        "case {case}\n  {}\n  {}",
        hot.line("hot"),
        cold.line("cold")
    );
}

#[test]
fn restarts_keep_hot_names_answered() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let bpffs = BpffsDir::create().unwrap();
    let _upstream = start_upstream(&lab);
    let mut spec = AgentSpec::new(bpffs.path(), "auto");
    spec.extra.push("--keep-on-exit".into());
    let mut first = spec.start(&lab, "agent-1");
    let server = LISTEN_V4.to_string();
    for (name, qtype) in HOT {
        warm_kernel(bpffs.path(), pod.netns(), &server, name, qtype);
    }
    let pins = pin_files(bpffs.path());
    assert!(
        pins.iter().any(|p| p.starts_with("links/")),
        "the agent pins its XDP link: {pins:?}"
    );

    // A: rolling update. The new agent binds next to the old one before the
    // old one gets SIGTERM.
    let load = Load::start(&lab, pod, "a");
    std::thread::sleep(RESTART_AT);
    // The same flags, HTTP ports included, as a DaemonSet's surge pod has.
    let mut second = spec.start(&lab, "agent-2");
    for agent in [&first, &second] {
        assert!(
            !agent.log().contains("cannot steer"),
            "the reuseport steering program attaches:\n{}",
            agent.log_tail()
        );
    }
    // Once agent 2 has bound, agent 1 must get no new queries: freeze it for
    // longer than dnsperf waits for an answer, which would lose its hash
    // share of the queries if it still had one.
    // (It first answers what reached it before agent 2 bound: on a busy
    // machine that can take a moment.)
    std::thread::sleep(BACKLOG_GRACE);
    first.signal(Signal::Stop).unwrap();
    std::thread::sleep(FREEZE);
    first.signal(Signal::Cont).unwrap();
    let status = first.stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "agent 1 exits cleanly on SIGTERM: {status}"
    );
    let (hot_a, cold_a) = load.finish();
    report("A (rolling update: start #2, SIGTERM #1)", &hot_a, &cold_a);
    assert_adopted(&lab, &bpffs, &pins, "the rolling update");

    // B: crash. SIGKILL, nothing runs for CRASH_GAP, then a new agent.
    let load = Load::start(&lab, pod, "b");
    std::thread::sleep(RESTART_AT);
    second.kill().unwrap();
    std::thread::sleep(CRASH_GAP);
    let mut third = spec.start(&lab, "agent-3");
    let (hot_b, cold_b) = load.finish();
    report("B (SIGKILL, new agent 1 s later)", &hot_b, &cold_b);
    assert_adopted(&lab, &bpffs, &pins, "the crash");

    for (case, hot) in [("A", &hot_a), ("B", &hot_b)] {
        assert_eq!(hot.sent, hot.completed + hot.lost, "case {case}: {hot:?}");
        assert_eq!(hot.lost, 0, "case {case}: hot names lost: {hot:?}");
        assert_eq!(hot.failed(), 0, "case {case}: hot names failed: {hot:?}");
    }
    assert_eq!(cold_a.failed(), 0, "case A: cold names failed: {cold_a:?}");
    // The goal for A: zero lost queries of any kind.
    assert_eq!(cold_a.lost, 0, "case A: cold queries lost: {cold_a:?}");

    // `dns-agent cleanup` in the node removes what the agents left pinned.
    third.stop(Duration::from_secs(10)).unwrap();
    let agent = nodedns_tests::lab::agent_binary().unwrap();
    let mut cleanup = lab.node().command_net_only(agent);
    cleanup.args(["cleanup", "--bpffs-path"]).arg(bpffs.path());
    let out = cleanup.output().unwrap();
    assert!(
        out.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        xdp_attachments(lab.node()).is_empty(),
        "cleanup detaches XDP"
    );
    assert!(!bpffs.path().exists(), "cleanup removes the pin directory");
}
