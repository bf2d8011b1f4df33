//! End to end, cluster state (issue 5): the real `dns-agent` in a lab node
//! serving the demo cluster from a manifests folder and from the fake API
//! server, queried from a pod namespace with a Kubernetes `resolv.conf` by
//! `dig +search` and `kdig` over UDP and TCP; changes propagating to
//! clients, from userspace and through the kernel's map; and the API
//! server's faults (500s, dropped watches, 410 Gone, hung, down, down at
//! start) never turning existing names into NXDOMAIN.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nodedns_tests::agent::{Agent, AgentSpec, PROPAGATION_BOUND, Source};
use nodedns_tests::client::Reply;
use nodedns_tests::fakeapi::fixtures::{headless, service, slice};
use nodedns_tests::fakeapi::{NodeApi, Resource};
use nodedns_tests::lab::{Lab, Pod, measure_until, wait_for};
use nodedns_tests::repo::{copy_examples, examples_dir, write_atomic};
use nodedns_tests::upstream::DnsmasqSpec;

/// Bound on the agent reconnecting after an API server fault (it backs
/// off exponentially between attempts, up to 30 s).
const RECOVERY_BOUND: Duration = Duration::from_secs(45);
const WEB: &str = "web.default.svc.cluster.local";

/// Asks `dig args` from `pod` and asserts the rdata of type `rtype`, in
/// any order.
#[track_caller]
fn expect_rdata(pod: &Pod, args: &[&str], rtype: &str, expected: &[&str], what: &str) {
    assert_rdata(&pod.dig(args).unwrap(), rtype, expected, what);
}

/// Asserts the rdata of type `rtype` in `reply`, in any order.
#[track_caller]
fn assert_rdata(reply: &Reply, rtype: &str, expected: &[&str], what: &str) {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        reply.status, "NOERROR",
        "{what}: status {}\n{}",
        reply.status, reply.raw
    );
    assert_eq!(reply.sorted_rdata(rtype), want, "{what}:\n{}", reply.raw);
}

#[track_caller]
fn assert_negative(reply: &Reply, status: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}:\n{}", reply.raw);
    assert!(reply.answers.is_empty(), "{what}: answers\n{}", reply.raw);
    assert!(
        reply.has_soa(),
        "{what}: no SOA in AUTHORITY (RFC 2308)\n{}",
        reply.raw
    );
}

