//! Table-driven tests for every row of the Kubernetes DNS schema, with
//! dual-stack and the NXDOMAIN/NODATA edge cases.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::hosts::HostsTable;
use super::model::{ObjectKey, ServiceInfo, SliceInfo};
use super::snapshot::{EndpointRecords, PodRecords, ZoneConfig};
use super::store::{Change, ClusterZone, SyncSource};
use crate::zone::{Zone, ZoneLookup};

fn svc(v: serde_json::Value) -> Arc<ServiceInfo> {
    Arc::new(ServiceInfo::from_service(&serde_json::from_value::<Service>(v).unwrap()).unwrap())
}

fn slice(v: serde_json::Value) -> Arc<SliceInfo> {
    Arc::new(SliceInfo::from_slice(&serde_json::from_value::<EndpointSlice>(v).unwrap()).unwrap())
}

fn fixture() -> Vec<Change> {
    vec![
        Change::UpsertService(svc(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 8080}]}
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "v4only", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.11"}
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "db-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.6"], "hostname": "db-1", "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["10.244.1.7"]}
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "db-v6", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00:244::5"], "hostname": "db-0", "conditions": {"ready": true}}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "empty", "namespace": "default"},
            "spec": {"clusterIP": "None"}
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "Example.COM"}
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "pub", "namespace": "default"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "pub-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "pub"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.2.1"], "hostname": "p-0", "conditions": {"ready": false}}]
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "api", "namespace": "other"},
            "spec": {"clusterIP": "10.96.5.5", "ports": [{"name": "https", "port": 443}]}
        }))),
    ]
}

/// What the issue-13 rows add: the cluster DNS Service, endpoints of a
/// ClusterIP Service, headless Services without ready endpoints, and
/// ExternalName chains (in the zone, leaving it, looping, too long).
fn conformance_fixture() -> Vec<Change> {
    let external = |name: &str, target: &str| {
        Change::UpsertService(svc(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": target}
        })))
    };
    let mut changes = vec![
        Change::UpsertService(svc(json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.53", "clusterIPs": ["10.96.0.53", "fd00:96::53"]}
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.3.1"], "conditions": {"ready": true}},
                {"addresses": ["10.244.3.2"], "conditions": {"ready": false}}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }))),
        Change::UpsertService(svc(json!({
            "metadata": {"name": "sleepy", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "sleepy-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "sleepy"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.4.1"], "hostname": "s-0", "conditions": {"ready": false}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }))),
        // Headless, port 80 in the Service reaching 8080 on the pods.
        Change::UpsertService(svc(json!({
            "metadata": {"name": "hl", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [
                {"name": "web", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9000}]}
        }))),
        Change::UpsertSlice(slice(json!({
            "metadata": {"name": "hl-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "hl"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.5.1"], "hostname": "h-0"}],
            "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}, {"name": "extra", "port": 7000, "protocol": "TCP"}]
        }))),
        external("alias", "web.default.svc.cluster.local"),
        external("alias2", "alias.default.svc.cluster.local"),
        external("to-missing", "nope.default.svc.cluster.local"),
        external("loop-a", "loop-b.default.svc.cluster.local"),
        external("loop-b", "loop-a.default.svc.cluster.local"),
        external("self-loop", "self-loop.default.svc.cluster.local"),
        external("ext-via", "ext.default.svc.cluster.local"),
        external("to-ptr", "10.0.96.10.in-addr.arpa"),
    ];
    // long-0 -> long-1 -> ... -> long-9 -> web: ten CNAMEs from long-0.
    for i in 0..10 {
        let target = match i {
            9 => "web.default.svc.cluster.local".to_string(),
            _ => format!("long-{}.default.svc.cluster.local", i + 1),
        };
        changes.push(external(&format!("long-{i}"), &target));
    }
    changes
}

/// `cluster.local`, TTL 30, with reverse zones for `cidrs`.
pub(super) fn cluster_local(cidrs: &[&str]) -> ZoneConfig {
    let cidrs = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    ZoneConfig::new("cluster.local", 30, cidrs).unwrap()
}

fn config() -> ZoneConfig {
    let mut cfg = cluster_local(&["10.96.0.0/12", "10.244.0.0/16", "fd00:244::/64"]);
    cfg.ns_addresses = vec!["169.254.20.10".parse().unwrap()];
    cfg
}

fn ready_zone() -> ClusterZone {
    zone_with(|_| {})
}

/// The fixture in a zone whose settings `tune` changes first.
fn zone_with(tune: impl FnOnce(&mut ZoneConfig)) -> ClusterZone {
    let mut cfg = config();
    tune(&mut cfg);
    let zone = ClusterZone::new(cfg, &[]);
    zone.apply(fixture());
    zone.apply(conformance_fixture());
    zone
}

