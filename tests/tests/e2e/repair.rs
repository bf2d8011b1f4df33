//! A live agent is safe and repairs itself (issue 16.4,
//! docs/design.md#self-repair): `dns-agent cleanup` refuses while an agent
//! owns the pin directory; after `cleanup --force`, or pins removed by hand,
//! the agent makes its listen address, pins and XDP attachment again within
//! seconds and counts it; `/healthz` fails while a listen address it does
//! not own is missing; a second agent takes over from the first with no
//! interface skipped as foreign. Every step is checked with replies from
//! the pod.

use std::net::IpAddr;
use std::time::Duration;

use nodedns_tests::agent::{Agent, AgentSpec, run_cleanup};
use nodedns_tests::lab::{LISTEN_V4, Lab, Netns, wait_for};

const WEB: &str = "web.default.svc.cluster.local";
const WEB_V4: &str = "10.96.0.20";
/// A listen address the lab node does not have: the agent puts it on an
/// interface it creates (`nodedns0`, or `lo` where the kernel has no dummy
/// interfaces), so the agent owns it.
const OWN_V4: &str = "169.254.20.11";
/// Bound on a repair: the checks run every 2 s.
const REPAIR_BOUND: Duration = Duration::from_secs(15);

/// `web` asked at `server` from the pod: answered, with web's address.
fn assert_answers(pod: &Netns, server: &str, case: &str) {
    let reply = pod
        .dig(&[
            "+time=2",
            "+tries=2",
            "+nocookie",
            &format!("@{server}"),
            WEB,
            "A",
        ])
        .unwrap();
    assert_eq!(reply.status, "NOERROR", "{case}:\n{}", reply.raw);
    assert_eq!(
        reply.question,
        format!("{WEB}.\tIN\tA"),
        "{case}:\n{}",
        reply.raw
    );
    let addrs: Vec<&str> = reply.answers.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(addrs, [WEB_V4], "{case}:\n{}", reply.raw);
}

fn repairs(agent: &Agent, lab: &Lab, what: &str) -> u64 {
    agent
        .metrics(lab.node())
        .sum("nodedns_repairs_total", &[("what", what)])
}

/// Whether `addr` is on `dev` of the lab node (any device: `None`).
fn node_has(lab: &Lab, dev: Option<&str>, addr: &str) -> bool {
    let mut args = vec!["-o", "addr", "show"];
    args.extend(dev.map(|d| ["dev", d]).into_iter().flatten());
    lab.node()
        .ip(&args)
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/")))
}

