//! nodedns XDP program: answers hot DNS queries from the answers map with
//! XDP_TX and passes everything else, untouched, to the kernel stack.
//!
//! Flow: Ethernet → IPv4/IPv6 → UDP to a listen address and port (or, in
//! transparent mode, to a cluster DNS address) → the checks that the
//! node's stack would take the frame too (source address and port,
//! destination MAC of this interface) → DNS query (header, one question,
//! optional OPT) → a UDP checksum the stack would accept → index lookup →
//! the slot checked to hold this question → answer written in place. Any doubt on the
//! way is XDP_PASS with a counter saying why: the stack then does what it
//! would have done, and userspace answers what it takes.
//!
//! The lookup (docs/design.md#torn-reads): the question's 64-bit key hash
//! finds a slot number in the index, the slot must hold exactly the parsed
//! question, and the answer is sent from the slot in place: the agent never
//! writes a slot the index may name to a running program, so there is no
//! copy and no check sum; the answer's checksum adds the body sum the agent
//! stored to the TTLs' share.
//!
//! What the kernel does not answer (docs/design.md#transparent-mode,
//! docs/design.md#fail-open): to a listen address it goes to the stack
//! (the agent's socket) while an agent serves, and to the cluster DNS
//! Service (`failopen.rs`) while none does; to a cluster address it goes
//! to the agent through its ring buffer (`ring.rs`, the one XDP_DROP),
//! or, while no agent serves, untouched to the stack (kube-proxy). The
//! egress program (`egress.rs`) gives the replies of failed-open
//! listen-address queries their source back.
//!
//! Keeping the verifier's work bounded. It processes about 59k
//! instructions for this program on kernel 6.18 (the limit is 1M;
//! `tests/tests/xdp/verifier.rs` prints the figure and holds a budget, and
//! CONTRIBUTING says how to see where the work goes). What costs is not
//! length but the number of distinct states the verifier carries through a
//! loop, so:
//! - a loop leaves as soon as its work is done: a branch that could be the
//!   last round but lets the loop run on makes the verifier walk every
//!   later round once per round that branch was taken (the body copy's
//!   partial word did that, for 690k of the 740k instructions it once
//!   took);
//! - the question is copied once into per-CPU scratch (`bpf_xdp_load_bytes`)
//!   and walked there, so there is no per-byte packet bounds check;
//! - loop bounds that end up used as offsets (name and body lengths) are
//!   re-read through map memory after each loop, and the label position
//!   lives there too: a register would carry a different range at every
//!   loop exit and multiply the verifier's states;
//! - checksums fold branch-free (a loop on the sum makes it precise);
//! - no byte-loop `memset`/`memcpy` calls: volatile word stores instead.
#![no_std]
#![no_main]

mod answer;
mod csum;
mod dns;
mod egress;
mod entry;
mod eth;
mod failopen;
mod ip;
mod ptr;
mod ring;
mod trace;
mod udp;

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::btf_maps::{Array, HashMap, PerCpuArray};
use aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns;
use aya_ebpf::macros::{btf_map, xdp};
use aya_ebpf::programs::XdpContext;
use dns_common::answer_counters::{ANSWER_COUNTERS, answer_counter_index};
use dns_common::hot_samples::{HOT_CURSOR, HOT_SLOTS, ring_slot, sampled};
use dns_common::{
    AnswerEntry, AnswerSlot, Config, Counter, DEFAULT_ANSWER_ENTRIES, EDNS_UDP_SIZE, IndexValue,
    InterfaceMacs, MAX_INTERFACES, slots_for,
};

use crate::answer::Reply;
use crate::entry::Scratch;
use crate::eth::{ETH_LEN, L3};
use crate::ip::{IPV4_LEN, IPV6_LEN, Ip, cluster_query};
use crate::udp::{UDP_LEN, Udp};

// BTF-defined maps (`.maps` section): the object carries the key and value
// types, so `bpftool map dump` prints decoded fields instead of hex. The
// export names are the map names the loader and the pins use
// (`dns_common::MAP_*`).

/// The answers, one per slot; the loader sets the real size at load time
/// (`dns_common::slots_for` the index's capacity).
#[btf_map(name = "NODEDNS_ANSWERS")]
static ANSWERS: Array<AnswerSlot, { slots_for(DEFAULT_ANSWER_ENTRIES) as usize }> = Array::new();

/// Question key hash -> the slot of its answer; the loader sets the real
/// capacity at load time.
#[btf_map(name = "NODEDNS_INDEX")]
static INDEX: HashMap<u64, IndexValue, { DEFAULT_ANSWER_ENTRIES as usize }> = HashMap::new();

#[btf_map(name = "NODEDNS_COUNTERS")]
static COUNTERS: PerCpuArray<u64, { Counter::COUNT as usize }> = PerCpuArray::new();

