//! A drop-in that cannot take a node's DNS down (issue 10), in a lab built
//! as a cluster has it: the cluster DNS Service is a stand-in dnsmasq in
//! its own namespace behind a kube-proxy-like `iptables -t nat` DNAT from
//! its ClusterIP (`nodedns_tests::cluster_dns`), whose answers differ from
//! the agent's; pod 0's `resolv.conf` names the ClusterIP (a pod from
//! before kubelet's `clusterDNS` changed), pod 1's the link-local address.
//!
//! - Transparent mode: the kernel answers hot names for the ClusterIP, the
//!   agent answers the rest, the stand-in sees nothing, no UDP packet to
//!   the ClusterIP enters the node's netfilter (a counting rule in `raw`
//!   PREROUTING, ahead of conntrack and of any kube-proxy rule, stays at
//!   zero), and conntrack holds no entry for any of it; TCP goes to the
//!   Service.
//! - Fail-open: with the agent SIGKILLed or SIGSTOPped, every query from
//!   either pod is answered by the stand-in, from the address the pod
//!   asked; a new (or continued) agent takes over again.
//! - Nothing answers for an address neither configured nor translated.
//! - Under a dnsperf load across a SIGKILL, the fail-open gap and a new
//!   agent, the only queries lost are ones the dead agent had received.

use std::net::IpAddr;

use nodedns_tests::agent::{AgentSpec, Source};
use nodedns_tests::client::Reply;
use nodedns_tests::cluster_dns::{
    CLUSTER_DNS_V4, CLUSTER_DNS_V6, ClusterDns, STANDIN_V4, STANDIN_V6, UNCONFIGURED_V4,
};
use nodedns_tests::fakeapi::{NodeApi, fixtures};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, Netns, Pod, Signal, wait_for};
use nodedns_tests::upstream::{Dnsmasq, EXAMPLE_ANSWER, NODE_UPSTREAM, start_node_upstream};

/// A dual-stack ClusterIP service of the demo manifests, and its addresses.
const WEB: &str = "web.default.svc.cluster.local";
const WEB_V4: &str = "10.96.0.20";
const WEB_V6: &str = "fd00:10:96::20";
/// The pod whose resolv.conf names the ClusterIP, and the one that names
/// the link-local address.
const CLUSTER_IP_POD: usize = 0;
const LINK_LOCAL_POD: usize = 1;
/// Bound on the kernel noticing that no agent serves (750 ms without a
/// heartbeat) and a query then reaching the stand-in: a poll, not a timing
/// assertion.
const FAIL_OPEN_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// The lab node with its pods, the cluster DNS stand-in and the agent's
/// upstream. Field order is drop order: the daemons before the lab.
struct Cluster {
    _upstream: Dnsmasq,
    dns: ClusterDns,
    lab: Lab,
}

impl Cluster {
    fn new() -> Self {
        Self::with_lab(Lab::new(2).unwrap())
    }

    fn with_lab(mut lab: Lab) -> Self {
        lab.set_pod_nameserver(CLUSTER_IP_POD, CLUSTER_DNS_V4.into())
            .unwrap();
        Self {
            _upstream: start_node_upstream(&lab).unwrap(),
            dns: ClusterDns::start(&lab).unwrap(),
            lab,
        }
    }

    fn pod(&self, index: usize) -> &Pod {
        self.lab.pod(index)
    }

    fn node(&self) -> &Netns {
        self.lab.node()
    }

    /// Queries the stand-in got from the pods (not its own probe).
    fn standin_queries(&self) -> Vec<String> {
        self.lab
            .pods()
            .iter()
            .flat_map(|p| {
                let mut q = self.dns.queries_from(p.ipv4().into());
                q.extend(self.dns.queries_from(p.ipv6().into()));
                q
            })
            .collect()
    }

    /// UDP conntrack entries in the node whose destination is a ClusterIP.
    fn conntrack_udp_to_cluster_ips(&self) -> Vec<String> {
        conntrack(self.node(), "udp")
            .into_iter()
            .filter(|l| {
                l.contains(&format!("dst={CLUSTER_DNS_V4} "))
                    || l.contains(&format!("dst={CLUSTER_DNS_V6} "))
            })
            .collect()
    }
}

