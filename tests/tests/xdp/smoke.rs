//! End-to-end smoke test of the whole chain: the embedded XDP object passes
//! the real verifier, attaches in generic (SKB) mode to a pod's host-side veth
//! inside the lab node, sees a real `dig` from the pod, counts it in its
//! per-CPU counters map, and does not break the path to userspace.

use std::time::Duration;

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use dns_agent::fastpath::object::EBPF_OBJECT;
use dns_common::{Counter, MAP_COUNTERS, PROGRAM_NAME};
use nodedns_tests::lab::{LISTEN_V4, Lab, wait_for};

/// Every counter summed over the CPUs, by name.
fn counters(ebpf: &Ebpf) -> Vec<(&'static str, u64)> {
    let map = ebpf
        .map(MAP_COUNTERS)
        .unwrap_or_else(|| panic!("the object has no {MAP_COUNTERS} map"));
    let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).unwrap();
    Counter::ALL
        .iter()
        .map(|c| {
            (
                c.name(),
                counters.get(&(*c as u32), 0).unwrap().iter().sum::<u64>(),
            )
        })
        .collect()
}

/// The assertion uses the sum because the program's classification of a
/// query (pass_not_dns, miss, ...) depends on its config map, which this test
/// does not fill.
fn total(counters: &[(&str, u64)]) -> u64 {
    counters.iter().map(|(_, n)| n).sum()
}

fn xdp_on(lab: &Lab, ifname: &str) -> bool {
    let out = lab
        .node()
        .ip(&["-d", "link", "show", "dev", ifname])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn xdp_program_counts_a_real_dig_query_and_passes_it_to_userspace() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let pid_file = lab.log_dir().join("dnsmasq.pid");
    let mut dnsmasq = lab
        .start(
            "dnsmasq",
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={LISTEN_V4}"),
                &format!("--pid-file={}", pid_file.display()),
                "--address=/smoke.test/10.9.9.9",
                "--log-facility=-",
            ],
        )
        .unwrap();

    let mut ebpf = Ebpf::load(EBPF_OBJECT).expect("load the embedded object (maps, BTF)");
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .unwrap_or_else(|| panic!("the object has no program {PROGRAM_NAME}"))
        .try_into()
        .unwrap();
    program.load().expect("the verifier rejected the program");
    // The interface exists only in the node namespace, and attach resolves its
    // name there, so attach from a thread that entered it.
    let ifname = pod.node_ifname();
    let link = lab
        .node()
        .enter(|| program.attach(ifname, XdpMode::Skb))
        .unwrap()
        .expect("attach in SKB mode");
    assert!(
        xdp_on(&lab, ifname),
        "no XDP program on {ifname} after attach"
    );

    let before = counters(&ebpf);
    let answer = wait_for(
        "an answer through the XDP-attached veth",
        Duration::from_secs(10),
        || {
            let out = pod
                .dig(&[&format!("@{LISTEN_V4}"), "+short", "www.smoke.test", "A"])
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("10.9.9.9").then_some(text)
        },
    );
    assert!(
        answer.is_ok(),
        "{answer:?}\ndnsmasq log:\n{}",
        dnsmasq.log_tail()
    );
    let after = counters(&ebpf);
    assert!(
        total(&after) > total(&before),
        "{MAP_COUNTERS} did not move: {before:?} before the query, {after:?} after"
    );
    let csum_errors = pod.nstat().unwrap().get("UdpInCsumErrors").copied();
    assert_eq!(
        csum_errors,
        Some(0),
        "the client dropped replies with bad checksums"
    );

    let program: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into().unwrap();
    program.detach(link).unwrap();
    assert!(
        !xdp_on(&lab, ifname),
        "XDP still attached to {ifname} after detach"
    );
    dnsmasq.stop(Duration::from_secs(5)).unwrap();
}
