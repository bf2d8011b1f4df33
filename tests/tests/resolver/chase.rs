//! ExternalName Services whose CNAME leaves the cluster zone (issue 13):
//! the real cluster zone (from a manifests folder) behind the resolver,
//! the hostile upstream answering the targets. Each expectation comes from
//! RFC 1034 §4.3.2 (the answer is the chain plus the target's records),
//! RFC 6604 (the rcode is the last name's) and the issue (TTL = the
//! chain's minimum, cached like any forwarded name, loops are SERVFAIL).

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::client::{Reply, dig_at, udp_query};
use nodedns_tests::cluster::{ClusterSources, external_names};
use nodedns_tests::hostile::{Behavior, HostileUpstream};
use nodedns_tests::internals::{ClusterArgs, ClusterZone, key_for};
use nodedns_tests::lab::TempDir;
use nodedns_tests::records::name;
use nodedns_tests::repo::write_atomic;
use nodedns_tests::resolver::{TestResolver, hostile_upstream};

/// Bound on the manifests folder's first sync.
const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// The hostile upstream's TTL, below the zone's 30 s.
const UPSTREAM_TTL: u32 = 12;

const WEB: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.10}
";

/// ExternalName Services: out of the zone, back into it, to names the
/// upstream does not have or cannot resolve.
const CHAINS: &[(&str, &str)] = &[
    ("ext", "host.example"),
    ("ext-via", "ext.default.svc.cluster.local"),
    ("gone", "nxhost.example"),
    ("back", "shadow.example"),
    ("failing", "failing.example"),
];

struct Setup {
    upstream: HostileUpstream,
    resolver: TestResolver<ClusterZone>,
    _sources: ClusterSources,
    _dir: TempDir,
}

impl Setup {
    async fn start() -> Self {
        let dir = TempDir::create().unwrap();
        let manifests = format!("{WEB}---\n{}", external_names(CHAINS));
        write_atomic(&dir.path().join("services.yaml"), &manifests).unwrap();
        let args = ClusterArgs {
            manifests: Some(dir.path().to_path_buf()),
            ..ClusterArgs::default()
        };
        let sources = ClusterSources::start_synced(&args, SYNC_DEADLINE).await;
        let upstream = hostile_upstream().await;
        upstream.set_ttl(UPSTREAM_TTL);
        let zone = sources.handle.zone.clone();
        let resolver = TestResolver::start_with_zone(zone, &[upstream.addr], &[]).await;
        Self {
            upstream,
            resolver,
            _sources: sources,
            _dir: dir,
        }
    }

    async fn ask(&self, qname: &str, qtype: RecordType) -> Message {
        udp_query(self.resolver.addr, qname, qtype)
            .await
            .unwrap_or_else(|| panic!("no reply to {qname} {qtype}"))
    }

    /// `<service>.default.svc.cluster.local.` A, whose reply must have
    /// `rcode` and the answer section `want` (as [`answers`] prints it).
    async fn ask_a(&self, service: &str, rcode: ResponseCode, want: &[&str]) -> Message {
        let qname = format!("{service}.default.svc.cluster.local.");
        let m = self.ask(&qname, RecordType::A).await;
        assert_eq!(m.metadata.response_code, rcode, "{qname}: {m:?}");
        assert_eq!(answers(&m), want, "{qname}");
        m
    }
}