/// `conntrack -L -p <proto>` in `netns`, one entry per line.
fn conntrack(netns: &Netns, proto: &str) -> Vec<String> {
    let out = netns
        .run("conntrack", &["-L", "-p", proto])
        .expect("conntrack -L (apt-get install conntrack)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The agent of these tests: XDP on the pods' veths, both ClusterIPs
/// given, `--keep-on-exit` as the DaemonSet runs it.
fn spec() -> AgentSpec {
    AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .keep_on_exit()
        .args(&[
            "--cluster-dns-ip",
            &CLUSTER_DNS_V4.to_string(),
            "--cluster-dns-ip",
            &CLUSTER_DNS_V6.to_string(),
        ])
}

/// Who answered a query.
#[derive(Debug, PartialEq, Eq)]
enum Who {
    /// The agent or the kernel: anything but the stand-in's address.
    Node,
    StandIn,
    Nobody,
}

fn who(reply: &Reply) -> Who {
    if !reply.answered() {
        return Who::Nobody;
    }
    let data = reply.data();
    if data.contains(&STANDIN_V4.to_string()) || data.contains(&STANDIN_V6.to_string()) {
        Who::StandIn
    } else {
        Who::Node
    }
}

/// `dig @server name qtype` (UDP, no cookie) from `pod`.
fn dig(pod: &Pod, server: IpAddr, name: &str, qtype: &str) -> Reply {
    pod.dig(&["+nocookie", &format!("@{server}"), name, qtype])
        .unwrap()
}

/// `kdig +tcp @server name qtype` from `pod`.
fn kdig_tcp(pod: &Pod, server: IpAddr, name: &str, qtype: &str) -> Reply {
    pod.kdig(&["+tcp", &format!("@{server}"), name, qtype])
        .unwrap()
}

/// A name nobody asked before: never in the kernel map.
fn fresh(label: &str) -> String {
    format!(
        "{label}-{}.nx.default.svc.cluster.local",
        nodedns_tests::lab::unique_suffix()
    )
}

/// Asks `name` over UDP at `server` until the stand-in answers it: the
/// kernel has noticed no agent serves.
fn wait_for_fail_open(pod: &Pod, server: IpAddr) {
    wait_for("the kernel to fail open", FAIL_OPEN_BOUND, || {
        (who(&dig(pod, server, &fresh("probe"), "A")) == Who::StandIn).then_some(())
    })
    .unwrap();
}

/// Every way a pod asks, while no agent serves: `dig` and `kdig +tcp` at
/// the address in its resolv.conf, both families where it has one, and
/// glibc's `getent` through the search list. All answered by the stand-in,
/// from the address asked (dig and kdig print where the reply came from;
/// glibc takes replies only from the server it asked).
fn assert_all_answered_by_the_standin(c: &Cluster, case: &str) {
    let asks: [(usize, IpAddr); 4] = [
        (CLUSTER_IP_POD, CLUSTER_DNS_V4.into()),
        (CLUSTER_IP_POD, CLUSTER_DNS_V6.into()),
        (LINK_LOCAL_POD, LISTEN_V4.into()),
        (LINK_LOCAL_POD, LISTEN_V6.into()),
    ];
    for (index, server) in asks {
        let pod = c.pod(index);
        for (client, reply) in [
            ("dig", dig(pod, server, &fresh("udp"), "A")),
            ("kdig +tcp", kdig_tcp(pod, server, &fresh("tcp"), "A")),
        ] {
            assert_eq!(
                who(&reply),
                Who::StandIn,
                "{case}: {client} @{server} from pod {index}:\n{}",
                reply.raw
            );
            assert_eq!(
                reply.server.as_deref(),
                Some(server.to_string().as_str()),
                "{case}: {client} @{server}: the reply comes from the address asked"
            );
        }
        let hosts = pod.getent(&["ahostsv4", "some-service"]).unwrap();
        assert_eq!(
            hosts.addresses,
            [STANDIN_V4.to_string()],
            "{case}: getent from pod {index} through the search list:\n{}",
            hosts.raw
        );
    }
    for pod in c.lab.pods() {
        assert_eq!(pod.udp_csum_errors().unwrap(), 0, "{case}: checksums");
    }
}

/// Misses from both pods answered by the agent again, not by the stand-in.
fn assert_agent_answers_misses(c: &Cluster, case: &str) {
    let before = c.standin_queries().len();
    for (index, server) in [
        (CLUSTER_IP_POD, IpAddr::from(CLUSTER_DNS_V4)),
        (LINK_LOCAL_POD, LISTEN_V4.into()),
    ] {
        let reply = dig(c.pod(index), server, &fresh("back"), "A");
        assert_eq!(
            reply.status, "NXDOMAIN",
            "{case}: @{server}:\n{}",
            reply.raw
        );
    }
    assert_eq!(
        c.standin_queries().len(),
        before,
        "{case}: the stand-in got none"
    );
}

#[test]
fn transparent_mode_serves_the_cluster_ip_on_the_node_without_conntrack() {
    let c = Cluster::new();
    let agent = spec().start(&c.lab, "agent");
    let pod = c.pod(CLUSTER_IP_POD);

    // Hits: the kernel answers for the ClusterIP, from the ClusterIP.
    for (server, qtype, want) in [
        (IpAddr::from(CLUSTER_DNS_V4), "A", WEB_V4),
        (CLUSTER_DNS_V6.into(), "AAAA", WEB_V6),
    ] {
        agent.warm_kernel(pod.netns(), &server.to_string(), WEB, qtype);
        let hits = agent.inspect().counter("hit");
        for _ in 0..3 {
            let reply = dig(pod, server, WEB, qtype);
            assert_eq!(reply.rdata(qtype), [want], "{}", reply.raw);
            assert_eq!(reply.server.as_deref(), Some(server.to_string().as_str()));
        }
        assert_eq!(
            agent.inspect().counter("hit"),
            hits + 3,
            "kernel hits @{server}"
        );
    }

    // Misses: answered by the agent (the stand-in would say 192.0.2.53).
    for server in [IpAddr::from(CLUSTER_DNS_V4), CLUSTER_DNS_V6.into()] {
        let nx = dig(pod, server, &fresh("miss"), "A");
        assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
        assert!(nx.has_soa(), "the agent's authoritative NXDOMAIN");
        let external = dig(
            pod,
            server,
            &format!("ext-{}.example.com", nodedns_tests::lab::unique_suffix()),
            "A",
        );
        assert_eq!(
            external.rdata("A"),
            [EXAMPLE_ANSWER.to_string()],
            "{}",
            external.raw
        );
    }
    // glibc, through the pod's search list, at the ClusterIP in resolv.conf.
    let hosts = pod.getent(&["ahostsv4", "web"]).unwrap();
    assert_eq!(hosts.addresses, [WEB_V4], "{}", hosts.raw);

    let metrics = agent.metrics(c.node());
    assert!(
        metrics
            .value("nodedns_xdp_intercepted_total")
            .unwrap_or(0.0)
            >= 8.0
    );
    assert!(
        metrics.sum(
            "nodedns_transparent_queries_total",
            &[("result", "answered")]
        ) >= 4
    );
    assert_eq!(metrics.value("nodedns_failopen_active"), Some(0.0));
    assert_eq!(metrics.value("nodedns_cluster_dns_addresses"), Some(2.0));
    assert_eq!(metrics.value("nodedns_transparent_mode"), Some(1.0));

    assert_eq!(
        c.standin_queries(),
        Vec::<String>::new(),
        "the Service saw none of it"
    );
    assert_eq!(
        c.conntrack_udp_to_cluster_ips(),
        Vec::<String>::new(),
        "no conntrack entry for intercepted traffic"
    );
    assert_eq!(
        ClusterDns::netfilter_udp_packets(c.node()).unwrap(),
        0,
        "netfilter (so kube-proxy, in any of its modes) saw no UDP packet to a ClusterIP"
    );

    // TCP to the ClusterIP is passed untouched to the Service (kube-proxy):
    // answered by the stand-in, and tracked, which shows conntrack is on.
    for server in [IpAddr::from(CLUSTER_DNS_V4), CLUSTER_DNS_V6.into()] {
        let tcp = kdig_tcp(pod, server, WEB, "A");
        assert_eq!(who(&tcp), Who::StandIn, "{}", tcp.raw);
    }
    assert!(
        conntrack(c.node(), "tcp")
            .iter()
            .any(|l| l.contains(&format!("dst={CLUSTER_DNS_V4} "))),
        "the node's conntrack tracks what kube-proxy translates"
    );

    // An address neither configured nor translated: nobody answers, and
    // the kernel did not take it.
    let before = agent.inspect().counters();
    let nothing = dig(pod, UNCONFIGURED_V4.into(), WEB, "A");
    assert_eq!(who(&nothing), Who::Nobody, "{}", nothing.raw);
    let after = agent.inspect().counters();
    for counter in ["hit", "redirected", "intercepted", "failed_open"] {
        assert_eq!(after[counter], before[counter], "{counter} for 10.96.0.11");
    }
    for p in c.lab.pods() {
        assert_eq!(p.udp_csum_errors().unwrap(), 0);
    }
}

#[test]
fn with_transparent_off_the_cluster_ip_stays_with_the_service() {
    let c = Cluster::new();
    let agent = spec()
        .args(&["--transparent", "false"])
        .start(&c.lab, "agent");
    let pod = c.pod(CLUSTER_IP_POD);
    let reply = dig(pod, CLUSTER_DNS_V4.into(), WEB, "A");
    assert_eq!(who(&reply), Who::StandIn, "{}", reply.raw);
    assert_eq!(agent.inspect().counter("intercepted"), 0);
    // The counter the transparent test holds at zero does count them here.
    assert!(ClusterDns::netfilter_udp_packets(c.node()).unwrap() > 0);
    let metrics = agent.metrics(c.node());
    assert_eq!(metrics.value("nodedns_transparent_mode"), Some(0.0));
    // The link-local address is the agent's as before.
    let reply = dig(c.pod(LINK_LOCAL_POD), LISTEN_V4.into(), WEB, "A");
    assert_eq!(reply.rdata("A"), [WEB_V4], "{}", reply.raw);
}

#[test]
fn with_manifests_the_cluster_ip_is_served_only_when_given() {
    let c = Cluster::new();
    let agent = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .start(&c.lab, "agent");
    let metrics = agent.metrics(c.node());
    assert_eq!(metrics.value("nodedns_cluster_dns_addresses"), Some(0.0));
    assert_eq!(metrics.value("nodedns_transparent_mode"), Some(0.0));
    let reply = dig(c.pod(CLUSTER_IP_POD), CLUSTER_DNS_V4.into(), WEB, "A");
    assert_eq!(who(&reply), Who::StandIn, "{}", reply.raw);
    assert_eq!(agent.inspect().counter("intercepted"), 0);
}

#[test]
fn sigkill_fails_open_to_the_service_and_a_new_agent_takes_over() {
    let c = Cluster::new();
    let mut agent = spec().start(&c.lab, "agent-1");
    let pod = c.pod(CLUSTER_IP_POD);
    agent.warm_kernel(pod.netns(), &CLUSTER_DNS_V4.to_string(), WEB, "A");

    agent.kill();
    wait_for_fail_open(c.pod(LINK_LOCAL_POD), LISTEN_V4.into());
    assert_all_answered_by_the_standin(&c, "SIGKILL");
    // Hot names stay with the kernel, from its map, while no agent runs.
    let hot = dig(pod, CLUSTER_DNS_V4.into(), WEB, "A");
    assert_eq!(hot.rdata("A"), [WEB_V4], "{}", hot.raw);
    let counters = agent.inspect().counters();
    assert!(
        counters["failed_open"] > 0 && counters["reply_restored"] > 0,
        "{counters:?}"
    );

    agent.restart(&c.lab);
    assert_agent_answers_misses(&c, "after the new agent started");

    // `dns-agent cleanup` removes the egress links and every pin too.
    agent.stop();
    let mut cleanup = c
        .node()
        .command_net_only(nodedns_tests::lab::agent_binary().unwrap());
    cleanup.args(["cleanup", "--bpffs-path"]).arg(c.lab.bpffs());
    let out = cleanup.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("detached egress link"), "{report}");
    assert!(!report.contains("warning"), "{report}");
    assert!(!c.lab.bpffs().exists(), "cleanup removes the pin directory");
    assert_nothing_attached(&c, "dns-agent cleanup");
}

/// No XDP and no egress program left on the node's pod interfaces.
fn assert_nothing_attached(c: &Cluster, case: &str) {
    assert!(
        c.node().xdp_attachments().unwrap().is_empty(),
        "{case}: XDP"
    );
    for pod in c.lab.pods() {
        let ifname = pod.node_ifname();
        assert_eq!(
            c.node().tcx_egress_programs(ifname).unwrap(),
            Vec::<String>::new(),
            "{case}: egress programs on {ifname}"
        );
    }
}

#[test]
fn cleanup_on_exit_removes_the_egress_program_and_the_flows_map() {
    let c = Cluster::new();
    // The fixture's default exit policy: --cleanup-on-exit.
    let mut agent = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .args(&["--cluster-dns-ip", &CLUSTER_DNS_V4.to_string()])
        .start(&c.lab, "agent");
    for pod in c.lab.pods() {
        assert_eq!(
            c.node().tcx_egress_programs(pod.node_ifname()).unwrap(),
            ["nodedns_egress"],
            "the egress program runs next to XDP"
        );
    }
    assert!(c.lab.bpffs().join("NODEDNS_FLOWS").exists());
    let status = agent.stop();
    assert!(status.success(), "{status}\n{}", agent.log_tail());
    assert!(
        !c.lab.bpffs().exists(),
        "--cleanup-on-exit removes every pin"
    );
    assert_nothing_attached(&c, "--cleanup-on-exit");
}

#[test]
fn sigstop_fails_open_until_the_agent_continues() {
    let c = Cluster::new();
    let mut agent = spec().start(&c.lab, "agent");
    agent.signal(Signal::Stop);
    // The process and its sockets are there; only its heartbeat stopped.
    wait_for_fail_open(c.pod(CLUSTER_IP_POD), CLUSTER_DNS_V4.into());
    wait_for_fail_open(c.pod(LINK_LOCAL_POD), LISTEN_V4.into());
    assert_all_answered_by_the_standin(&c, "SIGSTOP");
    agent.signal(Signal::Cont);
    wait_for("the agent to serve again", FAIL_OPEN_BOUND, || {
        let reply = dig(
            c.pod(CLUSTER_IP_POD),
            CLUSTER_DNS_V4.into(),
            &fresh("cont"),
            "A",
        );
        (reply.status == "NXDOMAIN").then_some(())
    })
    .unwrap();
    assert_agent_answers_misses(&c, "after SIGCONT");
    let metrics = agent.metrics(c.node());
    assert_eq!(metrics.value("nodedns_failopen_active"), Some(0.0));
}

#[test]
fn the_cluster_ip_defaults_to_kube_dns_from_the_api_server() {
    let c = Cluster::new();
    let api = NodeApi::start(c.node());
    api.apply(fixtures::service(
        "kube-system",
        "kube-dns",
        &[&CLUSTER_DNS_V4.to_string()],
        &[("dns", 53)],
    ));
    api.apply_manifests(&nodedns_tests::repo::examples_dir().join("demo-default.yaml"))
        .unwrap();
    let agent = AgentSpec::new(Source::Kubeconfig(api.kubeconfig()))
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NODE_UPSTREAM)
        .start(&c.lab, "agent");
    wait_for("the agent to learn the ClusterIP", FAIL_OPEN_BOUND, || {
        let m = agent.metrics(c.node());
        (m.value("nodedns_cluster_dns_addresses") == Some(1.0)).then_some(())
    })
    .unwrap();
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/kube-system/services/kube-dns")),
        "one get of that Service: {:?}",
        api.requests()
    );
    let reply = dig(c.pod(CLUSTER_IP_POD), CLUSTER_DNS_V4.into(), WEB, "A");
    assert_eq!(
        reply.rdata("A"),
        [WEB_V4],
        "served on the node: {}",
        reply.raw
    );
    assert_eq!(c.standin_queries(), Vec::<String>::new());
}

