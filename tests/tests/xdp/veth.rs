//! The program attached in generic (SKB) mode to the host side of a veth
//! pair, answering real `dig` queries from a throwaway network namespace
//! with checksum offload on: the client kernel accepts the answers
//! (`UdpInCsumErrors` stays zero). No agent: whatever the program passes
//! finds no listener. Needs root, `ip`, `dig` and `nstat`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::support::*;
use aya::programs::{Xdp, XdpMode};
use dns_common::{Counter, PROGRAM_NAME};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace and a veth pair, removed on drop (even on panic).
struct Pod {
    netns: String,
    host_if: String,
}

impl Pod {
    fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let pod = Pod {
            netns: format!("ndxdp-{pid}-{n}"),
            host_if: format!("ndx{pid}h{n}"),
        };
        let peer = format!("ndx{pid}p{n}");
        run(&["ip", "netns", "add", &pod.netns]);
        run(&[
            "ip",
            "link",
            "add",
            &pod.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        run(&["ip", "link", "set", &peer, "netns", &pod.netns]);
        run(&["ip", "link", "set", &pod.host_if, "up"]);
        let ns = |args: &[&str]| run(&[&["ip", "-n", &pod.netns][..], args].concat());
        ns(&["link", "set", "lo", "up"]);
        ns(&["link", "set", &peer, "up"]);
        ns(&["addr", "add", "10.244.77.2/24", "dev", &peer]);
        ns(&["route", "add", &format!("{SERVER_V4}/32"), "dev", &peer]);
        ns(&["-6", "addr", "add", "fd00::77:2/64", "dev", &peer, "nodad"]);
        ns(&[
            "-6",
            "route",
            "add",
            &format!("{SERVER_V6}/128"),
            "dev",
            &peer,
        ]);
        // No ARP/ND: the host side has no address; the program answers.
        let mac =
            std::fs::read_to_string(format!("/sys/class/net/{}/address", pod.host_if)).unwrap();
        for server in [SERVER_V4.to_string(), SERVER_V6.to_string()] {
            ns(&["neigh", "add", &server, "lladdr", mac.trim(), "dev", &peer]);
        }
        pod
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(args)
            .env("NSTAT_HISTORY", format!("/tmp/{}.nstat", self.netns))
            .output()
            .unwrap()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer and with it the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = std::fs::remove_file(format!("/tmp/{}.nstat", self.netns));
    }
}

#[test]
fn dig_over_ipv4_and_ipv6_through_veth_in_generic_mode() {
    let mut lab = Lab::new();
    let web = "web.default.svc.cluster.local.";
    let d = EntryDef::new(
        web,
        RecordType::A,
        vec![rec(web, 30, RData::A(A(Ipv4Addr::new(10, 96, 0, 10))))],
    );
    let (k, e) = d.encode();
    lab.insert(&k, &e);
    let pod = Pod::new();
    let prog: &mut Xdp = lab
        .ebpf
        .program_mut(PROGRAM_NAME)
        .unwrap()
        .try_into()
        .unwrap();
    prog.attach(&pod.host_if, XdpMode::Skb)
        .expect("attach in generic mode");

    let mut asked = 0;
    for server in [format!("@{SERVER_V4}"), format!("@{SERVER_V6}")] {
        for extra in ["+noedns", "+nocookie"] {
            let args = [
                "dig",
                &server,
                "WeB.Default.svc.cluster.local",
                "A",
                "+tries=1",
                "+time=2",
                "+short",
                extra,
            ];
            let out = pod.exec(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "dig {server} {extra} failed: {stdout}"
            );
            assert_eq!(stdout.trim(), "10.96.0.10", "dig {server} {extra}");
            asked += 1;
        }
    }
    let nstat = pod.exec(&["nstat", "-az", "UdpInCsumErrors"]);
    let text = String::from_utf8_lossy(&nstat.stdout);
    let errors: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("UdpInCsumErrors")
                .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        })
        .unwrap_or(0);
    assert_eq!(errors, 0, "the client kernel rejected answers: {text}");
    assert_eq!(
        lab.counters()[Counter::Hit as usize],
        asked,
        "counters {:?}",
        lab.counters()
    );
}
