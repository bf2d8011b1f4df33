//! Shared by the node-level end-to-end tests (e2e_xdp, e2e_restart) and the
//! demo binary (which includes this file by path): the real `dns-agent run`
//! in a lab node with XDP on the pods' host-side veths, a local upstream,
//! the kernel's counters, `/metrics`, and parsed `dig`/`kdig` output.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nodedns_tests::lab::{Daemon, LISTEN_V4, LISTEN_V6, Lab, Netns, inspect_json};

/// How long an agent may take to load, attach and bind.
pub const AGENT_READY: Duration = Duration::from_secs(20);
/// The local upstream's port in the node namespace (not 53: the agent's
/// listen addresses hold that).
pub const UPSTREAM_PORT: u16 = 5353;
/// The domain the local upstream answers for every name under it.
pub const UPSTREAM_ZONE: &str = "example.com";
/// The address every name under [`UPSTREAM_ZONE`] resolves to.
pub const UPSTREAM_ANSWER: &str = "192.0.2.80";
/// First metrics port; agent `slot` uses `METRICS_BASE + 2 * slot` and the
/// next port for health, so two agents can run side by side in a hand-over.
const METRICS_BASE: u16 = 19253;
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// The demo cluster the agent serves (`--manifests`).
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .canonicalize()
        .expect("deploy/examples exists next to the tests crate")
}

/// How an agent is started in a lab node.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub bpffs: PathBuf,
    /// `--xdp-mode`.
    pub xdp_mode: &'static str,
    /// Distinguishes agents that run at the same time (their HTTP ports).
    pub slot: u16,
    pub extra: Vec<String>,
}

impl AgentSpec {
    pub fn new(bpffs: &Path, xdp_mode: &'static str) -> Self {
        Self {
            bpffs: bpffs.to_path_buf(),
            xdp_mode,
            slot: 0,
            extra: Vec::new(),
        }
    }

    pub fn metrics_port(&self) -> u16 {
        METRICS_BASE + 2 * self.slot
    }

    /// The `dns-agent run` arguments: both lab listen addresses (already on
    /// the node's `lo`, so the agent creates no interface), every lab veth,
    /// the demo manifests and the local upstream.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--manifests",
            &manifests_dir().to_string_lossy(),
            "--listen",
            &LISTEN_V4.to_string(),
            "--listen",
            &LISTEN_V6.to_string(),
            "--no-create-interface",
            "--upstream",
            &format!("127.0.0.1:{UPSTREAM_PORT}"),
            "--bpffs-path",
            &self.bpffs.to_string_lossy(),
            "--interface",
            "veth*",
            "--xdp-mode",
            self.xdp_mode,
            "--metrics-addr",
            &format!("127.0.0.1:{}", self.metrics_port()),
            "--health-addr",
            &format!("127.0.0.1:{}", self.metrics_port() + 1),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts the agent and waits until it serves and its zone is loaded.
    pub fn start(&self, lab: &Lab, name: &str) -> Daemon {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut agent = lab.start_agent(name, &args).expect("start dns-agent");
        agent
            .wait_for_log("dns-agent running", AGENT_READY)
            .expect("the agent starts serving");
        agent
            .wait_for_log("first full sync complete", AGENT_READY)
            .expect("the agent loads the demo manifests");
        agent
    }
}

/// dnsmasq on 127.0.0.1:[`UPSTREAM_PORT`] in the node namespace, answering
/// every name under [`UPSTREAM_ZONE`] with [`UPSTREAM_ANSWER`].
pub fn start_upstream(lab: &Lab) -> Daemon {
    let pid_file = lab.log_dir().join("upstream.pid");
    let mut dnsmasq = lab
        .start(
            "upstream",
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={UPSTREAM_PORT}"),
                &format!("--pid-file={}", pid_file.display()),
                &format!("--address=/{UPSTREAM_ZONE}/{UPSTREAM_ANSWER}"),
                "--cache-size=0",
                // dnsmasq's own records default to TTL 0: nothing to cache.
                "--local-ttl=30",
                "--log-facility=-",
            ],
        )
        .expect("start dnsmasq (apt-get install dnsmasq-base)");
    dnsmasq
        .wait_for_log("started", Duration::from_secs(10))
        .expect("dnsmasq starts");
    dnsmasq
}

/// The kernel's counters (all CPUs) from `dns-agent inspect --json`, which
/// reads the pinned maps (bpffs is shared by every namespace).
pub fn kernel_counters(bpffs: &Path) -> BTreeMap<String, u64> {
    let snap = inspect_json(bpffs);
    let counters = &snap["counters"];
    // An object `{"hit": 3, ...}` (or, from older agents, `[["hit", 3], ...]`).
    if let Some(object) = counters.as_object() {
        return object
            .iter()
            .map(|(name, n)| (name.clone(), n.as_u64().unwrap_or(0)))
            .collect();
    }
    counters
        .as_array()
        .unwrap_or_else(|| panic!("inspect --json has no counters: {snap}"))
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or("?").to_string(),
                pair[1].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Names (`name/TYPE`) of the kernel map's entries.
pub fn kernel_entries(bpffs: &Path) -> Vec<String> {
    inspect_json(bpffs)["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{}/{}", e["name"].as_str().unwrap_or("?"), e["qtype"]))
                .collect()
        })
        .unwrap_or_default()
}

