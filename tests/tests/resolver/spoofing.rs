//! Resisting spoofed and poisoned upstream replies: DNS 0x20, the TCP
//! fallback once replies that do not match arrive, and bailiwick scrubbing,
//! against the hostile upstream. The informed local attacker, in a lab
//! node, is in the e2e tier (`e2e/spoofing.rs`).

use std::time::Duration;

use nodedns_tests::client::dig_at;
use nodedns_tests::hostile::{Bad, Behavior};
use nodedns_tests::resolver::{TestResolver, hostile_upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_go_upstream_in_random_case_and_must_come_back_so() {
    let (up, r) = TestResolver::with_hostile_upstream(&[]).await;
    for i in 0..8 {
        let d = r.assert_forwarded(&format!("case{i}.example.com")).await;
        // The client gets its own spelling back, not ours.
        assert!(
            d.answers
                .iter()
                .all(|a| a.owner == format!("case{i}.example.com.")),
            "{}",
            d.raw
        );
    }
    let names = up.names();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(
        names
            .iter()
            .enumerate()
            .all(|(i, n)| n.eq_ignore_ascii_case(&format!("case{i}.example.com."))),
        "{names:?}"
    );
    // Fifteen letters a name: all eight sent lower-case is a 2^-120 event.
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| c.is_ascii_uppercase())),
        "0x20 randomises the case: {names:?}"
    );

    // A reply with the right ID but the wrong case is a spoofer's: rejected,
    // and the query is asked again over TCP, where the real answer comes.
    up.set(Behavior::BadThenGood(Bad::WrongCase));
    let tcp_before = up.tcp_queries();
    r.assert_forwarded("spoofed.example.com").await;
    assert_eq!(up.tcp_queries(), tcp_before + 1);
    r.assert_counted(
        "nodedns_upstream_rejected_replies_total",
        &[("reason", "wrong_case")],
    )
    .await;
    r.assert_counted("nodedns_upstream_spoof_suspected_total", &[])
        .await;
    r.assert_counted(
        "nodedns_upstream_tcp_fallbacks_total",
        &[("reason", "spoof_suspected")],
    )
    .await;

    // Then that upstream is asked over TCP only (--upstream-spoof-tcp-secs).
    up.set(Behavior::Answer);
    let (udp, tcp) = (up.udp_queries(), up.tcp_queries());
    r.assert_forwarded("after.example.com").await;
    assert_eq!((up.udp_queries(), up.tcp_queries()), (udp, tcp + 1));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_folds_case_is_still_usable_over_tcp() {
    let (up, r) = TestResolver::with_hostile_upstream(&["--upstream-spoof-tcp-secs", "0"]).await;
    up.set(Behavior::FoldCase);
    for i in 0..3 {
        r.assert_forwarded(&format!("Folded{i}.Example.com")).await;
    }
    assert!(up.tcp_queries() >= 1, "the folded replies sent it to TCP");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_without_letters_resolve() {
    let (up, r) = TestResolver::with_hostile_upstream(&[]).await;
    r.assert_forwarded("123.4567").await;
    assert_eq!(up.names(), ["123.4567."]);
    assert_eq!(
        up.tcp_queries(),
        0,
        "nothing to randomise, nothing suspicious"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_out_of_the_questions_bailiwick_are_scrubbed() {
    let (up, r) = TestResolver::with_hostile_upstream(&[]).await;
    // The upstream adds an A record and an NS delegation with glue for
    // victim.example. to the answer of extra.example.com.
    let d = r.assert_forwarded("extra.example.com").await;
    assert!(!d.raw.contains("victim"), "{}", d.raw);
    assert!(!d.raw.contains("6.6.6"), "{}", d.raw);
    for section in ["answer", "authority", "additional"] {
        r.assert_counted(
            "nodedns_upstream_scrubbed_records_total",
            &[("section", section)],
        )
        .await;
    }
    // Nothing about victim.example. was kept: it is asked upstream.
    let before = up.queries();
    r.assert_forwarded("victim.example").await;
    assert_eq!(up.queries(), before + 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_domain_speaks_only_for_its_zone_and_its_chain_is_followed() {
    // corp.test goes to `stub`, which answers out.corp.test with a CNAME
    // to target.elsewhere.example. and a forged A record for that target;
    // the target's own servers (the default upstream) answer 192.0.2.1.
    let stub = hostile_upstream().await;
    let default = hostile_upstream().await;
    let stub_flag = format!("corp.test={}", stub.addr);
    let r = TestResolver::start(&[default.addr], &["--stub-domain", &stub_flag]).await;
    let d = dig_at(r.addr, "out.corp.test", "A", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.rdata("CNAME"), ["target.elsewhere.example."], "{}", d.raw);
    assert_eq!(
        d.addresses(),
        ["192.0.2.1"],
        "the target's own servers: {}",
        d.raw
    );
    assert!(!d.raw.contains("6.6.6.6"), "{}", d.raw);
    assert_eq!(stub.queries(), 1);
    assert!(
        default
            .names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case("target.elsewhere.example.")),
        "{:?}",
        default.names()
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoof_threshold_zero_and_no_0x20_keep_the_plain_udp_behaviour() {
    let (up, r) = TestResolver::with_hostile_upstream(&[
        "--upstream-0x20",
        "false",
        "--upstream-spoof-threshold",
        "0",
        "--upstream-timeout-ms",
        "500",
    ])
    .await;
    r.assert_forwarded("plain.example.com").await;
    assert_eq!(up.names(), ["plain.example.com."], "sent as asked");
    // A bad reply then the good one: the good one is taken over UDP.
    up.set(Behavior::BadThenGood(Bad::WrongId));
    tokio::time::sleep(Duration::from_millis(10)).await;
    r.assert_forwarded("race.example.com").await;
    assert_eq!(up.tcp_queries(), 0);
    r.stop().await;
}
