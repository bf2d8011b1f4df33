//! End to end, issue 13: the behaviours of CoreDNS that pods depend on, and
//! the schema rules it asked to follow exactly, as a pod sees them. The
//! real agent serves the demo cluster plus `CHAINS` and `SLEEPY` below; every case
//! is asked over UDP and TCP (userspace) and, where the kernel may serve it,
//! from the kernel map (XDP), which must give the same answer. Each
//! expectation is written from the rule it cites (`§` is the Kubernetes DNS
//! specification 1.1.0), not from the agent's output.

use nodedns_tests::agent::DemoNode;
use nodedns_tests::client::{Record, Reply};
use nodedns_tests::cluster::external_names;
use nodedns_tests::lab::{Pod, wait_for};
use nodedns_tests::repo::write_atomic;
use nodedns_tests::upstream::{DnsmasqSpec, EXAMPLE_ANSWER, EXAMPLE_ZONE, NODE_UPSTREAM};

/// The upstream's TTL for names under [`EXAMPLE_ZONE`]: below the zone's
/// 30 s, so a chased answer's TTL shows whose it is.
const UPSTREAM_TTL: u32 = 20;
/// Bound on a question being installed and answered by the kernel.
const KERNEL_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// Added to the demo cluster: ExternalName chains (in the zone, through
/// `search` out of it, and a loop), and a headless Service whose only
/// endpoint is not ready.
/// ExternalName chains of the conformance cases.
const CHAINS: &[(&str, &str)] = &[
    ("ext-web", "web.default.svc.cluster.local"),
    ("ext-chain", "search.default.svc.cluster.local"),
    ("loop-a", "loop-b.default.svc.cluster.local"),
    ("loop-b", "loop-a.default.svc.cluster.local"),
];

const SLEEPY: &str = "\
apiVersion: v1
kind: Service
metadata: {name: sleepy, namespace: default}
spec:
  clusterIP: None
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: sleepy-1
  namespace: default
  labels: {kubernetes.io/service-name: sleepy}
addressType: IPv4
endpoints:
- addresses: [10.244.1.40]
  hostname: sleepy-0
  conditions: {ready: false}
ports: [{name: http, port: 80, protocol: TCP}]
";

struct Setup {
    node: DemoNode,
}

impl Setup {
    fn start(extra: &[&str]) -> Self {
        let upstream = DnsmasqSpec::new(NODE_UPSTREAM)
            .wildcard(EXAMPLE_ZONE, EXAMPLE_ANSWER.into())
            .local_ttl(UPSTREAM_TTL)
            .arg("--cache-size=0")
            .log_queries();
        let mut args = vec![
            "--reverse-cidr",
            "10.96.0.0/12",
            "--reverse-cidr",
            "10.244.0.0/16",
            "--reverse-cidr",
            "fd00:10:96::/112",
        ];
        args.extend_from_slice(extra);
        let node = DemoNode::start(&upstream, &args, |manifests| {
            let conformance = format!("{}---\n{SLEEPY}", external_names(CHAINS));
            write_atomic(&manifests.join("conformance.yaml"), &conformance).unwrap();
        });
        Self { node }
    }

    fn pod(&self) -> &Pod {
        self.node.pod()
    }

    fn dig(&self, args: &[&str]) -> Reply {
        self.pod().dig(args).unwrap()
    }

    /// `question` over UDP (dig's cookie keeps the kernel out), over TCP,
    /// and answered by the kernel: the three replies, checked by `expect`
    /// and against each other.
    fn three_ways(&self, what: &str, question: &[&str], expect: impl Fn(&str, &Reply)) {
        let udp = self.dig(question);
        let tcp = self.dig(&[&["+tcp"], question].concat());
        let kernel = self.asked_of_kernel(what, question);
        for (path, reply) in [("udp", &udp), ("tcp", &tcp), ("kernel", &kernel)] {
            expect(&format!("{what} ({path})"), reply);
        }
        for (path, reply) in [("tcp", &tcp), ("kernel", &kernel)] {
            assert_eq!(
                content(reply),
                content(&udp),
                "{what}: {path} differs from udp\n{}\n{}",
                reply.raw,
                udp.raw
            );
        }
    }

    /// Negative answers, each `(what, question, status, SOA owner)`, three
    /// ways.
    fn negatives(&self, cases: &[(&str, &[&str], &str, &str)]) {
        for (what, question, status, soa_owner) in cases {
            self.three_ways(what, question, |what, r| {
                assert_negative(what, r, status, soa_owner)
            });
        }
    }

