//! The container image, run the way `deploy/daemonset.yaml` runs it (issue
//! 12): in the node's network namespace (hostNetwork), with the
//! securityContext's capabilities, read-only root and no privilege
//! escalation, the bpffs hostPath, the container's args and env, the
//! `nodedns-flags` ConfigMap and the memory limit. All of it is read from
//! the manifests (`nodedns_tests::daemonset`), so a manifest change that
//! breaks the container fails here.
//!
//! What kubelet gives a pod, the tests give the container: a kubeconfig for
//! the fake API server in place of the service account, the node's
//! resolv.conf (a dnsmasq on the node's loopback), and a bpffs directory of
//! the test's own where the hostPath says `/sys/fs/bpf`.
//!
//! The image is `$NODEDNS_IMAGE` (`cargo xtask test` sets it to the image it
//! just built), else nodedns/dns-agent:<version> from `cargo xtask image`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodedns_tests::client::{HotColdLoad, HotColdRuns, Reply};
use nodedns_tests::container::{self, Container, IMAGE_TAG, image_label, run_once};
use nodedns_tests::daemonset::{self, AgentPod, Node};
use nodedns_tests::fakeapi::NodeApi;
use nodedns_tests::fakeapi::fixtures::{SCALE_ENDPOINTS_PER_SERVICE, scale_cluster};
use nodedns_tests::http::http_get;
use nodedns_tests::lab::{BpffsDir, Lab, Netns, pin_files, wait_for};
use nodedns_tests::metrics::Metrics;
use nodedns_tests::repo::{WEB, WEB_V4, deploy_documents, examples_dir};
use nodedns_tests::upstream::{Dnsmasq, DnsmasqSpec, EXAMPLE_ANSWER, EXAMPLE_ZONE};

/// The image size the issue sets as the goal.
const MAX_IMAGE_BYTES: u64 = 100_000_000;
/// Bound on a container's start: podman, the XDP program through the
/// verifier, the first sync.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The zone the demo manifests (deploy/examples) serve.
/// The node's upstream: a dnsmasq on the node's loopback, port 53, which
/// the node's resolv.conf names (dnsPolicy: Default). It answers every
/// name under [`EXAMPLE_ZONE`] with [`EXAMPLE_ANSWER`].
const NODE_RESOLVER: &str = "127.0.0.1:53";
const EXTERNAL: &str = "www.example.com";
/// The hand-over load: long enough that the second container starts, the
/// first is frozen for longer than dnsperf's timeout and then stopped, all
/// while queries flow.
const LOAD_SECS: u64 = 20;
const HOT_QPS: u64 = 1000;
const COLD_QPS: u64 = 400;
const PERF_TIMEOUT_SECS: u64 = 2;
const HANDOVER_AT: Duration = Duration::from_secs(2);
/// Lets the first agent answer what reached it before the second bound.
const BACKLOG_GRACE: Duration = Duration::from_millis(500);
const FREEZE: Duration = Duration::from_millis(2500);
/// The largest cluster the README promises the DaemonSet's memory limit
/// holds (the shape of the `cluster` tier's scale tests: five endpoints
/// per Service, every fifth Service headless).
const LARGEST_CLUSTER_SERVICES: usize = 50_000;
/// Lets open watches end after the fake API server goes down.
const WATCHES_END: Duration = Duration::from_millis(300);
/// Bound on the first sync of that cluster from the fake API server.
const LARGE_SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// A lab node ready for the agent's container: the fake API server with the
/// cluster, the node's upstream, a bpffs directory for the hostPath, and the
/// `podman run` options the DaemonSet translates to.
struct Deployment {
    // Field order is drop order: the node's processes, then the lab.
    _upstream: Dnsmasq,
    api: NodeApi,
    _bpffs: BpffsDir,
    lab: Lab,
    pod: AgentPod,
    image: String,
    options: Vec<String>,
    host_paths: BTreeMap<PathBuf, PathBuf>,
}