/// The answers sent, by family, type class, rcode and AA
/// (`dns_common::answer_counters`).
#[btf_map(name = "NODEDNS_ANSWER_COUNTS")]
static ANSWER_COUNTS: PerCpuArray<u64, { ANSWER_COUNTERS as usize }> = PerCpuArray::new();

/// Sampled hits, a ring per CPU (`dns_common::hot_samples`).
#[btf_map(name = "NODEDNS_HOT_SAMPLES")]
static HOT_SAMPLES: PerCpuArray<u64, { HOT_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "NODEDNS_CONFIG")]
pub(crate) static CONFIG: Array<Config, 1> = Array::new();

#[btf_map(name = "NODEDNS_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// The MAC addresses of each interface, by ifindex (`dns_common::MAP_INTERFACES`).
#[btf_map(name = "NODEDNS_IFACES")]
static IFACES: HashMap<u32, InterfaceMacs, { MAX_INTERFACES as usize }> = HashMap::new();

const NS_PER_SEC: u64 = 1_000_000_000;

#[xdp]
pub fn nodedns_xdp(ctx: XdpContext) -> u32 {
    let (action, slot) = verdict(&ctx);
    count_slot(slot);
    trace::verdict(&ctx, action, slot);
    action
}

/// Adds one to a counter of this CPU.
#[inline(always)]
pub(crate) fn count(counter: Counter) {
    count_slot(counter as u32);
}

/// Adds one to the counter in `slot` (a `Counter` as `u32`).
#[inline(always)]
fn count_slot(slot: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        unsafe { *c += 1 };
    }
}

/// The XDP action and the counter slot naming why.
#[inline(always)]
fn verdict(ctx: &XdpContext) -> (u32, u32) {
    let pass = |c: Counter| (xdp_action::XDP_PASS, c as u32);
    let l3 = match eth::parse(ctx) {
        Ok(l3) => l3,
        Err(c) => return pass(c),
    };
    let Some(cfg) = CONFIG.get(0) else {
        return pass(Counter::PassDisabled);
    };
    if cfg.enabled == 0 {
        return pass(Counter::PassDisabled);
    }
    match l3 {
        L3::V4 => query::<false>(ctx, cfg),
        L3::V6 => query::<true>(ctx, cfg),
    }
}

#[inline(always)]
fn query<const V6: bool>(ctx: &XdpContext, cfg: &Config) -> (u32, u32) {
    let pass = |c: Counter| (xdp_action::XDP_PASS, c as u32);
    let parsed = if V6 {
        ip::parse_v6(ctx, cfg)
    } else {
        ip::parse_v4(ctx, cfg)
    };
    let ip = match parsed {
        Ok(ip) => ip,
        Err(c) => return pass(c),
    };
    if ip.tcp {
        let now = unsafe { bpf_ktime_get_boot_ns() };
        return pass(failopen::tcp::<V6>(ctx, cfg, &ip, now));
    }
    let l4 = ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN };
    let udp = match udp::parse(ctx, l4, &ip, cfg.port) {
        Ok(udp) => udp,
        Err(c) => return pass(c),
    };
    if let Err(c) = sent_to_us(ctx) {
        return pass(c);
    }
    match try_answer::<V6>(ctx, cfg, &ip, &udp) {
        Ok(()) => {
            if cluster_query::<V6>(ctx, cfg, true) {
                count(Counter::Intercepted);
            }
            (xdp_action::XDP_TX, Counter::Hit as u32)
        }
        // The stack drops it; so must everyone else.
        Err(Counter::PassChecksum) => pass(Counter::PassChecksum),
        Err(reason) => {
            ring::park_reason(reason);
            unanswered::<V6>(ctx, cfg, &ip)
        }
    }
}

/// A query the kernel did not answer (the reason parked by
/// `ring::park_reason`): to the agent (its socket for a listen address,
/// its ring for a cluster address) while it serves, else to the cluster
/// DNS Service.
#[inline(always)]
fn unanswered<const V6: bool>(ctx: &XdpContext, cfg: &Config, ip: &Ip) -> (u32, u32) {
    let pass = |c: Counter| (xdp_action::XDP_PASS, c as u32);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cluster = cluster_query::<V6>(ctx, cfg, false);
    let serves = failopen::agent_serves::<V6>(ctx, cfg, now, cluster);
    match (cluster, serves) {
        (true, true) => match ring::redirect(ctx) {
            Ok(()) => {
                count(Counter::Intercepted);
                (xdp_action::XDP_DROP, Counter::Redirected as u32)
            }
            Err(c) => pass(c),
        },
        (true, false) => pass(Counter::FailedOpen),
        (false, true) => (xdp_action::XDP_PASS, ring::parked_reason()),
        // No cluster DNS address at all: fail-open is not set up, so the
        // query goes to the stack with its own reason, as before it existed.
        (false, false) if cfg.cluster_v4_count == 0 && cfg.cluster_v6_count == 0 => {
            (xdp_action::XDP_PASS, ring::parked_reason())
        }
        (false, false) => match failopen::udp::<V6>(ctx, cfg, ip, now) {
            Ok(()) => pass(Counter::FailedOpen),
            Err(c) => pass(c),
        },
    }
}