/// Length of each dnsperf run, and when the agent dies in it.
const LOAD_SECS: u64 = 10;
const KILL_AT: std::time::Duration = std::time::Duration::from_millis(2500);
/// Time with no agent process at all after the kill (Kubernetes restarts
/// a crashed container after a back-off of at least this much).
const NO_AGENT: std::time::Duration = std::time::Duration::from_secs(2);
/// Queries per second from each pod; every name asked once.
const LOAD_QPS: u64 = 400;
/// dnsperf's wait for an answer before it counts the query lost.
const LOAD_TIMEOUT_SECS: u64 = 2;
/// Client sockets per dnsperf.
const LOAD_CLIENTS: u32 = 8;

#[test]
fn dnsperf_across_a_kill_loses_only_what_the_dead_agent_had_received() {
    use nodedns_tests::client::DnsperfRun;
    // Lost queries are the figure: no other lab of this binary meanwhile.
    let c = Cluster::with_lab(Lab::new_alone(2).unwrap());
    let mut agent = spec().start(&c.lab, "agent-1");
    let before = agent.inspect().counters();
    // Names in the cluster zone nobody has: the agents answer NXDOMAIN,
    // the stand-in NOERROR, so dnsperf's rcodes say who answered.
    let paths = [
        (CLUSTER_IP_POD, IpAddr::from(CLUSTER_DNS_V4), "redirected"),
        (LINK_LOCAL_POD, LISTEN_V4.into(), "miss"),
    ];
    let mut runs: Vec<_> = paths
        .iter()
        .map(|&(index, server, _)| {
            let file = c.lab.log_dir().join(format!("load-{index}.txt"));
            let names: String = (0..LOAD_QPS * LOAD_SECS)
                .map(|i| format!("l{index}-{i}.nx.default.svc.cluster.local A\n"))
                .collect();
            std::fs::write(&file, names).unwrap();
            let load = DnsperfRun {
                server: server.to_string(),
                names: file,
                qps: LOAD_QPS,
                secs: LOAD_SECS,
                timeout_secs: LOAD_TIMEOUT_SECS,
                clients: LOAD_CLIENTS,
                once: true,
            };
            let run = load
                .start(&c.lab, c.pod(index).netns(), &format!("dnsperf-{index}"))
                .expect("start dnsperf (apt-get install dnsperf)");
            (load, run)
        })
        .collect();
    std::thread::sleep(KILL_AT);
    agent.kill();
    std::thread::sleep(NO_AGENT);
    agent.restart(&c.lab);
    let summaries: Vec<_> = runs
        .iter_mut()
        .map(|(load, run)| load.finish(run).unwrap())
        .collect();
    let after = agent.inspect().counters();
    let second = agent.metrics(c.node());
    let moved: Vec<_> = after
        .iter()
        .filter(|(name, n)| before.get(*name) != Some(*n))
        .map(|(name, n)| (name, n - before.get(name).copied().unwrap_or(0)))
        .collect();
    println!("kernel counters over the run: {moved:?}");

    for ((index, server, handed_counter), perf) in paths.iter().zip(&summaries) {
        let pod = c.pod(*index);
        // Handed to an agent: into a ring (ClusterIP) or to a listen socket
        // (link-local); the kernel counts both as they happen.
        let handed = after[*handed_counter] - before[*handed_counter];
        let to_standin = c.dns.queries_from(pod.ipv4().into()).len() as u64;
        let by_agents = perf.rcodes.get("NXDOMAIN").copied().unwrap_or(0);
        let by_standin = perf.rcodes.get("NOERROR").copied().unwrap_or(0);
        let unanswered_by_agents = handed - by_agents;
        println!(
            "@{server}: sent {} completed {} lost {}; handed to an agent {handed}, answered by agents {by_agents}; \
             failed open to the Service {to_standin}, answered by it {by_standin}; \
             handed to an agent and unanswered {unanswered_by_agents}",
            perf.sent, perf.completed, perf.lost
        );
        assert_eq!(perf.failed(), 0, "@{server}: {perf:?}");
        assert_eq!(
            handed + to_standin,
            perf.sent,
            "@{server}: every query went to an agent or to the Service, none into a black hole"
        );
        assert!(
            to_standin > 0,
            "@{server}: the kernel failed open while no agent ran"
        );
        assert_eq!(
            by_standin, to_standin,
            "@{server}: the Service answered all it got"
        );
        assert_eq!(
            perf.lost, unanswered_by_agents,
            "@{server}: every lost query is one an agent had received"
        );
    }
    // The agents' unanswered queries are the dead one's: the new agent
    // answered every query its ring handed it.
    let received: u64 = second
        .sum_by("nodedns_transparent_queries_total", "result")
        .values()
        .sum();
    let answered = second.sum(
        "nodedns_transparent_queries_total",
        &[("result", "answered")],
    );
    assert_eq!(received, answered, "the new agent answered all it received");
}
