//! End to end, promotion to the kernel (issue 4): the real `dns-agent` with
//! XDP on a pod's host-side veth (default `--xdp-mode auto`, so SKB mode),
//! a real upstream (dnsmasq) for external names, and real clients in the
//! pod: glibc `getent` through the ndots:5 search path, and `dig`. The
//! ndots:5 storm answered entirely by XDP once hot; hot names answered with
//! the agent SIGSTOPped or SIGKILLed, and a restarted agent correcting what
//! changed meanwhile; Service changes reaching the kernel's answers; kernel
//! and userspace answers compared record by record for several clients;
//! a full map; serve-stale; IPv6 clients; a pod created after the agent.
//!
//! `dig` sends an EDNS cookie by default, and the XDP program passes any
//! query with EDNS options up to userspace; the tests that want the kernel
//! to answer use `+nocookie`, like glibc, which sends no options.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use nodedns_tests::agent::{DemoNode, PROPAGATION_BOUND};
use nodedns_tests::client::{HotSetFlood, Record, Reply};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Pod, Signal, measure_until};
use nodedns_tests::metrics::Metrics;
use nodedns_tests::repo::{WEB, WEB_V4, examples_dir, write_atomic};
use nodedns_tests::upstream::{DnsmasqSpec, EXAMPLE_ANSWER, EXAMPLE_ZONE};

/// The external name of the storm, and what the upstream says it is.
const API: &str = "api.example.test";
const API_V4: &str = "203.0.113.7";
const API_V6: &str = "2001:db8::7";
/// An external name with no AAAA: the upstream answers NODATA (without a
/// SOA, as dnsmasq does for local data), which is promoted too.
const V4_ONLY: &str = "v4only.example.test";
const V4_ONLY_A: &str = "203.0.113.9";
/// glibc's `getent ahosts` of a name with fewer than 5 dots, in a pod of
/// namespace `default`: 3 search names and the name itself, A and AAAA each.
const QUERIES_PER_LOOKUP: u64 = 8;
/// Lookups of the warm-up loop before the name must be hot.
const MAX_WARMUP: usize = 10;
/// `--hot-threshold`: promoted when asked more than once in the window.
const HOT_THRESHOLD: &str = "1";

/// The demo node with the upstream that answers the external names, and
/// promotion after two asks in a minute.
struct Setup {
    node: DemoNode,
}

