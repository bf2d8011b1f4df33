//! Tests of the lab itself: it builds what it promises and leaves nothing
//! behind, on success and on panic. They need root, like every lab user.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::upstream::{Dnsmasq, DnsmasqSpec};

const READY: Duration = Duration::from_secs(10);

/// Names of what a lab created, to check they are gone after it.
struct Footprint {
    netns: Vec<String>,
    ifnames: Vec<String>,
    etc_dirs: Vec<String>,
    log_dir: PathBuf,
    bpffs: PathBuf,
}

impl Footprint {
    fn of(lab: &Lab) -> Self {
        let mut netns = vec![lab.node().name().to_string()];
        netns.extend(lab.pods().iter().map(|p| p.netns().name().to_string()));
        Self {
            etc_dirs: lab
                .pods()
                .iter()
                .map(|p| format!("/etc/netns/{}", p.netns().name()))
                .collect(),
            ifnames: lab
                .pods()
                .iter()
                .map(|p| p.node_ifname().to_string())
                .collect(),
            netns,
            log_dir: lab.log_dir().to_path_buf(),
            bpffs: lab.bpffs().to_path_buf(),
        }
    }

    fn assert_gone(&self) {
        let listed = run_here("ip", &["netns", "list"]).unwrap();
        let links = run_here("ip", &["-o", "link"]).unwrap();
        for name in &self.netns {
            assert!(!listed.contains(name.as_str()), "netns {name} left behind");
            assert!(!Netns::exists(name), "/run/netns/{name} left behind");
        }
        for ifname in &self.ifnames {
            assert!(
                !links.contains(ifname.as_str()),
                "interface {ifname} visible in the test's namespace"
            );
        }
        for dir in &self.etc_dirs {
            assert!(!Path::new(dir).exists(), "{dir} left behind");
        }
        assert!(!self.log_dir.exists(), "log dir left behind");
        assert!(!self.bpffs.exists(), "{} left behind", self.bpffs.display());
    }
}

fn stdout(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lab_builds_the_topology_and_removes_it() {
    let lab = Lab::new(2).unwrap();
    let footprint = Footprint::of(&lab);
    for pod in lab.pods() {
        // The host side is in the node, the peer in the pod, neither here.
        lab.node()
            .ip(&["link", "show", "dev", pod.node_ifname()])
            .unwrap();
        pod.netns()
            .ip(&["link", "show", "dev", POD_IFNAME])
            .unwrap();
        let resolv = stdout(pod.netns().run("cat", &["/etc/resolv.conf"]).unwrap());
        assert!(resolv.contains("nameserver 169.254.20.10"), "{resolv}");
        assert!(resolv.contains(&format!("search {POD_SEARCH}")), "{resolv}");
        assert!(resolv.contains("options ndots:5"), "{resolv}");
        let routes = stdout(
            pod.netns()
                .run("ip", &["route", "get", &LISTEN_V4.to_string()])
                .unwrap(),
        );
        assert!(routes.contains(&format!("dev {POD_IFNAME}")), "{routes}");
    }
    assert!(footprint.log_dir.is_dir());
    assert!(footprint.bpffs.is_dir());
    drop(lab);
    footprint.assert_gone();
}

#[test]
fn lab_cleans_up_when_a_test_panics() {
    let footprint = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new(1).unwrap();
        *footprint.lock().unwrap() = Some(Footprint::of(&lab));
        panic!("deliberate panic with a lab alive");
    });
    assert!(result.is_err());
    let footprint = footprint.into_inner().unwrap().unwrap();
    footprint.assert_gone();
}

#[test]
fn interfaces_resolve_only_inside_their_namespace() {
    let lab = Lab::new(1).unwrap();
    let ifname = lab.pod(0).node_ifname();
    assert!(lab.node().ifindex(ifname).unwrap() > 0);
    assert!(lab.pod(0).netns().ifindex(ifname).is_err());
    let c_name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: valid NUL-terminated string.
    assert_eq!(
        unsafe { libc::if_nametoindex(c_name.as_ptr()) },
        0,
        "{ifname} leaked into the test's namespace"
    );
}

