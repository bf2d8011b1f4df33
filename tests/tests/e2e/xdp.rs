//! End to end through the kernel (issue 3): real `dig` and `kdig` in a pod
//! namespace query the node-local address through the pod's veth, the real
//! `dns-agent run` has XDP on the host side, and the kernel's `hit` counter,
//! the client's checksum counters and a SIGSTOPped agent prove that the
//! kernel itself answered, correctly, in generic and in native mode.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nodedns_tests::agent::{Agent, AgentSpec, Inspect};
use nodedns_tests::client::Reply;
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, Pod, Signal, wait_for};
use nodedns_tests::repo::{WEB, WEB_V4, WEB_V6};

/// A ClusterIP service of the demo manifests, dual-stack.
/// The same name as a 0x20-style client would spell it.
const WEB_MIXED: &str = "wEb.DeFauLT.svc.CLUSTER.local";
/// An ndots:5 search-path miss: NXDOMAIN from the cluster zone, which the
/// agent also puts into the kernel map.
const NXNAME: &str = "web.default.svc.cluster.local.default.svc.cluster.local";

#[derive(Clone, Copy)]
enum Client {
    Dig,
    /// dig with its defaults, DNS COOKIE included.
    DigDefault,
    Kdig,
}

fn ask(pod: &Pod, client: Client, server: &str, name: &str, qtype: &str) -> Reply {
    let at = format!("@{server}");
    match client {
        Client::Dig => pod.dig(&["+time=1", "+nocookie", &at, name, qtype]),
        Client::DigDefault => pod.dig(&["+time=1", &at, name, qtype]),
        Client::Kdig => pod.kdig(&["+timeout=1", &at, name, qtype]),
    }
    .unwrap()
}

/// The counter `name` in a snapshot (0 when absent).
fn count(counters: &BTreeMap<String, u64>, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}

/// Runs one lookup and returns how much the kernel's `hit` counter moved
/// while it ran (nothing else queries this lab's map). The lookup's `raw`
/// text gets the counters that moved appended, for failure messages.
fn ask_counting(
    bpffs: &Path,
    pod: &Pod,
    client: Client,
    server: &str,
    name: &str,
    qtype: &str,
) -> (Reply, u64) {
    let before = Inspect::read(bpffs).counters();
    let mut lookup = ask(pod, client, server, name, qtype);
    let after = Inspect::read(bpffs).counters();
    let moved: Vec<String> = after
        .iter()
        .filter(|(name, n)| count(&before, name) != **n)
        .map(|(name, n)| format!("{name} +{}", n - count(&before, name)))
        .collect();
    lookup
        .raw
        .push_str(&format!("\nkernel counters moved: {moved:?}"));
    (lookup, count(&after, "hit") - count(&before, "hit"))
}

/// Whether the kernel answered a lookup (`what` ends with the counters that
/// moved, see [`ask_counting`]). Generic mode must answer every hot lookup.
/// Native mode on veth may not: veth copies a locally sent frame into a
/// page-pool buffer whose tailroom only reaches the next 64-byte boundary,
/// so `bpf_xdp_adjust_tail` cannot grow a query into an answer more than
/// that much longer; the program passes the query (`pass_helper_failed`) and
/// userspace answers it. Here that leaves 3 of the 8 lookups to the kernel
/// (A over IPv4 from dig and kdig, A over IPv6 from kdig), exactly the ones
/// whose growth fits.
fn by_kernel(native: bool, hits: u64, what: &str) -> bool {
    if hits == 1 {
        return true;
    }
    assert!(
        native && what.contains("\"pass_helper_failed +"),
        "answered by XDP (hit counter +1): {what}"
    );
    false
}

/// Sends SIGCONT when dropped, so a failed assertion never leaves the agent
/// stopped (the lab would then wait on it in vain).
struct Stopped<'a>(&'a mut Agent);

impl<'a> Stopped<'a> {
    fn new(agent: &'a mut Agent) -> Self {
        agent.signal(Signal::Stop);
        Self(agent)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(Signal::Cont);
    }
}

/// A default `dig` (9.18 sends a DNS COOKIE unless told `+nocookie`) is
/// answered by the kernel too: the program ignores the cookie, as a server
/// without cookie support does (RFC 7873 section 5.2), and replies with a
/// plain OPT.
fn default_dig_is_answered_by_the_kernel(bpffs: &Path, pod: &Pod, native: bool) {
    let v4 = LISTEN_V4.to_string();
    let v6 = LISTEN_V6.to_string();
    for (server, qtype, want) in [(&v4, "A", WEB_V4), (&v6, "AAAA", WEB_V6)] {
        let (lookup, hits) = ask_counting(bpffs, pod, Client::DigDefault, server, WEB, qtype);
        let what = format!("default dig {WEB}/{qtype} via {server}:\n{}", lookup.raw);
        assert_eq!(lookup.status, "NOERROR", "{what}");
        assert_eq!(lookup.data(), vec![want.to_string()], "{what}");
        assert!(
            !what.contains("\"pass_edns +"),
            "a cookie must not pass the query: {what}"
        );
        by_kernel(native, hits, &what);
    }
}

