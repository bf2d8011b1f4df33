//! Shared by the resolver_* integration tests: a static cluster zone, a
//! resolver started in-process on a unique loopback address, and DNS
//! clients (real `dig`, and a small in-process one for concurrency).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dns_agent::fastpath::sink::{AnswerSink, MemorySink};
use dns_agent::metrics::{Registry, new_registry};
use dns_agent::resolver::{self, ResolverArgs, ResolverDeps};
use dns_agent::zone::{AuthAnswer, ForwardPolicy, Zone, ZoneLookup};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// A cluster zone `cluster.local.` with A records set by the test.
pub struct StaticZone {
    origin: Name,
    a: RwLock<HashMap<LowerName, Vec<Ipv4Addr>>>,
    ready: AtomicBool,
    generation: watch::Sender<u64>,
}

impl StaticZone {
    pub fn new(ready: bool) -> Arc<Self> {
        Arc::new(Self {
            origin: name("cluster.local."),
            a: RwLock::new(HashMap::new()),
            ready: AtomicBool::new(ready),
            generation: watch::channel(0).0,
        })
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn set_a(&self, n: &str, ip: Ipv4Addr) {
        self.set_many(n, vec![ip]);
    }

    /// A headless service: one A record per endpoint.
    pub fn set_many(&self, n: &str, ips: Vec<Ipv4Addr>) {
        self.a
            .write()
            .unwrap()
            .insert(LowerName::new(&name(n)), ips);
        self.changed();
    }

    pub fn remove(&self, n: &str) {
        self.a.write().unwrap().remove(&LowerName::new(&name(n)));
        self.changed();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.changed();
    }

    fn soa(&self) -> Record {
        let soa = SOA::new(
            name("ns.dns.cluster.local."),
            name("hostmaster.cluster.local."),
            1,
            7200,
            1800,
            86400,
            5,
        );
        Record::from_rdata(self.origin.clone(), 5, RData::SOA(soa))
    }
}

impl Zone for StaticZone {
    fn lookup(&self, qname: &LowerName, qtype: RecordType) -> ZoneLookup {
        let n = Name::from(qname);
        if !self.origin.zone_of(&n) {
            return ZoneLookup::NotOurs;
        }
        if !self.ready.load(Ordering::Relaxed) {
            return ZoneLookup::NotReady;
        }
        let a = self.a.read().unwrap();
        let mut answer = AuthAnswer {
            rcode: ResponseCode::NoError,
            answers: vec![],
            authority: vec![],
            additionals: vec![],
        };
        match a.get(qname) {
            Some(ips) if qtype == RecordType::A => {
                for ip in ips {
                    let record = Record::from_rdata(n.clone(), 30, RData::A(A(*ip)));
                    answer.answers.push(record);
                }
            }
            Some(_) => answer.authority.push(self.soa()),
            None => {
                answer.rcode = ResponseCode::NXDomain;
                answer.authority.push(self.soa());
            }
        }
        ZoneLookup::Answer(answer)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A loopback address no other test process is likely to use:
/// 127.<100 + pid % 150>.<pid / 150 % 250>.<counter>.
pub fn unique_ip() -> Ipv4Addr {
    static COUNTER: AtomicU16 = AtomicU16::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250 + 1;
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        100 + (pid % 150) as u8,
        (pid / 150 % 250) as u8,
        n as u8,
    )
}

pub struct TestResolver {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub zone: Arc<StaticZone>,
    pub sink: Arc<MemorySink>,
    pub policy: watch::Sender<Arc<ForwardPolicy>>,
    cancel: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestResolver {
    /// A resolver on a unique loopback address and port, forwarding to
    /// `upstreams`, with `extra` flags.
    pub async fn start(upstreams: &[SocketAddr], extra: &[&str]) -> Self {
        Self::start_with_zone(StaticZone::new(true), upstreams, extra).await
    }

    pub async fn start_with_zone(
        zone: Arc<StaticZone>,
        upstreams: &[SocketAddr],
        extra: &[&str],
    ) -> Self {
        Self::start_full(zone, upstreams, extra, new_registry).await
    }

    /// As `start_with_zone`, with the registry other modules filled first.
    pub async fn start_full(
        zone: Arc<StaticZone>,
        upstreams: &[SocketAddr],
        extra: &[&str],
        registry: fn() -> Registry,
    ) -> Self {
        let ip = unique_ip();
        let mut last_err = None;
        for attempt in 0..8u16 {
            let port = 20_000 + (rand::random::<u16>() % 30_000) + attempt;
            let mut flags: Vec<String> = vec![
                "--listen".into(),
                ip.to_string(),
                "--port".into(),
                port.to_string(),
                "--no-create-interface".into(),
                "--resolv-conf".into(),
                "/nonexistent/resolv.conf".into(),
                "--metrics-addr".into(),
                format!("{ip}:0"),
                "--health-addr".into(),
                format!("{ip}:0"),
            ];
            for u in upstreams {
                flags.push("--upstream".into());
                flags.push(u.to_string());
            }
            flags.extend(extra.iter().map(|s| s.to_string()));
            let args = ResolverArgs::from_flags(flags).expect("valid test flags");
            let sink = Arc::new(MemorySink::new(64));
            let (policy, policy_rx) = watch::channel(Arc::new(ForwardPolicy::default()));
            let cancel = CancellationToken::new();
            let deps = ResolverDeps {
                zone: zone.clone(),
                policy: policy_rx,
                sink: Some(sink.clone() as Arc<dyn AnswerSink>),
                registry: registry(),
                keep_interface_on_exit: false,
            };
            match resolver::start(args, deps, cancel.clone()).await {
                Ok(running) => {
                    let (metrics_addr, health_addr) = (running.metrics_addr, running.health_addr);
                    let done = tokio::spawn(running.wait());
                    return Self {
                        addr: SocketAddr::new(IpAddr::V4(ip), port),
                        metrics_addr,
                        health_addr,
                        zone,
                        sink,
                        policy,
                        cancel,
                        done: Some(done),
                    };
                }
                Err(e) => last_err = Some(e),
            }
        }
        panic!("resolver did not start: {:?}", last_err);
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done)
                .await
                .expect("resolver stops")
                .unwrap();
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics").await.1
    }