impl Setup {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        // The upstream listens on the node's address toward the pod: a real
        // address of the node namespace, outside the agent's listen set.
        let addr = SocketAddr::new(IpAddr::from([10, 201, 0, 1]), 5353);
        let upstream = DnsmasqSpec::new(addr)
            .local_domain("example.test")
            // The demo's ExternalName `search` points there.
            .wildcard(EXAMPLE_ZONE, EXAMPLE_ANSWER.into())
            .host(API, API_V4.parse().unwrap())
            .host(API, API_V6.parse().unwrap())
            .host(V4_ONLY, V4_ONLY_A.parse().unwrap())
            .log_queries();
        let mut args = vec!["--hot-threshold", HOT_THRESHOLD, "--hot-window-secs", "60"];
        args.extend_from_slice(extra);
        Self {
            node: DemoNode::start(&upstream, &args, |_| {}),
        }
    }

    fn pod(&self) -> &Pod {
        self.node.pod()
    }

    fn metrics(&self) -> Metrics {
        self.node.metrics()
    }

    /// `getent ahosts api.example.test` from the pod, checked.
    fn lookup_api(&self) {
        self.lookup(API, &[API_V4, API_V6]);
    }

    /// `getent ahosts name` from the pod: glibc through the search path.
    fn lookup(&self, name: &str, want: &[&str]) {
        let hosts = self.pod().getent(&["ahosts", name]).unwrap();
        let mut want = want.to_vec();
        want.sort();
        assert!(
            hosts.success && hosts.sorted() == want,
            "getent ahosts {name}: {}",
            hosts.raw
        );
    }

    fn warm_up_api(&self) {
        self.warm_up(API, &[API_V4, API_V6]);
    }

    /// Repeats the lookup until one of them is answered without userspace.
    fn warm_up(&self, name: &str, want: &[&str]) {
        for _ in 0..MAX_WARMUP {
            let before = self.metrics();
            self.lookup(name, want);
            let after = self.metrics();
            if after.userspace_queries() == before.userspace_queries() {
                return;
            }
        }
        panic!(
            "{name} still reaches userspace after {MAX_WARMUP} lookups \
             (--hot-threshold {HOT_THRESHOLD}); metrics:\n{}\nkernel:\n{}",
            self.metrics().queries_table(),
            self.node.agent.inspect()
        );
    }

    /// `dig +nocookie` (a query the kernel may answer).
    fn dig_kernel(&self, name: &str, qtype: &str) -> Reply {
        self.pod().dig(&["+nocookie", name, qtype]).unwrap()
    }

    /// `name` A with a one-second timeout: what a stopped or dead agent
    /// leaves to the kernel alone.
    fn dig_quick(&self, name: &str) -> Reply {
        self.pod()
            .dig(&["+nocookie", "+time=1", name, "A"])
            .unwrap()
    }

    /// The external name and `web` answered by the kernel: asked until hot
    /// and held in the map.
    fn make_hot(&self) {
        self.lookup_api();
        self.warm_up_api();
        let web = self.dig_kernel(WEB, "A");
        assert_eq!(ips(&web), [WEB_V4], "{}", web.raw);
        self.wait_kernel_entry(WEB, WEB_V4);
    }

    /// Gives `web` the ClusterIP `ip` in the manifests folder.
    fn set_web_ip(&self, ip: &str) {
        let file = "demo-default.yaml";
        let text = std::fs::read_to_string(examples_dir().join(file)).unwrap();
        write_atomic(&self.node.manifests.join(file), &text.replace(WEB_V4, ip)).unwrap();
    }

    /// Waits until the kernel (or userspace) answers `web` A with `ip`.
    fn wait_web_ip(&self, what: &str, start: Instant, ip: &str) {
        measure_until(
            what,
            start,
            PROPAGATION_BOUND,
            || self.dig_kernel(WEB, "A"),
            |r| ips(r) == [ip],
        )
        .unwrap();
    }

    fn assert_no_csum_errors(&self) {
        assert_eq!(
            self.pod().udp_csum_errors().unwrap(),
            0,
            "the pod dropped replies with bad checksums"
        );
    }

    /// Asks `name` A once and checks the kernel, not userspace, answered it.
    fn assert_kernel_answers(&self, name: &str, check: impl Fn(&Reply) -> bool) -> Reply {
        self.assert_kernel_answers_dig(&["+nocookie", name, "A"], check)
    }

    /// Runs `dig args` once and checks the kernel, not userspace, answered.
    fn assert_kernel_answers_dig(&self, args: &[&str], check: impl Fn(&Reply) -> bool) -> Reply {
        let name = args.join(" ");
        let before = self.metrics();
        let reply = self.pod().dig(args).unwrap();
        let after = self.metrics();
        assert!(check(&reply), "{name}: unexpected reply\n{}", reply.raw);
        assert_eq!(
            (
                after.xdp_hits() - before.xdp_hits(),
                after.userspace_queries()
            ),
            (1, before.userspace_queries()),
            "{name} was not answered by the kernel; metrics:\n{}",
            after.queries_table()
        );
        reply
    }

    /// Waits until the kernel map holds `name` A with `what` in its entry
    /// (an address, or the rcode text).
    fn wait_kernel_entry(&self, name: &str, what: &str) {
        self.wait_kernel_entry_type(name, "A", what);
    }

    fn wait_kernel_entry_type(&self, name: &str, qtype: &str, what: &str) {
        measure_until(
            &format!("kernel entry {name} {qtype} with {what}"),
            Instant::now(),
            PROPAGATION_BOUND,
            || self.node.agent.inspect().entry(name, qtype).cloned(),
            |entry| entry.as_ref().is_some_and(|e| e.to_string().contains(what)),
        )
        .unwrap();
    }
}