/// The answer from the map, written over the query, for a UDP datagram to
/// one of our addresses that the stack would take.
#[inline(always)]
fn try_answer<const V6: bool>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &Ip,
    udp: &Udp,
) -> Result<(), Counter> {
    let l4 = ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN };
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Counter::PassHelperFailed)?;
    entry::clear_key(scratch);
    let scratch = unsafe { &mut *scratch };
    let query = dns::parse(ctx, l4 + UDP_LEN, udp.dns_len, scratch)?;
    if !udp::checksum_ok::<V6>(udp, ip, query.msg_sum) {
        return Err(Counter::PassChecksum);
    }

    let served = serve(scratch, query.hash)?;
    let reply = Reply {
        query: &query,
        entry: served.entry,
        body_len: served.body_len,
        ttl: served.ttl,
        body_sum: served.body_sum,
        pseudo_sum: ip.pseudo_sum,
        edns_udp_size: if cfg.edns_udp_size == 0 {
            EDNS_UDP_SIZE
        } else {
            cfg.edns_udp_size
        },
    };
    let limit = if query.max_size > EDNS_UDP_SIZE as usize {
        EDNS_UDP_SIZE as usize
    } else {
        query.max_size
    };
    if reply.dns_len() > limit {
        return Err(Counter::PassTooBig);
    }
    let flags = answer::write::<V6>(ctx, &reply)?;
    count_answer(V6, query.qtype, flags, query.hash);
    Ok(())
}

/// One more answer of this family, question type and header rcode and AA
/// bit: from what was parsed and written, never from the entry's layout.
/// Every `HOT_SAMPLE_EVERY`-th answer of the kind also samples `hash`, the
/// entry's key hash, for `inspect`'s top list.
#[inline(always)]
fn count_answer(v6: bool, qtype: u16, flags: u16, hash: u64) {
    let index = answer_counter_index(
        v6 as u32,
        qtype,
        (flags & answer::RCODE_MASK) as u8,
        (flags & answer::FLAG_AA != 0) as u32,
    );
    if let Some(c) = ANSWER_COUNTS.get_ptr_mut(index) {
        let count = unsafe { *c } + 1;
        unsafe { *c = count };
        if sampled(count) {
            sample_hit(hash);
        }
    }
}

/// Writes `hash` into this CPU's ring (CPU-local memory, no contention).
#[inline(always)]
fn sample_hit(hash: u64) {
    let Some(cursor) = HOT_SAMPLES.get_ptr_mut(HOT_CURSOR) else {
        return;
    };
    let n = unsafe { *cursor };
    unsafe { *cursor = n + 1 };
    if let Some(slot) = HOT_SAMPLES.get_ptr_mut(ring_slot(n)) {
        unsafe { *slot = hash };
    }
}

/// A query to us; but sent to us the way the stack would take it, to this
/// interface's MAC address?
#[inline(always)]
fn sent_to_us(ctx: &XdpContext) -> Result<(), Counter> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let macs = unsafe { IFACES.get(ifindex) }.ok_or(Counter::PassMac)?;
    eth::to_us(ctx, macs)
}

/// The entry to answer with, ready to send.
struct Served<'a> {
    entry: &'a AnswerEntry,
    body_len: usize,
    /// The TTL every TTL field gets.
    ttl: u32,
    /// Body checksum with the TTLs filled in.
    body_sum: u16,
}

/// Looks the question hashed to `hash` up: its slot through the index, the
/// slot checked to hold this very question and still alive, and the TTL
/// its remaining lifetime gives.
#[inline(always)]
fn serve(scratch: &Scratch, hash: u64) -> Result<Served<'static>, Counter> {
    let value = INDEX.get_ptr(hash).ok_or(Counter::Miss)?;
    let slot = entry::slot_of(value)?;
    let slot = ANSWERS.get(slot).ok_or(Counter::PassInvalidEntry)?;
    let e = entry::verify(slot, scratch, hash)?;
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let (expires, max_ttl) = (e.expires_ns, e.max_ttl);
    if now >= expires {
        return Err(Counter::Expired);
    }
    let remaining = (expires - now) / NS_PER_SEC;
    let ttl = if remaining < max_ttl as u64 {
        remaining as u32
    } else {
        max_ttl
    };
    let body_len = entry::body_len_of(e)?;
    let ttl_sum = entry::ttl_sum(e, body_len, ttl)?;
    let body_sum = e.body_sum;
    if body_sum > 0xffff {
        return Err(Counter::PassInvalidEntry);
    }
    let body_len = entry::body_len_of(e)?;
    Ok(Served {
        entry: e,
        body_len,
        ttl,
        body_sum: csum::fold(body_sum as u64 + ttl_sum as u64),
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
