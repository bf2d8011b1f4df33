//! Fail open (docs/design.md#fail-open): while no agent serves, a query the
//! kernel cannot answer goes to the cluster DNS Service.
//!
//! - To a cluster address: the caller passes it untouched, and kube-proxy
//!   does the rest.
//! - To a listen address, UDP: its destination becomes the first cluster
//!   address of its family, the flow is recorded in `NODEDNS_FLOWS`, and
//!   the egress program (`egress.rs`) gives the reply the listen address
//!   back as its source, so the pod sees an answer from what it asked.
//! - To a listen address, TCP: the same for every packet of a connection
//!   whose SYN failed open, until the connection has been idle for
//!   `TCP_FLOW_IDLE_NS`; a connection that started while an agent served
//!   stays with the agent's socket.
//!
//! Only interfaces where the egress program runs (`NODEDNS_EGRESS`) fail
//! listen-address queries open: elsewhere the reply would reach the pod
//! from an address it did not ask, so the query is passed as before
//! (`pass_no_fail_open`).

use core::ffi::c_void;

use aya_ebpf::bindings::{bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1};
use aya_ebpf::btf_maps::{Array, HashMap, LruHashMap};
use aya_ebpf::helpers::generated::{bpf_sk_lookup_udp, bpf_sk_release};
use aya_ebpf::macros::btf_map;
use aya_ebpf::programs::XdpContext;
use dns_common::failopen::{FLOWS_CAPACITY, TCP_FLOW_IDLE_NS, UDP_FLOW_LIFETIME_NS};
use dns_common::{Config, Counter, FlowKey, FlowValue, Liveness, MAX_INTERFACES};

use crate::csum::{fold, replace_diff32, update_full, update_seed};
use crate::eth::ETH_LEN;
use crate::ip::{
    IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ip, Ipv4Hdr, Ipv6Hdr, is_listen, v6_words,
};
use crate::ptr::ptr_at;
use crate::udp::{UDP_LEN, UdpHdr};

/// `BPF_F_MMAPABLE`: the agent writes its heartbeat through a shared
/// mapping, one atomic 8-byte store, no syscall.
const BPF_F_MMAPABLE: usize = 1 << 10;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
/// Offset of the checksum field in the UDP and TCP headers.
const UDP_CHECK_OFF: usize = 6;
const TCP_CHECK_OFF: usize = 16;

/// The heartbeat of the agent whose ring this program feeds; each agent's
/// own, so the program swap of a hand-over also moves the liveness it
/// reads.
#[btf_map(name = "NODEDNS_LIVENESS")]
static LIVENESS: Array<Liveness, 1, BPF_F_MMAPABLE> = Array::new();

/// Failed-open flows, by the pod's end; pinned, so the programs of every
/// agent generation (and the egress program) share it.
#[btf_map(name = "NODEDNS_FLOWS")]
pub static FLOWS: LruHashMap<FlowKey, FlowValue, { FLOWS_CAPACITY as usize }> = LruHashMap::new();

/// The interfaces (by ifindex) where the egress program runs, written by
/// the agent once it is attached there.
#[btf_map(name = "NODEDNS_EGRESS")]
static EGRESS: HashMap<u32, u32, { MAX_INTERFACES as usize }> = HashMap::new();

#[repr(C)]
struct TcpHdr {
    source: u16,
    dest: u16,
    seq: u32,
    ack_seq: u32,
    doff: u8,
    flags: u8,
    window: u16,
    check: u16,
    urg_ptr: u16,
}

/// `BPF_F_CURRENT_NETNS`: look sockets up in the receiving device's
/// namespace (the node's).
const CURRENT_NETNS: u64 = u64::MAX;
/// Bytes of `bpf_sock_tuple` the lookup reads for each family.
const TUPLE_V4_LEN: u32 = 12;
const TUPLE_V6_LEN: u32 = 36;

/// Whether an agent serves the query in the frame
/// (docs/design.md#liveness). `ring`: the query would go to this
/// program's own agent (through its ring), not to whichever agent holds
/// the listen socket.
///
/// Two signs, both needed: a recent heartbeat catches a stopped or wedged
/// agent within `LIVENESS_TIMEOUT_NS`; a socket on the first listen
/// address of the query's family catches a dead one at once, since the
/// kernel closes a killed process's sockets as it dies. A program whose
/// agent has not beaten yet (it is starting, and swapped its program in
/// already) leaves listen-address queries to whoever holds the socket: the
/// previous agent, in a rolling update.
#[inline(always)]
pub fn agent_serves<const V6: bool>(ctx: &XdpContext, cfg: &Config, now: u64, ring: bool) -> bool {
    let Some(live) = LIVENESS.get_ptr(0) else {
        return false;
    };
    // One 8-byte load: the agent stores the beat atomically.
    let beat = unsafe { core::ptr::read_volatile(&(*live).heartbeat_ns) };
    let beating = dns_common::failopen::agent_serves(&Liveness { heartbeat_ns: beat }, now);
    (beating || (beat == 0 && !ring)) && listener_exists::<V6>(ctx, cfg)
}