    /// `question` without a cookie, asked until the kernel answers it (the
    /// first answer, from userspace, installs it): that reply.
    fn asked_of_kernel(&self, what: &str, question: &[&str]) -> Reply {
        let args = [&["+nocookie"], question].concat();
        wait_for(&format!("{what}: answered by XDP"), KERNEL_BOUND, || {
            let before = self.node.agent.inspect().counter("hit");
            let reply = self.dig(&args);
            let after = self.node.agent.inspect().counter("hit");
            (reply.answered() && after > before).then_some(reply)
        })
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", self.node.agent.log_tail()))
    }

    /// `question` answered over UDP and TCP with `status`, and never by the
    /// kernel (SERVFAIL is not promoted).
    fn userspace_only(&self, what: &str, question: &[&str], status: &str) {
        let nocookie = [&["+nocookie"], question].concat();
        let tcp = [&["+tcp"], question].concat();
        let before = self.node.agent.inspect().counter("hit");
        for args in [&nocookie, &nocookie, &tcp] {
            let reply = self.dig(args);
            assert_eq!(reply.status, status, "{what}:\n{}", reply.raw);
        }
        assert_eq!(
            self.node.agent.inspect().counter("hit"),
            before,
            "{what}: the kernel answered"
        );
    }

    /// Queries dnsmasq logged for `fragment` (a name, or `in-addr.arpa`).
    fn upstream_queries(&self, fragment: &str) -> usize {
        self.node
            .upstream
            .log()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(fragment))
            .count()
    }
}

/// What must be equal between paths: status, AA, and every section's
/// records without TTL, compared without case (names are case-insensitive,
/// and the kernel spells every name that shares labels with the question,
/// rdata included, as the question does; the case test checks owners).
fn content(r: &Reply) -> (String, bool, Vec<String>, Vec<String>, Vec<String>) {
    let typed = |records: &[Record]| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .map(|x| format!("{} {}", x.owner, x.typed()).to_lowercase())
            .collect();
        v.sort();
        v
    };
    (
        r.status.clone(),
        r.has_flag("aa"),
        typed(&r.answers),
        typed(&r.authority),
        typed(&r.additional),
    )
}

/// `owner TYPE data` of `records`, in order.
fn listed(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r.owner.to_lowercase(), r.typed()))
        .collect()
}

#[track_caller]
fn assert_negative(what: &str, r: &Reply, status: &str, soa_owner: &str) {
    assert_eq!(r.status, status, "{what}:\n{}", r.raw);
    assert!(r.has_flag("aa"), "{what}: authoritative\n{}", r.raw);
    assert!(r.answers.is_empty(), "{what}: no answers\n{}", r.raw);
    let soa: Vec<&Record> = r.authority.iter().filter(|a| a.rtype == "SOA").collect();
    assert!(
        soa.len() == 1 && soa[0].owner.eq_ignore_ascii_case(soa_owner),
        "{what}: the SOA of {soa_owner} in AUTHORITY (RFC 2308)\n{}",
        r.raw
    );
}

/// An SRV answer's records and its additional section (every address
/// RRset of every target, RFC 2181 §5), both sorted.
#[track_caller]
fn assert_srv(what: &str, r: &Reply, srv: &[String], additional: &[String]) {
    assert_eq!(r.sorted_rdata("SRV"), srv, "{what}:\n{}", r.raw);
    let mut added = listed(&r.additional);
    added.sort();
    assert_eq!(
        added, additional,
        "{what}: every address of every target\n{}",
        r.raw
    );
}