fn ips(reply: &Reply) -> Vec<String> {
    reply.rdata("A")
}

#[test]
fn ndots_storm_from_glibc_is_answered_entirely_by_xdp_once_hot() {
    let setup = Setup::start();
    setup.lookup_api();
    setup.warm_up_api();

    // Every name of the search path is in the kernel: the NXDOMAINs of the
    // cluster zone and the upstream's answer.
    let kernel = setup.node.agent.inspect();
    for name in [
        "api.example.test.default.svc.cluster.local",
        "api.example.test.svc.cluster.local",
        "api.example.test.cluster.local",
    ] {
        for qtype in ["A", "AAAA"] {
            let entry = kernel
                .entry(name, qtype)
                .unwrap_or_else(|| panic!("no kernel entry for {name} {qtype}:\n{kernel}"));
            assert_eq!(entry["rcode"], "Non-Existent Domain", "{entry}");
        }
    }
    for qtype in ["A", "AAAA"] {
        assert!(
            kernel.entry(API, qtype).is_some(),
            "no kernel entry for {API} {qtype}:\n{kernel}"
        );
    }

    // A name with only an IPv4 address: the AAAA NODATA goes in too.
    setup.warm_up(V4_ONLY, &[V4_ONLY_A]);

    const LOOKUPS: u64 = 5;
    let before = setup.metrics();
    let misses = setup.node.agent.inspect().counter("miss");
    for _ in 0..LOOKUPS {
        setup.lookup_api();
        setup.lookup(V4_ONLY, &[V4_ONLY_A]);
    }
    let after = setup.metrics();
    println!(
        "e2e: {} getent lookups: {} XDP hits, {} userspace queries",
        2 * LOOKUPS,
        after.xdp_hits() - before.xdp_hits(),
        after.userspace_queries() - before.userspace_queries()
    );
    assert_eq!(
        after.xdp_hits() - before.xdp_hits(),
        2 * LOOKUPS * QUERIES_PER_LOOKUP,
        "every query of the storm answered by XDP; metrics after:\n{}",
        after.queries_table()
    );
    assert_eq!(
        after.userspace_queries(),
        before.userspace_queries(),
        "userspace answered part of the storm:\n{}",
        after.queries_table()
    );
    assert_eq!(setup.node.agent.inspect().counter("miss"), misses);
    setup.assert_no_csum_errors();
}

#[test]
fn stopped_agent_leaves_hot_names_answered_by_the_kernel() {
    let mut setup = Setup::start();
    setup.make_hot();

    setup.node.agent.signal(Signal::Stop);
    // Answered by the kernel alone: glibc's whole search path, and dig.
    setup.lookup_api();
    let web = setup.dig_quick(WEB);
    assert_eq!(ips(&web), ["10.96.0.20"], "{}", web.raw);
    // Nothing answers a name the kernel does not hold.
    for cold in ["cold.example.test", "cold.default.svc.cluster.local"] {
        let reply = setup.dig_quick(cold);
        assert!(
            !reply.answered(),
            "{cold} with the agent stopped:\n{}",
            reply.raw
        );
    }
    // A change made while the agent is stopped: the kernel keeps the old
    // answer (nothing can update it), and catches up once it runs again.
    setup.set_web_ip("10.96.0.21");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let web = setup.dig_quick(WEB);
    assert_eq!(ips(&web), ["10.96.0.20"], "{}", web.raw);
    let start = Instant::now();
    setup.node.agent.signal(Signal::Cont);
    setup.wait_web_ip(
        "kernel: change made while stopped answered after SIGCONT",
        start,
        "10.96.0.21",
    );
    let cold = setup
        .pod()
        .dig(&["+nocookie", "cold.default.svc.cluster.local", "A"])
        .unwrap();
    assert_eq!(cold.status, "NXDOMAIN", "after SIGCONT:\n{}", cold.raw);

    // It still shuts down cleanly: XDP detached, pins removed
    // (--cleanup-on-exit).
    let status = setup.node.agent.stop();
    assert!(
        status.success(),
        "the agent exited with {status}:\n{}",
        setup.node.agent.log()
    );
    assert!(
        !setup.node.agent.bpffs().exists(),
        "{} left behind",
        setup.node.agent.bpffs().display()
    );
    let ifname = setup.pod().node_ifname();
    assert!(
        !setup.node.lab.node().has_xdp(ifname).unwrap(),
        "XDP still attached to {ifname} after the agent exited"
    );
}