/// The body of `GET /metrics` from an agent in `netns` (its metrics address
/// is loopback inside that namespace).
pub fn metrics(netns: &Netns, port: u16) -> String {
    netns
        .enter(|| -> std::io::Result<String> {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
            stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or(text))
        })
        .expect("enter the node namespace")
        .expect("GET /metrics")
}

/// The value of one sample line (`name{labels}` exactly) in a metrics page.
pub fn metric(page: &str, sample: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// What a `dig` or `kdig` run printed, parsed.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// NOERROR, NXDOMAIN, ...; empty when no answer came.
    pub status: String,
    /// Answer-section records as `name TYPE data`.
    pub answers: Vec<String>,
    /// The question as echoed by the server (its owner name's case kept).
    pub question: String,
    /// Query time in ms as the client measured it (dig: whole ms, kdig: 0.1).
    pub millis: Option<f64>,
    pub raw: String,
}

impl Lookup {
    pub fn answered(&self) -> bool {
        !self.status.is_empty()
    }

    /// The data of every answer record (addresses, targets), in order.
    pub fn data(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|a| a.splitn(3, ' ').nth(2).map(str::to_string))
            .collect()
    }

    /// Parses dig's or kdig's default (multi-section) output.
    pub fn parse(out: &Output) -> Self {
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lookup = Lookup {
            raw: raw.clone(),
            ..Default::default()
        };
        let mut section = "";
        for line in raw.lines() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.split("status: ").nth(1) {
                lookup.status = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
            }
            if trimmed.contains("QUESTION SECTION") {
                section = "question";
                continue;
            }
            if trimmed.contains("ANSWER SECTION") {
                section = "answer";
                continue;
            }
            if trimmed.contains(" SECTION") || trimmed.is_empty() {
                section = "";
                continue;
            }
            // dig: ";; Query time: 3 msec"; kdig: ";; From 169.254.20.10@53(UDP) in 0.2 ms".
            if let Some(rest) = trimmed.strip_prefix(";; Query time: ") {
                lookup.millis = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if trimmed.starts_with(";; From ")
                && let Some(rest) = trimmed.rsplit(" in ").next()
            {
                lookup.millis = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
            match section {
                "question" => {
                    lookup.question = trimmed.trim_start_matches(';').trim().to_string();
                }
                "answer" if !trimmed.starts_with(';') => {
                    let f: Vec<&str> = trimmed.split_whitespace().collect();
                    // owner TTL IN TYPE data...
                    if f.len() >= 5 && f[2] == "IN" {
                        lookup
                            .answers
                            .push(format!("{} {} {}", f[0], f[3], f[4..].join(" ")));
                    }
                }
                _ => {}
            }
        }
        lookup
    }
}

/// `dig` from a pod with the lab's bounded timeouts. `+nocookie` because a
/// DNS COOKIE option is EDNS the XDP program leaves to userspace.
pub fn dig(netns: &Netns, server: &str, name: &str, qtype: &str, extra: &[&str]) -> Lookup {
    let at = format!("@{server}");
    let mut args = vec!["+time=1", "+tries=1", "+nocookie", at.as_str(), name, qtype];
    args.extend_from_slice(extra);
    Lookup::parse(&netns.output("dig", &args).expect("run dig"))
}

/// `kdig` from a pod (no EDNS by default).
pub fn kdig(netns: &Netns, server: &str, name: &str, qtype: &str) -> Lookup {
    let at = format!("@{server}");
    let args = ["+timeout=1", "+retry=0", at.as_str(), name, qtype];
    Lookup::parse(&netns.output("kdig", &args).expect("run kdig"))
}

/// The counter `name` in a snapshot (0 when absent).
pub fn count(counters: &BTreeMap<String, u64>, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}

/// Where XDP programs sit in `netns`: `(interface, mode, program id)` from
/// `bpftool net -j`.
pub fn xdp_attachments(netns: &Netns) -> Vec<(String, String, u64)> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", netns.name()))
        .args(["--", "bpftool", "-j", "net", "show"])
        .output()
        .expect("run bpftool net");
    assert!(
        out.status.success(),
        "bpftool net: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bpftool -j prints JSON");
    let mut found = Vec::new();
    for block in json.as_array().into_iter().flatten() {
        for xdp in block["xdp"].as_array().into_iter().flatten() {
            found.push((
                xdp["devname"].as_str().unwrap_or("?").to_string(),
                xdp["mode"].as_str().unwrap_or("?").to_string(),
                xdp["id"].as_u64().unwrap_or(0),
            ));
        }
    }
    found
}

/// Every file under `dir`, relative, sorted (for leak checks of pins).
pub fn pin_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Asks `name`/`qtype` with dig until the kernel answers it (the first
/// answer comes from userspace, which then puts the entry into the map).
pub fn warm_kernel(bpffs: &Path, netns: &Netns, server: &str, name: &str, qtype: &str) {
    nodedns_tests::lab::wait_for(
        &format!("{name}/{qtype} answered by XDP"),
        Duration::from_secs(10),
        || {
            let before = count(&kernel_counters(bpffs), "hit");
            let lookup = dig(netns, server, name, qtype, &[]);
            let after = count(&kernel_counters(bpffs), "hit");
            (lookup.answered() && after > before).then_some(())
        },
    )
    .unwrap();
}