/// The answer section as `owner TYPE data`.
fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[tokio::test]
async fn external_targets_are_forwarded_cached_and_promoted() {
    let s = Setup::start().await;
    let chain = [
        "ext.default.svc.cluster.local. CNAME host.example.",
        "host.example. A 192.0.2.1",
    ];
    let m = s.ask_a("ext", ResponseCode::NoError, &chain).await;
    assert!(m.metadata.authoritative, "AA: the query name is ours");
    assert!(
        m.answers.iter().all(|r| r.ttl == UPSTREAM_TTL),
        "every TTL the chain's minimum: {m:?}"
    );
    // Cached like any forwarded name: the upstream is asked once.
    let asked = s.upstream.queries();
    let again = s.ask("ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&again), answers(&m));
    assert_eq!(
        s.upstream.queries(),
        asked,
        "the second answer came from the cache"
    );
    // An in-zone alias of it: the zone's chain first, then the same target.
    let via = s
        .ask("ext-via.default.svc.cluster.local.", RecordType::A)
        .await;
    assert_eq!(
        answers(&via),
        [
            "ext-via.default.svc.cluster.local. CNAME ext.default.svc.cluster.local.",
            "ext.default.svc.cluster.local. CNAME host.example.",
            "host.example. A 192.0.2.1",
        ]
    );
    // Promoted at once, authoritative, its TTL the chain's minimum.
    let key = key_for(&name("ext.default.svc.cluster.local."), RecordType::A).unwrap();
    let entry = s
        .resolver
        .sink
        .get(&key)
        .expect("promoted to the kernel map");
    assert_eq!(
        entry.flags & dns_common::ENTRY_FLAG_AUTHORITATIVE,
        dns_common::ENTRY_FLAG_AUTHORITATIVE
    );
    assert!(entry.max_ttl <= UPSTREAM_TTL, "max_ttl {}", entry.max_ttl);
    s.resolver
        .assert_counted("nodedns_queries_total", &[("path", "chased")])
        .await;
}

#[tokio::test]
async fn the_rcode_is_the_last_names_and_failures_are_servfail() {
    let s = Setup::start().await;
    // RFC 6604: NXDOMAIN for the target, with the CNAME that led there.
    let chain = ["gone.default.svc.cluster.local. CNAME nxhost.example."];
    let m = s.ask_a("gone", ResponseCode::NXDomain, &chain).await;
    assert!(
        m.authorities
            .iter()
            .any(|r| matches!(r.data, RData::SOA(_))),
        "the target zone's SOA: {m:?}"
    );
    // An upstream that fails: SERVFAIL, not a CNAME alone.
    s.upstream.set(Behavior::ServFail);
    s.ask_a("failing", ResponseCode::ServFail, &[]).await;
}

/// A target whose upstream chain leads back into the cluster zone: the
/// upstream's record for the cluster name is dropped (it never shadows the
/// zone) and the zone answers that part.
#[tokio::test]
async fn a_chain_back_into_the_zone_is_finished_by_the_zone() {
    let s = Setup::start().await;
    let chain = [
        "back.default.svc.cluster.local. CNAME shadow.example.",
        "shadow.example. CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. A 10.96.0.10",
    ];
    s.ask_a("back", ResponseCode::NoError, &chain).await;
}

/// RFC 4343 §4.1: the owner names keep the query's spelling (real `dig`:
/// the in-process client's IDNA parsing would lower-case the question).
#[tokio::test]
async fn owners_keep_the_query_names_case() {
    let s = Setup::start().await;
    let owners = |r: &Reply| -> Vec<String> { r.answers.iter().map(|a| a.owner.clone()).collect() };
    let r = dig_at(s.resolver.addr, "EXT.Default.svc.cluster.local", "A", &[]).await;
    assert_eq!(
        owners(&r),
        ["EXT.Default.svc.cluster.local.", "host.example."],
        "{}",
        r.raw
    );
    let r = dig_at(
        s.resolver.addr,
        "WEB.Default.svc.cluster.local",
        "A",
        &["+tcp"],
    )
    .await;
    assert_eq!(owners(&r), ["WEB.Default.svc.cluster.local."], "{}", r.raw);
    // The SOA's owner too, for the labels it shares with the query name
    // (what the kernel's compressed answers show).
    let r = dig_at(s.resolver.addr, "Nope.Default.svc.Cluster.Local", "A", &[]).await;
    assert_eq!(r.status, "NXDOMAIN");
    assert_eq!(r.authority[0].owner, "Cluster.Local.", "{}", r.raw);
}
