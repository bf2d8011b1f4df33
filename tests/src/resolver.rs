//! The resolver in-process, without the agent binary or the kernel: a
//! static cluster zone the test edits, and the resolver started on a
//! loopback address of its own with a memory sink in place of the XDP map.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::{Reply, dig_at};
use crate::hostile::{ANSWER_A, HostileUpstream};
use crate::http::http_get;
use crate::internals::{
    AnswerSections, AnswerSink, Coredns, ForwardPolicy, MemorySink, Registry, ResolverArgs,
    ResolverDeps, Sink, Zone, ZoneLookup, new_registry, start_resolver,
};
use crate::metrics::Metrics;
use crate::records::{CLUSTER_ZONE, cluster_soa, name};

/// Entries the memory sink holds (it stands for the kernel map).
pub const SINK_CAPACITY: u32 = 64;
/// Ports tried before giving up on binding a resolver.
const BIND_ATTEMPTS: u16 = 8;
/// Bound on the resolver's shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

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
            origin: name(CLUSTER_ZONE),
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
        let mut answer = AnswerSections {
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
            Some(_) => answer.authority.push(cluster_soa(1)),
            None => {
                answer.rcode = ResponseCode::NXDomain;
                answer.authority.push(cluster_soa(1));
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

/// A resolver serving a zone (a [`StaticZone`] unless the test brings
/// another, such as the real cluster zone) on a unique loopback address,
/// with a [`MemorySink`] of [`SINK_CAPACITY`] entries as its kernel map.
pub struct TestResolver<Z: Zone = StaticZone> {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub zone: Arc<Z>,
    pub sink: Arc<MemorySink>,
    pub policy: watch::Sender<Arc<ForwardPolicy>>,
    cancel: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestResolver {
    /// A resolver forwarding to `upstreams`, with `extra` flags.
    pub async fn start(upstreams: &[SocketAddr], extra: &[&str]) -> Self {
        Self::start_with_zone(StaticZone::new(true), upstreams, extra).await
    }

    /// A resolver forwarding to a [`hostile_upstream`] of its own (which
    /// answers until told otherwise), with `extra` flags.
    pub async fn with_hostile_upstream(extra: &[&str]) -> (HostileUpstream, Self) {
        let up = hostile_upstream().await;
        let resolver = Self::start(&[up.addr], extra).await;
        (up, resolver)
    }

    /// [`Self::with_hostile_upstream`] without extra flags, its zone
    /// holding Service `name` of namespace `default` at `ip`.
    pub async fn with_service(name: &str, ip: Ipv4Addr) -> (HostileUpstream, Self) {
        let (up, resolver) = Self::with_hostile_upstream(&[]).await;
        resolver
            .zone
            .set_a(&format!("{name}.default.svc.cluster.local."), ip);
        (up, resolver)
    }
}

impl<Z: Zone> TestResolver<Z> {
    pub async fn start_with_zone(zone: Arc<Z>, upstreams: &[SocketAddr], extra: &[&str]) -> Self {
        Self::start_full(zone, upstreams, extra, new_registry).await
    }

    /// As `start_with_zone`, with the registry other modules filled first.
    pub async fn start_full(
        zone: Arc<Z>,
        upstreams: &[SocketAddr],
        extra: &[&str],
        registry: fn() -> Registry,
    ) -> Self {
        let ip = unique_ip();
        let mut last_err = None;
        for attempt in 0..BIND_ATTEMPTS {
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
            let sink = Arc::new(MemorySink::new(SINK_CAPACITY));
            let (policy, policy_rx) = watch::channel(Arc::new(ForwardPolicy::default()));
            let cancel = CancellationToken::new();
            let deps = ResolverDeps {
                zone: zone.clone(),
                policy: policy_rx,
                sink: Sink::Ready(sink.clone() as Arc<dyn AnswerSink>),
                registry: registry(),
                coredns: Some(Coredns::new(port, CLUSTER_ZONE)),
                keep_interface_on_exit: false,
                transparent: None,
            };
            match start_resolver(args, deps, cancel.clone()).await {
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
        panic!("resolver did not start: {last_err:?}");
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(STOP_TIMEOUT, done)
                .await
                .expect("resolver stops")
                .unwrap();
        }
    }

    /// The status of `path` on the health address.
    pub async fn health(&self, path: &str) -> u16 {
        get(self.health_addr, path).await.0
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&get(self.metrics_addr, "/metrics").await.1)
    }

    /// `dig name A` at the resolver, asserting the hostile upstream's
    /// answer ([`ANSWER_A`]); returns the reply for further checks.
    pub async fn assert_forwarded(&self, name: &str) -> Reply {
        let d = dig_at(self.addr, name, "A", &[]).await;
        assert_eq!(d.addresses(), [ANSWER_A], "{name}: {}", d.raw);
        d
    }

    /// Asserts that `family` with `labels` sums to `want`.
    pub async fn assert_metric(&self, family: &str, labels: &[(&str, &str)], want: u64) {
        let metrics = self.metrics().await;
        let got = metrics.sum(family, labels);
        assert_eq!(got, want, "{family} {labels:?}:\n{metrics}");
    }

    /// Asserts that `family` counted something with `labels`.
    pub async fn assert_counted(&self, family: &str, labels: &[(&str, &str)]) {
        let metrics = self.metrics().await;
        assert!(
            metrics.sum(family, labels) >= 1,
            "{family} {labels:?} counted nothing:\n{metrics}"
        );
    }

    /// Sum of every sample of `family` whose labels include all of `labels`.
    pub async fn metric(&self, family: &str, labels: &[(&str, &str)]) -> u64 {
        self.metrics().await.sum(family, labels)
    }
}

impl<Z: Zone> Drop for TestResolver<Z> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `GET path` on `addr`, off the runtime's threads: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .expect("the HTTP client thread")
        .unwrap_or_else(|e| panic!("GET {addr}: {e}"))
}

/// A [`HostileUpstream`] on a loopback address of its own, answering.
pub async fn hostile_upstream() -> HostileUpstream {
    HostileUpstream::start((unique_ip(), 0).into())
        .await
        .expect("hostile upstream starts")
}
