//! The DNS query: header, the single question (walked label by label while
//! lower-casing it into the map key, hashing it and summing it for the UDP
//! checksum) and an optional EDNS0 OPT record, itself either empty or
//! carrying a single DNS COOKIE, which the program ignores as a server
//! without cookie support does (RFC 7873 section 5.2).

use aya_ebpf::programs::XdpContext;
use dns_common::hash::{key_hash_finish, key_hash_init, key_hash_word};

use dns_common::{Counter, MAX_NAME_LEN};

use crate::entry::{OPTBUF_LEN, QBUF_LEN, Scratch};

use crate::csum::{fold, shift_odd};
use crate::ptr::{load_bytes, ptr_at};

pub const DNS_HDR_LEN: usize = 12;
/// OPT record without options: root name, type, class, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
/// EDNS option code, length header.
const OPT_CODE_COOKIE: u16 = 10;
const OPTION_HDR_LEN: usize = 4;
/// A client cookie alone, or with a server cookie of 8 to 32 bytes
/// (RFC 7873 section 4); any other length is malformed and passed.
const COOKIE_CLIENT_LEN: usize = 8;
const COOKIE_WITH_SERVER_MIN: usize = 16;
const COOKIE_WITH_SERVER_MAX: usize = 40;
const CLASS_IN: u16 = 1;
/// QR, opcode and TC: a plain query has them all zero.
const FLAGS_NOT_QUERY: u16 = 0xfa00;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
/// DNSSEC OK, in the first byte of the OPT record's flags.
const EDNS_FLAG_DO: u8 = 0x80;
const LABEL_TYPE_MASK: u8 = 0xc0;
/// A name of MAX_NAME_LEN bytes has at most half as many labels.
const MAX_LABELS: usize = MAX_NAME_LEN / 2;
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
    /// The question's type, host order.
    pub qtype: u16,
    /// `dns_common::hash::key_hash` of the lower-cased name and type.
    pub hash: u64,
    /// Ones' complement sum of the question (name, type, class) as sent.
    pub qsum: u16,
    /// Ones' complement sum of the whole message as sent, for the UDP
    /// checksum check.
    pub msg_sum: u16,
    /// Whether the query carried an EDNS0 OPT record (empty or a lone
    /// COOKIE); the answer then carries our OPT, without options.
    pub edns: bool,
    /// The first byte of the query's EDNS flags with only DO kept (0x80 or
    /// 0): RFC 3225 section 3 has it copied into the answer's OPT.
    pub edns_do: u8,
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

