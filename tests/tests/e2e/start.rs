//! Serving at once: whatever the API server does, the agent's DNS
//! listeners, `/healthz` and `/metrics` are up from its first second, and
//! external names are forwarded; cluster names get SERVFAIL and `/readyz`
//! says no until the first sync. The times are printed for the README.

use std::time::{Duration, Instant};

use nodedns_tests::agent::{AgentSpec, Source};
use nodedns_tests::fakeapi::NodeApi;
use nodedns_tests::lab::{Lab, measure_until};
use nodedns_tests::repo::examples_dir;
use nodedns_tests::upstream::{EXAMPLE_ANSWER, NODE_UPSTREAM, start_node_upstream};

/// Generous bound on the first answer after the agent starts (the goal is
/// one second; the measured time is printed, not asserted).
const FIRST_ANSWER_BOUND: Duration = Duration::from_secs(10);
/// Bound on readiness once the API server answers again.
const SYNC_BOUND: Duration = Duration::from_secs(20);
const WEB: &str = "web.default.svc.cluster.local";

#[test]
fn serves_at_once_while_the_api_server_hangs() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let _upstream = start_node_upstream(&lab).unwrap();
    let api = NodeApi::start(lab.node());
    api.apply_manifests(&examples_dir()).unwrap();
    // Hung: every request waits with no answer, the worst case for a start.
    api.set_hang(true);

    let started = Instant::now();
    let spec = AgentSpec::new(Source::Kubeconfig(api.kubeconfig())).upstream(NODE_UPSTREAM);
    let agent = spec.start_serving(&lab, "dns-agent");
    let external = EXAMPLE_ANSWER.to_string();
    measure_until(
        "start: first external answer, API server hung",
        started,
        FIRST_ANSWER_BOUND,
        || {
            pod.dig(&["+tries=1", "+time=1", "fresh.example.com", "A"])
                .unwrap()
        },
        |r| r.status == "NOERROR" && r.rdata("A") == [external.as_str()],
    )
    .unwrap();
    let health = measure_until(
        "start: /healthz 200, API server hung",
        started,
        FIRST_ANSWER_BOUND,
        || agent.health(lab.node(), "/healthz"),
        |r| r.as_ref().is_some_and(|(status, _)| *status == 200),
    );
    health.unwrap();
    assert!(
        agent
            .metrics(lab.node())
            .text()
            .contains("nodedns_queries_total")
    );
    let (status, body) = agent.health(lab.node(), "/readyz").unwrap();
    assert_eq!(status, 503, "not ready before the first sync: {body}");
    let cluster = pod.dig(&[WEB, "A"]).unwrap();
    assert_eq!(cluster.status, "SERVFAIL", "{}", cluster.raw);
    let tcp = pod.dig(&["+tcp", "fresh2.example.com", "A"]).unwrap();
    assert_eq!(tcp.rdata("A"), [external.as_str()], "{}", tcp.raw);

    // The API server answers again: the first sync, readiness, cluster names.
    let released = Instant::now();
    api.set_hang(false);
    agent.measure_ready(
        lab.node(),
        "start: /readyz 200 after the API server answers",
        released,
        SYNC_BOUND,
    );
    let cluster = pod.dig(&[WEB, "A"]).unwrap();
    assert_eq!(cluster.status, "NOERROR", "{}", cluster.raw);
    assert!(
        agent.log().contains("new queries come to this agent"),
        "{}",
        agent.log_tail()
    );
}
