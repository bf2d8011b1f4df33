//! The DNS query: header, the single question (walked label by label while
//! lower-casing it into the map key, hashing it and summing it for the UDP
//! checksum) and an optional EDNS0 OPT record.

use aya_ebpf::programs::XdpContext;
use dns_common::hash::{fnv1a_init, fnv1a_step};
use dns_common::{AnswerKey, Counter, MAX_NAME_LEN};

use crate::csum::{fold, shift_odd};
use crate::ptr::ptr_at;

pub const DNS_HDR_LEN: usize = 12;
/// OPT record without options: root name, type, class, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// QR, opcode and TC: a plain query has them all zero.
const FLAGS_NOT_QUERY: u16 = 0xfa00;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const LABEL_TYPE_MASK: u8 = 0xc0;
/// Answers without EDNS must fit the classic DNS/UDP limit.
const CLASSIC_UDP_SIZE: usize = 512;

#[repr(C)]
pub struct DnsHdr {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

pub struct Query {
    /// Query ID, host order.
    pub id: u16,
    /// RD and CD of the query, to copy into the answer.
    pub rd_cd: u16,
    /// Wire length of the question name.
    pub name_len: usize,
    /// `dns_common::hash::key_hash` of the lower-cased name and type.
    pub hash: u64,
    /// Ones' complement sum of the question (name, type, class) as sent.
    pub qsum: u16,
    /// Whether the query carried an EDNS0 OPT record.
    pub edns: bool,
    /// Largest DNS message the client can take over UDP.
    pub max_size: usize,
}

impl Query {
    /// Question length: name, type and class.
    #[inline(always)]
    pub fn qlen(&self) -> usize {
        self.name_len + 4
    }
}

/// Parses the query at `off` (`len` bytes, the rest of the datagram) and
/// fills `key`, which must be zeroed.
#[inline(always)]
pub fn parse(
    ctx: &XdpContext,
    off: usize,
    len: usize,
    key: &mut AnswerKey,
    label_left: *mut u8,
) -> Result<Query, Counter> {
    let hdr = ptr_at::<DnsHdr>(ctx, off).ok_or(Counter::PassMalformed)?;
    let hdr = unsafe { &*hdr };
    let flags = u16::from_be(hdr.flags);
    if flags & FLAGS_NOT_QUERY != 0
        || hdr.qdcount != 1u16.to_be()
        || hdr.ancount != 0
        || hdr.nscount != 0
    {
        return Err(Counter::PassNotQuery);
    }
    let arcount = u16::from_be(hdr.arcount);
    if arcount > 1 {
        return Err(Counter::PassEdns);
    }
    let id = u16::from_be(hdr.id);

    // The name, one byte at a time with a fixed bound.
    let qoff = off + DNS_HDR_LEN;
    let mut hash = fnv1a_init();
    let mut sum: u64 = 0;
    // Bytes left in the current label (zero: the next byte is a length).
    // It lives in map memory, which the verifier does not track: a register
    // would carry a different range for every label layout and multiply
    // the verifier's states past its limit.
    let left = || unsafe { core::ptr::read_volatile(label_left) };
    let set_left = |v: u8| unsafe { core::ptr::write_volatile(label_left, v) };
    set_left(0);
    let mut i = 0usize;
    while i < MAX_NAME_LEN {
        let b = unsafe { *ptr_at::<u8>(ctx, qoff + i).ok_or(Counter::PassMalformed)? };
        let l = left();
        if l == 0 {
            if b == 0 {
                key.name_len = (i + 1) as u16;
                break;
            }
            if b & LABEL_TYPE_MASK != 0 {
                // A compression pointer or an extended label type.
                return Err(Counter::PassName);
            }
            set_left(b);
        } else {
            set_left(l - 1);
        }
        let lower = if b.wrapping_sub(b'A') < 26 {
            b | 0x20
        } else {
            b
        };
        hash = fnv1a_step(hash, lower);
        // Even bytes are the high half of a checksum word.
        sum += (b as u64) << (((i & 1) ^ 1) << 3);
        key.name[i] = lower;
        i += 1;
    }
    // Read back through memory on purpose: the loop leaves with a different
    // constant length at each exit, and one bounded value lets the verifier
    // check the rest of the program once instead of once per length.
    let name_len = unsafe { core::ptr::read_volatile(&key.name_len) } as usize;
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(Counter::PassName);
    }
    hash = fnv1a_step(hash, 0);

    let tc = ptr_at::<[u16; 2]>(ctx, qoff + name_len).ok_or(Counter::PassMalformed)?;
    let tc = unsafe { &*tc };
    let qtype = u16::from_be(tc[0]);
    let qclass = u16::from_be(tc[1]);
    if qclass != CLASS_IN {
        return Err(Counter::PassClass);
    }
    hash = fnv1a_step(fnv1a_step(hash, (qtype >> 8) as u8), qtype as u8);
    key.qtype = qtype;
    let tc_sum = fold(qtype as u64 + qclass as u64);
    let qsum = fold(fold(sum) as u64 + shift_odd(tc_sum, name_len & 1 == 1) as u64);

    let mut end = DNS_HDR_LEN + name_len + 4;
    let mut edns = false;
    let mut max_size = CLASSIC_UDP_SIZE;
    if arcount == 1 {
        let opt = ptr_at::<[u8; OPT_LEN]>(ctx, off + end).ok_or(Counter::PassMalformed)?;
        let opt = unsafe { &*opt };
        let rtype = u16::from_be_bytes([opt[1], opt[2]]);
        let size = u16::from_be_bytes([opt[3], opt[4]]) as usize;
        // opt[5] extended RCODE, opt[6] version, opt[9..11] RDLENGTH.
        if opt[0] != 0
            || rtype != TYPE_OPT
            || opt[5] != 0
            || opt[6] != 0
            || opt[9] != 0
            || opt[10] != 0
        {
            return Err(Counter::PassEdns);
        }
        edns = true;
        max_size = if size < CLASSIC_UDP_SIZE {
            CLASSIC_UDP_SIZE
        } else {
            size
        };
        end += OPT_LEN;
    }
    if end != len {
        // Trailing bytes, or a header that claims more than is there.
        return Err(Counter::PassMalformed);
    }
    Ok(Query {
        id,
        rd_cd: flags & (FLAG_RD | FLAG_CD),
        name_len,
        hash,
        qsum,
        edns,
        max_size,
    })
}