#[test]
fn service_change_reaches_the_kernel_answer() {
    let setup = Setup::start();
    let web = setup.dig_kernel(WEB, "A");
    assert_eq!(ips(&web), ["10.96.0.20"], "{}", web.raw);
    setup.wait_kernel_entry(WEB, "10.96.0.20");
    setup.assert_kernel_answers(WEB, |r| ips(r) == ["10.96.0.20"]);

    // Records derived from the Service are in the kernel too: the SRV (with
    // the address in ADDITIONAL) and the PTR of the old address.
    let srv_args = [
        "+nocookie",
        "_http._tcp.web.default.svc.cluster.local",
        "SRV",
    ];
    let ptr_args = ["+nocookie", "-x", "10.96.0.20"];
    for args in [&srv_args[..], &ptr_args[..]] {
        let first = setup.pod().dig(args).unwrap();
        assert_eq!(first.status, "NOERROR", "{}", first.raw);
        setup.assert_kernel_answers_dig(args, |r| r.status == "NOERROR");
    }

    let start = Instant::now();
    setup.set_web_ip("10.96.0.21");
    setup.wait_web_ip("kernel: changed ClusterIP answered", start, "10.96.0.21");
    setup.wait_kernel_entry(WEB, "10.96.0.21");
    setup.assert_kernel_answers(WEB, |r| ips(r) == ["10.96.0.21"]);

    // What depends on the address follows it: no answer, from the kernel or
    // userspace, still carries the old one.
    measure_until(
        "kernel: SRV additional follows the new ClusterIP",
        start,
        PROPAGATION_BOUND,
        || setup.pod().dig(&srv_args).unwrap(),
        |r| r.raw.contains("10.96.0.21") && !r.raw.contains("10.96.0.20"),
    )
    .unwrap();
    measure_until(
        "kernel: PTR of the old ClusterIP gone",
        start,
        PROPAGATION_BOUND,
        || setup.pod().dig(&ptr_args).unwrap(),
        |r| r.rdata("PTR").is_empty() && r.answered(),
    )
    .unwrap();
    let new_ptr = setup.pod().dig(&["+nocookie", "-x", "10.96.0.21"]).unwrap();
    assert_eq!(
        new_ptr.rdata("PTR"),
        ["web.default.svc.cluster.local."],
        "{}",
        new_ptr.raw
    );
}

#[test]
fn kernel_nxdomain_resolves_once_the_service_appears() {
    let setup = Setup::start();
    const LATE: &str = "late.default.svc.cluster.local";
    let nx = setup.dig_kernel(LATE, "A");
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
    setup.wait_kernel_entry(LATE, "Non-Existent Domain");
    setup.assert_kernel_answers(LATE, |r| r.status == "NXDOMAIN");

    let added = setup.node.manifests.join("late.yaml");
    let start = Instant::now();
    write_atomic(
        &added,
        "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: default}\n\
         spec:\n  clusterIP: 10.96.0.77\n  clusterIPs: [10.96.0.77]\n",
    )
    .unwrap();
    measure_until(
        "kernel: NXDOMAIN replaced by the new Service",
        start,
        PROPAGATION_BOUND,
        || setup.dig_kernel(LATE, "A"),
        |r| ips(r) == ["10.96.0.77"],
    )
    .unwrap();
    setup.wait_kernel_entry(LATE, "10.96.0.77");
    setup.assert_kernel_answers(LATE, |r| ips(r) == ["10.96.0.77"]);

    // And back: a deleted Service is NXDOMAIN in the kernel again.
    let start = Instant::now();
    std::fs::remove_file(&added).unwrap();
    measure_until(
        "kernel: deleted Service NXDOMAIN",
        start,
        PROPAGATION_BOUND,
        || setup.dig_kernel(LATE, "A"),
        |r| r.status == "NXDOMAIN",
    )
    .unwrap();
    setup.assert_kernel_answers(LATE, |r| r.status == "NXDOMAIN");
}