/// ExternalName Services (§2.5, RFC 1034 §4.3.2): the CNAME and the
/// target's records, the target forwarded and cached, every TTL the
/// chain's minimum, and glibc resolving it.
#[test]
fn external_names_are_chased() {
    let s = Setup::start(&[]);
    let www = format!("www.{EXAMPLE_ZONE}.");
    let chain = |what: &str, r: &Reply, want: &[String]| {
        assert_eq!(r.status, "NOERROR", "{what}:\n{}", r.raw);
        assert!(r.has_flag("aa"), "{what}: AA\n{}", r.raw);
        assert_eq!(listed(&r.answers), want, "{what}:\n{}", r.raw);
        let ttl = r.answers[0].ttl;
        assert!(
            ttl <= UPSTREAM_TTL && r.answers.iter().all(|a| a.ttl == ttl),
            "{what}: every TTL the chain's minimum (<= {UPSTREAM_TTL})\n{}",
            r.raw
        );
    };
    let out = [
        format!("search.default.svc.cluster.local. CNAME {www}"),
        format!("{www} A {EXAMPLE_ANSWER}"),
    ];
    s.three_ways(
        "ExternalName out of the zone",
        &["search.default.svc.cluster.local", "A"],
        |what, r| chain(what, r, &out),
    );
    // Cached like any forwarded name: asking again does not reach upstream.
    let asked = s.upstream_queries(&format!("query[A] {}", www.trim_end_matches('.')));
    s.dig(&["+tcp", "search.default.svc.cluster.local", "A"]);
    assert_eq!(
        s.upstream_queries(&format!("query[A] {}", www.trim_end_matches('.'))),
        asked,
        "answered from the cache"
    );
    // In the kernel it lives as long as its shortest TTL, not the 120 s of
    // a cluster entry.
    let inspect = s.node.agent.inspect();
    let entry = inspect
        .entry("search.default.svc.cluster.local", "A")
        .expect("the chased answer is in the kernel map");
    let left = entry["ttl_remaining"].as_u64().unwrap_or(u64::MAX);
    assert!(
        left <= u64::from(UPSTREAM_TTL),
        "lifetime left {left} s:\n{inspect}"
    );

    // An in-zone alias of an in-zone name, and one of the external alias.
    let to_web = [
        "ext-web.default.svc.cluster.local. CNAME web.default.svc.cluster.local.".to_string(),
        "web.default.svc.cluster.local. A 10.96.0.20".to_string(),
    ];
    s.three_ways(
        "ExternalName to a Service",
        &["ext-web.default.svc.cluster.local", "A"],
        |what, r| {
            assert_eq!(r.status, "NOERROR", "{what}:\n{}", r.raw);
            assert_eq!(listed(&r.answers), to_web, "{what}:\n{}", r.raw);
        },
    );
    let through = [
        "ext-chain.default.svc.cluster.local. CNAME search.default.svc.cluster.local.".to_string(),
        format!("search.default.svc.cluster.local. CNAME {www}"),
        format!("{www} A {EXAMPLE_ANSWER}"),
    ];
    s.three_ways(
        "ExternalName to an ExternalName",
        &["ext-chain.default.svc.cluster.local", "A"],
        |what, r| chain(what, r, &through),
    );

    // glibc follows the CNAME to the address, by full name and through the
    // pod's search path.
    for name in ["search.default.svc.cluster.local", "search", "ext-chain"] {
        let hosts = s.pod().getent(&["ahosts", name]).unwrap();
        assert!(
            hosts.success && hosts.sorted() == [EXAMPLE_ANSWER.to_string()],
            "getent ahosts {name}: {hosts:?}"
        );
    }
    // A loop is SERVFAIL, promptly, and never a kernel answer.
    s.userspace_only(
        "CNAME loop",
        &["loop-a.default.svc.cluster.local", "A"],
        "SERVFAIL",
    );
}

/// --reverse-cidr zones are answered whole (RFC 1034 §4.3.2), and every
/// endpoint has a PTR (CoreDNS); nothing in them reaches the upstream.
#[test]
fn reverse_zones_are_whole_and_name_every_endpoint() {
    let s = Setup::start(&[]);
    let apex = "96.10.in-addr.arpa.";
    s.three_ways("reverse apex SOA", &[apex, "SOA"], |what, r| {
        assert_eq!(r.status, "NOERROR", "{what}:\n{}", r.raw);
        assert!(r.has_flag("aa"), "{what}:\n{}", r.raw);
        assert_eq!(r.answers.len(), 1, "{what}:\n{}", r.raw);
        assert_eq!(r.answers[0].rtype, "SOA");
        assert!(
            r.answers[0].owner.eq_ignore_ascii_case(apex),
            "{what}:\n{}",
            r.raw
        );
    });
    s.three_ways("reverse apex NS", &[apex, "NS"], |what, r| {
        assert_eq!(
            listed(&r.answers),
            [format!("{apex} NS kube-dns.kube-system.svc.cluster.local.")],
            "{what}:\n{}",
            r.raw
        );
        assert_eq!(
            listed(&r.additional),
            ["kube-dns.kube-system.svc.cluster.local. A 10.96.0.10"],
            "{what}: the name server's address\n{}",
            r.raw
        );
    });
    s.negatives(&[
        // 10.96.0.20 (web) is under 0.96.10: an empty non-terminal.
        (
            "reverse empty non-terminal",
            &["0.96.10.in-addr.arpa", "PTR"],
            "NOERROR",
            apex,
        ),
        (
            "reverse name with nothing under it",
            &["9.96.10.in-addr.arpa", "PTR"],
            "NXDOMAIN",
            apex,
        ),
        (
            "unknown address in the zone",
            &["-x", "10.96.9.9"],
            "NXDOMAIN",
            apex,
        ),
    ]);
    assert_eq!(s.upstream_queries("in-addr.arpa"), 0, "leaked upstream");

    // Endpoints of a ClusterIP Service: a PTR to their dashed name, which
    // resolves back.
    let dashed = "10-244-1-10.web.default.svc.cluster.local.";
    s.three_ways("endpoint PTR", &["-x", "10.244.1.10"], |what, r| {
        assert_eq!(r.sorted_rdata("PTR"), [dashed], "{what}:\n{}", r.raw)
    });
    s.three_ways("dashed endpoint name", &[dashed, "A"], |what, r| {
        assert_eq!(r.sorted_rdata("A"), ["10.244.1.10"], "{what}:\n{}", r.raw)
    });
}

