//! A new agent adopts what a previous one left pinned (`--keep-on-exit`):
//! a Service changed or deleted while no agent ran must be answered from the
//! kernel with the current data as soon as the new agent is ready, not with
//! the inherited entry until it expires (cluster entries live 120 s).
//!
//! The real `dns-agent` in a lab node, XDP on the pod's host-side veth, the
//! demo manifests copied so the test can edit them between the two agents;
//! answers checked with `dig` from the pod, the kernel map and counters with
//! `dns-agent inspect --json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use nodedns_tests::lab::{BpffsDir, Daemon, LISTEN_V4, Lab, Pod, inspect_json, wait_for};

/// How long an agent may take to load, attach and bind.
const AGENT_READY: Duration = Duration::from_secs(20);
/// How soon after the new agent is ready the kernel must agree with its zone.
const ADOPTED_WITHIN: Duration = Duration::from_secs(2);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A ClusterIP service whose address changes while no agent runs.
const WEB: &str = "web.default.svc.cluster.local.";
const WEB_OLD: &str = "10.96.0.20";
const WEB_NEW: &str = "10.96.0.21";
/// A service deleted while no agent runs.
const DELETED: &str = "kubernetes.default.svc.cluster.local.";
const DELETED_IP: &str = "10.96.0.1";

/// What `dig` printed: the status and the A records' addresses.
#[derive(Debug, PartialEq)]
struct Answer {
    status: String,
    addrs: Vec<String>,
}

/// `dig` from the pod, without the cookie option (the kernel passes queries
/// with EDNS options up to userspace).
fn dig(pod: &Pod, name: &str) -> Answer {
    let out = pod
        .dig(&["+nocookie", &format!("@{LISTEN_V4}"), name, "A"])
        .expect("run dig in the pod");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split_once("status: ")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or("")
        .to_string();
    let addrs = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() == 5 && fields[3] == "A").then(|| fields[4].to_string())
        })
        .collect();
    Answer { status, addrs }
}

fn answer(status: &str, addrs: &[&str]) -> Answer {
    Answer {
        status: status.to_string(),
        addrs: addrs.iter().map(|a| a.to_string()).collect(),
    }
}

/// Queries the kernel answered (XDP_TX), all CPUs.
fn kernel_hits(bpffs: &Path) -> u64 {
    inspect_json(bpffs)["counters"]["hit"].as_u64().unwrap_or(0)
}