#[test]
fn kernel_answers_ipv6_clients_and_any_name_case() {
    let listen_v6 = LISTEN_V6.to_string();
    let listen_v4 = LISTEN_V4.to_string();
    let setup = Setup::start_with(&["--listen", &listen_v4, "--listen", &listen_v6]);
    let server = format!("@{LISTEN_V6}");
    for qtype in ["AAAA", "A"] {
        let args = ["+nocookie", server.as_str(), WEB, qtype];
        let first = setup.pod().dig(&args).unwrap();
        assert_eq!(first.status, "NOERROR", "{}", first.raw);
        let want = if qtype == "A" {
            "10.96.0.20"
        } else {
            "fd00:10:96::20"
        };
        setup.wait_kernel_entry_type(WEB, qtype, want);
        setup.assert_kernel_answers_dig(&args, |r| r.rdata(qtype) == [want]);
    }
    // Names match case-insensitively, and the reply echoes the question.
    let mixed = "WeB.DEFAULT.svc.Cluster.Local";
    let reply =
        setup.assert_kernel_answers_dig(&["+nocookie", mixed, "A"], |r| ips(r) == ["10.96.0.20"]);
    assert!(
        reply.raw.contains(&format!(";{mixed}.")),
        "question not echoed as asked:\n{}",
        reply.raw
    );
    assert_eq!(setup.pod().udp_csum_errors().unwrap(), 0);
}

/// A map far too small: every query is still answered; once the map is
/// full a name asked once stays in userspace, and a name asked again
/// replaces the least recently used entry (docs/design.md#admission-and-eviction).
#[test]
fn full_kernel_map_evicts_and_never_fails_a_query() {
    const CAPACITY: u64 = 32;
    const NAMES: usize = 120;
    const PER_DIG: usize = 20;
    let capacity = CAPACITY.to_string();
    let setup = Setup::start_with(&["--map-entries", &capacity]);
    let names: Vec<String> = (0..NAMES)
        .map(|i| format!("n{i}.default.svc.cluster.local"))
        .collect();
    // Every name once, then the last batch again.
    for batch in names.chunks(PER_DIG).chain([&names[NAMES - PER_DIG..]]) {
        // One dig, many queries: each gets its own reply in the output.
        let mut args = vec!["+nocookie"];
        for name in batch {
            args.extend([name.as_str(), "A"]);
        }
        let text = setup.pod().dig(&args).unwrap().raw;
        assert_eq!(
            text.matches("status: NXDOMAIN").count(),
            batch.len(),
            "every query answered NXDOMAIN with the map full:\n{text}"
        );
    }
    let metrics = setup.metrics();
    let evictions = metrics.sum("nodedns_map_evictions_total", &[]);
    let rejected = metrics.sum("nodedns_map_rejected_total", &[]);
    let entries = metrics.sum("nodedns_xdp_map_entries", &[]);
    println!(
        "e2e: {NAMES} names into a map of {CAPACITY}: {rejected} rejected, \
         {evictions} evictions, {entries} entries"
    );
    assert!(
        evictions > 0 && rejected > 0,
        "no evictions or rejections counted:\n{}",
        metrics.queries_table()
    );
    assert!(
        entries <= CAPACITY,
        "{entries} entries in a map of {CAPACITY}"
    );
    assert_eq!(metrics.sum("nodedns_map_write_errors_total", &[]), 0);

    // The names asked twice are answered by the kernel.
    setup.assert_kernel_answers(&names[NAMES - 1], |r| r.status == "NXDOMAIN");
}