impl Deployment {
    fn new(pods: usize) -> Self {
        let image = container::image().unwrap();
        let pod = AgentPod::load();
        // Alone among the binary's labs: the hand-over's no-loss check
        // should not compete for the two vCPUs with a 50k-Service sync.
        let lab = Lab::new_alone(pods).unwrap();
        // On a real node the listen address appears when the agent adds it,
        // and `dns-agent cleanup` must remove it: take away the lab's.
        for addr in listen_addrs(&pod) {
            if let IpAddr::V4(v4) = addr {
                lab.node()
                    .ip(&["addr", "del", &format!("{v4}/32"), "dev", "lo"])
                    .unwrap();
            }
        }
        let upstream = DnsmasqSpec::new(NODE_RESOLVER.parse().unwrap())
            .wildcard(EXAMPLE_ZONE, EXAMPLE_ANSWER.into())
            .start(&lab, lab.node(), "upstream")
            .unwrap();
        let api = NodeApi::start(lab.node());
        api.apply_manifests(&examples_dir()).unwrap();
        // The custom-records ConfigMap the container's env names.
        let custom = pod.env["NODEDNS_CUSTOM_CONFIGMAP"]
            .split_once('/')
            .expect("NODEDNS_CUSTOM_CONFIGMAP is namespace/name")
            .1
            .to_string();
        api.apply(daemonset::config_map_object(&custom));
        let bpffs = BpffsDir::create().unwrap();
        let host_paths: BTreeMap<PathBuf, PathBuf> =
            [(PathBuf::from(BpffsDir::ROOT), bpffs.path().to_path_buf())].into();
        let resolv_conf = lab.log_dir().join("node-resolv.conf");
        let resolver_ip = NODE_RESOLVER.rsplit_once(':').unwrap().0;
        std::fs::write(&resolv_conf, format!("nameserver {resolver_ip}\n")).unwrap();
        let options = pod.podman_options(&Node {
            netns: lab.node().name(),
            host_paths: &host_paths,
            resolv_conf: &resolv_conf,
            kubeconfig: &api.kubeconfig(),
        });
        Self {
            _upstream: upstream,
            api,
            _bpffs: bpffs,
            lab,
            pod,
            image,
            options,
            host_paths,
        }
    }

    /// Starts the agent's container with the DaemonSet's args and waits
    /// until it serves and its readiness probe passes (as kubelet would
    /// before a surge update stops the old pod).
    fn start_agent(&self, role: &str) -> Container {
        let agent = Container::start(role, &self.options, &self.image, &self.pod.args).unwrap();
        agent
            .wait_for_log("dns-agent running", START_TIMEOUT)
            .unwrap();
        let probe = self.pod.readiness.as_ref().expect("a readiness probe");
        wait_for("the readiness probe", START_TIMEOUT, || {
            let (status, _) = self.get(probe_addr(probe), &probe.path)?;
            (status == 200).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.logs()));
        agent
    }

    /// The agent's pin directory (`--bpffs-path`) as the node sees it.
    fn pins(&self) -> PathBuf {
        let path = self.pod.arg("--bpffs-path").expect("--bpffs-path in args");
        self.pod.on_node(Path::new(path), &self.host_paths)
    }

    /// `GET path` on `addr` inside the node (hostNetwork): status and
    /// body, or `None` when nothing answers.
    fn get(&self, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
        self.lab.node().enter(|| http_get(addr, path)).ok()?.ok()
    }