/// Whether a UDP socket would take a query from the frame's source to the
/// first listen address of its family (true when there is no such
/// address: the heartbeat alone decides then).
#[inline(always)]
fn listener_exists<const V6: bool>(ctx: &XdpContext, cfg: &Config) -> bool {
    let (Some(a), Some(ports)) = (
        addrs::<V6>(ctx),
        ptr_at::<[u16; 2]>(ctx, ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN }),
    ) else {
        return true;
    };
    let sport = unsafe { (*ports)[0] };
    let dport = cfg.port.to_be();
    let mut tuple = bpf_sock_tuple {
        __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
            ipv6: unsafe { core::mem::zeroed() },
        },
    };
    let len = if V6 {
        if cfg.v6_count == 0 {
            return true;
        }
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
        t.saddr = a.saddr;
        t.daddr = v6_words(&cfg.v6_addrs[0]);
        t.sport = sport;
        t.dport = dport;
        TUPLE_V6_LEN
    } else {
        if cfg.v4_count == 0 {
            return true;
        }
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
        t.saddr = a.saddr[0];
        t.daddr = cfg.v4_addrs[0];
        t.sport = sport;
        t.dport = dport;
        TUPLE_V4_LEN
    };
    let sk =
        unsafe { bpf_sk_lookup_udp(ctx.ctx as *mut c_void, &mut tuple, len, CURRENT_NETNS, 0) };
    if sk.is_null() {
        return false;
    }
    unsafe { bpf_sk_release(sk as *mut c_void) };
    true
}

/// The packet's source and destination, network order words (IPv4 in the
/// first word).
struct Addrs {
    saddr: [u32; 4],
    daddr: [u32; 4],
}

#[inline(always)]
fn addrs<const V6: bool>(ctx: &XdpContext) -> Option<Addrs> {
    if V6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN)?;
        let ip = unsafe { &*ip };
        Some(Addrs {
            saddr: ip.saddr,
            daddr: ip.daddr,
        })
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN)?;
        let ip = unsafe { &*ip };
        Some(Addrs {
            saddr: [ip.saddr, 0, 0, 0],
            daddr: [ip.daddr, 0, 0, 0],
        })
    }
}

/// Where a failed-open query goes: the first cluster address of its family.
#[inline(always)]
fn target<const V6: bool>(cfg: &Config) -> Option<[u32; 4]> {
    if V6 {
        (cfg.cluster_v6_count > 0).then(|| v6_words(&cfg.cluster_v6_addrs[0]))
    } else {
        (cfg.cluster_v4_count > 0).then(|| [cfg.cluster_v4_addrs[0], 0, 0, 0])
    }
}

#[inline(always)]
fn bytes(words: &[u32; 4]) -> [u8; 16] {
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(*words) }
}

#[inline(always)]
fn key<const V6: bool>(saddr: &[u32; 4], port: u16, id: u16, proto: u8) -> FlowKey {
    FlowKey {
        addr: bytes(saddr),
        port,
        id,
        proto,
        family: if V6 { 6 } else { 4 },
        _pad: [0; 2],
    }
}

#[inline(always)]
fn egress_runs(ctx: &XdpContext) -> bool {
    let ifindex = ctx.ingress_ifindex() as u32;
    EGRESS.get_ptr(ifindex).is_some()
}

/// UDP to a listen address while no agent serves: to the cluster DNS
/// Service instead, flow recorded first. `ip` is the parse of this frame;
/// the rest is read again from the packet, which a failed answer attempt
/// leaves as it was (it only writes once the answer fits).
#[inline(always)]
pub fn udp<const V6: bool>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &Ip,
    now: u64,
) -> Result<(), Counter> {
    let to = target::<V6>(cfg).ok_or(Counter::PassNoFailOpen)?;
    if !egress_runs(ctx) {
        return Err(Counter::PassNoFailOpen);
    }
    let a = addrs::<V6>(ctx).ok_or(Counter::PassNoFailOpen)?;
    if !is_listen::<V6>(cfg, &a.daddr) {
        // Not the frame that was parsed any more: leave it alone.
        return Err(Counter::PassNoFailOpen);
    }
    let l4 = ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN };
    let udp = ptr_at::<UdpHdr>(ctx, l4).ok_or(Counter::PassNoFailOpen)?;
    let (sport, check, len) = unsafe { ((*udp).source, (*udp).check, (*udp).len) };
    let id = ptr_at::<u16>(ctx, l4 + UDP_LEN).ok_or(Counter::PassNoFailOpen)?;
    let id = unsafe { *id };
    let flow = FlowValue {
        listen: bytes(&a.daddr),
        cluster: bytes(&to),
        expires_ns: now + UDP_FLOW_LIFETIME_NS,
    };
    FLOWS
        .insert(key::<V6>(&a.saddr, sport, id, IPPROTO_UDP), flow, 0)
        .map_err(|_| Counter::PassNoFailOpen)?;
    let seed = fold(ip.pseudo_sum + u16::from_be(len) as u64);
    // Zero means "no checksum" (IPv4 only, checked at parse): keep it.
    let check = if check == 0 {
        None
    } else {
        Some(u16::from_be(check))
    };
    rewrite_dest::<V6>(ctx, &a.daddr, &to, l4 + UDP_CHECK_OFF, check, seed, true)
}