/// Every record kind of the schema, for the demo cluster in
/// `deploy/examples`, as a pod sees it.
fn check_demo_records(pod: &Pod) {
    // Short names through the pod's search path, both families, UDP and TCP.
    for name in ["web", "web.default", "web.default.svc", "WEB.Default.SVC"] {
        for transport in ["+notcp", "+tcp"] {
            let what = format!("dig +search {transport} {name}");
            expect_rdata(
                pod,
                &["+search", transport, name, "A"],
                "A",
                &["10.96.0.20"],
                &format!("{what} A"),
            );
            expect_rdata(
                pod,
                &["+search", transport, name, "AAAA"],
                "AAAA",
                &["fd00:10:96::20"],
                &format!("{what} AAAA"),
            );
        }
    }
    expect_rdata(
        pod,
        &["+search", "cart.shop", "A"],
        "A",
        &["10.96.1.20"],
        "cart.shop (another namespace)",
    );

    // SRV for named ports: ClusterIP and headless (ready endpoints only).
    expect_rdata(
        pod,
        &["+search", "_http._tcp.web", "SRV"],
        "SRV",
        &["0 100 80 web.default.svc.cluster.local."],
        "web SRV",
    );
    let srv = pod
        .dig(&["+tcp", "_postgres._tcp.db.default.svc.cluster.local", "SRV"])
        .unwrap();
    let targets: Vec<String> = srv
        .rdata("SRV")
        .iter()
        .map(|r| r.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert!(
        targets.contains(&"db-0.db.default.svc.cluster.local.".to_string())
            && targets.contains(&"db-1.db.default.svc.cluster.local.".to_string())
            && !targets.iter().any(|t| t.starts_with("db-2.")),
        "headless SRV: one per ready endpoint (db-0, db-1, not db-2):\n{}",
        srv.raw
    );

    // Headless: ready endpoints only, or all with publishNotReadyAddresses.
    expect_rdata(
        pod,
        &["+search", "db", "A"],
        "A",
        &["10.244.1.20", "10.244.2.20"],
        "headless db A",
    );
    expect_rdata(
        pod,
        &["+search", "db", "AAAA"],
        "AAAA",
        &["fd00:10:244:1::20"],
        "headless db AAAA",
    );
    expect_rdata(
        pod,
        &["workers.shop.svc.cluster.local", "A"],
        "A",
        &["10.244.1.30", "10.244.2.30"],
        "publishNotReadyAddresses",
    );
    expect_rdata(
        pod,
        &["+search", "db-0.db", "A"],
        "A",
        &["10.244.1.20"],
        "endpoint hostname db-0.db",
    );

    // Reverse: a ClusterIP (both families) and an endpoint with a hostname.
    expect_rdata(
        pod,
        &["-x", "10.96.0.20"],
        "PTR",
        &["web.default.svc.cluster.local."],
        "PTR ClusterIP",
    );
    expect_rdata(
        pod,
        &["+tcp", "-x", "fd00:10:96::20"],
        "PTR",
        &["web.default.svc.cluster.local."],
        "PTR ClusterIP v6",
    );
    expect_rdata(
        pod,
        &["-x", "10.244.1.20"],
        "PTR",
        &["db-0.db.default.svc.cluster.local."],
        "PTR endpoint hostname",
    );

    // ExternalName, pod records, schema version.
    // (Its target is chased through the upstream: e2e/conformance.rs.)
    expect_rdata(
        pod,
        &["+search", "search", "CNAME"],
        "CNAME",
        &["www.example.com."],
        "ExternalName",
    );
    expect_rdata(
        pod,
        &["10-244-1-10.default.pod.cluster.local", "A"],
        "A",
        &["10.244.1.10"],
        "pod A record",
    );
    expect_rdata(
        pod,
        &["fd00-10-244-1--20.default.pod.cluster.local", "AAAA"],
        "AAAA",
        &["fd00:10:244:1::20"],
        "pod AAAA record",
    );
    expect_rdata(
        pod,
        &["dns-version.cluster.local", "TXT"],
        "TXT",
        &["\"1.1.0\""],
        "dns-version TXT",
    );

    // NXDOMAIN vs NODATA, both with the SOA.
    let nx = pod.dig(&["nope.default.svc.cluster.local", "A"]).unwrap();
    assert_negative(&nx, "NXDOMAIN", "unknown service");
    let nodata = pod
        .dig(&["kubernetes.default.svc.cluster.local", "AAAA"])
        .unwrap();
    assert_negative(&nodata, "NOERROR", "AAAA of an IPv4-only service (NODATA)");
    let ent = pod.dig(&["default.svc.cluster.local", "A"]).unwrap();
    assert_negative(&ent, "NOERROR", "empty non-terminal (NODATA)");

    // kdig, a second client implementation.
    let k = pod
        .kdig(&["web.default.svc.cluster.local", "AAAA"])
        .unwrap();
    assert_rdata(&k, "AAAA", &["fd00:10:96::20"], "kdig AAAA");
    let k = pod
        .kdig(&["+tcp", "_grpc._tcp.cart.shop.svc.cluster.local", "SRV"])
        .unwrap();
    assert_rdata(
        &k,
        "SRV",
        &["0 100 9090 cart.shop.svc.cluster.local."],
        "kdig +tcp SRV",
    );
    let k = pod.kdig(&["-x", "10.96.1.20"]).unwrap();
    assert_rdata(&k, "PTR", &["cart.shop.svc.cluster.local."], "kdig PTR");
    let k = pod.kdig(&["nope.shop.svc.cluster.local", "A"]).unwrap();
    assert_negative(&k, "NXDOMAIN", "kdig NXDOMAIN");
}

fn a_of(pod: &Pod, name: &str) -> Reply {
    pod.dig(&[name, "A"]).unwrap()
}

/// `name` A without an EDNS cookie: a query the XDP program may answer
/// from the kernel map (dig's cookie option sends every other query up).
fn a_of_kernel(pod: &Pod, name: &str) -> Reply {
    pod.dig(&["+nocookie", name, "A"]).unwrap()
}

/// Waits until `name` answers exactly `ips` (or `NXDOMAIN` when empty),
/// both from userspace and through the kernel's map.
fn wait_answer(pod: &Pod, what: &str, start: Instant, name: &str, ips: &[&str]) -> Duration {
    wait_answer_within(pod, what, start, PROPAGATION_BOUND, name, ips)
}

/// [`wait_answer`] with another bound.
fn wait_answer_within(
    pod: &Pod,
    what: &str,
    start: Instant,
    bound: Duration,
    name: &str,
    ips: &[&str],
) -> Duration {
    let matches = |r: &Reply| {
        if ips.is_empty() {
            r.status == "NXDOMAIN"
        } else {
            r.status == "NOERROR" && r.sorted_rdata("A") == ips
        }
    };
    measure_until(
        what,
        start,
        bound,
        || (a_of(pod, name), a_of_kernel(pod, name)),
        |(user, kernel)| matches(user) && matches(kernel),
    )
    .unwrap()
}

fn fresh_service_yaml(ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: fresh, namespace: default}}\n\
         spec:\n  clusterIP: {ip}\n  clusterIPs: [{ip}]\n"
    )
}