    /// Sum of every sample of `family` whose labels contain all of `labels`.
    pub async fn metric(&self, family: &str, labels: &[&str]) -> f64 {
        let text = self.metrics().await;
        sum_metric(&text, family, labels)
    }
}

impl Drop for TestResolver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn sum_metric(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.0 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("http reply")
        .unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// What `dig` printed.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// (name, ttl, type, data)
    pub answers: Vec<(String, u32, String, String)>,
    pub authority: Vec<(String, u32, String, String)>,
    pub raw: String,
}

impl Dig {
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    pub fn addresses(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == "A" || a.2 == "AAAA")
            .map(|a| a.3.clone())
            .collect()
    }
}

/// Runs the real `dig` against `server`.
pub async fn dig(server: SocketAddr, qname: &str, qtype: &str, extra: &[&str]) -> Dig {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            qname,
            qtype,
            "+tries=1",
            "+time=6",
        ])
        .args(extra)
        .output()
        .await
        .expect("dig runs (apt-get install dnsutils)");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(text: &str) -> Dig {
    let mut d = Dig {
        raw: text.to_string(),
        ..Default::default()
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 5 {
            let rec = (
                w[0].to_string(),
                w[1].parse().unwrap_or(u32::MAX),
                w[3].to_string(),
                w[4..].join(" "),
            );
            match section {
                "answer" => d.answers.push(rec),
                "authority" => d.authority.push(rec),
                _ => {}
            }
        }
    }
    d
}

/// One query over UDP with the in-process client.
pub async fn udp_query(server: SocketAddr, qname: &str, qtype: RecordType) -> Option<Message> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    udp_exchange(server, &m.to_vec().unwrap())
        .await
        .and_then(|b| Message::from_vec(&b).ok())
}

/// Sends raw bytes over UDP; the reply, if one comes within 3 s.
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Waits until `cond` holds, polling, for at most `limit`.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, mut cond: F) -> bool {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