/// The whole scenario for one XDP mode; `expect_mode` is what bpftool must
/// report for the pod's host-side veth.
fn kernel_answers_real_clients(xdp_mode: &'static str, expect_mode: &str) {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    // Native XDP_TX on veth only reaches the peer if the peer runs XDP too.
    let _peer_program = (expect_mode == "driver").then(|| pod.attach_pass_program().unwrap());
    let mut agent = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .xdp_mode(xdp_mode)
        .start(&lab, "agent");

    let attached = lab.node().xdp_attachments().unwrap();
    assert_eq!(
        attached
            .iter()
            .map(|a| (a.ifname.as_str(), a.mode.as_str()))
            .collect::<Vec<_>>(),
        vec![(pod.node_ifname(), expect_mode)],
        "one XDP program, in {expect_mode} mode, on the pod's host veth"
    );

    let v4 = LISTEN_V4.to_string();
    let v6 = LISTEN_V6.to_string();
    agent.warm_kernel(pod.netns(), &v4, WEB, "A");
    agent.warm_kernel(pod.netns(), &v6, WEB, "AAAA");
    agent.warm_kernel(pod.netns(), &v4, NXNAME, "A");

    let native = expect_mode == "driver";
    let mut kernel_hits = 0;
    for client in [Client::Dig, Client::Kdig] {
        for (server, qtype, want) in [
            (&v4, "A", WEB_V4),
            (&v6, "AAAA", WEB_V6),
            (&v6, "A", WEB_V4),
        ] {
            let (lookup, hits) = ask_counting(lab.bpffs(), pod, client, server, WEB_MIXED, qtype);
            let what = format!("{WEB_MIXED}/{qtype} via {server}:\n{}", lookup.raw);
            assert_eq!(lookup.status, "NOERROR", "{what}");
            assert_eq!(lookup.data(), vec![want.to_string()], "{what}");
            // kdig lower-cases names before sending them; dig keeps them.
            if matches!(client, Client::Dig) {
                assert!(
                    lookup.question.starts_with(&format!("{WEB_MIXED}.")),
                    "the question's case is echoed (0x20): {what}"
                );
            }
            kernel_hits += by_kernel(native, hits, &what) as usize;
        }
        let (lookup, hits) = ask_counting(lab.bpffs(), pod, client, &v4, NXNAME, "A");
        assert_eq!(lookup.status, "NXDOMAIN", "{}", lookup.raw);
        kernel_hits += by_kernel(native, hits, &lookup.raw) as usize;
    }
    println!("--xdp-mode {xdp_mode}: the kernel answered {kernel_hits} of 8 lookups");
    default_dig_is_answered_by_the_kernel(lab.bpffs(), pod, native);
    // Generic mode answers all 8; native mode must answer some.
    let floor = if native { 1 } else { 8 };
    assert!(
        kernel_hits >= floor,
        "the kernel answered only {kernel_hits} of 8 lookups"
    );
    assert_eq!(
        pod.udp_csum_errors().unwrap(),
        0,
        "the pod dropped replies with bad UDP checksums"
    );

    let missing = format!("missing-{}.default.svc.cluster.local", std::process::id());
    {
        let _stopped = Stopped::new(&mut agent);
        for client in [Client::Dig, Client::Kdig] {
            for (server, qtype, want) in [(&v4, "A", WEB_V4), (&v6, "AAAA", WEB_V6)] {
                let (lookup, hits) = ask_counting(lab.bpffs(), pod, client, server, WEB, qtype);
                // A native-mode pass (see by_kernel) has nobody to answer it.
                if !lookup.answered() && !by_kernel(native, hits, &lookup.raw) {
                    continue;
                }
                assert_eq!(
                    lookup.data(),
                    vec![want.to_string()],
                    "a name in the map is answered while the agent is stopped:\n{}",
                    lookup.raw
                );
            }
            let lookup = ask(pod, client, &v4, &missing, "A");
            assert!(
                !lookup.answered(),
                "a name not in the map has nobody to answer it while the agent is stopped:\n{}",
                lookup.raw
            );
        }
    }
    // Resumed: userspace answers the miss again (and it was never cached).
    let lookup = wait_for(
        "the resumed agent to answer",
        Duration::from_secs(5),
        || {
            let lookup = ask(pod, Client::Dig, &v4, &missing, "A");
            lookup.answered().then_some(lookup)
        },
    )
    .unwrap();
    assert_eq!(lookup.status, "NXDOMAIN", "{}", lookup.raw);
    assert_eq!(
        pod.udp_csum_errors().unwrap(),
        0,
        "the pod dropped replies with bad UDP checksums"
    );

    let status = agent.stop();
    assert!(
        status.success(),
        "the agent exits cleanly: {status}\n{}",
        agent.log_tail()
    );
    assert!(
        lab.node().xdp_attachments().unwrap().is_empty(),
        "--cleanup-on-exit leaves no XDP program behind"
    );
}

#[test]
fn generic_mode_kernel_answers_dig_and_kdig() {
    // `auto` must pick generic (SKB) mode on veth
    // (docs/design.md#generic-xdp-on-veth).
    kernel_answers_real_clients("auto", "generic");
}

#[test]
fn skb_mode_kernel_answers_dig_and_kdig() {
    kernel_answers_real_clients("skb", "generic");
}

#[test]
fn native_mode_kernel_answers_dig_and_kdig() {
    kernel_answers_real_clients("native", "driver");
}
