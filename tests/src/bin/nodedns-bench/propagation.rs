//! Update propagation: the time from a Service change (the manifest file
//! replaced) to the new answer, first from any path and then from the XDP
//! program. A fast client in the pod polls; the program's `hit` counter,
//! read around each query, tells whether the kernel answered it (nothing
//! else queries that agent meanwhile).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dns_common::Counter;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use nodedns_tests::lab::Lab;

use crate::cluster::Cluster;
use crate::counters::XdpCounters;
use crate::servers::Server;

const POLL_TIMEOUT: Duration = Duration::from_secs(15);
const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// Queries that make the name hot (promoted into the XDP map) first.
const WARM_QUERIES: usize = 20;

pub struct Propagation {
    /// Change → first new answer from any path.
    pub any_ms: f64,
    /// Change → first new answer from the XDP program.
    pub kernel_ms: Option<f64>,
}

struct Client {
    socket: UdpSocket,
    id: u16,
}

impl Client {
    fn ask(&mut self, name: &Name) -> Result<Option<Ipv4Addr>> {
        self.id = self.id.wrapping_add(1);
        let mut m = Message::new(self.id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), RecordType::A));
        self.socket
            .send(&m.to_vec().context("encode a query")?)
            .context("send a query")?;
        let mut buf = [0u8; 1500];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .context("no reply within the poll timeout")?;
            let reply = Message::from_vec(&buf[..n]).context("decode a reply")?;
            if reply.metadata.id != self.id {
                continue;
            }
            return Ok(reply.answers.iter().find_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            }));
        }
    }
}

pub fn measure(
    lab: &Lab,
    server: &Server,
    cluster: &Cluster,
    rounds: usize,
) -> Result<Vec<Propagation>> {
    let manifests = server.manifests.as_ref().context("not an agent")?;
    let bpffs = server.bpffs.as_ref().context("not an agent")?;
    let counters = XdpCounters::open(bpffs.path())?;
    let target = 0; // svc-0, in the pod's namespace
    let svc = &cluster.services[target];
    let name = Name::from_ascii(format!("{}.", svc.fqdn())).context("service name")?;
    let server_addr = SocketAddr::from((server.addr, 53));
    let socket = lab
        .pod(server.pod)
        .netns()
        .enter(|| -> std::io::Result<UdpSocket> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(server_addr)?;
            s.set_read_timeout(Some(REPLY_TIMEOUT))?;
            Ok(s)
        })??;
    let mut client = Client { socket, id: 0 };
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let new_ip = Ipv4Addr::new(10, 99, 0, round as u8 + 1);
        let old_ip = if round == 0 {
            svc.v4
        } else {
            Ipv4Addr::new(10, 99, 0, round as u8)
        };
        for _ in 0..WARM_QUERIES {
            let got = client.ask(&name)?;
            if got != Some(old_ip) {
                bail!("{name} answered {got:?} before the change, not {old_ip}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cluster.write_manifests_with(manifests, Some((target, new_ip)))?;
        let changed = Instant::now();
        let mut any = None;
        let kernel = loop {
            if changed.elapsed() > POLL_TIMEOUT {
                break None;
            }
            let before = counters.get(Counter::Hit)?;
            let got = client.ask(&name)?;
            let by_kernel = counters.get(Counter::Hit)? > before;
            if got == Some(new_ip) {
                let t = changed.elapsed().as_secs_f64() * 1e3;
                any.get_or_insert(t);
                if by_kernel {
                    break Some(t);
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let Some(any_ms) = any else {
            bail!("{name} never answered {new_ip} within {POLL_TIMEOUT:?} of the change");
        };
        out.push(Propagation {
            any_ms,
            kernel_ms: kernel,
        });
    }
    // Leave the cluster as it was.
    cluster.write_manifests(manifests)?;
    Ok(out)
}