fn q(zone: &ClusterZone, name: &str, qtype: RecordType) -> ZoneLookup {
    zone.lookup(&LowerName::from(Name::from_ascii(name).unwrap()), qtype)
}

/// [`summary`] of the zone's answer to `name` `qtype`.
fn ask(zone: &ClusterZone, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>) {
    summary(q(zone, name, qtype))
}

/// (rcode, sorted rdata strings); negative answers must carry the SOA.
fn summary(result: ZoneLookup) -> (ResponseCode, Vec<String>) {
    let ZoneLookup::Answer(a) = result else {
        panic!("expected an answer, got {result:?}");
    };
    if a.rcode == ResponseCode::ServFail {
        assert_eq!(a.record_count(), 0, "SERVFAIL with records: {a:?}");
    } else if a.answers.is_empty() || a.rcode == ResponseCode::NXDomain {
        assert!(
            a.authority.iter().any(|r| matches!(&r.data, RData::SOA(_))),
            "negative answer without SOA: {a:?}"
        );
    }
    let mut data: Vec<String> = a
        .answers
        .iter()
        .map(|r| match &r.data {
            // The serial moves with every change.
            RData::SOA(soa) => soa
                .to_string()
                .replacen(&soa.serial.to_string(), "SERIAL", 1),
            other => other.to_string(),
        })
        .collect();
    data.sort();
    (a.rcode, data)
}

const NX: ResponseCode = ResponseCode::NXDomain;
const OK: ResponseCode = ResponseCode::NoError;
const FAIL: ResponseCode = ResponseCode::ServFail;

/// Checks `rows` of (name, type, rcode, sorted rdata) against `zone`.
#[track_caller]
fn check_rows(zone: &ClusterZone, rows: Vec<(String, RecordType, ResponseCode, Vec<&str>)>) {
    for (name, qtype, rcode, want) in rows {
        let got = ask(zone, &name, qtype);
        assert_eq!(
            got,
            (rcode, want.iter().map(|s| s.to_string()).collect()),
            "{name} {qtype}"
        );
    }
}

#[test]
fn schema_table() {
    use RecordType::*;
    let zone = ready_zone();
    let z = "svc.cluster.local.";
    #[rustfmt::skip]
    let rows: Vec<(String, RecordType, ResponseCode, Vec<&str>)> = vec![
        // ClusterIP, dual-stack, case-insensitive
        (format!("web.default.{z}"), A, OK, vec!["10.96.0.10"]),
        (format!("WEB.Default.{z}"), AAAA, OK, vec!["fd00:96::10"]),
        (format!("v4only.default.{z}"), AAAA, OK, vec![]),
        (format!("v4only.default.{z}"), TXT, OK, vec![]),
        (format!("missing.default.{z}"), A, NX, vec![]),
        (format!("api.other.{z}"), A, OK, vec!["10.96.5.5"]),
        // empty non-terminals
        (format!("default.{z}"), A, OK, vec![]),
        (format!("nosuchns.{z}"), A, NX, vec![]),
        ("svc.cluster.local.".into(), A, OK, vec![]),
        ("pod.cluster.local.".into(), A, OK, vec![]),
        ("default.pod.cluster.local.".into(), A, OK, vec![]),
        ("nothing.cluster.local.".into(), A, NX, vec![]),
        // apex
        ("cluster.local.".into(), A, OK, vec![]),
        ("cluster.local.".into(), NS, OK, vec!["kube-dns.kube-system.svc.cluster.local."]),
        // headless: ready endpoints of every slice; not-ready left out
        (format!("db.default.{z}"), A, OK, vec!["10.244.1.5", "10.244.1.7"]),
        (format!("db.default.{z}"), AAAA, OK, vec!["fd00:244::5"]),
        (format!("empty.default.{z}"), A, NX, vec![]),
        (format!("pub.default.{z}"), A, OK, vec!["10.244.2.1"]),
        // endpoint hostnames (and the dashed pseudo hostname)
        (format!("db-0.db.default.{z}"), A, OK, vec!["10.244.1.5"]),
        (format!("db-0.db.default.{z}"), AAAA, OK, vec!["fd00:244::5"]),
        (format!("db-1.db.default.{z}"), A, NX, vec![]),
        (format!("10-244-1-7.db.default.{z}"), A, OK, vec!["10.244.1.7"]),
        (format!("10-244-1-7.db.default.{z}"), AAAA, OK, vec![]),
        (format!("p-0.pub.default.{z}"), A, OK, vec!["10.244.2.1"]),
        (format!("db-0.web.default.{z}"), A, NX, vec![]),
        // SRV for named ports
        (format!("_http._tcp.web.default.{z}"), SRV, OK, vec!["0 100 80 web.default.svc.cluster.local."]),
        (format!("_http._tcp.web.default.{z}"), A, OK, vec![]),
        (format!("_tcp.web.default.{z}"), A, OK, vec![]),
        (format!("_udp.web.default.{z}"), A, NX, vec![]),
        (format!("_http._udp.web.default.{z}"), SRV, NX, vec![]),
        (format!("_pg._tcp.db.default.{z}"), SRV, OK, vec![
            "0 100 5432 10-244-1-7.db.default.svc.cluster.local.",
            "0 100 5432 db-0.db.default.svc.cluster.local.",
        ]),
        (format!("_https._tcp.api.other.{z}"), SRV, OK, vec!["0 100 443 api.other.svc.cluster.local."]),
        // ExternalName, asked for its CNAME
        (format!("ext.default.{z}"), CNAME, OK, vec!["example.com."]),
        // pods
        ("10-244-1-5.default.pod.cluster.local.".into(), A, OK, vec!["10.244.1.5"]),
        ("10-244-1-5.default.pod.cluster.local.".into(), AAAA, OK, vec![]),
        ("fd00-1--5.x.pod.cluster.local.".into(), AAAA, OK, vec!["fd00:1::5"]),
        ("bad-ip.default.pod.cluster.local.".into(), A, NX, vec![]),
        // schema version
        ("dns-version.cluster.local.".into(), TXT, OK, vec!["1.1.0"]),
        ("dns-version.cluster.local.".into(), A, OK, vec![]),
        // reverse
        ("10.0.96.10.in-addr.arpa.".into(), PTR, OK, vec!["web.default.svc.cluster.local."]),
        ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.".into(), PTR, OK,
            vec!["web.default.svc.cluster.local."]),
        ("5.1.244.10.in-addr.arpa.".into(), PTR, OK, vec!["db-0.db.default.svc.cluster.local."]),
        ("7.1.244.10.in-addr.arpa.".into(), PTR, OK, vec!["10-244-1-7.db.default.svc.cluster.local."]),
        ("6.1.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("9.9.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("10.0.96.10.in-addr.arpa.".into(), A, OK, vec![]),
    ];
    check_rows(&zone, rows);
}

