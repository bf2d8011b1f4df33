//! Fail-open time (docs/design.md#liveness): from the agent's death
//! (SIGKILL) or freeze (SIGSTOP) to the first query the cluster DNS Service
//! answers instead, for a pod that asks the ClusterIP (transparent mode)
//! and one that asks the link-local address. The lab is the e2e tier's: a
//! stand-in cluster DNS behind a kube-proxy-like DNAT
//! (`nodedns_tests::cluster_dns`). A client in each pod asks a fresh
//! cluster name every [`PROBE_EVERY`]: the agent answers NXDOMAIN, the
//! stand-in NOERROR, so the first NOERROR's send time, minus the signal's,
//! is the figure (to within one probe interval).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use nodedns_tests::agent::{Agent, AgentSpec, NO_UPSTREAM};
use nodedns_tests::cluster_dns::{CLUSTER_DNS_V4, ClusterDns};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, Pod, Signal};

/// A probe query this often.
const PROBE_EVERY: Duration = Duration::from_millis(2);
/// The probes run this long before the signal, so the agent is answering.
const LEAD_IN: Duration = Duration::from_millis(300);
/// Longest wait for the stand-in's first answer after the signal.
const BOUND: Duration = Duration::from_secs(5);

/// Milliseconds from the signal to fail-open, by case, one value a round.
pub struct Failover {
    pub metric: &'static str,
    pub ms: Vec<f64>,
}

/// The cases: how the agent dies, and where the pod asks.
const CASES: [(&str, Signal); 2] = [("sigkill", Signal::Kill), ("sigstop", Signal::Stop)];

pub fn measure(rounds: usize) -> Result<Vec<Failover>> {
    let mut lab = Lab::new(2).context("create the failover lab")?;
    lab.set_pod_nameserver(0, CLUSTER_DNS_V4.into())?;
    let _dns = ClusterDns::start(&lab)?;
    let spec = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .upstream(NO_UPSTREAM)
        .keep_on_exit()
        .args(&["--cluster-dns-ip", &CLUSTER_DNS_V4.to_string()]);
    let mut agent = spec.start(&lab, "failover-agent");
    let servers: [(&str, IpAddr); 2] = [
        ("clusterip", CLUSTER_DNS_V4.into()),
        ("linklocal", LISTEN_V4.into()),
    ];
    let mut out: Vec<Failover> = Vec::new();
    for (case, _) in CASES {
        for (path, _) in servers {
            out.push(Failover {
                metric: metric_name(case, path),
                ms: Vec::new(),
            });
        }
    }
    for round in 0..rounds {
        for (c, (case, signal)) in CASES.into_iter().enumerate() {
            eprintln!(
                "bench: fail-open after {case}, round {}/{rounds}",
                round + 1
            );
            let times = one(&lab, &mut agent, signal, &servers)?;
            for (p, ms) in times.into_iter().enumerate() {
                out[c * servers.len() + p].ms.push(ms);
            }
            match signal {
                Signal::Stop => agent.signal(Signal::Cont),
                _ => {
                    // Reaps it (the signal alone leaves a process to wait for).
                    agent.kill();
                    agent.restart(&lab);
                }
            }
            // Serving again before the next case: a miss is the agent's.
            let pod = lab.pod(0);
            let back = ask_until_nxdomain(pod, SocketAddr::new(CLUSTER_DNS_V4.into(), 53));
            back.with_context(|| format!("the agent did not serve again after {case}"))?;
        }
    }
    Ok(out)
}

fn metric_name(case: &str, path: &str) -> &'static str {
    match (case, path) {
        ("sigkill", "clusterip") => "failopen_after_sigkill_clusterip",
        ("sigkill", _) => "failopen_after_sigkill_linklocal",
        ("sigstop", "clusterip") => "failopen_after_sigstop_clusterip",
        _ => "failopen_after_sigstop_linklocal",
    }
}

/// One signal, with a probe in each pod; ms to fail-open by server.
fn one(
    lab: &Lab,
    agent: &mut Agent,
    signal: Signal,
    servers: &[(&str, IpAddr)],
) -> Result<Vec<f64>> {
    std::thread::scope(|scope| {
        let probes: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, (_, server))| {
                let pod = lab.pod(i);
                let server = SocketAddr::new(*server, 53);
                scope.spawn(move || pod.netns().enter(|| probe(server, i)))
            })
            .collect();
        std::thread::sleep(LEAD_IN);
        let signalled = Instant::now();
        agent.signal(signal);
        probes
            .into_iter()
            .zip(servers)
            .map(|(p, (name, _))| {
                let first = p
                    .join()
                    .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
                    .context("enter the pod")??;
                let Some(first) = first else {
                    bail!("{name}: the stand-in never answered within {BOUND:?} of the signal");
                };
                Ok(first.saturating_duration_since(signalled).as_secs_f64() * 1e3)
            })
            .collect()
    })
}

/// Asks fresh names at `server` until the stand-in answers one (NOERROR):
/// that query's send time, or `None` within [`BOUND`].
fn probe(server: SocketAddr, salt: usize) -> Result<Option<Instant>> {
    let socket = connect(server)?;
    socket.set_nonblocking(true)?;
    let deadline = Instant::now() + LEAD_IN + BOUND;
    let mut sent: HashMap<u16, Instant> = HashMap::new();
    let mut buf = [0u8; 1500];
    let mut i: u32 = 0;
    while Instant::now() < deadline {
        i += 1;
        let id = (i & 0xffff) as u16;
        let name = format!("f{salt}-{i}.nx.default.svc.cluster.local.");
        sent.insert(id, Instant::now());
        // A refused send (ICMP from an earlier query) is not the figure.
        let _ = socket.send(&query(id, &name)?);
        let next = Instant::now() + PROBE_EVERY;
        while Instant::now() < next {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let Ok(reply) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    if reply.metadata.response_code == ResponseCode::NoError {
                        return Ok(sent.get(&reply.metadata.id).copied());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => {}
            }
        }
    }
    Ok(None)
}

fn connect(server: SocketAddr) -> Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(any).context("bind the probe socket")?;
    socket.connect(server).context("connect the probe socket")?;
    Ok(socket)
}

fn query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(m.to_vec()?)
}

/// Asks fresh names until the agent answers one NXDOMAIN, within [`BOUND`].
fn ask_until_nxdomain(pod: &Pod, server: SocketAddr) -> Result<()> {
    pod.netns()
        .enter(|| -> Result<()> {
            let socket = connect(server)?;
            socket.set_read_timeout(Some(Duration::from_millis(200)))?;
            let deadline = Instant::now() + BOUND;
            let mut buf = [0u8; 1500];
            let mut id = 0u16;
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                let _ = socket.send(&query(id, &format!("b{id}.nx.default.svc.cluster.local."))?);
                if let Ok(n) = socket.recv(&mut buf)
                    && Message::from_vec(&buf[..n])
                        .is_ok_and(|m| m.metadata.response_code == ResponseCode::NXDomain)
                {
                    return Ok(());
                }
            }
            bail!("no NXDOMAIN from the agent at {server}")
        })
        .context("enter the pod")?
}