    /// `/metrics` on the port the pod's prometheus.io/port annotation names.
    fn metrics(&self) -> Metrics {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.pod.metrics_port()));
        let (status, body) = self
            .get(addr, "/metrics")
            .unwrap_or_else(|| panic!("nothing answers on {addr}/metrics"));
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    fn xdp_hits(&self) -> u64 {
        self.metrics().xdp_hits()
    }

    fn xdp_ifnames(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.lab.node().xdp_attachments().unwrap())
            .into_iter()
            .map(|a| a.ifname)
            .collect();
        names.sort();
        names
    }

    /// `dns-agent <args>` from the image with the pod's permissions and
    /// mounts (how `inspect` and `cleanup` run on a node).
    fn run_once(&self, role: &str, args: &[&str]) -> std::process::Output {
        let out = run_once(role, &self.options, &self.image, args).unwrap();
        assert!(
            out.status.success(),
            "dns-agent {args:?} from the image failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `dns-agent cleanup` from the image, with the DaemonSet's pin
    /// directory and listen addresses.
    fn cleanup(&self) {
        let mut args = vec![
            "cleanup".to_string(),
            format!("--bpffs-path={}", self.pod.arg("--bpffs-path").unwrap()),
        ];
        args.extend(listen_addrs(&self.pod).map(|a| format!("--listen={a}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_once("cleanup", &args);
    }

    /// Whether `addr` is on the node's `lo`.
    fn node_has_address(&self, addr: IpAddr) -> bool {
        let out = self
            .lab
            .node()
            .ip(&["-o", "addr", "show", "dev", "lo"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }
}

/// The listen addresses of the `nodedns-flags` ConfigMap.
fn listen_addrs(pod: &AgentPod) -> impl Iterator<Item = IpAddr> + '_ {
    pod.env["NODEDNS_LISTEN"]
        .split(',')
        .map(|a| a.trim().parse().expect("NODEDNS_LISTEN holds IP addresses"))
}

/// Where kubelet sends the probe's GETs.
fn probe_addr(probe: &daemonset::HttpProbe) -> SocketAddr {
    let host: IpAddr = probe
        .host
        .parse()
        .expect("a probe host that is an IP address");
    SocketAddr::new(host, probe.port)
}

/// `dig @server name A` from `netns`, one try, no cookie (the kernel
/// answers only cookie-less queries).
fn ask(netns: &Netns, server: &str, name: &str) -> Reply {
    let at = format!("@{server}");
    netns.dig(&["+nocookie", &at, name, "A"]).unwrap()
}

fn first_listen_v4(pod: &AgentPod) -> String {
    listen_addrs(pod)
        .find(IpAddr::is_ipv4)
        .expect("an IPv4 listen address")
        .to_string()
}

#[test]
fn image_is_small_and_names_its_version_and_revision() {
    nodedns_tests::lab::require_root().unwrap();
    let image = container::image().unwrap();
    let out = run_once("version", &[], &image, &["--version"]).unwrap();
    assert!(out.status.success(), "dns-agent --version: {out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let revision = image_label(&image, "org.opencontainers.image.revision").unwrap();
    println!("{image}: {printed}");
    assert_eq!(
        printed,
        format!("dns-agent {version} (revision {revision})"),
        "--version names the version and the revision the image's label names"
    );
    assert!(
        !revision.is_empty() && revision != "unknown",
        "the image was built without its source revision (cargo xtask image passes it)"
    );
    assert_eq!(
        image_label(&image, "org.opencontainers.image.version").unwrap(),
        version
    );
    assert_eq!(
        AgentPod::load().image,
        IMAGE_TAG,
        "deploy/daemonset.yaml names the image of this version"
    );
    let kustomization = deploy_documents("kustomization.yaml").remove(0);
    let (name, tag) = IMAGE_TAG.split_once(':').unwrap();
    assert!(
        kustomization["images"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"].as_str() == Some(name) && i["newTag"].as_str() == Some(tag)),
        "deploy/kustomization.yaml's images: override names {IMAGE_TAG}"
    );
    let size: u64 = container::podman()
        .args(["image", "inspect", "--format", "{{.Size}}", &image])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap())
        .unwrap();
    println!("image size: {:.1} MB", size as f64 / 1e6);
    assert!(
        size < MAX_IMAGE_BYTES,
        "the image is {size} bytes: it should hold the agent and libc only"
    );
}

#[test]
fn image_serves_hands_over_and_cleans_up_as_the_daemonset_runs_it() {
    let d = Deployment::new(2);
    let server = first_listen_v4(&d.pod);
    let first = d.start_agent("agent-1");

    // XDP on every pod's host-side veth (NODEDNS_INTERFACES matches the
    // lab's veth names), answers from the kernel, and the pages kubelet
    // and Prometheus read.
    let attached = d.xdp_ifnames();
    for pod in d.lab.pods() {
        assert!(
            attached.iter().any(|dev| dev == pod.node_ifname()),
            "XDP on {}: {attached:?}",
            pod.node_ifname()
        );
    }
    for pod in d.lab.pods() {
        let before = d.xdp_hits();
        wait_for("an answer from the kernel", Duration::from_secs(10), || {
            let lookup = ask(pod.netns(), &server, WEB);
            assert_eq!(lookup.data(), [WEB_V4], "{}", lookup.raw);
            (d.xdp_hits() > before).then_some(())
        })
        .unwrap();
        assert_eq!(
            pod.udp_csum_errors().unwrap(),
            0,
            "replies carry valid UDP checksums"
        );
    }
    let external = ask(d.lab.pod(0).netns(), &server, EXTERNAL);
    assert_eq!(
        external.data(),
        [EXAMPLE_ANSWER.to_string()],
        "forwarded through the node's resolv.conf: {}",
        external.raw
    );
    for probe in [&d.pod.liveness, &d.pod.readiness] {
        let probe = probe.as_ref().expect("the DaemonSet's probes");
        let addr = probe_addr(probe);
        let answer = d.get(addr, &probe.path);
        assert_eq!(answer.map(|a| a.0), Some(200), "{addr}{}", probe.path);
    }
    let page = d.metrics();
    assert!(
        page.value("nodedns_xdp_map_capacity")
            .is_some_and(|c| c > 0.0),
        "/metrics on the prometheus.io/port:\n{}",
        page.text()
    );
    let inspect = d.run_once(
        "inspect",
        &[
            "inspect",
            "--json",
            &format!("--bpffs-path={}", d.pod.arg("--bpffs-path").unwrap()),
        ],
    );
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert!(
        inspect["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["name"] == format!("{WEB}."))),
        "`dns-agent inspect` from the image reads the pinned map: {inspect:#}"
    );
    let pins = pin_files(&d.pins());
    assert!(!pins.is_empty(), "the agent pins under the hostPath");

    // The surge update: a second container with the same flags starts next
    // to the first and binds with SO_REUSEPORT; the first is frozen for
    // longer than dnsperf waits (it must receive nothing new), then stopped
    // as kubelet stops it. Under load, no query may be lost.
    let mut load = start_load(&d, &server);
    std::thread::sleep(HANDOVER_AT);
    let second = d.start_agent("agent-2");
    std::thread::sleep(BACKLOG_GRACE);
    first.pause().unwrap();
    std::thread::sleep(FREEZE);
    first.unpause().unwrap();
    let grace = Duration::from_secs(d.pod.termination_grace_secs);
    assert_eq!(first.stop(grace).unwrap(), 0, "agent 1 exits cleanly");
    assert!(
        load.running(),
        "the load ended before the hand-over did: raise LOAD_SECS"
    );
    let (hot, cold) = load.finish().unwrap();
    println!(
        "hand-over under load:\n  {}\n  {}",
        hot.line("hot"),
        cold.line("cold")
    );
    for (what, s) in [("hot", &hot), ("cold", &cold)] {
        let line = s.line(what);
        assert!(s.sent > 0, "{line}");
        assert_eq!(s.lost, 0, "queries lost in the hand-over: {line}");
        assert_eq!(s.failed(), 0, "queries failed in the hand-over: {line}");
    }
    let attached = d.xdp_ifnames();
    assert_eq!(
        attached.len(),
        d.lab.pods().len(),
        "agent 2 adopted the attachments (one per veth): {attached:?}"
    );
    assert_eq!(pin_files(&d.pins()), pins, "agent 2 adopted the pins");
    let before = d.xdp_hits();
    wait_for("agent 2's kernel answers", Duration::from_secs(10), || {
        ask(d.lab.pod(1).netns(), &server, WEB);
        (d.xdp_hits() > before).then_some(())
    })
    .unwrap();

    // --keep-on-exit leaves everything for the next agent; `dns-agent
    // cleanup` from the image removes it.
    assert_eq!(second.stop(grace).unwrap(), 0, "agent 2 exits cleanly");
    let listen: Vec<IpAddr> = listen_addrs(&d.pod).collect();
    assert!(!d.xdp_ifnames().is_empty(), "kept on exit");
    assert!(
        listen.iter().all(|&a| d.node_has_address(a)),
        "kept on exit"
    );
    d.cleanup();
    assert_eq!(d.xdp_ifnames(), [] as [String; 0], "cleanup detaches XDP");
    assert!(!d.pins().exists(), "cleanup removes {}", d.pins().display());
    for addr in listen {
        assert!(!d.node_has_address(addr), "cleanup removes {addr}");
    }
    let links = d.lab.node().ip(&["-o", "link", "show"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("nodedns0"),
        "cleanup removes the listen interface"
    );
}

/// dnsperf from pod 0: hot names over and over, and cold names once each,
/// which only userspace answers.
fn start_load(d: &Deployment, server: &str) -> HotColdRuns {
    HotColdLoad {
        server: server.to_string(),
        hot: &[
            (WEB, "A"),
            (WEB, "AAAA"),
            ("kubernetes.default.svc.cluster.local", "A"),
            ("cart.shop.svc.cluster.local", "A"),
            (
                "web.default.svc.cluster.local.default.svc.cluster.local",
                "A",
            ),
        ],
        hot_qps: HOT_QPS,
        cold_qps: COLD_QPS,
        secs: LOAD_SECS,
        timeout_secs: PERF_TIMEOUT_SECS,
        clients: 8,
    }
    .start(&d.lab, d.lab.pod(0).netns(), "")
    .unwrap()
}

#[test]
fn image_stays_within_the_daemonset_memory_limit_at_the_largest_cluster() {
    let d = Deployment::new(1);
    let start = Instant::now();
    for object in scale_cluster(LARGEST_CLUSTER_SERVICES) {
        d.api.apply(object);
    }
    println!(
        "applied {LARGEST_CLUSTER_SERVICES} Services and their EndpointSlices to the fake API server in {:?}",
        start.elapsed()
    );
    let limit = d
        .pod
        .resources
        .memory_limit
        .expect("the DaemonSet sets a memory limit");
    let agent = Container::start("agent-big", &d.options, &d.image, &d.pod.args).unwrap();
    agent
        .wait_for_log("first full sync complete", LARGE_SYNC_TIMEOUT)
        .unwrap();
    let server = first_listen_v4(&d.pod);
    let pod = d.lab.pod(0);
    wait_for("a Service of the big cluster", START_TIMEOUT, || {
        let lookup = ask(pod.netns(), &server, "svc-1.ns-1.svc.cluster.local");
        (lookup.data() == ["10.96.0.1"]).then_some(())
    })
    .unwrap();
    let before = d.xdp_hits();
    wait_for("an answer from the kernel", Duration::from_secs(10), || {
        ask(pod.netns(), &server, "svc-2.ns-2.svc.cluster.local");
        (d.xdp_hits() > before).then_some(())
    })
    .unwrap();

    let first_sync = agent.memory().unwrap();
    let lists = || agent.logs().matches("full list applied").count();
    let lists_before = lists();
    // The worst case: the API server expires the agent's watches, and it
    // lists everything again while it still holds the state it serves.
    // (Down first, so the change below reaches the agent only by the
    // relist, and its resume is older than the kept history: 410 Gone.)
    d.api.set_down(true);
    std::thread::sleep(WATCHES_END);
    for object in scale_cluster(1) {
        d.api.apply(object);
    }
    d.api.expire();
    d.api.set_down(false);
    wait_for("the relist after 410 Gone", LARGE_SYNC_TIMEOUT, || {
        // Services and EndpointSlices.
        let relisted = lists() >= lists_before + 2;
        (relisted || !agent.is_running()).then_some(())
    })
    .unwrap();
    // podman 4.3 does not always notice a cgroup v1 OOM kill: exit code
    // 137 (SIGKILL) is the sign, and the kernel log names the cgroup.
    assert!(
        agent.is_running(),
        "the agent stopped during the relist: OOM-killed {}, exit code {:?} (137 is SIGKILL: \
         see `dmesg` for the OOM killer)",
        agent.oom_killed(),
        agent.inspect("{{.State.ExitCode}}")
    );
    let memory = agent.memory().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid().unwrap())).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let page = d.metrics();
    let mib = |b: f64| b / (1u64 << 20) as f64;
    println!(
        "memory at {LARGEST_CLUSTER_SERVICES} Services, {} endpoints:\n  \
         cgroup peak {:.1} MiB (first sync {:.1} MiB, then a relist), now {:.1} MiB, kernel {:.1} MiB, \
         limit {:.1} MiB (manifest {:.1} MiB), OOM kills {}\n  \
         agent peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB\n  \
         kernel maps (nodedns_xdp_map_memory_bytes) {:.1} MiB, cluster state (nodedns_cluster_memory_bytes) {:.1} MiB",
        LARGEST_CLUSTER_SERVICES * SCALE_ENDPOINTS_PER_SERVICE,
        mib(memory.peak_bytes as f64),
        mib(first_sync.peak_bytes as f64),
        mib(memory.usage_bytes as f64),
        mib(memory.kernel_bytes as f64),
        mib(memory.limit_bytes as f64),
        mib(limit as f64),
        memory.oom_kills,
        kib("VmHWM:") as f64 / 1024.0,
        kib("VmRSS:") as f64 / 1024.0,
        mib(page.sum("nodedns_xdp_map_memory_bytes", &[]) as f64),
        mib(page.sum("nodedns_cluster_memory_bytes", &[]) as f64),
    );
    assert_eq!(memory.oom_kills, 0, "the OOM killer ran in the container");
    assert_eq!(
        memory.limit_bytes, limit,
        "the container has the manifest's limit"
    );
    assert!(memory.peak_bytes < limit);

    let grace = Duration::from_secs(d.pod.termination_grace_secs);
    assert_eq!(agent.stop(grace).unwrap(), 0);
    d.cleanup();
}