#[test]
fn outside_the_zone_is_not_ours() {
    let zone = ready_zone();
    assert_eq!(q(&zone, "example.com.", RecordType::A), ZoneLookup::NotOurs);
    assert_eq!(
        q(&zone, "cluster.local.example.com.", RecordType::A),
        ZoneLookup::NotOurs
    );
    assert_eq!(
        q(&zone, "1.1.168.192.in-addr.arpa.", RecordType::PTR),
        ZoneLookup::NotOurs
    );
    // Above the zones of 10.96.0.0/12 (96.10 .. 111.10.in-addr.arpa.).
    for name in [
        "10.in-addr.arpa.",
        "1.2.112.10.in-addr.arpa.",
        "in-addr.arpa.",
    ] {
        assert_eq!(
            q(&zone, name, RecordType::SOA),
            ZoneLookup::NotOurs,
            "{name}"
        );
    }
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    let zone = ready_zone();
    let ZoneLookup::Answer(a) = q(&zone, "missing.default.svc.cluster.local.", RecordType::A)
    else {
        panic!()
    };
    let soa = &a.authority[0];
    assert_eq!(soa.name.to_string(), "cluster.local.");
    assert_eq!(soa.ttl, 30);
    let RData::SOA(data) = &soa.data else {
        panic!()
    };
    assert_eq!(data.mname.to_string(), "ns.dns.cluster.local.");
    assert_eq!(data.rname.to_string(), "hostmaster.cluster.local.");
    assert_eq!(data.minimum, 30);
    let ZoneLookup::Answer(a) = q(&zone, "cluster.local.", RecordType::SOA) else {
        panic!()
    };
    assert_eq!(a.answers.len(), 1);
    // Reverse NXDOMAIN: the SOA of the enclosing reverse zone.
    let ZoneLookup::Answer(a) = q(&zone, "9.9.96.10.in-addr.arpa.", RecordType::PTR) else {
        panic!()
    };
    assert_eq!(a.authority[0].name.to_string(), "96.10.in-addr.arpa.");
}

#[test]
fn srv_answers_carry_target_addresses() {
    let zone = ready_zone();
    let ZoneLookup::Answer(a) = q(
        &zone,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    ) else {
        panic!()
    };
    let mut glue: Vec<String> = a
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            "10-244-1-7.db.default.svc.cluster.local. 10.244.1.7",
            "db-0.db.default.svc.cluster.local. 10.244.1.5",
            "db-0.db.default.svc.cluster.local. fd00:244::5",
        ]
    );
}

