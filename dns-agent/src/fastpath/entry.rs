//! TEMP stub of the entry encoder (owned by another helper): same API, only
//! enough real code for the resolver's feeder and its tests. Drop at merge.

use dns_common::{AnswerEntry, AnswerKey, ENTRY_FLAG_AUTHORITATIVE, MAX_NAME_LEN};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("question name is longer than {MAX_NAME_LEN} bytes in wire format")]
    NameTooLong,
    #[error("answer does not fit an entry")]
    TooBig,
}

pub struct EntrySpec<'a> {
    pub qname: &'a Name,
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: &'a [Record],
    pub authority: &'a [Record],
    pub additionals: &'a [Record],
    pub max_ttl: u32,
    pub expires_boot_ns: u64,
    pub generation: u64,
}

pub fn key_for(qname: &Name, qtype: RecordType) -> Result<AnswerKey, EncodeError> {
    let wire = qname
        .to_lowercase()
        .to_bytes()
        .map_err(|_| EncodeError::NameTooLong)?;
    if wire.len() > MAX_NAME_LEN {
        return Err(EncodeError::NameTooLong);
    }
    let mut key = AnswerKey::zeroed();
    key.qtype = u16::from(qtype);
    key.name_len = wire.len() as u16;
    key.name[..wire.len()].copy_from_slice(&wire);
    Ok(key)
}

pub fn encode(spec: &EntrySpec<'_>) -> Result<(AnswerKey, AnswerEntry), EncodeError> {
    let key = key_for(spec.qname, spec.qtype)?;
    let count = spec.answers.len() + spec.authority.len() + spec.additionals.len();
    if count > dns_common::MAX_TTLS {
        return Err(EncodeError::TooBig);
    }
    let mut entry = AnswerEntry::zeroed();
    entry.key_hash = dns_common::hash::key_hash(&key.name[..key.name_len as usize], key.qtype);
    entry.tail_hash = entry.key_hash;
    entry.generation = spec.generation;
    entry.tail_generation = spec.generation;
    entry.expires_ns = spec.expires_boot_ns;
    entry.max_ttl = spec.max_ttl;
    entry.rcode = u16::from(spec.rcode) as u8;
    entry.flags = if spec.authoritative {
        ENTRY_FLAG_AUTHORITATIVE
    } else {
        0
    };
    entry.ancount = spec.answers.len() as u16;
    entry.nscount = spec.authority.len() as u16;
    entry.arcount = spec.additionals.len() as u16;
    Ok((key, entry))
}

pub fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