/// TCP to a listen address: a connection that failed open stays with the
/// cluster DNS Service; a new one fails open while no agent serves;
/// anything else is left to the stack (the agent's socket) as before.
#[inline(always)]
pub fn tcp<const V6: bool>(ctx: &XdpContext, cfg: &Config, ip: &Ip, now: u64) -> Counter {
    match tcp_flow::<V6>(ctx, cfg, ip, now) {
        Ok(()) => Counter::FailedOpen,
        Err(c) => c,
    }
}

#[inline(always)]
fn tcp_flow<const V6: bool>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &Ip,
    now: u64,
) -> Result<(), Counter> {
    let Some(to) = target::<V6>(cfg) else {
        // Nothing to fail open to: as before this mode existed.
        return Err(Counter::PassNotDns);
    };
    let l4 = ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN };
    let tcp = ptr_at::<TcpHdr>(ctx, l4).ok_or(Counter::PassMalformed)?;
    let (sport, dport, flags, check) =
        unsafe { ((*tcp).source, (*tcp).dest, (*tcp).flags, (*tcp).check) };
    if u16::from_be(dport) != cfg.port {
        return Err(Counter::PassNotDns);
    }
    let a = addrs::<V6>(ctx).ok_or(Counter::PassMalformed)?;
    let key = key::<V6>(&a.saddr, sport, 0, IPPROTO_TCP);
    let to = match FLOWS.get_ptr_mut(key) {
        Some(flow) if now < unsafe { (*flow).expires_ns } => {
            let flow = unsafe { &mut *flow };
            flow.expires_ns = now + TCP_FLOW_IDLE_NS;
            let w = |k: usize| {
                let b = &flow.cluster;
                u32::from_ne_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]])
            };
            [w(0), w(4), w(8), w(12)]
        }
        _ => {
            let syn = flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
            if !syn || agent_serves::<V6>(ctx, cfg, now, false) {
                return Err(Counter::PassNotDns);
            }
            if !egress_runs(ctx) {
                return Err(Counter::PassNoFailOpen);
            }
            let flow = FlowValue {
                listen: bytes(&a.daddr),
                cluster: bytes(&to),
                expires_ns: now + TCP_FLOW_IDLE_NS,
            };
            FLOWS
                .insert(key, flow, 0)
                .map_err(|_| Counter::PassNoFailOpen)?;
            to
        }
    };
    let seed = fold(ip.pseudo_sum + ip.payload_len as u64);
    rewrite_dest::<V6>(
        ctx,
        &a.daddr,
        &to,
        l4 + TCP_CHECK_OFF,
        Some(u16::from_be(check)),
        seed,
        false,
    )
}

/// Moves the destination address from `from` to `to` (network order
/// words), keeping the IPv4 header checksum and the transport checksum at
/// `check_off` right. That checksum (`check`, host order; `None` for a
/// UDP datagram without one) is either the pseudo-header `seed` of a
/// `CHECKSUM_PARTIAL` frame, which must stay a seed, or a full checksum
/// (docs/design.md#checksums).
#[inline(always)]
fn rewrite_dest<const V6: bool>(
    ctx: &XdpContext,
    from: &[u32; 4],
    to: &[u32; 4],
    check_off: usize,
    check: Option<u16>,
    seed: u16,
    udp: bool,
) -> Result<(), Counter> {
    let words = if V6 { 4 } else { 1 };
    let mut diff = 0u64;
    let mut i = 0;
    while i < words {
        diff += replace_diff32(u32::from_be(from[i]), u32::from_be(to[i]));
        i += 1;
    }
    if let Some(check) = check {
        let new = if check == seed {
            update_seed(check, diff)
        } else {
            let c = update_full(check, diff);
            // A computed zero goes out as all ones (zero is "no checksum").
            if udp && c == 0 { 0xffff } else { c }
        };
        let field = ptr_at::<u16>(ctx, check_off).ok_or(Counter::PassNoFailOpen)?;
        unsafe { *field = new.to_be() };
    }
    if V6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok_or(Counter::PassNoFailOpen)?;
        unsafe { (*ip).daddr = *to };
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok_or(Counter::PassNoFailOpen)?;
        unsafe {
            (*ip).check = update_full(u16::from_be((*ip).check), diff).to_be();
            (*ip).daddr = to[0];
        }
    }
    Ok(())
}