#[test]
fn cleanup_refuses_a_live_agent_and_the_agent_repairs_a_forced_one() {
    let lab = Lab::new(1).unwrap();
    let agent = AgentSpec::examples()
        .args(&["--listen", OWN_V4])
        .start(&lab, "agent");
    let pod = lab.pod(0).netns();
    agent.warm_kernel(pod, OWN_V4, WEB, "A");
    assert!(node_has(&lab, None, OWN_V4));

    // Refused: nothing is touched, and the message names the agent.
    let out = run_cleanup(&lab, &["--listen", OWN_V4]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cleanup must refuse: {stderr}");
    assert!(
        stderr.contains(&format!("pid {}", agent.pid())) && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(lab.bpffs().join("NODEDNS_ANSWERS").exists());
    assert_eq!(lab.node().xdp_attachments().unwrap().len(), 1);
    assert!(node_has(&lab, None, OWN_V4));
    assert_answers(pod, OWN_V4, "after the refused cleanup");

    // Forced: everything goes, then comes back.
    let out = run_cleanup(&lab, &["--force", "--listen", OWN_V4]);
    let said = [&out.stdout, &out.stderr].map(|o| String::from_utf8_lossy(o).into_owned());
    let forced = out.status.success() && said[0].contains("detached XDP link");
    assert!(forced, "cleanup --force:\n{}{}", said[0], said[1]);
    wait_for(
        "the agent repaired address, pins and XDP",
        REPAIR_BOUND,
        || {
            let repaired = ["address", "pins", "xdp"]
                .iter()
                .all(|what| repairs(&agent, &lab, what) >= 1);
            let back = repaired
                && node_has(&lab, None, OWN_V4)
                && lab.bpffs().join("NODEDNS_ANSWERS").exists()
                && lab.node().xdp_attachments().is_ok_and(|a| a.len() == 1);
            back.then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail()));
    assert_eq!(
        agent.health(lab.node(), "/healthz").unwrap(),
        (200, "ok\n".into())
    );
    // The same maps were pinned again: the kernel still answers the name.
    let hits = agent.metrics(lab.node()).xdp_hits();
    assert_answers(pod, OWN_V4, "after the repair");
    assert!(
        agent.metrics(lab.node()).xdp_hits() > hits,
        "the kernel answers from its kept map"
    );
    let log = agent.log();
    for line in [
        "listen addresses were removed",
        "pins were removed under the running agent",
        "XDP link was detached from outside",
    ] {
        // Once per event: a removal seen half-done by one check and
        // finished before the next is two events, never one per check.
        let count = log.matches(line).count();
        assert!(
            (1..=2).contains(&count),
            "logged {count} times: {line}\n{log}"
        );
    }
    // The agent owns the new directory: cleanup refuses again.
    assert!(!run_cleanup(&lab, &["--listen", OWN_V4]).status.success());
}

#[test]
fn healthz_fails_while_a_listen_address_the_agent_does_not_own_is_missing() {
    let lab = Lab::new(1).unwrap();
    let agent = AgentSpec::examples()
        .listen_on(&[IpAddr::V4(LISTEN_V4)])
        .start(&lab, "agent");
    let pod = lab.pod(0).netns();
    let node = lab.node();
    assert_eq!(agent.health(node, "/healthz").unwrap().0, 200);
    let v4 = format!("{LISTEN_V4}/32");
    node.ip(&["addr", "del", &v4, "dev", "lo"]).unwrap();
    let (status, body) = wait_for("/healthz to fail", REPAIR_BOUND, || {
        agent
            .health(node, "/healthz")
            .filter(|(status, _)| *status != 200)
    })
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&LISTEN_V4.to_string()) && body.contains("--no-create-interface"),
        "{body}"
    );
    // --no-create-interface: the address is not the agent's to add.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!node_has(&lab, Some("lo"), &LISTEN_V4.to_string()));
    assert_eq!(repairs(&agent, &lab, "address"), 0);

    node.ip(&["addr", "add", &v4, "dev", "lo"]).unwrap();
    wait_for("/healthz to recover", REPAIR_BOUND, || {
        agent
            .health(node, "/healthz")
            .filter(|(status, _)| *status == 200)
    })
    .unwrap();
    assert_answers(pod, &LISTEN_V4.to_string(), "after the address came back");
}

#[test]
fn pins_removed_by_hand_come_back_and_the_next_agent_adopts_them() {
    let lab = Lab::new(1).unwrap();
    let spec = AgentSpec::examples()
        .listen_on(&[IpAddr::V4(LISTEN_V4)])
        .keep_on_exit();
    let mut first = spec.start(&lab, "agent-1");
    let pod = lab.pod(0).netns();
    let server = LISTEN_V4.to_string();
    first.warm_kernel(pod, &server, WEB, "A");

    std::fs::remove_dir_all(lab.bpffs()).unwrap();
    wait_for("the pins are back", REPAIR_BOUND, || {
        let links = std::fs::read_dir(lab.bpffs().join("links")).ok()?.count();
        (links == 2 && lab.bpffs().join("NODEDNS_CONFIG").exists()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", first.log_tail()));
    assert!(repairs(&first, &lab, "pins") >= 1);
    assert_eq!(repairs(&first, &lab, "xdp"), 0, "XDP kept running");

    // A rolling update: the next agent adopts the links; nothing is skipped.
    let second = spec.start(&lab, "agent-2");
    assert!(
        second.log().contains("adopted pinned XDP link"),
        "{}",
        second.log_tail()
    );
    let skipped = second.metrics(lab.node()).sum(
        "nodedns_xdp_attach_skipped_total",
        &[("reason", "foreign_program")],
    );
    assert_eq!(skipped, 0, "{}", second.log_tail());
    first.stop();
    let attached = lab.node().xdp_attachments().unwrap();
    assert_eq!(
        attached.len(),
        1,
        "XDP stays on the pod's veth: {attached:?}"
    );
    second.warm_kernel(pod, &server, WEB, "A");
    assert_answers(pod, &server, "after the hand-over");
}
