//! Shared by the end-to-end tests (e2e_*): the real `dns-agent` binary in a
//! lab node, its `/metrics` and `inspect` output, the fake API server
//! listening inside the node namespace, and `dig`/`kdig` replies parsed into
//! rcode and records.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nodedns_tests::fakeapi::FakeApi;
use nodedns_tests::lab::{BpffsDir, Daemon, Lab, Netns, Pod, Signal, inspect_json, wait_for};
use serde_json::Value;

/// Where the agent serves `/metrics` and the health pages, inside the lab's
/// node namespace (its own loopback, so fixed ports cannot clash).
pub const METRICS_ADDR: &str = "127.0.0.1:9253";
pub const HEALTH_ADDR: &str = "127.0.0.1:9254";
/// Bound on the agent's start (XDP load through the verifier, first sync).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a change becoming visible to clients. The requirement is 1 s;
/// this is generous so a loaded CI machine does not fail the test, and the
/// measured time is printed.
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(5);
/// SIGTERM grace before SIGKILL when a test ends.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines printed when a test fails with the agent running.
const LOG_LINES_ON_FAILURE: usize = 200;

/// Where the agent's cluster state comes from.
pub enum Source<'a> {
    Manifests(&'a Path),
    Kubeconfig(&'a Path),
}

/// The agent running in the lab node, with XDP on every pod's host-side
/// veth and its maps pinned in a bpffs directory of its own. Dropping it
/// stops the agent (SIGTERM, continuing it if stopped, then SIGKILL) and
/// removes the pins, and prints its log if the test is failing.
pub struct Agent {
    // Field order is drop order: the agent exits before its pins go.
    daemon: Daemon,
    bpffs: BpffsDir,
    node: PathBuf,
    /// The command line, for [`Agent::restart`].
    args: Vec<String>,
    starts: u32,
}

impl Agent {
    /// Starts `dns-agent run` and waits until `/readyz` says ready (first
    /// sync done, listeners up); with `wait_ready` false only until it
    /// serves (for tests where the first sync cannot happen yet).
    pub fn start(
        lab: &Lab,
        source: Source<'_>,
        upstream: SocketAddr,
        extra: &[&str],
        wait_ready: bool,
    ) -> Self {
        let bpffs = BpffsDir::create().expect("create a bpffs pin directory");
        let mut args: Vec<String> = [
            "run",
            "--bpffs-path",
            &bpffs.path().display().to_string(),
            "--cleanup-on-exit",
            "--upstream",
            &upstream.to_string(),
            "--metrics-addr",
            METRICS_ADDR,
            "--health-addr",
            HEALTH_ADDR,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for pod in lab.pods() {
            args.extend(["--interface".to_string(), pod.node_ifname().to_string()]);
        }
        match source {
            Source::Manifests(dir) => {
                args.extend(["--manifests".to_string(), dir.display().to_string()]);
            }
            Source::Kubeconfig(file) => {
                args.extend(["--kubeconfig".to_string(), file.display().to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let daemon = launch(lab, "dns-agent", &args, wait_ready);
        Self {
            daemon,
            bpffs,
            node: PathBuf::from(lab.node().name()),
            args,
            starts: 1,
        }
    }

    /// SIGKILL, like a crash or the OOM killer: the agent runs no exit code,
    /// so its XDP links and maps stay pinned.
    pub fn kill(&mut self) {
        self.daemon
            .kill()
            .unwrap_or_else(|e| panic!("kill the agent: {e}"));
    }

    /// Starts the agent again with the same command line and pin directory
    /// (after [`Agent::kill`] or [`Agent::stop`]) and waits until ready.
    pub fn restart(&mut self, lab: &Lab) {
        assert!(
            !self.daemon.is_running(),
            "restart: the agent is still running"
        );
        self.starts += 1;
        let name = format!("dns-agent-{}", self.starts);
        self.daemon = launch(lab, &name, &self.args, true);
    }

    pub fn bpffs(&self) -> &Path {
        self.bpffs.path()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn signal(&mut self, signal: Signal) {
        self.daemon
            .signal(signal)
            .unwrap_or_else(|e| panic!("signal the agent: {e}"));
    }

    /// Stops the agent (SIGTERM, SIGCONT, SIGKILL after a grace period).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.daemon
            .stop(STOP_GRACE)
            .unwrap_or_else(|e| panic!("stop the agent: {e}"))
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// `/metrics`, scraped inside the node namespace.
    pub fn metrics(&self, node: &Netns) -> Metrics {
        let (status, body) =
            http_get(node, METRICS_ADDR, "/metrics").expect("scrape the agent's /metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// `dns-agent inspect --json`: the kernel's entries and counters.
    pub fn inspect(&self) -> Inspect {
        Inspect(inspect_json(self.bpffs.path()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.daemon.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!(
                "e2e: dns-agent log ({} of {} lines, node netns {}):\n{}",
                tail.len(),
                lines.len(),
                self.node.display(),
                tail.join("\n")
            );
        }
        // `stop` continues a SIGSTOPped agent after the SIGTERM, so it exits
        // cleanly (detaching XDP, removing its pins) even after a failed
        // SIGSTOP test.
        if let Err(e) = self.daemon.stop(STOP_GRACE) {
            eprintln!("e2e: could not stop dns-agent: {e}");
        }
    }
}

/// Starts the agent in the lab node and waits until it serves (and, with
/// `wait_ready`, until `/readyz` returns 200).
fn launch(lab: &Lab, name: &str, args: &[String], wait_ready: bool) -> Daemon {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon = lab.start_agent(name, &argv).expect("start dns-agent");
    if let Err(e) = daemon.wait_for_log("dns-agent running", START_TIMEOUT) {
        panic!("the agent did not start serving: {e}");
    }
    if wait_ready {
        let node = lab.node();
        let ready = wait_for("/readyz to return 200", START_TIMEOUT, || {
            let (status, _) = http_get(node, HEALTH_ADDR, "/readyz")?;
            (status == 200).then_some(())
        });
        if let Err(e) = ready {
            panic!("{e}; agent log:\n{}", daemon.log());
        }
    }
    daemon
}

/// `GET path` on `addr` from inside `netns`: status and body, or `None`
/// when nothing answers.
pub fn http_get(netns: &Netns, addr: &str, path: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = addr.parse().ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = netns
        .enter(|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })
        .ok()?
        .ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// One `/metrics` scrape: samples as `(name{labels}, value)`.
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sum of every sample of `name` whose labels include all of
    /// `labels` (`key="value"` pairs).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| *v as u64)
            .sum()
    }

    /// Queries answered in userspace, all paths together.
    pub fn userspace_queries(&self) -> u64 {
        self.sum("nodedns_queries_total", &[])
    }

    /// Packets the XDP program answered itself.
    pub fn xdp_hits(&self) -> u64 {
        self.sum("nodedns_xdp_packets_total", &[("outcome", "hit")])
    }

    /// Every userspace sample, for failure messages.
    pub fn queries_table(&self) -> String {
        self.0
            .iter()
            .filter(|(s, v)| {
                (s.starts_with("nodedns_queries_total") || s.starts_with("nodedns_xdp_packets"))
                    && *v > 0.0
            })
            .map(|(s, v)| format!("{s} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `dns-agent inspect --json`.
pub struct Inspect(Value);

impl Inspect {
    /// The kernel entry for `name` (with or without the final dot) and
    /// `qtype`, if any.
    pub fn entry(&self, name: &str, qtype: &str) -> Option<&Value> {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        self.0["entries"].as_array()?.iter().find(|e| {
            e["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&fqdn))
                && e["qtype"] == qtype
        })
    }

    /// A kernel counter, whether `counters` is printed as an object or as
    /// `[name, value]` pairs.
    pub fn counter(&self, name: &str) -> u64 {
        let counters = &self.0["counters"];
        if let Some(value) = counters.get(name) {
            return value.as_u64().unwrap_or(0);
        }
        counters
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c[0] == name)
            .and_then(|c| c[1].as_u64())
            .unwrap_or(0)
    }
}

impl std::fmt::Display for Inspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// A DNS reply as `dig` or `kdig` printed it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `NOERROR`, `NXDOMAIN`, ..., or `TIMEOUT` when nothing came back.
    pub status: String,
    /// `TYPE rdata` of each answer record, in order.
    pub answers: Vec<String>,
    /// `TYPE rdata` of each authority record.
    pub authority: Vec<String>,
    pub raw: String,
}

impl Reply {
    pub fn parse(out: &Output) -> Self {
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = raw
            .split_once("status: ")
            .and_then(|(_, rest)| rest.split([',', ';']).next())
            .map_or_else(|| "TIMEOUT".to_string(), |s| s.trim().to_string());
        Self {
            status,
            answers: section(&raw, ";; ANSWER SECTION:"),
            authority: section(&raw, ";; AUTHORITY SECTION:"),
            raw,
        }
    }

    /// The rdata of the answers of type `rtype`.
    pub fn rdata(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|a| a.strip_prefix(rtype)?.strip_prefix(' '))
            .map(str::to_string)
            .collect()
    }

    pub fn has_soa(&self) -> bool {
        self.authority.iter().any(|r| r.starts_with("SOA "))
    }
}

/// The records under `header` as `TYPE rdata` (dig: `name ttl class type
/// rdata...`).
fn section(raw: &str, header: &str) -> Vec<String> {
    let Some((_, rest)) = raw.split_once(header) else {
        return Vec::new();
    };
    rest.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with(";;"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() >= 5).then(|| format!("{} {}", fields[3], fields[4..].join(" ")))
        })
        .collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `dig <args>` from `pod` (one try, 2 s), parsed.
pub fn dig(pod: &Pod, args: &[&str]) -> Reply {
    Reply::parse(&pod.dig(args).expect("run dig in the pod"))
}

/// `kdig <args>` from `pod` (no retry, 2 s), parsed.
pub fn kdig(pod: &Pod, args: &[&str]) -> Reply {
    Reply::parse(&pod.kdig(args).expect("run kdig in the pod"))
}

/// Runs `probe` (typically a `dig`) until `done` accepts its value; prints
/// and returns how long that took, measured from `start`. Panics after
/// `bound` with `what` and the last value seen.
pub fn measure_until<T: std::fmt::Debug>(
    what: &str,
    start: Instant,
    bound: Duration,
    mut probe: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> Duration {
    loop {
        let value = probe();
        if done(&value) {
            let took = start.elapsed();
            println!("e2e: {what}: {took:?}");
            return took;
        }
        assert!(
            start.elapsed() <= bound,
            "{what}: not seen within {bound:?}; last: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The demo cluster (`deploy/examples/demo-*.yaml`) copied into `dir`, so a
/// test can edit it.
pub fn copy_demo_manifests(dir: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    std::fs::create_dir_all(dir).expect("create the manifests dir");
    for entry in std::fs::read_dir(&examples).expect("read deploy/examples") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("demo-") && name.ends_with(".yaml") {
            std::fs::copy(&path, dir.join(&name)).expect("copy a demo manifest");
        }
    }
}

/// The fake API server listening on 127.0.0.1 inside the lab's node
/// namespace, where the agent runs, served by a runtime of its own.
pub struct NodeApi {
    // Field order is drop order: the server stops before its runtime.
    api: FakeApi,
    _runtime: tokio::runtime::Runtime,
}

impl NodeApi {
    pub fn start(node: &Netns) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        // The listening socket is created by the thread that polls `start`,
        // which has entered the node namespace; the server's tasks then run
        // on the runtime's workers, wherever they are.
        let api = node
            .enter(|| runtime.block_on(FakeApi::start()))
            .expect("enter the node namespace")
            .expect("start the fake API server");
        Self {
            api,
            _runtime: runtime,
        }
    }
}

impl Deref for NodeApi {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.api
    }
}