/// dnsmasq on the node's listen addresses, answering `*.lab.test` with
/// 10.9.9.9 and nothing else (no upstream).
fn start_dnsmasq(lab: &Lab) -> Dnsmasq {
    DnsmasqSpec::new(SocketAddr::new(LISTEN_V4.into(), 53))
        .also_listen(LISTEN_V6.into())
        .wildcard("lab.test", [10, 9, 9, 9].into())
        .start(lab, lab.node(), "dnsmasq")
        .unwrap()
}

/// Waits until `pod` gets 10.9.9.9 for `name` from dnsmasq over IPv4.
fn wait_for_answer(pod: &Pod, dnsmasq: &Dnsmasq, name: &str) {
    let answer = wait_for("dnsmasq to answer", READY, || {
        let reply = pod.dig(&[&format!("@{LISTEN_V4}"), name, "A"]).ok()?;
        (reply.rdata("A") == ["10.9.9.9"]).then_some(reply)
    });
    assert!(answer.is_ok(), "{answer:?}\n{}", dnsmasq.log());
}

#[test]
fn pods_reach_a_resolver_on_the_listen_addresses() {
    let lab = Lab::new(2).unwrap();
    let mut dnsmasq = start_dnsmasq(&lab);
    let pod = lab.pod(1);
    wait_for_answer(pod, &dnsmasq, "x.lab.test");
    let v6 = pod
        .kdig(&[&format!("@{LISTEN_V6}"), "y.lab.test", "A"])
        .unwrap();
    assert_eq!(v6.rdata("A"), ["10.9.9.9"], "{}", v6.raw);
    // glibc walks the search list (ndots:5) and ends at the absolute name.
    let getent = pod.getent(&["ahostsv4", "z.lab.test"]).unwrap();
    assert_eq!(getent.addresses, ["10.9.9.9"], "getent: {}", getent.raw);
    let counters = pod.nstat().unwrap();
    assert!(counters.contains_key("UdpInDatagrams"), "{counters:?}");
    assert_eq!(pod.udp_csum_errors().unwrap(), 0, "{counters:?}");
    dnsmasq.daemon_mut().stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn daemons_take_signals_by_pid_and_log() {
    let lab = Lab::new(0).unwrap();
    let mut daemon = lab
        .start("sleeper", "sh", &["-c", "echo ready; exec sleep 60"])
        .unwrap();
    daemon.wait_for_log("ready", READY).unwrap();
    let state = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    daemon.signal(Signal::Stop).unwrap();
    wait_for("SIGSTOP to take effect", READY, || {
        (state(daemon.pid()) == "T").then_some(())
    })
    .unwrap();
    daemon.signal(Signal::Cont).unwrap();
    wait_for("SIGCONT to take effect", READY, || {
        (state(daemon.pid()) != "T").then_some(())
    })
    .unwrap();
    let pid = daemon.pid();
    let status = daemon.stop(Duration::from_secs(5)).unwrap();
    assert!(!status.success());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists after stop"
    );
}

#[test]
fn bpffs_dir_is_unique_and_removed() {
    let a = BpffsDir::create().unwrap();
    let b = BpffsDir::create().unwrap();
    assert_ne!(a.path(), b.path());
    std::fs::create_dir(a.path().join("nested")).unwrap();
    let path = a.path().to_path_buf();
    drop(a);
    assert!(!path.exists(), "{} left behind", path.display());
}

#[test]
fn pass_program_attaches_natively_to_the_pod_side_and_detaches_on_drop() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let mut dnsmasq = start_dnsmasq(&lab);
    let pass = pod.attach_pass_program().unwrap();
    let mode = pod.netns().xdp_mode(POD_IFNAME).unwrap();
    assert!(
        mode == "xdp" || mode == "xdpdrv",
        "no native XDP on {POD_IFNAME}: {mode:?}"
    );
    // Replies still reach the client through the pod side's program.
    wait_for_answer(pod, &dnsmasq, "native.lab.test");
    dnsmasq.daemon_mut().stop(Duration::from_secs(5)).unwrap();
    drop(pass);
    assert!(
        !pod.netns().has_xdp(POD_IFNAME).unwrap(),
        "XDP still attached after drop"
    );
}
