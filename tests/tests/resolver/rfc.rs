//! The RFC points of the resolver's answers: serve-stale TTLs (RFC 8767),
//! the DO bit (RFC 3225) and QTYPE ANY (RFC 8482).

use std::net::Ipv4Addr;
use std::time::Duration;

use nodedns_tests::client::dig_at;
use nodedns_tests::hostile::Behavior;
use nodedns_tests::resolver::TestResolver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_carry_the_serve_stale_ttl_not_the_records() {
    // Records of 2 s: the cached entry expires, the upstream goes silent,
    // and the stale answer says 30 s (RFC 8767 section 4), or the flag's.
    for (flags, want) in [(&[][..], 30), (&["--serve-stale-ttl", "45"][..], 45)] {
        let mut all = vec![
            "--upstream-timeout-ms",
            "300",
            "--serve-stale-after-ms",
            "400",
        ];
        all.extend_from_slice(flags);
        let (up, r) = TestResolver::with_hostile_upstream(&all).await;
        up.set_ttl(2);
        let fresh = dig_at(r.addr, "short.example", "A", &[]).await;
        assert_eq!(fresh.answers[0].ttl, 2, "{}", fresh.raw);
        let nx = dig_at(r.addr, "nxshort.example", "A", &[]).await;
        assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
        up.set(Behavior::Silence);
        // Past the record TTL and the negative answer's (5 s at most).
        tokio::time::sleep(Duration::from_millis(5500)).await;
        let stale = dig_at(r.addr, "short.example", "A", &[]).await;
        assert_eq!(stale.addresses(), ["192.0.2.1"], "{}", stale.raw);
        assert_eq!(stale.answers[0].ttl, want, "{}", stale.raw);
        let stale_nx = dig_at(r.addr, "nxshort.example", "A", &[]).await;
        assert_eq!(stale_nx.status, "NXDOMAIN", "{}", stale_nx.raw);
        assert!(
            stale_nx.authority.iter().all(|a| a.ttl == want),
            "{}",
            stale_nx.raw
        );
        r.assert_counted("nodedns_queries_total", &[("path", "stale")])
            .await;
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_do_bit_is_copied_into_every_response() {
    let (_up, r) = TestResolver::with_service("web", Ipv4Addr::new(10, 96, 0, 1)).await;
    let cases = [
        ("web.default.svc.cluster.local", "A", "NOERROR"),
        ("nope.default.svc.cluster.local", "A", "NXDOMAIN"),
        ("do.example", "A", "NOERROR"),
        ("version.bind", "TXT", "REFUSED"),
    ];
    for (name, qtype, status) in cases {
        let class = if name == "version.bind" { "CH" } else { "IN" };
        for dnssec in [true, false] {
            let flag = if dnssec { "+dnssec" } else { "+nodnssec" };
            let d = dig_at(r.addr, name, qtype, &[flag, "-c", class]).await;
            assert_eq!(d.status, status, "{name}: {}", d.raw);
            let edns = d.edns.as_deref().unwrap_or_default();
            let has_do = edns.split("flags:").nth(1).is_some_and(|f| {
                f.split(';')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|w| w == "do")
            });
            assert_eq!(has_do, dnssec, "{name} {flag}: {edns}\n{}", d.raw);
        }
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_gets_the_names_records_not_nodata() {
    let (up, r) = TestResolver::with_hostile_upstream(&[]).await;
    r.zone.set_many(
        "web.default.svc.cluster.local.",
        vec![Ipv4Addr::new(10, 96, 0, 1), Ipv4Addr::new(10, 96, 0, 2)],
    );
    for transport in ["+notcp", "+tcp"] {
        let d = dig_at(r.addr, "web.default.svc.cluster.local", "ANY", &[transport]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert!(d.has_flag("aa"), "{}", d.raw);
        assert_eq!(d.sorted_rdata("A"), ["10.96.0.1", "10.96.0.2"], "{}", d.raw);
    }
    let nx = dig_at(r.addr, "nope.default.svc.cluster.local", "ANY", &[]).await;
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
    assert!(nx.has_soa(), "{}", nx.raw);
    // Forwarded ANY goes upstream as asked; its answer is passed on.
    let d = dig_at(r.addr, "any.example", "ANY", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(
        up.names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case("any.example.")),
        "{:?}",
        up.names()
    );
    r.stop().await;
}
