//! Tests of the lab itself: it builds what it promises and leaves nothing
//! behind, on success and on panic. They need root, like every lab user.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;

const READY: Duration = Duration::from_secs(10);

/// Names of what a lab created, to check they are gone after it.
struct Footprint {
    netns: Vec<String>,
    ifnames: Vec<String>,
    etc_dirs: Vec<String>,
    log_dir: std::path::PathBuf,
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
        }
    }

    fn assert_gone(&self) {
        let listed = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let links = String::from_utf8(
            Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
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
    drop(lab);
    footprint.assert_gone();
    assert!(!footprint.log_dir.exists(), "log dir left behind");
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
    assert!(!footprint.log_dir.exists(), "log dir left behind");
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
fn start_dnsmasq(lab: &Lab) -> Daemon {
    let pid_file = lab.log_dir().join("dnsmasq.pid");
    lab.start(
        "dnsmasq",
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={LISTEN_V4}"),
            &format!("--listen-address={LISTEN_V6}"),
            &format!("--pid-file={}", pid_file.display()),
            "--address=/lab.test/10.9.9.9",
            "--log-facility=-",
        ],
    )
    .unwrap()
}

/// Waits until `pod` gets 10.9.9.9 for `name` from dnsmasq over IPv4.
fn wait_for_answer(pod: &Pod, dnsmasq: &Daemon, name: &str) {
    let answer = wait_for("dnsmasq to answer", READY, || {
        let out = stdout(
            pod.dig(&[&format!("@{LISTEN_V4}"), "+short", name, "A"])
                .ok()?,
        );
        out.contains("10.9.9.9").then_some(out)
    });
    assert!(answer.is_ok(), "{answer:?}\n{}", dnsmasq.log_tail());
}

#[test]
fn pods_reach_a_resolver_on_the_listen_addresses() {
    let lab = Lab::new(2).unwrap();
    let mut dnsmasq = start_dnsmasq(&lab);
    let pod = lab.pod(1);
    wait_for_answer(pod, &dnsmasq, "x.lab.test");
    let v6 = stdout(
        pod.kdig(&[&format!("@{LISTEN_V6}"), "+short", "y.lab.test", "A"])
            .unwrap(),
    );
    assert_eq!(v6.trim(), "10.9.9.9");
    // glibc walks the search list (ndots:5) and ends at the absolute name.
    let getent = stdout(pod.getent(&["ahostsv4", "z.lab.test"]).unwrap());
    assert!(getent.contains("10.9.9.9"), "getent: {getent}");
    let counters = pod.nstat().unwrap();
    assert!(counters.contains_key("UdpInDatagrams"), "{counters:?}");
    assert_eq!(counters.get("UdpInCsumErrors"), Some(&0), "{counters:?}");
    dnsmasq.stop(Duration::from_secs(5)).unwrap();
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
    let xdp_shown = || {
        stdout(
            pod.netns()
                .ip(&["-d", "link", "show", "dev", POD_IFNAME])
                .unwrap(),
        )
    };
    let mut dnsmasq = start_dnsmasq(&lab);
    let pass = pod.attach_pass_program().unwrap();
    let shown = xdp_shown();
    assert!(
        shown.contains("xdpdrv") || shown.contains("xdp "),
        "no native XDP on {POD_IFNAME}: {shown}"
    );
    // Replies still reach the client through the pod side's program.
    wait_for_answer(pod, &dnsmasq, "native.lab.test");
    dnsmasq.stop(Duration::from_secs(5)).unwrap();
    drop(pass);
    assert!(
        !xdp_shown().contains("prog/xdp"),
        "XDP still attached after drop: {}",
        xdp_shown()
    );
}