/// ASCII lower-casing of four bytes at once: adds 0x20 to each byte in
/// `A..=Z`, leaves every other byte (including >= 0x80) alone.
#[inline(always)]
fn ascii_lower4(x: u32) -> u32 {
    const ONES: u32 = 0x0101_0101;
    const HIGH: u32 = 0x8080_8080;
    let low7 = x & !HIGH;
    // No byte overflows into the next: 0x7f + 0x3f < 0x100.
    let ge_a = low7 + ONES * (0x80 - b'A' as u32);
    let gt_z = low7 + ONES * (0x80 - b'Z' as u32 - 1);
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

/// The name length, read back through memory on purpose. Each loop over
/// the name leaves with a different range for it at every exit; a fresh
/// bounded value lets the verifier check what follows once, not once per
/// exit (and the product of that over consecutive loops).
#[inline(always)]
fn reload_name_len(scratch: &Scratch) -> Result<usize, Counter> {
    let n = unsafe { core::ptr::read_volatile(&scratch.key.name_len) } as usize;
    if n == 0 || n > MAX_NAME_LEN {
        return Err(Counter::PassName);
    }
    Ok(n)
}

/// The header fields the parser keeps.
struct Header {
    id: u16,
    flags: u16,
    arcount: u16,
}

/// A plain query: QR, opcode and TC clear, one question, no answer or
/// authority records, at most one additional record (the OPT).
#[inline(always)]
fn header(ctx: &XdpContext, off: usize) -> Result<Header, Counter> {
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
    Ok(Header {
        id: u16::from_be(hdr.id),
        flags,
        arcount,
    })
}

/// Copies what follows the header (`len` bytes at `off`), up to
/// `QBUF_LEN`, into scratch once: walking it in map memory needs no
/// per-byte packet bounds checks. Returns the number of bytes copied.
#[inline(always)]
fn copy_question(
    ctx: &XdpContext,
    off: usize,
    len: usize,
    scratch: &mut Scratch,
) -> Result<usize, Counter> {
    if len <= DNS_HDR_LEN {
        return Err(Counter::PassMalformed);
    }
    let avail = len - DNS_HDR_LEN;
    let copied = if avail < QBUF_LEN { avail } else { QBUF_LEN };
    load_bytes(ctx, off + DNS_HDR_LEN, scratch.qbuf.as_mut_ptr(), copied)
        .ok_or(Counter::PassMalformed)?;
    Ok(copied)
}

/// Walks the labels of the copied name and stores its wire length in
/// `scratch.key.name_len` (left zero when no root label ends it within
/// `MAX_NAME_LEN` bytes). Returns that length, checked to leave room for
/// type and class in the copy.
#[inline(always)]
fn walk_labels(scratch: &mut Scratch, copied: usize) -> Result<usize, Counter> {
    // The position lives in map memory, which the verifier does not track:
    // a register would carry a different range for every label layout and
    // multiply its states past the limit.
    let pos = &mut scratch.label_pos as *mut u32;
    unsafe { core::ptr::write_volatile(pos, 0) };
    let mut n = 0;
    while n < MAX_LABELS {
        let p = unsafe { core::ptr::read_volatile(pos) } as usize;
        if p >= MAX_NAME_LEN {
            return Err(Counter::PassName);
        }
        if p >= copied {
            return Err(Counter::PassMalformed);
        }
        let l = scratch.qbuf[p & (MAX_NAME_LEN - 1)];
        if l == 0 {
            scratch.key.name_len = (p + 1) as u16;
            break;
        }
        if l & LABEL_TYPE_MASK != 0 {
            // A compression pointer or an extended label type.
            return Err(Counter::PassName);
        }
        unsafe { core::ptr::write_volatile(pos, (p + 1 + l as usize) as u32) };
        n += 1;
    }
    let name_len = reload_name_len(scratch)?;
    if name_len + 4 > copied {
        return Err(Counter::PassMalformed);
    }
    Ok(name_len)
}

/// The name's contributions, four bytes at a time: its lower-cased form
/// into the key, its hash (`dns_common::hash::key_hash` works on the same
/// zero-padded words) and its ones' complement sum as sent (case
/// preserved, native order). The buffers are 4-aligned.
#[inline(always)]
fn key_name(scratch: &mut Scratch) -> (u64, u64) {
    let src = scratch.qbuf.as_ptr() as *const u32;
    let dst = scratch.key.name.as_mut_ptr() as *mut u32;
    let mut hash = key_hash_init();
    let mut sum: u64 = 0;
    let mut w = 0usize;
    while w < MAX_NAME_LEN / 4 {
        // The length comes fresh from memory in every round: derived from
        // one register, each partial-word branch would narrow its range and
        // give the verifier a new state per round.
        let n = unsafe { core::ptr::read_volatile(&scratch.key.name_len) } as usize;
        let start = w * 4;
        if start >= n {
            break;
        }
        let left = n - start;
        let mut x = unsafe { *src.add(w) };
        if left < 4 {
            // Native order is little-endian: the name's bytes are the low ones.
            x &= (1u32 << (left * 8)) - 1;
        }
        sum += x as u64;
        let lower = ascii_lower4(x);
        unsafe { *dst.add(w) = lower };
        hash = key_hash_word(hash, lower);
        w += 1;
    }
    (hash, sum)
}

/// QTYPE and QCLASS, right after the name (`name_len` bytes, at most
/// `MAX_NAME_LEN`) in the copy, which has room for them.
#[inline(always)]
fn type_and_class(scratch: &Scratch, name_len: usize) -> Result<(u16, u16), Counter> {
    // A checked slice, not a mask: a mask of the length would wrap a
    // name of exactly MAX_NAME_LEN bytes to offset 0 and read the type
    // and class from the name itself.
    let tc = scratch
        .qbuf
        .get(name_len..name_len + 4)
        .ok_or(Counter::PassMalformed)?;
    Ok((
        u16::from_be_bytes([tc[0], tc[1]]),
        u16::from_be_bytes([tc[2], tc[3]]),
    ))
}

/// What the additional section said.
struct Edns {
    /// An OPT record was there (empty or a lone COOKIE).
    present: bool,
    /// Its DO bit, in place in the flags' first byte.
    dnssec_ok: u8,
    /// Largest DNS message the client can take over UDP.
    max_size: usize,
    /// Where the message ends, by the parse.
    end: usize,
    /// Ones' complement sum of the OPT record, as if at an even offset.
    sum: u16,
}

/// The optional OPT record at `end` (the message offset after the
/// question, `len` the message length): either empty or a lone DNS
/// COOKIE, which is ignored.
#[inline(always)]
fn opt(
    ctx: &XdpContext,
    off: usize,
    len: usize,
    end: usize,
    arcount: u16,
    scratch: &mut Scratch,
) -> Result<Edns, Counter> {
    if arcount != 1 {
        return Ok(Edns {
            present: false,
            dnssec_ok: 0,
            max_size: CLASSIC_UDP_SIZE,
            end,
            sum: 0,
        });
    }
    copy_opt(ctx, off, len, end, scratch)?;
    let opt = &scratch.optbuf;
    let rtype = u16::from_be_bytes([opt[1], opt[2]]);
    let size = u16::from_be_bytes([opt[3], opt[4]]) as usize;
    let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
    // opt[5] extended RCODE, opt[6] version.
    if opt[0] != 0 || rtype != TYPE_OPT || opt[5] != 0 || opt[6] != 0 {
        return Err(Counter::PassEdns);
    }
    if rdlen != 0 {
        lone_cookie(opt, rdlen, end + OPT_LEN, len)?;
    }
    Ok(Edns {
        present: true,
        // opt[7..9] are the EDNS flags; DO is the top bit.
        dnssec_ok: opt[7] & EDNS_FLAG_DO,
        max_size: if size < CLASSIC_UDP_SIZE {
            CLASSIC_UDP_SIZE
        } else {
            size
        },
        end: end + OPT_LEN + rdlen,
        sum: opt_sum(scratch),
    })
}

/// Copies the OPT record at message offset `end` into zeroed scratch, as
/// much of it as `OPTBUF_LEN` holds: reading it there needs no packet
/// bounds checks, and its checksum is a fixed number of word adds.
#[inline(always)]
fn copy_opt(
    ctx: &XdpContext,
    off: usize,
    len: usize,
    end: usize,
    scratch: &mut Scratch,
) -> Result<(), Counter> {
    if end + OPT_LEN > len {
        return Err(Counter::PassMalformed);
    }
    let rest = len - end;
    let copied = if rest < OPTBUF_LEN { rest } else { OPTBUF_LEN };
    // The same value (it is 11..=64), masked so the verifier sees 1..=64
    // however LLVM folds the checks above.
    let copied = ((copied - 1) & (OPTBUF_LEN - 1)) + 1;
    let words = scratch.optbuf.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i < OPTBUF_LEN / 8 {
        // Volatile so LLVM keeps the stores instead of calling memset.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    load_bytes(ctx, off + end, scratch.optbuf.as_mut_ptr(), copied).ok_or(Counter::PassMalformed)
}

/// The OPT's options (`rdlen` bytes from message offset `start`, of `len`)
/// must be one DNS COOKIE of a valid length. It is ignored, and the
/// answer's OPT carries no options (RFC 7873 section 5.2).
#[inline(always)]
fn lone_cookie(
    opt: &[u8; OPTBUF_LEN],
    rdlen: usize,
    start: usize,
    len: usize,
) -> Result<(), Counter> {
    if rdlen < OPTION_HDR_LEN {
        return Err(Counter::PassEdns);
    }
    if start + OPTION_HDR_LEN > len {
        return Err(Counter::PassMalformed);
    }
    let o = &opt[OPT_LEN..OPT_LEN + OPTION_HDR_LEN];
    let code = u16::from_be_bytes([o[0], o[1]]);
    let olen = u16::from_be_bytes([o[2], o[3]]) as usize;
    let cookie_len_ok = olen == COOKIE_CLIENT_LEN
        || (COOKIE_WITH_SERVER_MIN..=COOKIE_WITH_SERVER_MAX).contains(&olen);
    if code != OPT_CODE_COOKIE || !cookie_len_ok || rdlen != OPTION_HDR_LEN + olen {
        return Err(Counter::PassEdns);
    }
    Ok(())
}

/// The copied OPT record's sum, as if at an even offset. Whole when the
/// message ends with it (the caller checks): at most `OPT_LEN` + 44 bytes,
/// and the rest of the buffer is zero.
#[inline(always)]
fn opt_sum(scratch: &Scratch) -> u16 {
    let words = scratch.optbuf.as_ptr() as *const u32;
    let mut sum = 0u64;
    let mut i = 0;
    while i < OPTBUF_LEN / 4 {
        sum += unsafe { *words.add(i) } as u64;
        i += 1;
    }
    fold(sum).swap_bytes()
}

/// Parses the query at `off` (`len` bytes, the rest of the datagram) and
/// fills `scratch.key`, which must be zeroed.
#[inline(always)]
pub fn parse(
    ctx: &XdpContext,
    off: usize,
    len: usize,
    scratch: &mut Scratch,
) -> Result<Query, Counter> {
    let hdr = header(ctx, off)?;
    let copied = copy_question(ctx, off, len, scratch)?;
    walk_labels(scratch, copied)?;
    let (hash, sum) = key_name(scratch);
    let name_len = reload_name_len(scratch)?;
    let (qtype, qclass) = type_and_class(scratch, name_len)?;
    if qclass != CLASS_IN {
        return Err(Counter::PassClass);
    }
    scratch.key.qtype = qtype;
    // The name's native-order sum, swapped to big-endian space, plus type
    // and class, which sit at an odd offset when the name length is odd.
    let tc_sum = fold(qtype as u64 + qclass as u64);
    let qsum = fold(fold(sum).swap_bytes() as u64 + shift_odd(tc_sum, name_len & 1 == 1) as u64);

    let qlen = name_len + 4;
    let edns = opt(ctx, off, len, DNS_HDR_LEN + qlen, hdr.arcount, scratch)?;
    if edns.end != len {
        // Trailing bytes, or a header that claims more than is there.
        return Err(Counter::PassMalformed);
    }
    // QDCOUNT is 1, ANCOUNT and NSCOUNT 0; the OPT follows the question.
    let header_sum = hdr.id as u64 + hdr.flags as u64 + 1 + hdr.arcount as u64;
    let msg_sum = fold(header_sum + qsum as u64 + shift_odd(edns.sum, qlen & 1 == 1) as u64);
    Ok(Query {
        id: hdr.id,
        rd_cd: hdr.flags & (FLAG_RD | FLAG_CD),
        name_len,
        qtype,
        hash: key_hash_finish(hash, name_len, qtype),
        qsum,
        msg_sum,
        edns: edns.present,
        edns_do: edns.dnssec_ok,
        max_size: edns.max_size,
    })
}