/// §2.4.1: a headless Service without ready endpoints is NXDOMAIN, with its
/// SRV names; SRV answers list every named port at the Service name and
/// carry their targets' complete address RRsets (RFC 2181 §5); the apex NS
/// names the cluster DNS Service with its address.
#[test]
fn headless_srv_and_ns_answers() {
    let s = Setup::start(&[]);
    let zone = "cluster.local.";
    s.negatives(&[
        (
            "headless, nothing ready",
            &["sleepy.default.svc.cluster.local", "A"],
            "NXDOMAIN",
            zone,
        ),
        (
            "headless SRV, nothing ready",
            &["_http._tcp.sleepy.default.svc.cluster.local", "SRV"],
            "NXDOMAIN",
            zone,
        ),
    ]);
    let db = "db.default.svc.cluster.local.";
    s.three_ways(
        "headless SRV additional",
        &["_postgres._tcp.db.default.svc.cluster.local", "SRV"],
        |what, r| {
            assert_srv(
                what,
                r,
                &[
                    format!("0 100 5432 db-0.{db}"),
                    format!("0 100 5432 db-1.{db}"),
                ],
                &[
                    format!("db-0.{db} A 10.244.1.20"),
                    format!("db-0.{db} AAAA fd00:10:244:1::20"),
                    format!("db-1.{db} A 10.244.2.20"),
                ],
            )
        },
    );
    let web = "web.default.svc.cluster.local.";
    s.three_ways("SRV at the Service name", &[web, "SRV"], |what, r| {
        assert_srv(
            what,
            r,
            &[format!("0 100 443 {web}"), format!("0 100 80 {web}")],
            &[
                format!("{web} A 10.96.0.20"),
                format!("{web} AAAA fd00:10:96::20"),
            ],
        )
    });
    s.three_ways("apex NS", &["cluster.local", "NS"], |what, r| {
        assert_eq!(
            r.rdata("NS"),
            ["kube-dns.kube-system.svc.cluster.local."],
            "{what}:\n{}",
            r.raw
        );
        assert_eq!(
            listed(&r.additional),
            ["kube-dns.kube-system.svc.cluster.local. A 10.96.0.10"],
            "{what}:\n{}",
            r.raw
        );
    });
    let ns = s.dig(&["kube-dns.kube-system.svc.cluster.local", "A"]);
    assert_eq!(
        ns.rdata("A"),
        ["10.96.0.10"],
        "the NS name resolves:\n{}",
        ns.raw
    );
}

/// RFC 4343 §4.1: owner names keep the query's spelling, from userspace as
/// from the kernel.
#[test]
fn owner_names_keep_the_query_case() {
    let s = Setup::start(&[]);
    for name in [
        "WEB.Default.svc.cluster.local",
        "Search.DEFAULT.svc.cluster.local",
    ] {
        s.three_ways("mixed-case query", &[name, "A"], |what, r| {
            assert_eq!(r.status, "NOERROR", "{what}:\n{}", r.raw);
            assert_eq!(r.answers[0].owner, format!("{name}."), "{what}:\n{}", r.raw);
        });
    }
    s.three_ways(
        "mixed-case NXDOMAIN",
        &["Nope.Default.svc.Cluster.Local", "A"],
        |what, r| {
            assert_eq!(r.authority[0].owner, "Cluster.Local.", "{what}:\n{}", r.raw);
        },
    );
}

/// `--pod-records disabled`: every name under pod.<zone> is NXDOMAIN.
#[test]
fn pod_records_can_be_disabled() {
    let s = Setup::start(&["--pod-records", "disabled"]);
    let zone = "cluster.local.";
    s.negatives(&[
        (
            "pod name",
            &["10-244-1-10.default.pod.cluster.local", "A"],
            "NXDOMAIN",
            zone,
        ),
        (
            "pod namespace",
            &["default.pod.cluster.local", "A"],
            "NXDOMAIN",
            zone,
        ),
    ]);
    let web = s.dig(&["web.default.svc.cluster.local", "A"]);
    assert_eq!(web.rdata("A"), ["10.96.0.20"], "{}", web.raw);
}