#[test]
fn before_the_first_sync_cluster_names_are_not_ready() {
    let zone = ClusterZone::new(
        config(),
        &[SyncSource::Services, SyncSource::EndpointSlices],
    );
    zone.apply(fixture());
    assert!(!zone.is_ready());
    assert_eq!(
        q(&zone, "web.default.svc.cluster.local.", RecordType::A),
        ZoneLookup::NotReady
    );
    assert_eq!(
        q(&zone, "9.9.96.10.in-addr.arpa.", RecordType::PTR),
        ZoneLookup::NotReady
    );
    assert_eq!(q(&zone, "example.com.", RecordType::A), ZoneLookup::NotOurs);
    zone.mark_synced(SyncSource::Services);
    assert!(!zone.is_ready());
    zone.mark_synced(SyncSource::EndpointSlices);
    assert!(zone.is_ready());
    assert_eq!(
        ask(&zone, "web.default.svc.cluster.local.", RecordType::A).1,
        ["10.96.0.10"]
    );
}

#[test]
fn changes_update_names_reverse_and_namespaces() {
    let zone = ready_zone();
    let mut changes = zone.changes();
    zone.apply([Change::DeleteService(ObjectKey::new("default", "web"))]);
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    assert_eq!(
        ask(&zone, "web.default.svc.cluster.local.", RecordType::A).0,
        NX
    );
    assert_eq!(
        ask(&zone, "10.0.96.10.in-addr.arpa.", RecordType::PTR).0,
        NX
    );
    zone.apply([Change::DeleteService(ObjectKey::new("other", "api"))]);
    assert_eq!(ask(&zone, "other.svc.cluster.local.", RecordType::A).0, NX);
    // An endpoint turning ready appears; its slice deleted, it goes away.
    zone.apply([Change::UpsertSlice(slice(json!({
        "metadata": {"name": "db-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.6"], "hostname": "db-1"}]
    })))]);
    assert_eq!(
        ask(&zone, "db-1.db.default.svc.cluster.local.", RecordType::A).1,
        ["10.244.1.6"]
    );
    assert_eq!(
        ask(&zone, "6.1.244.10.in-addr.arpa.", RecordType::PTR).1,
        ["db-1.db.default.svc.cluster.local."]
    );
    assert_eq!(
        ask(&zone, "5.1.244.10.in-addr.arpa.", RecordType::PTR).0,
        NX
    );
    zone.apply([Change::DeleteSlice(ObjectKey::new("default", "db-abc"))]);
    assert_eq!(
        ask(&zone, "db-1.db.default.svc.cluster.local.", RecordType::A).0,
        NX
    );
    assert_eq!(
        ask(&zone, "db.default.svc.cluster.local.", RecordType::AAAA).1,
        ["fd00:244::5"]
    );
    // A no-op batch publishes nothing.
    zone.apply([Change::DeleteSlice(ObjectKey::new("default", "nope"))]);
    assert!(
        !changes.has_changed().unwrap() || {
            changes.mark_unchanged();
            true
        }
    );
}

#[test]
fn a_relist_rebuilds_only_what_changed_and_never_empties() {
    let zone = ready_zone();
    let before = zone.snapshot();
    let services: Vec<Arc<ServiceInfo>> = fixture()
        .into_iter()
        .filter_map(|c| match c {
            Change::UpsertService(s) if &*s.key.name != "v4only" => Some(s),
            _ => None,
        })
        .collect();
    zone.apply([Change::ReplaceServices(services)]);
    let after = zone.snapshot();
    let web = ObjectKey::new("default", "web");
    assert!(Arc::ptr_eq(
        before.services.get(&web).unwrap(),
        after.services.get(&web).unwrap()
    ));
    assert!(
        after
            .services
            .get(&ObjectKey::new("default", "v4only"))
            .is_none()
    );
    assert_eq!(after.generation, before.generation + 1);
    // The old snapshot is untouched (readers holding it still see it all).
    assert!(
        before
            .services
            .get(&ObjectKey::new("default", "v4only"))
            .is_some()
    );
}

#[test]
fn custom_hosts_are_exact_and_authoritative() {
    let zone = ready_zone();
    zone.set_hosts(
        HostsTable::parse("192.168.1.5 nas.lab nas-alias.lab # comment\nfd00::5 nas.lab\n")
            .unwrap(),
    );
    assert_eq!(ask(&zone, "NAS.lab.", RecordType::A).1, ["192.168.1.5"]);
    assert_eq!(ask(&zone, "nas.lab.", RecordType::AAAA).1, ["fd00::5"]);
    assert_eq!(
        ask(&zone, "nas-alias.lab.", RecordType::A).1,
        ["192.168.1.5"]
    );
    assert_eq!(
        ask(&zone, "5.1.168.192.in-addr.arpa.", RecordType::PTR).1,
        ["nas.lab."]
    );
    assert_eq!(q(&zone, "other.lab.", RecordType::A), ZoneLookup::NotOurs);
    assert!(HostsTable::parse("nonsense nas").is_err());
    assert!(HostsTable::parse("10.0.0.1").is_err());
}

