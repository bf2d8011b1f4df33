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
use super::snapshot::ZoneConfig;
use super::store::{Change, ClusterZone, SyncSource};
use crate::zone::{Zone, ZoneLookup};

fn svc(v: serde_json::Value) -> ServiceInfo {
    ServiceInfo::from_service(&serde_json::from_value::<Service>(v).unwrap()).unwrap()
}

fn slice(v: serde_json::Value) -> SliceInfo {
    SliceInfo::from_slice(&serde_json::from_value::<EndpointSlice>(v).unwrap()).unwrap()
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

fn config() -> ZoneConfig {
    ZoneConfig::new(
        "cluster.local",
        30,
        vec![
            "10.96.0.0/12".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        ],
    )
    .unwrap()
}

fn ready_zone() -> ClusterZone {
    let zone = ClusterZone::new(config(), &[]);
    zone.apply(fixture());
    zone
}

fn q(zone: &ClusterZone, name: &str, qtype: RecordType) -> ZoneLookup {
    zone.lookup(&LowerName::from(Name::from_ascii(name).unwrap()), qtype)
}

/// (rcode, sorted rdata strings); negative answers must carry the SOA.
fn summary(result: ZoneLookup) -> (ResponseCode, Vec<String>) {
    let ZoneLookup::Answer(a) = result else {
        panic!("expected an answer, got {result:?}");
    };
    if a.answers.is_empty() {
        assert!(
            a.authority.iter().any(|r| matches!(&r.data, RData::SOA(_))),
            "negative answer without SOA: {a:?}"
        );
    }
    let mut data: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    (a.rcode, data)
}

const NX: ResponseCode = ResponseCode::NXDomain;
const OK: ResponseCode = ResponseCode::NoError;

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
        ("cluster.local.".into(), NS, OK, vec!["ns.dns.cluster.local."]),
        // headless: ready endpoints of every slice; not-ready left out
        (format!("db.default.{z}"), A, OK, vec!["10.244.1.5", "10.244.1.7"]),
        (format!("db.default.{z}"), AAAA, OK, vec!["fd00:244::5"]),
        (format!("empty.default.{z}"), A, OK, vec![]),
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
        // ExternalName
        (format!("ext.default.{z}"), A, OK, vec!["example.com."]),
        (format!("ext.default.{z}"), AAAA, OK, vec!["example.com."]),
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
        ("7.1.244.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("9.9.96.10.in-addr.arpa.".into(), PTR, NX, vec![]),
        ("10.0.96.10.in-addr.arpa.".into(), A, OK, vec![]),
    ];
    for (name, qtype, rcode, want) in rows {
        let got = summary(q(&zone, &name, qtype));
        assert_eq!(
            got,
            (rcode, want.iter().map(|s| s.to_string()).collect()),
            "{name} {qtype}"
        );
    }
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
    assert_eq!(
        q(&zone, "96.10.in-addr.arpa.", RecordType::PTR),
        ZoneLookup::NotOurs
    );
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
    assert_eq!(a.authority[0].name.to_string(), "10.in-addr.arpa.");
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
        summary(q(&zone, "web.default.svc.cluster.local.", RecordType::A)).1,
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
        summary(q(&zone, "web.default.svc.cluster.local.", RecordType::A)).0,
        NX
    );
    assert_eq!(
        summary(q(&zone, "10.0.96.10.in-addr.arpa.", RecordType::PTR)).0,
        NX
    );
    zone.apply([Change::DeleteService(ObjectKey::new("other", "api"))]);
    assert_eq!(
        summary(q(&zone, "other.svc.cluster.local.", RecordType::A)).0,
        NX
    );
    // An endpoint turning ready appears; its slice deleted, it goes away.
    zone.apply([Change::UpsertSlice(slice(json!({
        "metadata": {"name": "db-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.6"], "hostname": "db-1"}]
    })))]);
    assert_eq!(
        summary(q(
            &zone,
            "db-1.db.default.svc.cluster.local.",
            RecordType::A
        ))
        .1,
        ["10.244.1.6"]
    );
    assert_eq!(
        summary(q(&zone, "6.1.244.10.in-addr.arpa.", RecordType::PTR)).1,
        ["db-1.db.default.svc.cluster.local."]
    );
    assert_eq!(
        summary(q(&zone, "5.1.244.10.in-addr.arpa.", RecordType::PTR)).0,
        NX
    );
    zone.apply([Change::DeleteSlice(ObjectKey::new("default", "db-abc"))]);
    assert_eq!(
        summary(q(
            &zone,
            "db-1.db.default.svc.cluster.local.",
            RecordType::A
        ))
        .0,
        NX
    );
    assert_eq!(
        summary(q(&zone, "db.default.svc.cluster.local.", RecordType::AAAA)).1,
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
    let services: Vec<ServiceInfo> = fixture()
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
    assert_eq!(
        summary(q(&zone, "NAS.lab.", RecordType::A)).1,
        ["192.168.1.5"]
    );
    assert_eq!(
        summary(q(&zone, "nas.lab.", RecordType::AAAA)).1,
        ["fd00::5"]
    );
    assert_eq!(
        summary(q(&zone, "nas-alias.lab.", RecordType::A)).1,
        ["192.168.1.5"]
    );
    assert_eq!(
        summary(q(&zone, "5.1.168.192.in-addr.arpa.", RecordType::PTR)).1,
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
        "nodedns_cluster_services 7",
        "nodedns_cluster_endpointslices 3",
        "nodedns_cluster_endpoints 5",
        "nodedns_cluster_ready 1",
        "nodedns_cluster_source_errors_total{source=\"services\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    assert!(zone.approx_bytes() > 0);
}
