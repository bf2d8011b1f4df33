//! A new agent adopts what a previous one left pinned (`--keep-on-exit`):
//! a Service changed or deleted while no agent ran must be answered from the
//! kernel with the current data as soon as the new agent is ready, not with
//! the inherited entry until it expires (cluster entries live 120 s).
//!
//! The real `dns-agent` in a lab node, XDP on the pod's host-side veth, the
//! demo manifests copied so the test can edit them between the two agents;
//! answers checked with `dig` from the pod, the kernel map and counters with
//! `dns-agent inspect --json`.

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use nodedns_tests::agent::{Agent, AgentSpec, Inspect, Source};
use nodedns_tests::lab::{LISTEN_V4, Lab, wait_for};
use nodedns_tests::repo::copy_examples;

/// How soon after the new agent is ready the kernel must agree with its zone.
const ADOPTED_WITHIN: Duration = Duration::from_secs(2);
/// Bound on the kernel answering a name the test asks.
const KERNEL_ANSWER: Duration = Duration::from_secs(10);

/// A ClusterIP service whose address changes while no agent runs.
const WEB: &str = "web.default.svc.cluster.local.";
const WEB_OLD: &str = "10.96.0.20";
const WEB_NEW: &str = "10.96.0.21";
/// A service deleted while no agent runs.
const DELETED: &str = "kubernetes.default.svc.cluster.local.";
const DELETED_IP: &str = "10.96.0.1";

/// An answer as the test expects it: the status and the A records.
type Answer = (String, Vec<String>);

fn answer(status: &str, addrs: &[&str]) -> Answer {
    (
        status.to_string(),
        addrs.iter().map(|a| a.to_string()).collect(),
    )
}

/// `dig` from the pod, without the cookie option (the kernel passes queries
/// with EDNS options up to userspace).
fn dig(lab: &Lab, name: &str) -> Answer {
    let reply = lab
        .pod(0)
        .dig(&["+nocookie", &format!("@{LISTEN_V4}"), name, "A"])
        .unwrap();
    (reply.status.clone(), reply.rdata("A"))
}

/// Queries the kernel answered (XDP_TX), all CPUs.
fn kernel_hits(bpffs: &Path) -> u64 {
    Inspect::read(bpffs).counter("hit")
}

/// The kernel's entry for `name` A as (rcode, answer records), if any.
fn kernel_entry(snapshot: &Inspect, name: &str) -> Option<(String, Vec<String>)> {
    let entry = snapshot.entry(name, "A")?;
    let answers = entry["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Some((entry["rcode"].as_str().unwrap_or("").to_string(), answers))
}

/// Asks `name` from the pod until the answer is `expected` and the kernel's
/// hit counter moved during that query: the kernel, not userspace, said it.
fn kernel_answers(lab: &Lab, name: &str, expected: &Answer, agent: Option<&Agent>) {
    let mut last = None;
    let found = wait_for(
        &format!("the kernel to answer {name} with {expected:?}"),
        KERNEL_ANSWER,
        || {
            let before = kernel_hits(lab.bpffs());
            let got = dig(lab, name);
            let from_kernel = kernel_hits(lab.bpffs()) > before;
            let done = from_kernel && got == *expected;
            last = Some((got, from_kernel));
            done.then_some(())
        },
    );
    if let Err(e) = found {
        let log = agent.map(Agent::log_tail).unwrap_or_default();
        panic!("{e}; last (answer, from kernel): {last:?}\nagent log:\n{log}");
    }
}

/// What changes while no agent runs: web gets a new ClusterIP and the
/// `kubernetes` Service is deleted.
fn edit_manifests(dir: &Path) {
    let path = dir.join("demo-default.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(WEB_OLD),
        "demo manifests changed: no {WEB_OLD}"
    );
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let kept: Vec<&str> = docs
        .iter()
        .copied()
        .filter(|d| !(d.contains("kind: Service") && d.contains("  name: kubernetes\n")))
        .collect();
    assert_eq!(
        kept.len() + 1,
        docs.len(),
        "the kubernetes Service is removed"
    );
    std::fs::write(&path, kept.join("\n---\n").replace(WEB_OLD, WEB_NEW)).unwrap();
}

#[test]
fn a_new_agent_rederives_inherited_entries_from_its_zone() {
    let lab = Lab::new(1).unwrap();
    let manifests = copy_examples(&lab.log_dir().join("manifests"));
    // Nothing listens on the default upstream: the test asks only cluster
    // names.
    let spec = AgentSpec::new(Source::Manifests(manifests.clone()))
        .listen_on(&[LISTEN_V4.into()])
        .xdp_mode("skb");

    // Agent #1 puts both names in the kernel map, then leaves them there.
    let mut first = spec.clone().keep_on_exit().start(&lab, "agent1");
    let web_old = answer("NOERROR", &[WEB_OLD]);
    kernel_answers(&lab, WEB, &web_old, Some(&first));
    let deleted_old = answer("NOERROR", &[DELETED_IP]);
    kernel_answers(&lab, DELETED, &deleted_old, Some(&first));
    let status = first.stop();
    assert!(status.success(), "agent #1 exited with {status}");
    let ifname = lab.pod(0).node_ifname();
    assert!(
        lab.node().has_xdp(ifname).unwrap(),
        "--keep-on-exit leaves XDP attached"
    );

    // The change happens while no agent runs; the kernel still serves the
    // old data meanwhile (the gap adoption closes).
    edit_manifests(&manifests);
    kernel_answers(&lab, WEB, &web_old, None);

    let mut second = spec.start(&lab, "agent2");
    let ready = Instant::now();
    let nxdomain = ResponseCode::NXDomain.to_string();
    let mut last = None;
    let agreed = wait_for(
        "the kernel map to agree with the new zone",
        ADOPTED_WITHIN,
        || {
            let snapshot = Inspect::read(lab.bpffs());
            let web = kernel_entry(&snapshot, WEB);
            let deleted = kernel_entry(&snapshot, DELETED);
            last = Some(snapshot);
            let (web, deleted) = (web?, deleted?);
            let web_ok = web.1.len() == 1 && web.1[0].ends_with(&format!(" A {WEB_NEW}"));
            let deleted_ok = deleted.0 == nxdomain && deleted.1.is_empty();
            (web_ok && deleted_ok).then(|| ready.elapsed())
        },
    );
    let took = agreed.unwrap_or_else(|e| {
        panic!(
            "{e}\nlast kernel map: {}\nagent #2 log:\n{}",
            last.map(|s| s.to_string()).unwrap_or_default(),
            second.log_tail()
        )
    });
    eprintln!("kernel map agreed with the new zone {took:?} after agent #2 was ready");

    kernel_answers(&lab, WEB, &answer("NOERROR", &[WEB_NEW]), Some(&second));
    kernel_answers(&lab, DELETED, &answer("NXDOMAIN", &[]), Some(&second));
    let log = second.log();
    let summary = log
        .lines()
        .find(|l| l.contains("adopted the kernel answers"))
        .unwrap_or_else(|| panic!("no adoption summary in agent #2's log:\n{log}"));
    eprintln!("{summary}");

    let status = second.stop();
    assert!(status.success(), "agent #2 exited with {status}");
    assert!(
        !lab.node().has_xdp(ifname).unwrap(),
        "--cleanup-on-exit detaches XDP"
    );
    assert!(
        !lab.bpffs().exists(),
        "--cleanup-on-exit removes {}",
        lab.bpffs().display()
    );
}
