//! The informed local attacker: a process in the node's network namespace
//! reads the agent's upstream source port from /proc/net/udp and floods
//! forged replies for every query ID while the real upstream is slow
//! (`nodedns_tests::spoofer`). With the agent's defences it poisons
//! nothing, trial after trial; with them turned off (the control) it does,
//! which shows the attack is real. The counts are printed for the README.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nodedns_tests::agent::AgentSpec;
use nodedns_tests::client::Reply;
use nodedns_tests::hostile::{Behavior, NodeHostile};
use nodedns_tests::lab::{Lab, Pod};
use nodedns_tests::spoofer::{self, POISON};

/// How slow the real upstream is: the attacker's window.
const UPSTREAM_DELAY: Duration = Duration::from_millis(1000);
const TRIALS: usize = 10;
/// The control's trials, at most: on a loaded machine the real reply often
/// wins the race, so the control goes on past [`TRIALS`] until the attack
/// has worked once.
const CONTROL_TRIALS: usize = 40;
/// What the real upstream answers.
const TRUTH: &str = "192.0.2.1";

struct Phase {
    name: &'static str,
    flags: &'static [&'static str],
    defended: bool,
    /// Whether the real answer must get through: without the TCP fallback
    /// the flood can drown it in the socket's queue (SERVFAIL, not poison).
    answers: bool,
}

const PHASES: [Phase; 4] = [
    Phase {
        name: "control: no 0x20, no TCP fallback",
        flags: &[
            "--upstream-0x20",
            "false",
            "--upstream-spoof-threshold",
            "0",
        ],
        defended: false,
        answers: false,
    },
    Phase {
        name: "0x20 alone",
        flags: &["--upstream-spoof-threshold", "0"],
        defended: true,
        answers: false,
    },
    Phase {
        name: "0x20 and TCP fallback per query",
        flags: &["--upstream-spoof-tcp-secs", "0"],
        defended: true,
        answers: true,
    },
    Phase {
        name: "defaults (TCP only for a while once suspected)",
        flags: &[],
        defended: true,
        answers: true,
    },
];

/// One trial: `victim` asked from `pod` while the attacker floods; then
/// asked again (from the cache, or the kernel once promoted).
fn trial(
    lab: &Lab,
    pod: &Pod,
    upstream: SocketAddr,
    victim: &str,
) -> (Vec<Reply>, spoofer::Flooded) {
    let SocketAddr::V4(upstream) = upstream else {
        panic!("the attacker forges IPv4")
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let attacker = s.spawn(|| spoofer::attack(lab.node(), upstream, victim, &stop));
        let first = pod.dig(&["+tries=1", "+time=5", victim, "A"]).unwrap();
        stop.store(true, Ordering::Relaxed);
        let flooded = attacker.join().expect("the attacker thread");
        let mut replies = vec![first];
        for _ in 0..2 {
            replies.push(pod.dig(&["+nocookie", victim, "A"]).unwrap());
        }
        (replies, flooded)
    })
}

#[test]
fn the_informed_local_attacker_poisons_nothing() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let upstream = NodeHostile::start(lab.node(), "127.0.0.1:0".parse().unwrap());
    upstream.set(Behavior::Slow(UPSTREAM_DELAY));
    let poison = POISON.to_string();
    for (i, phase) in PHASES.iter().enumerate() {
        let agent = AgentSpec::examples()
            .upstream(upstream.addr)
            .args(phase.flags)
            .start(&lab, &format!("agent-{i}"));
        let (mut poisoned, mut failed, mut packets, mut rounds) = (0, 0, 0, 0);
        let mut trials = 0;
        while trials < TRIALS || (!phase.defended && poisoned == 0 && trials < CONTROL_TRIALS) {
            let t = trials;
            trials += 1;
            let victim = format!("victim{t}-phase{i}.example.com");
            let (replies, flooded) = trial(&lab, pod, upstream.addr, &victim);
            packets += flooded.packets;
            rounds += flooded.rounds;
            if replies.iter().any(|r| r.addresses().contains(&poison)) {
                poisoned += 1;
            } else if replies[0].addresses() != [TRUTH] {
                failed += 1;
            }
            if phase.answers {
                for r in &replies {
                    assert_eq!(
                        r.addresses(),
                        [TRUTH],
                        "{}: {victim}: {}",
                        phase.name,
                        r.raw
                    );
                }
            }
        }
        let metrics = agent.metrics(lab.node());
        let rejected = metrics.sum("nodedns_upstream_rejected_replies_total", &[]);
        let suspected = metrics.sum("nodedns_upstream_spoof_suspected_total", &[]);
        println!(
            "spoofing, {}: {poisoned}/{trials} poisoned, {failed} unanswered; {rounds} rounds of every ID, {packets} forged replies; {rejected} rejected, {suspected} queries moved to TCP",
            phase.name
        );
        if phase.defended {
            assert_eq!(poisoned, 0, "{}: poisoned", phase.name);
        } else {
            assert!(poisoned > 0, "the control shows the attack works");
        }
    }
}