/// Issue 16.3: a flood of unique cluster names (each asked once, so each an
/// NXDOMAIN from userspace) into a small map, while a small hot set is asked
/// over and over. The flood must not evict the hot set: at least 99% of the
/// hot set's answers come from the kernel, counted by the kernel's hit
/// counter against the answers dnsperf got (not by timing).
#[test]
fn unique_name_flood_leaves_the_hot_set_to_the_kernel() {
    const CAPACITY: &str = "256";
    const FLOOD: u64 = 12_000;
    let setup = Setup::start_with(&["--map-entries", CAPACITY]);
    let mut hot = vec![format!("{WEB} A")];
    hot.extend((0..7).map(|i| format!("hot-{i}.default.svc.cluster.local A")));
    let run = HotSetFlood {
        server: LISTEN_V4.to_string(),
        hot,
        hot_qps: 200,
        flood: FLOOD,
        flood_qps: 1_000,
    };
    let result = run
        .run(&setup.node.lab, setup.pod().netns(), || {
            Ok(setup.metrics().xdp_hits())
        })
        .expect("run dnsperf (apt-get install dnsperf)");
    let metrics = setup.metrics();
    println!("e2e: {}", result.line());
    println!("e2e: {}", metrics.map_line());
    assert_eq!(
        result.hot.failed() + result.flood.failed(),
        0,
        "{}",
        result.line()
    );
    assert!(
        result.flood.completed > FLOOD * 9 / 10,
        "the flood was answered: {}",
        result.line()
    );
    assert!(
        metrics.sum("nodedns_map_rejected_total", &[]) > 0,
        "the flood filled the map and was refused:\n{}",
        metrics.queries_table()
    );
    assert!(
        result.kernel_share() >= 0.99,
        "the flood pushed the hot set out of the kernel: {}\nkernel:\n{}",
        result.line(),
        setup.node.agent.inspect()
    );
    setup.assert_no_csum_errors();
}

#[test]
fn hot_external_name_survives_its_upstream_stopping() {
    // Answers expire after 2 s, in the cache and in the kernel (the agent
    // promotes only answers with at least 1 s left).
    let mut setup = Setup::start_with(&["--cache-max-success-ttl", "2"]);
    setup.lookup_api();
    setup.warm_up_api();
    // Silent rather than refusing: the agent has to give up on it.
    setup
        .node
        .upstream
        .daemon_mut()
        .signal(Signal::Stop)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));

    // The kernel's entries have expired: userspace answers from the stale
    // cache (RFC 8767) after trying the silent upstream for a while
    // (--serve-stale-after-ms), within glibc's 5 s timeout.
    let start = Instant::now();
    setup.lookup_api();
    println!(
        "e2e: lookup with the upstream silent (serve-stale): {:?}",
        start.elapsed()
    );
    let metrics = setup.metrics();
    assert!(
        metrics.sum("nodedns_queries_total", &[("path", "stale")]) > 0,
        "no stale answers counted:\n{}",
        metrics.queries_table()
    );
    setup.lookup_api();
}

/// The header flags dig printed (`qr aa rd ra`), sorted.
fn flags(reply: &Reply) -> Vec<String> {
    let mut flags = reply.flags.clone();
    flags.sort();
    flags
}

/// Records as `TYPE rdata`, sorted: two servers' answers whose TTLs differ.
fn typed(records: &[Record]) -> Vec<String> {
    let mut typed: Vec<String> = records.iter().map(Record::typed).collect();
    typed.sort();
    typed
}

