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

use std::time::Duration;

use nodedns_tests::agent::AgentSpec;
use nodedns_tests::client::{DnsperfSummary, HotColdLoad, HotColdRuns};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, Pod, Signal, agent_binary, pin_files};
use nodedns_tests::upstream::{NODE_UPSTREAM, start_node_upstream};

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
const PERF_CLIENTS: u32 = 8;

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

/// A hot and a cold dnsperf running side by side from one pod: each cold
/// name once, half NXDOMAIN in the cluster zone, half external names the
/// agent forwards to dnsmasq.
fn start_load(lab: &Lab, pod: &Pod, case: &str) -> HotColdRuns {
    HotColdLoad {
        server: LISTEN_V4.to_string(),
        hot: HOT,
        hot_qps: HOT_QPS,
        cold_qps: COLD_QPS,
        secs: RUN_SECS,
        timeout_secs: PERF_TIMEOUT_SECS,
        clients: PERF_CLIENTS,
    }
    .start(lab, pod.netns(), case)
    .expect("start dnsperf (apt-get install dnsperf)")
}

/// What the node must look like whatever agent runs: one XDP program on the
/// pod's veth and exactly the pins of the first agent.
fn assert_adopted(lab: &Lab, pins: &[String], after: &str) {
    let attached = lab.node().xdp_attachments().unwrap();
    assert_eq!(
        attached.len(),
        1,
        "after {after}: one XDP attachment, on the pod's veth: {attached:?}"
    );
    assert_eq!(
        attached[0].ifname,
        lab.pod(0).node_ifname(),
        "after {after}"
    );
    assert_eq!(pin_files(lab.bpffs()), pins, "after {after}: the same pins");
}

fn report(case: &str, hot: &DnsperfSummary, cold: &DnsperfSummary) {
    println!(
        "case {case}\n  {}\n  {}",
        hot.line("hot"),
        cold.line("cold")
    );
}

#[test]
fn restarts_keep_hot_names_answered() {
    // Lost queries are the figure: no other lab of this binary shares the
    // machine meanwhile.
    let lab = Lab::new_alone(1).unwrap();
    let pod = lab.pod(0);
    let _upstream = start_node_upstream(&lab).unwrap();
    let spec = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .xdp_mode("auto")
        .keep_on_exit();
    let mut first = spec.start(&lab, "agent-1");
    let server = LISTEN_V4.to_string();
    for (name, qtype) in HOT {
        first.warm_kernel(pod.netns(), &server, name, qtype);
    }
    let pins = pin_files(lab.bpffs());
    assert!(
        pins.iter().any(|p| p.starts_with("links/")),
        "the agent pins its XDP link: {pins:?}"
    );

    // A: rolling update. The new agent binds next to the old one before the
    // old one gets SIGTERM.
    let load = start_load(&lab, pod, "a");
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
    first.signal(Signal::Stop);
    std::thread::sleep(FREEZE);
    first.signal(Signal::Cont);
    let status = first.stop();
    assert!(
        status.success(),
        "agent 1 exits cleanly on SIGTERM: {status}"
    );
    let (hot_a, cold_a) = load.finish().unwrap();
    report("A (rolling update: start #2, SIGTERM #1)", &hot_a, &cold_a);
    assert_adopted(&lab, &pins, "the rolling update");

    // B: crash. SIGKILL, nothing runs for CRASH_GAP, then a new agent.
    let load = start_load(&lab, pod, "b");
    std::thread::sleep(RESTART_AT);
    second.kill();
    std::thread::sleep(CRASH_GAP);
    let mut third = spec.start(&lab, "agent-3");
    let (hot_b, cold_b) = load.finish().unwrap();
    report("B (SIGKILL, new agent 1 s later)", &hot_b, &cold_b);
    assert_adopted(&lab, &pins, "the crash");

    for (case, hot) in [("A", &hot_a), ("B", &hot_b)] {
        assert_eq!(hot.sent, hot.completed + hot.lost, "case {case}: {hot:?}");
        assert_eq!(hot.lost, 0, "case {case}: hot names lost: {hot:?}");
        assert_eq!(hot.failed(), 0, "case {case}: hot names failed: {hot:?}");
    }
    assert_eq!(cold_a.failed(), 0, "case A: cold names failed: {cold_a:?}");
    // The goal for A: zero lost queries of any kind.
    assert_eq!(cold_a.lost, 0, "case A: cold queries lost: {cold_a:?}");

    // `dns-agent cleanup` in the node removes what the agents left pinned.
    third.stop();
    let mut cleanup = lab.node().command_net_only(agent_binary().unwrap());
    cleanup.args(["cleanup", "--bpffs-path"]).arg(lab.bpffs());
    let out = cleanup.output().unwrap();
    assert!(
        out.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        lab.node().xdp_attachments().unwrap().is_empty(),
        "cleanup detaches XDP"
    );
    assert!(!lab.bpffs().exists(), "cleanup removes the pin directory");
}