#[test]
fn manifests_folder_serves_every_record_and_follows_edits() {
    let lab = Lab::new(1).unwrap();
    let manifests = lab.log_dir().join("manifests");
    copy_examples(&manifests);
    let _agent = AgentSpec::new(Source::Manifests(manifests.clone())).start(&lab, "dns-agent");
    let pod = lab.pod(0);
    check_demo_records(pod);

    // Edit a Service's ClusterIP in place.
    let file = manifests.join("demo-default.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = Instant::now();
    write_atomic(&file, &text.replace("10.96.0.20", "10.96.0.21")).unwrap();
    wait_answer(
        pod,
        "manifests: edited ClusterIP answered",
        start,
        WEB,
        &["10.96.0.21"],
    );
    expect_rdata(
        pod,
        &["-x", "10.96.0.21"],
        "PTR",
        &["web.default.svc.cluster.local."],
        "PTR after edit",
    );

    // Add a Service in a new file, then delete the file.
    let added = manifests.join("added.yaml");
    let start = Instant::now();
    write_atomic(&added, &fresh_service_yaml("10.96.0.99")).unwrap();
    wait_answer(
        pod,
        "manifests: added Service answered",
        start,
        "fresh.default.svc.cluster.local",
        &["10.96.0.99"],
    );
    let start = Instant::now();
    std::fs::remove_file(&added).unwrap();
    wait_answer(
        pod,
        "manifests: deleted Service NXDOMAIN",
        start,
        "fresh.default.svc.cluster.local",
        &[],
    );

    // A broken file keeps the last good state in service.
    write_atomic(&file, "apiVersion: v1\nkind: Service\nspec: [unclosed\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let a = a_of(pod, WEB);
    assert_rdata(&a, "A", &["10.96.0.21"], "after a broken manifest");
}

/// The fake API server in the node, serving the demo cluster.
fn start_api(lab: &Lab) -> NodeApi {
    let api = NodeApi::start(lab.node());
    let applied = api.apply_manifests(&examples_dir()).unwrap();
    assert!(applied >= 9, "only {applied} objects in deploy/examples");
    api
}

/// The agent on `api`'s kubeconfig, ready.
fn agent_on(lab: &Lab, api: &NodeApi) -> Agent {
    AgentSpec::new(Source::Kubeconfig(api.kubeconfig())).start(lab, "dns-agent")
}

/// A one-pod lab, the fake API server serving the demo cluster, and the
/// agent on it, ready. Bound in this order, the agent stops first.
fn api_node() -> (Lab, NodeApi, Agent) {
    let lab = Lab::new(1).unwrap();
    let api = start_api(&lab);
    let agent = agent_on(&lab, &api);
    (lab, api, agent)
}

#[test]
fn api_server_source_serves_every_record_and_follows_changes() {
    let (lab, api, _agent) = api_node();
    let pod = lab.pod(0);
    check_demo_records(pod);

    let start = Instant::now();
    api.apply(service(
        "default",
        "web",
        &["10.96.0.21", "fd00:10:96::21"],
        &[("http", 80), ("https", 443)],
    ));
    wait_answer(
        pod,
        "api: updated ClusterIP answered",
        start,
        WEB,
        &["10.96.0.21"],
    );
    expect_rdata(
        pod,
        &[WEB, "AAAA"],
        "AAAA",
        &["fd00:10:96::21"],
        "AAAA after update",
    );

    let start = Instant::now();
    api.apply(service("default", "fresh", &["10.96.0.99"], &[]));
    wait_answer(
        pod,
        "api: added Service answered",
        start,
        "fresh.default.svc.cluster.local",
        &["10.96.0.99"],
    );
    let start = Instant::now();
    assert!(api.delete(Resource::Services, "default", "fresh"));
    wait_answer(
        pod,
        "api: deleted Service NXDOMAIN",
        start,
        "fresh.default.svc.cluster.local",
        &[],
    );
}

/// Asks `name` for `period`: every answer must be `ips` (no NXDOMAIN, no
/// SERVFAIL, no gap) while the API server misbehaves.
fn assert_keeps_answering(pod: &Pod, what: &str, period: Duration, ips: &[&str]) {
    let start = Instant::now();
    let mut asked = 0;
    while start.elapsed() < period {
        let reply = a_of(pod, WEB);
        assert_rdata(&reply, "A", ips, &format!("{what} (query {asked})"));
        let reply = a_of_kernel(pod, WEB);
        assert_rdata(&reply, "A", ips, &format!("{what} (kernel query {asked})"));
        asked += 1;
    }
    assert!(asked > 0);
}

/// After a fault, the agent must come back: a change made now shows up.
fn assert_recovers(pod: &Pod, api: &NodeApi, what: &str, ip: &str) {
    let start = Instant::now();
    api.apply(service("default", "fresh", &[ip], &[]));
    measure_until(
        &format!("{what}: change after the fault answered"),
        start,
        RECOVERY_BOUND,
        || a_of_kernel(pod, "fresh.default.svc.cluster.local"),
        |r| r.rdata("A") == [ip],
    )
    .unwrap();
}

#[test]
fn api_server_faults_never_turn_names_into_nxdomain() {
    let (lab, api, _agent) = api_node();
    let pod = lab.pod(0);
    let web = ["10.96.0.20"];
    assert_keeps_answering(pod, "before any fault", Duration::from_millis(100), &web);

    // 500s on the next requests, and every watch dropped: the client's
    // resumes fail a few times.
    api.fail_next(5);
    api.drop_watches();
    assert_keeps_answering(
        pod,
        "500s and dropped watches",
        Duration::from_secs(2),
        &web,
    );
    assert_recovers(pod, &api, "500s", "10.96.0.101");

    // 410 Gone on resume: the client relists, which must swap atomically.
    api.expire();
    assert_keeps_answering(pod, "410 relist", Duration::from_secs(2), &web);
    assert_recovers(pod, &api, "410 Gone", "10.96.0.102");

    // Hung: the resumed watches get no answer at all until it is released.
    api.set_hang(true);
    api.drop_watches();
    assert_keeps_answering(pod, "API server hung", Duration::from_secs(2), &web);
    api.set_hang(false);
    assert_recovers(pod, &api, "API server released", "10.96.0.104");

    // Down for a while (503 to everything, watches ended).
    api.set_down(true);
    assert_keeps_answering(pod, "API server down", Duration::from_secs(3), &web);
    api.set_down(false);
    assert_recovers(pod, &api, "API server back up", "10.96.0.103");
    let requests = api.requests();
    println!("e2e: the fake API server saw {} requests", requests.len());
}

#[test]
fn api_server_down_at_start_gives_servfail_until_first_sync() {
    let lab = Lab::new(1).unwrap();
    let api = start_api(&lab);
    api.set_down(true);
    let agent =
        AgentSpec::new(Source::Kubeconfig(api.kubeconfig())).start_serving(&lab, "dns-agent");
    let pod = lab.pod(0);
    // Existing and unknown cluster names alike: SERVFAIL, never NXDOMAIN
    // (a negative answer would be cached by clients).
    // Asked twice each way: a SERVFAIL must not be promoted to the kernel.
    for name in [WEB, "nope.default.svc.cluster.local"] {
        for reply in [
            a_of(pod, name),
            a_of_kernel(pod, name),
            a_of_kernel(pod, name),
        ] {
            assert_eq!(
                reply.status, "SERVFAIL",
                "{name} before the first sync:\n{}",
                reply.raw
            );
        }
    }
    let via_search = pod.dig(&["+search", "web", "A"]).unwrap();
    assert_eq!(via_search.status, "SERVFAIL", "{}", via_search.raw);
    let (status, body) = agent
        .health(lab.node(), "/readyz")
        .expect("/readyz answers");
    assert_ne!(status, 200, "/readyz before the first sync: {body}");

    let start = Instant::now();
    api.set_down(false);
    measure_until(
        "api down at start: first answer after it came up",
        start,
        RECOVERY_BOUND,
        || a_of_kernel(pod, WEB),
        |r| r.status == "NOERROR" && r.rdata("A") == ["10.96.0.20"],
    )
    .unwrap();
    let nx = a_of_kernel(pod, "nope.default.svc.cluster.local");
    assert_negative(&nx, "NXDOMAIN", "unknown name after the first sync");
    // Ready once synced and the XDP program loaded, which it may still be
    // doing: the agent served before it.
    agent.measure_ready(
        lab.node(),
        "api down at start: /readyz 200 after it came up",
        start,
        RECOVERY_BOUND,
    );
    // The outage is logged once per watch when it starts and once when it
    // ends, not once per retry.
    let log = agent.log();
    for source in ["services", "endpointslices"] {
        let failing = format!("{source} watch failing");
        let recovered = format!("{source} watch recovered");
        assert_eq!(log.matches(&failing).count(), 1, "{log}");
        assert_eq!(log.matches(&recovered).count(), 1, "{log}");
    }
    assert!(!log.contains("failed with status"), "{log}");
}

/// Waits until `name` answers `ips` (NXDOMAIN when empty), from userspace
/// and the kernel, within the recovery bound.
fn wait_recovered(pod: &Pod, what: &str, start: Instant, name: &str, ips: &[&str]) {
    wait_answer_within(pod, what, start, RECOVERY_BOUND, name, ips);
}

/// The IPv4 EndpointSlice of the headless `db`: these (address, hostname)
/// members, all ready.
fn db_slice(members: &[(&str, &str)]) -> serde_json::Value {
    let endpoints: Vec<(&str, Option<&str>, bool)> = members
        .iter()
        .map(|(ip, host)| (*ip, Some(*host), true))
        .collect();
    slice("default", "db-v4", "db", &endpoints)
}

#[test]
fn api_server_endpoint_changes_and_relist_reach_the_kernel() {
    let (lab, api, agent) = api_node();
    let pod = lab.pod(0);
    const DB: &str = "db.default.svc.cluster.local";
    // db-1 has an IPv4 address only (db-0 is in the IPv6 slice as well).
    const DB1: &str = "db-1.db.default.svc.cluster.local";
    const KUBERNETES: &str = "kubernetes.default.svc.cluster.local";
    // Put the names in the kernel map, and check it answers them.
    for name in [DB, DB1, KUBERNETES, WEB] {
        let first = a_of_kernel(pod, name);
        assert_eq!(first.status, "NOERROR", "{name}:\n{}", first.raw);
    }
    let before = agent.metrics(lab.node());
    for name in [DB, DB1, KUBERNETES, WEB] {
        a_of_kernel(pod, name);
    }
    let after = agent.metrics(lab.node());
    assert_eq!(
        after.xdp_hits() - before.xdp_hits(),
        4,
        "the kernel answers the promoted names:\n{}",
        after.queries_table()
    );

    // A headless member becomes ready; another loses its slot.
    let start = Instant::now();
    api.apply(db_slice(&[
        ("10.244.1.20", "db-0"),
        ("10.244.2.20", "db-1"),
        ("10.244.3.20", "db-2"),
    ]));
    wait_answer(
        pod,
        "api: endpoint became ready",
        start,
        DB,
        &["10.244.1.20", "10.244.2.20", "10.244.3.20"],
    );
    let start = Instant::now();
    api.apply(db_slice(&[
        ("10.244.1.20", "db-0"),
        ("10.244.3.20", "db-2"),
    ]));
    wait_answer(pod, "api: endpoint removed", start, DB1, &[]);
    let db = a_of_kernel(pod, DB);
    assert_rdata(
        &db,
        "A",
        &["10.244.1.20", "10.244.3.20"],
        "db after removal",
    );

    // Changes made while the agent is cut off, then a 410 on its resume:
    // the relist must apply them, deletions included.
    let lists_before = api.list_requests();
    api.set_down(true);
    // Let the open watches end first, so no event of what follows reaches
    // the agent before it relists.
    std::thread::sleep(Duration::from_millis(300));
    assert!(api.delete(Resource::Services, "default", "kubernetes"));
    api.apply(service("default", "web", &["10.96.0.30"], &[("http", 80)]));
    api.expire();
    let held = a_of_kernel(pod, KUBERNETES);
    assert_rdata(&held, "A", &["10.96.0.1"], "last good state while down");
    let start = Instant::now();
    api.set_down(false);
    wait_recovered(
        pod,
        "api: deletion made while down applied by the relist",
        start,
        KUBERNETES,
        &[],
    );
    wait_recovered(
        pod,
        "api: update made while down applied by the relist",
        start,
        WEB,
        &["10.96.0.30"],
    );
    // The two watchers reconnect on their own backoff: the one whose changes
    // were checked above has relisted; give the other time to resume too.
    let relisted = wait_for(
        "both resources relisted after the 410",
        RECOVERY_BOUND,
        || (api.list_requests() >= lists_before + 2).then_some(()),
    );
    assert!(
        relisted.is_ok(),
        "no relist of both resources after the 410: {:#?}",
        api.requests()
    );
}

#[test]
fn custom_records_and_stub_domains_apply_live() {
    let lab = Lab::new(1).unwrap();
    let manifests = lab.log_dir().join("manifests");
    copy_examples(&manifests);
    let stub_addr: SocketAddr = "10.201.0.1:5354".parse().unwrap();
    let _stub = DnsmasqSpec::new(stub_addr)
        .local_domain("corp.example")
        .host("db.corp.example", [10, 0, 5, 5].into())
        .log_queries()
        .start(&lab, lab.node(), "dnsmasq-corp")
        .unwrap();
    let custom = lab.log_dir().join("custom-records.yaml");
    write_atomic(
        &custom,
        "hosts: |\n  192.168.10.5  nas.lab.example nas.lab\n",
    )
    .unwrap();
    let custom_arg = custom.display().to_string();
    let _agent = AgentSpec::new(Source::Manifests(manifests.clone()))
        .args(&["--custom-records", &custom_arg])
        .start(&lab, "dns-agent");
    let pod = lab.pod(0);
    let nas = a_of(pod, "nas.lab.example");
    assert_rdata(&nas, "A", &["192.168.10.5"], "custom host");
    expect_rdata(
        pod,
        &["+search", "nas.lab", "A"],
        "A",
        &["192.168.10.5"],
        "custom host alias via search",
    );
    expect_rdata(
        pod,
        &["-x", "192.168.10.5"],
        "PTR",
        &["nas.lab.example."],
        "custom host PTR",
    );

    // A new host and a stub domain, without a restart.
    let start = Instant::now();
    write_atomic(
        &custom,
        &format!(
            "hosts: |\n  192.168.10.5  nas.lab.example nas.lab\n  \
             192.168.10.7  printer.lab.example\n\
             stubDomains: |\n  {{\"corp.example\": [\"{stub_addr}\"]}}\n"
        ),
    )
    .unwrap();
    wait_answer(
        pod,
        "custom records: added host answered",
        start,
        "printer.lab.example",
        &["192.168.10.7"],
    );
    measure_until(
        "custom records: stub domain answered",
        start,
        PROPAGATION_BOUND,
        || a_of(pod, "db.corp.example"),
        |r| r.rdata("A") == ["10.0.5.5"],
    )
    .unwrap();
    // Cluster names are never sent to a stub or upstream, custom or not.
    let web = a_of(pod, WEB);
    assert_rdata(
        &web,
        "A",
        &["10.96.0.20"],
        "cluster name with custom records",
    );
}

#[test]
fn oversized_headless_answer_truncates_over_udp_and_completes_over_tcp() {
    const MEMBERS: usize = 200;
    let lab = Lab::new(1).unwrap();
    let api = start_api(&lab);
    let ips: Vec<String> = (0..MEMBERS)
        .map(|i| format!("10.244.{}.{}", 100 + i / 200, 1 + i % 200))
        .collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> =
        ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
    api.apply(headless("default", "big"));
    api.apply(slice("default", "big-1", "big", &endpoints));
    let _agent = agent_on(&lab, &api);
    let pod = lab.pod(0);
    const BIG: &str = "big.default.svc.cluster.local";
    // Over UDP alone: truncated.
    for args in [
        &["+ignore", BIG, "A"][..],
        &["+ignore", "+nocookie", BIG, "A"],
    ] {
        let udp = pod.dig(args).unwrap();
        assert_eq!(udp.status, "NOERROR", "{}", udp.raw);
        assert!(
            udp.has_flag("tc"),
            "no TC flag on an oversized UDP answer:\n{}",
            udp.raw
        );
    }
    // dig retries over TCP by itself, glibc too: every member comes back.
    let full = pod.dig(&["+search", "big", "A"]).unwrap();
    let mut want = ips.clone();
    want.sort();
    assert_eq!(full.sorted_rdata("A"), want, "{}", full.raw);
    let hosts = pod.getent(&["ahostsv4", "big"]).unwrap();
    assert_eq!(
        hosts.addresses.len(),
        MEMBERS,
        "getent ahostsv4 big: {}",
        hosts.raw
    );
}