#[test]
fn custom_config_file_format() {
    use super::custom::CustomConfig;
    let text = r#"
hosts: |
  192.168.10.5 nas.lab.example
stubDomains: |
  {"corp.example": ["10.0.0.53", "10.0.0.54:5353"]}
upstreamNameservers: ["1.1.1.1", "[2606:4700::1111]:53"]
"#;
    let config = CustomConfig::parse_file(text).unwrap();
    assert_eq!(config.hosts.len(), 1);
    assert_eq!(config.policy.stub_domains.len(), 1);
    assert_eq!(config.policy.stub_domains[0].0.to_string(), "corp.example.");
    assert_eq!(
        config.policy.stub_domains[0].1[1].to_string(),
        "10.0.0.54:5353"
    );
    assert_eq!(config.policy.upstreams[0].to_string(), "1.1.1.1:53");
    assert!(CustomConfig::parse_file("stubDomains: '{bad'").is_err());
    assert!(CustomConfig::parse_file("typo: x").is_err());
    assert_eq!(
        CustomConfig::parse_file("").unwrap(),
        CustomConfig::default()
    );
}

#[test]
fn manifests_parse_lists_documents_and_report_lines() {
    use super::manifests::parse_file;
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: x}
spec: {clusterIP: 10.96.1.1}
--- # a comment after the separator
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: b}
  spec: {clusterIP: None}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: b-1, labels: {kubernetes.io/service-name: b}}
  addressType: IPv4
  endpoints: [{addresses: [10.244.0.9]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
"#;
    let objects = parse_file(std::path::Path::new("demo.yaml"), text).unwrap();
    assert_eq!(objects.services.len(), 2);
    assert_eq!(objects.services[1].key, ObjectKey::new("default", "b"));
    assert_eq!(objects.slices.len(), 1);
    let bad =
        "kind: Service\nmetadata: {name: a}\n---\nkind: Service\nmetadata:\n  name: [unclosed\n";
    let err = parse_file(std::path::Path::new("bad.yaml"), bad).unwrap_err();
    assert_eq!(err.path, "bad.yaml");
    assert!((4..=7).contains(&err.line), "{err}");
    let bad_ip = "kind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.1.300}\n";
    let err = parse_file(std::path::Path::new("ip.yaml"), bad_ip).unwrap_err();
    assert!(err.reason.contains("10.96.1.300"), "{err}");
}

#[test]
fn manifests_parse_a_list_beyond_the_default_yaml_budget() {
    use std::fmt::Write;
    // About 17 YAML nodes per item: 20k items is over serde-saphyr's
    // default limit of 250k nodes per document.
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..20_000 {
        let _ = writeln!(
            text,
            "- {{apiVersion: v1, kind: Service, metadata: {{name: s{i}, namespace: x}}, spec: {{clusterIP: None}}}}"
        );
    }
    let objects = super::manifests::parse_file(std::path::Path::new("big.yaml"), &text).unwrap();
    assert_eq!(objects.services.len(), 20_000);
}

#[test]
fn metrics_are_registered_and_move() {
    let zone = ready_zone();
    let mut registry = crate::metrics::new_registry();
    zone.metrics().register(&mut registry);
    zone.metrics().error("services");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for want in [
        "nodedns_cluster_services 28",
        "nodedns_cluster_endpointslices 6",
        "nodedns_cluster_endpoints 9",
        "nodedns_cluster_ready 1",
        "nodedns_cluster_source_errors_total{source=\"services\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    assert!(zone.approx_bytes() > 0);
}

/// The zone's SOA as [`summary`] prints it.
const SOA_DATA: &str = "ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 30";

/// The reverse name of the first `labels` nibbles of `ip`.
fn rev6(ip: &str, labels: usize) -> String {
    let ip: std::net::Ipv6Addr = ip.parse().unwrap();
    let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    let mut nibbles: Vec<String> = hex[..labels].chars().map(String::from).collect();
    nibbles.reverse();
    format!("{}.ip6.arpa.", nibbles.join("."))
}

/// Each row cites the rule it checks: the schema (`§` = Kubernetes DNS
/// specification 1.1.0), an RFC, or the CoreDNS behaviour issue 13 asks for.
#[test]
fn conformance_table() {
    use RecordType::*;
    let zone = ready_zone();
    let z = "svc.cluster.local.";
    #[rustfmt::skip]
    let rows: Vec<(String, RecordType, ResponseCode, Vec<&str>)> = vec![
        // §2.4.1: a headless Service without ready endpoints is NXDOMAIN,
        // and so is every name under it (RFC 8020), SRV names included.
        (format!("sleepy.default.{z}"), A, NX, vec![]),
        (format!("sleepy.default.{z}"), SRV, NX, vec![]),
        (format!("_http._tcp.sleepy.default.{z}"), SRV, NX, vec![]),
        (format!("_tcp.sleepy.default.{z}"), A, NX, vec![]),
        (format!("s-0.sleepy.default.{z}"), A, NX, vec![]),
        ("1.4.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        // SRV at the Service name: every named port (CoreDNS).
        (format!("web.default.{z}"), SRV, OK, vec!["0 100 80 web.default.svc.cluster.local."]),
        (format!("db.default.{z}"), SRV, OK, vec![
            "0 100 5432 10-244-1-7.db.default.svc.cluster.local.",
            "0 100 5432 db-0.db.default.svc.cluster.local.",
        ]),
        (format!("v4only.default.{z}"), SRV, OK, vec![]),
        // §2.4.2: headless SRV names are the Service's named ports; the
        // number is where the endpoints listen (the slice's port).
        (format!("_web._tcp.hl.default.{z}"), SRV, OK, vec!["0 100 8080 h-0.hl.default.svc.cluster.local."]),
        (format!("_admin._tcp.hl.default.{z}"), SRV, OK, vec!["0 100 9000 h-0.hl.default.svc.cluster.local."]),
        (format!("_extra._tcp.hl.default.{z}"), SRV, NX, vec![]),
        (format!("hl.default.{z}"), SRV, OK, vec![
            "0 100 8080 h-0.hl.default.svc.cluster.local.",
            "0 100 9000 h-0.hl.default.svc.cluster.local.",
        ]),
        // Endpoints of a ClusterIP Service: dashed names and PTRs (CoreDNS).
        (format!("10-244-3-1.web.default.{z}"), A, OK, vec!["10.244.3.1"]),
        (format!("10-244-3-1.web.default.{z}"), AAAA, OK, vec![]),
        (format!("10-244-3-2.web.default.{z}"), A, NX, vec![]),
        (format!("10-244-03-1.web.default.{z}"), A, NX, vec![]),
        ("1.3.244.10.in-addr.arpa.".into(), PTR, OK, vec!["10-244-3-1.web.default.svc.cluster.local."]),
        ("2.3.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        // Headless endpoints keep their hostname PTR (§2.4.3) and IPv6 ones
        // get theirs too.
        ("5.1.244.10.in-addr.arpa.".into(), PTR, OK, vec!["db-0.db.default.svc.cluster.local."]),
        ("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.0.d.f.ip6.arpa.".into(), PTR, OK,
            vec!["db-0.db.default.svc.cluster.local."]),
        // Reverse zones of --reverse-cidr, whole (RFC 1034 §4.3.2: the
        // authority answers every name in its zone).
        ("96.10.in-addr.arpa.".into(), SOA, OK, vec![SOA_DATA]),
        ("96.10.in-addr.arpa.".into(), NS, OK, vec!["kube-dns.kube-system.svc.cluster.local."]),
        ("97.10.in-addr.arpa.".into(), SOA, OK, vec![SOA_DATA]),
        ("96.10.in-addr.arpa.".into(), A, OK, vec![]),
        ("0.96.10.in-addr.arpa.".into(), PTR, OK, vec![]),
        ("5.96.10.in-addr.arpa.".into(), A, OK, vec![]),
        ("9.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("x.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("00.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("1.10.0.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("3.244.10.in-addr.arpa.".into(), PTR, OK, vec![]),
        ("4.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        (rev6("fd00:244::5", 16), SOA, OK, vec![SOA_DATA]),
        (rev6("fd00:244::5", 24), PTR, OK, vec![]),
        (rev6("fd00:244::5", 31), PTR, OK, vec![]),
        (rev6("fd00:244::15", 31), PTR, NX, vec![]),
        (rev6("fd00:244::6", 32), PTR, NX, vec![]),
        // The apex NS names the cluster DNS Service (CoreDNS), whose name
        // resolves; ns.dns.<zone> answers the same addresses.
        ("cluster.local.".into(), NS, OK, vec!["kube-dns.kube-system.svc.cluster.local."]),
        ("ns.dns.cluster.local.".into(), A, OK, vec!["10.96.0.53"]),
        ("ns.dns.cluster.local.".into(), AAAA, OK, vec!["fd00:96::53"]),
        ("other.dns.cluster.local.".into(), A, NX, vec![]),
        // CNAME chains inside the zone (RFC 1034 §4.3.2), the rcode of the
        // last name (RFC 6604), loops and length bounded (SERVFAIL).
        (format!("alias.default.{z}"), A, OK, vec!["10.96.0.10", "web.default.svc.cluster.local."]),
        (format!("alias.default.{z}"), AAAA, OK, vec!["fd00:96::10", "web.default.svc.cluster.local."]),
        (format!("alias.default.{z}"), CNAME, OK, vec!["web.default.svc.cluster.local."]),
        (format!("alias.default.{z}"), TXT, OK, vec!["web.default.svc.cluster.local."]),
        (format!("alias.default.{z}"), SRV, OK, vec!["0 100 80 web.default.svc.cluster.local.", "web.default.svc.cluster.local."]),
        (format!("alias2.default.{z}"), A, OK, vec!["10.96.0.10", "alias.default.svc.cluster.local.", "web.default.svc.cluster.local."]),
        (format!("to-missing.default.{z}"), A, NX, vec!["nope.default.svc.cluster.local."]),
        (format!("to-ptr.default.{z}"), PTR, OK, vec!["10.0.96.10.in-addr.arpa.", "web.default.svc.cluster.local."]),
        (format!("loop-a.default.{z}"), A, FAIL, vec![]),
        (format!("self-loop.default.{z}"), A, FAIL, vec![]),
        (format!("long-0.default.{z}"), A, FAIL, vec![]),
        (format!("long-1.default.{z}"), A, FAIL, vec![]),
        (format!("x.alias.default.{z}"), A, NX, vec![]),
    ];
    check_rows(&zone, rows);
    // Eight CNAMEs (long-2 .. long-9) is the longest chain followed.
    let ZoneLookup::Answer(a) = q(&zone, &format!("long-2.default.{z}"), RecordType::A) else {
        panic!()
    };
    assert_eq!(a.answers.len(), 9, "{a:?}");
}

/// RFC 1034 §3.6.2 / §4.3.2: the answer is the CNAME chain in order, each
/// CNAME owned by the previous one's target, then the target's records.
#[test]
fn cname_chains_are_in_order() {
    let zone = ready_zone();
    let ZoneLookup::Answer(a) = q(&zone, "ALIAS2.default.svc.cluster.local.", RecordType::A) else {
        panic!()
    };
    let chain: Vec<(String, String)> = a
        .answers
        .iter()
        .map(|r| (r.name.to_string(), r.data.to_string()))
        .collect();
    assert_eq!(
        chain,
        [
            (
                "alias2.default.svc.cluster.local.".into(),
                "alias.default.svc.cluster.local.".into()
            ),
            (
                "alias.default.svc.cluster.local.".into(),
                "web.default.svc.cluster.local.".into()
            ),
            ("web.default.svc.cluster.local.".into(), "10.96.0.10".into()),
        ]
    );
    // NXDOMAIN at the end of a chain: the CNAME stays, with the SOA.
    let ZoneLookup::Answer(a) = q(
        &zone,
        "to-missing.default.svc.cluster.local.",
        RecordType::A,
    ) else {
        panic!()
    };
    assert_eq!(a.answers.len(), 1);
    assert!(matches!(a.authority[0].data, RData::SOA(_)));
}

/// A chain that leaves our zones: the zone gives its part, the resolver
/// forwards the rest (tested in the resolver and end-to-end tiers).
#[test]
fn chains_leaving_the_zone_are_aliases() {
    let zone = ready_zone();
    let alias = |name: &str| match q(&zone, name, RecordType::A) {
        ZoneLookup::Alias(alias) => {
            let chain: Vec<String> = alias
                .chain
                .iter()
                .map(|r| format!("{} {}", r.name, r.data))
                .collect();
            (chain, alias.target.to_string())
        }
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        alias("ext.default.svc.cluster.local."),
        (
            vec!["ext.default.svc.cluster.local. example.com.".to_string()],
            "example.com.".to_string()
        )
    );
    assert_eq!(
        alias("ext-via.default.svc.cluster.local."),
        (
            vec![
                "ext-via.default.svc.cluster.local. ext.default.svc.cluster.local.".to_string(),
                "ext.default.svc.cluster.local. example.com.".to_string(),
            ],
            "example.com.".to_string()
        )
    );
}

/// RFC 2181 §5: additional data is a whole RRset or none. Every address
/// record an SRV or NS answer adds must equal what a query for that name
/// and type answers.
#[test]
fn additional_sections_hold_complete_rrsets() {
    use RecordType::*;
    let zone = ready_zone();
    let z = "svc.cluster.local.";
    let questions = [
        (format!("_pg._tcp.db.default.{z}"), SRV),
        (format!("db.default.{z}"), SRV),
        (format!("_http._tcp.web.default.{z}"), SRV),
        (format!("web.default.{z}"), SRV),
        ("cluster.local.".to_string(), NS),
        ("96.10.in-addr.arpa.".to_string(), NS),
    ];
    for (name, qtype) in questions {
        let ZoneLookup::Answer(a) = q(&zone, &name, qtype) else {
            panic!("{name}")
        };
        assert!(
            !a.additionals.is_empty(),
            "{name} {qtype}: no additional data"
        );
        let mut owners: Vec<(Name, RecordType)> = a
            .additionals
            .iter()
            .map(|r| (r.name.clone(), r.record_type()))
            .collect();
        owners.dedup();
        for (owner, rtype) in owners {
            let mut added: Vec<String> = a
                .additionals
                .iter()
                .filter(|r| r.name == owner && r.record_type() == rtype)
                .map(|r| r.data.to_string())
                .collect();
            added.sort();
            let (_, direct) = ask(&zone, &owner.to_string(), rtype);
            assert_eq!(added, direct, "{name} {qtype}: additional {owner} {rtype}");
        }
        // Every address RRset of every target is there (A and AAAA).
        for target in a.answers.iter().filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.clone()),
            RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        }) {
            for rtype in [A, AAAA] {
                let (_, direct) = ask(&zone, &target.to_string(), rtype);
                let added = a
                    .additionals
                    .iter()
                    .filter(|r| r.name == target && r.record_type() == rtype)
                    .count();
                assert_eq!(added, direct.len(), "{name}: {target} {rtype}");
            }
        }
    }
}

#[test]
fn pod_records_can_be_disabled() {
    use RecordType::*;
    let zone = zone_with(|cfg| cfg.pod_records = PodRecords::Disabled);
    for name in [
        "pod.cluster.local.",
        "default.pod.cluster.local.",
        "10-244-1-5.default.pod.cluster.local.",
        "fd00-1--5.x.pod.cluster.local.",
    ] {
        for qtype in [A, AAAA] {
            assert_eq!(ask(&zone, name, qtype), (NX, vec![]), "{name} {qtype}");
        }
    }
    // Services are not affected.
    assert_eq!(
        ask(&zone, "web.default.svc.cluster.local.", A).1,
        ["10.96.0.10"]
    );
}

/// `--endpoint-records headless`: only what the schema requires.
#[test]
fn endpoint_records_can_be_limited_to_the_schema() {
    use RecordType::*;
    let zone = zone_with(|cfg| cfg.endpoint_records = EndpointRecords::Headless);
    let z = "svc.cluster.local.";
    #[rustfmt::skip]
    let rows: Vec<(String, RecordType, ResponseCode, Vec<&str>)> = vec![
        (format!("10-244-3-1.web.default.{z}"), A, NX, vec![]),
        ("1.3.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("3.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("7.1.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        (format!("10-244-1-7.db.default.{z}"), A, OK, vec!["10.244.1.7"]),
        ("5.1.244.10.in-addr.arpa.".into(), PTR, OK, vec!["db-0.db.default.svc.cluster.local."]),
        ("10.0.96.10.in-addr.arpa.".into(), PTR, OK, vec!["web.default.svc.cluster.local."]),
    ];
    check_rows(&zone, rows);
}

/// Without the cluster DNS Service the NS is `ns.dns.<zone>`, which
/// answers the agent's own listen addresses (glue included).
#[test]
fn the_nameserver_falls_back_to_our_own_address() {
    let zone = ready_zone();
    zone.apply([Change::DeleteService(ObjectKey::new(
        "kube-system",
        "kube-dns",
    ))]);
    let ZoneLookup::Answer(a) = q(&zone, "cluster.local.", RecordType::NS) else {
        panic!()
    };
    assert_eq!(a.answers[0].data.to_string(), "ns.dns.cluster.local.");
    let glue: Vec<String> = a
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    assert_eq!(glue, ["ns.dns.cluster.local. 169.254.20.10"]);
    assert_eq!(
        ask(&zone, "ns.dns.cluster.local.", RecordType::A).1,
        ["169.254.20.10"]
    );
}

/// Custom hosts inside a reverse zone make the names above them exist.
#[test]
fn custom_hosts_count_in_reverse_zones() {
    use RecordType::PTR;
    let zone = ready_zone();
    let above = "9.244.10.in-addr.arpa.".to_string();
    check_rows(&zone, vec![(above.clone(), PTR, NX, vec![])]);
    zone.set_hosts(HostsTable::parse("10.244.9.9 gw.lab.example\n").unwrap());
    check_rows(
        &zone,
        vec![
            (above, PTR, OK, vec![]),
            (
                "9.9.244.10.in-addr.arpa.".into(),
                PTR,
                OK,
                vec!["gw.lab.example."],
            ),
        ],
    );
}

/// Reverse names above addresses exist exactly while an address under
/// them has a PTR (the count index follows every change).
#[test]
fn reverse_empty_non_terminals_follow_changes() {
    let zone = ready_zone();
    let ent = |name: &str| ask(&zone, name, RecordType::PTR).0;
    assert_eq!(ent("5.96.10.in-addr.arpa."), OK);
    zone.apply([Change::DeleteService(ObjectKey::new("other", "api"))]);
    assert_eq!(ent("5.96.10.in-addr.arpa."), NX);
    assert_eq!(ent("3.244.10.in-addr.arpa."), OK);
    zone.apply([Change::DeleteSlice(ObjectKey::new("default", "web-1"))]);
    assert_eq!(ent("3.244.10.in-addr.arpa."), NX);
    assert_eq!(ent("0.96.10.in-addr.arpa."), OK, "web and kube-dns remain");
    assert!(!zone.snapshot().reverse_nodes.is_empty());
}