/// A headless Service `name` in `default` with `members` ready endpoints.
fn write_headless(path: &std::path::Path, name: &str, members: usize) {
    let endpoints: String = (1..=members)
        .map(|i| format!("- addresses: [10.244.50.{i}]\n  conditions: {{ready: true}}\n"))
        .collect();
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{clusterIP: None}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: default, \
         labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints:\n{endpoints}"
    );
    write_atomic(path, &text).unwrap();
}

#[test]
fn kernel_answers_match_userspace_answers() {
    let setup = Setup::start();
    // Client variants the kernel may answer (no EDNS options).
    let variants: &[&[&str]] = &[
        &["+nocookie"],
        &["+noedns"],
        &["+nocookie", "+bufsize=512"],
        &["+nocookie", "+dnssec"],
        &["+nocookie", "+norec"],
    ];
    // Headless services with bigger answers: 20 members (a 378-byte reply,
    // which the kernel serves), and 30 (538 bytes: TC=1 for clients with
    // 512 bytes, and more than generic XDP on veth can grow a query's frame
    // to, so the kernel passes it up: pass_helper_failed).
    const MID: &str = "mid.default.svc.cluster.local";
    const BIG: &str = "big.default.svc.cluster.local";
    let start = Instant::now();
    write_headless(&setup.node.manifests.join("mid.yaml"), "mid", 20);
    write_headless(&setup.node.manifests.join("big.yaml"), "big", 30);
    for (name, members) in [(MID, 20), (BIG, 30)] {
        measure_until(
            &format!("headless service with {members} members answered"),
            start,
            PROPAGATION_BOUND,
            || setup.pod().dig(&[name, "A"]).unwrap(),
            |r| r.rdata("A").len() == members,
        )
        .unwrap();
    }
    let may_pass_up: Vec<String> = variants
        .iter()
        .map(|v| format!("+ignore {} {BIG} A", v.join(" ")))
        .collect();
    let questions: &[&[&str]] = &[
        &[MID, "A"],
        &[BIG, "A"],
        &[WEB, "A"],
        &[WEB, "AAAA"],
        &["_http._tcp.web.default.svc.cluster.local", "SRV"],
        &["_postgres._tcp.db.default.svc.cluster.local", "SRV"],
        &["db.default.svc.cluster.local", "A"],
        &["-x", "10.96.0.20"],
        &["-x", "10.244.1.20"],
        &["search.default.svc.cluster.local", "A"],
        &["nope.default.svc.cluster.local", "A"],
        &["kubernetes.default.svc.cluster.local", "AAAA"],
        &["default.svc.cluster.local", "A"],
        &["dns-version.cluster.local", "TXT"],
        &["10-1-2-3.default.pod.cluster.local", "A"],
        &[API, "A"],
        &[API, "AAAA"],
        &["missing.example.test", "A"],
    ];
    let mut compared = 0;
    let mut passed_up = Vec::new();
    for question in questions {
        for variant in variants {
            // +ignore: the UDP reply as it came, no retry over TCP on TC=1.
            let mut args: Vec<&str> = vec!["+ignore"];
            args.extend_from_slice(variant);
            args.extend_from_slice(question);
            // Enough times to be promoted (upstream answers are hot after 2).
            for _ in 0..2 {
                setup.pod().dig(&args).unwrap();
            }
            let before = setup.metrics();
            let kernel = setup.pod().dig(&args).unwrap();
            let after = setup.metrics();
            if after.xdp_hits() == before.xdp_hits() {
                passed_up.push(args.join(" "));
            }
            // The same question with a cookie: always userspace.
            // Without EDNS a client gets 512 bytes: the reference asks for
            // that size.
            let mut user_args: Vec<&str> = vec!["+ignore"];
            user_args.extend(
                variant
                    .iter()
                    .map(|v| if *v == "+noedns" { "+bufsize=512" } else { v })
                    .filter(|v| *v != "+nocookie"),
            );
            user_args.push("+cookie");
            user_args.extend_from_slice(question);
            let user = setup.pod().dig(&user_args).unwrap();
            let what = format!("dig {}", args.join(" "));
            // Status, answers and authority (TTLs aside), header flags.
            let view = |r: &Reply| {
                (
                    r.status.clone(),
                    typed(&r.answers),
                    typed(&r.authority),
                    flags(r),
                )
            };
            assert_eq!(
                view(&kernel),
                view(&user),
                "{what}: kernel (left) and userspace (right) differ\n{}\n{}",
                kernel.raw,
                user.raw
            );
            // The reference needs EDNS for its cookie; a query without
            // EDNS gets an answer without it.
            let want_edns = if variant.contains(&"+noedns") {
                None
            } else {
                user.edns.clone()
            };
            assert_eq!(
                kernel.edns, want_edns,
                "{what}: EDNS\n{}\n{}",
                kernel.raw, user.raw
            );
            compared += 1;
        }
    }
    println!("e2e: {compared} kernel/userspace comparisons");
    let unexpected: Vec<&String> = passed_up
        .iter()
        .filter(|q| !may_pass_up.contains(q))
        .collect();
    assert!(
        unexpected.is_empty(),
        "queries the kernel left to userspace: {unexpected:#?}"
    );
    setup.assert_no_csum_errors();
}