/// The kernel's entry for `name` A as (rcode, answer records), if any.
fn kernel_entry(snapshot: &serde_json::Value, name: &str) -> Option<(String, Vec<String>)> {
    let entries = snapshot["entries"].as_array()?;
    let entry = entries.iter().find(|e| {
        e["qtype"] == "A"
            && e["name"]
                .as_str()
                .is_some_and(|n| n.trim_end_matches('.') == name.trim_end_matches('.'))
    })?;
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
fn kernel_answers(lab: &Lab, bpffs: &Path, name: &str, expected: &Answer, agent: Option<&Daemon>) {
    let mut last = None;
    let found = wait_for(
        &format!("the kernel to answer {name} with {expected:?}"),
        Duration::from_secs(10),
        || {
            let before = kernel_hits(bpffs);
            let got = dig(lab.pod(0), name);
            let from_kernel = kernel_hits(bpffs) > before;
            let done = from_kernel && got == *expected;
            last = Some((got, from_kernel));
            done.then_some(())
        },
    );
    if let Err(e) = found {
        let log = agent.map(Daemon::log_tail).unwrap_or_default();
        panic!("{e}; last (answer, from kernel): {last:?}\nagent log:\n{log}");
    }
}

/// A copy of `deploy/examples` the test may edit.
fn copy_manifests(dst: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(&src).expect("deploy/examples exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
    dst.to_path_buf()
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

fn start_agent(lab: &Lab, name: &str, manifests: &Path, bpffs: &Path, exit: &str) -> Daemon {
    let manifests = manifests.to_string_lossy();
    let bpffs = bpffs.to_string_lossy();
    let listen = LISTEN_V4.to_string();
    let args = [
        "run",
        "--manifests",
        &manifests,
        "--listen",
        &listen,
        "--no-create-interface",
        // Nothing listens there: the test asks only cluster names.
        "--upstream",
        "127.0.0.1:5353",
        "--bpffs-path",
        &bpffs,
        "--interface",
        "veth*",
        "--xdp-mode",
        "skb",
        "--metrics-addr",
        "127.0.0.1:19353",
        "--health-addr",
        "127.0.0.1:19354",
        exit,
    ];
    let mut agent = lab.start_agent(name, &args).expect("start dns-agent");
    agent
        .wait_for_log("dns-agent running", AGENT_READY)
        .expect("the agent starts serving");
    agent
}

fn xdp_attached(lab: &Lab) -> bool {
    let ifname = lab.pod(0).node_ifname();
    let out = lab
        .node()
        .ip(&["-d", "link", "show", "dev", ifname])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn a_new_agent_rederives_inherited_entries_from_its_zone() {
    let lab = Lab::new(1).unwrap();
    let bpffs_dir = BpffsDir::create().unwrap();
    let bpffs = bpffs_dir.path().join("nodedns");
    let manifests = copy_manifests(&lab.log_dir().join("manifests"));

    // Agent #1 puts both names in the kernel map, then leaves them there.
    let mut first = start_agent(&lab, "agent1", &manifests, &bpffs, "--keep-on-exit");
    let web_old = answer("NOERROR", &[WEB_OLD]);
    kernel_answers(&lab, &bpffs, WEB, &web_old, Some(&first));
    let deleted_old = answer("NOERROR", &[DELETED_IP]);
    kernel_answers(&lab, &bpffs, DELETED, &deleted_old, Some(&first));
    let status = first.stop(STOP_GRACE).unwrap();
    assert!(status.success(), "agent #1 exited with {status}");
    assert!(xdp_attached(&lab), "--keep-on-exit leaves XDP attached");

    // The change happens while no agent runs; the kernel still serves the
    // old data meanwhile (the gap adoption closes).
    edit_manifests(&manifests);
    kernel_answers(&lab, &bpffs, WEB, &web_old, None);

    let mut second = start_agent(&lab, "agent2", &manifests, &bpffs, "--cleanup-on-exit");
    let ready = Instant::now();
    let nxdomain = ResponseCode::NXDomain.to_string();
    let mut last = serde_json::Value::Null;
    let agreed = wait_for(
        "the kernel map to agree with the new zone",
        ADOPTED_WITHIN,
        || {
            last = inspect_json(&bpffs);
            let web = kernel_entry(&last, WEB)?;
            let deleted = kernel_entry(&last, DELETED)?;
            let web_ok = web.1.len() == 1 && web.1[0].ends_with(&format!(" A {WEB_NEW}"));
            let deleted_ok = deleted.0 == nxdomain && deleted.1.is_empty();
            (web_ok && deleted_ok).then(|| ready.elapsed())
        },
    );
    let took = agreed.unwrap_or_else(|e| {
        panic!(
            "{e}\nlast kernel map: {:#}\nagent #2 log:\n{}",
            last["entries"],
            second.log_tail()
        )
    });
    eprintln!("kernel map agreed with the new zone {took:?} after agent #2 was ready");

    kernel_answers(
        &lab,
        &bpffs,
        WEB,
        &answer("NOERROR", &[WEB_NEW]),
        Some(&second),
    );
    kernel_answers(
        &lab,
        &bpffs,
        DELETED,
        &answer("NXDOMAIN", &[]),
        Some(&second),
    );
    let log = second.log();
    let summary = log
        .lines()
        .find(|l| l.contains("adopted the kernel answers"))
        .unwrap_or_else(|| panic!("no adoption summary in agent #2's log:\n{log}"));
    eprintln!("{summary}");

    let status = second.stop(STOP_GRACE).unwrap();
    assert!(status.success(), "agent #2 exited with {status}");
    assert!(!xdp_attached(&lab), "--cleanup-on-exit detaches XDP");
    assert!(
        !bpffs.exists(),
        "--cleanup-on-exit removes {}",
        bpffs.display()
    );
}