#[test]
fn pod_created_after_the_agent_gets_kernel_answers() {
    // The agent watches for matching interfaces; this one appears later,
    // the way a new pod's veth does on a node.
    let mut setup = Setup::start();
    let index = setup.node.lab.add_pod().unwrap();
    let late = setup.node.lab.pod(index);
    let start = Instant::now();
    measure_until(
        "XDP attached to a veth created after the agent started",
        start,
        PROPAGATION_BOUND,
        || setup.node.lab.node().has_xdp(late.node_ifname()).unwrap(),
        |attached| *attached,
    )
    .unwrap();
    let late_dig = |args: &[&str]| {
        let args = [&["+nocookie"][..], args].concat();
        late.dig(&args).unwrap()
    };
    let first = late_dig(&["+search", "web", "A"]);
    assert_eq!(ips(&first), ["10.96.0.20"], "{}", first.raw);
    let before = setup.metrics();
    let second = late_dig(&["+search", "web", "A"]);
    let after = setup.metrics();
    assert_eq!(ips(&second), ["10.96.0.20"], "{}", second.raw);
    assert_eq!(
        after.xdp_hits() - before.xdp_hits(),
        1,
        "the new pod's query was not answered by the kernel:\n{}",
        after.queries_table()
    );
}

#[test]
fn killed_agent_leaves_the_kernel_answering_until_a_new_one_adopts_the_maps() {
    let mut setup = Setup::start();
    setup.make_hot();

    // SIGKILL (a crash, the OOM killer): no exit code runs, the pinned
    // XDP link and maps stay, and the kernel keeps answering hot names.
    setup.node.agent.kill();
    setup.lookup_api();
    let web = setup.dig_quick(WEB);
    assert_eq!(
        ips(&web),
        ["10.96.0.20"],
        "with the agent dead:\n{}",
        web.raw
    );

    // The Service changes while no agent runs.
    setup.set_web_ip("10.96.0.21");

    // A new agent adopts the pinned maps and the entries in them: what
    // changed while it was away is corrected in the kernel at once.
    let start = Instant::now();
    setup.node.agent.restart(&setup.node.lab);
    setup.wait_web_ip(
        "kernel: change made while no agent ran answered after the restart",
        start,
        "10.96.0.21",
    );
    setup.assert_kernel_answers(WEB, |r| ips(r) == ["10.96.0.21"]);
    let cold = setup.dig_kernel("cold.default.svc.cluster.local", "A");
    assert_eq!(cold.status, "NXDOMAIN", "after the restart:\n{}", cold.raw);
    setup.lookup_api();
    // And it follows later changes into the kernel.
    let start = Instant::now();
    setup.set_web_ip("10.96.0.22");
    setup.wait_web_ip(
        "kernel: change after a restart answered",
        start,
        "10.96.0.22",
    );
}
