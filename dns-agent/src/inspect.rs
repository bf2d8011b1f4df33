//! `dns-agent inspect`: the kernel answers and counters, read from the pins
//! the fast path made (works while an agent runs, and after one exited with
//! --keep-on-exit), each entry decoded as promotion encoded it.

use std::fmt::Write as _;
use std::path::Path;

use aya::maps::{HashMap, MapData, MapInfo, PerCpuArray};
use dns_common::{AnswerEntry, AnswerKey, ENTRY_FLAG_AUTHORITATIVE, MAP_ANSWERS, MAP_COUNTERS};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use serde::Serialize;

use crate::fastpath::args::{InspectArgs, MAX_ANSWER_ENTRIES};
use crate::fastpath::loader::open_pinned;
use crate::fastpath::pins::{PinLayout, check_bpffs};
use crate::fastpath::{FastPathError, stats};
use crate::promotion::encoding as entry;

/// Most entries `inspect` reads: the largest map `--map-entries` allows.
const MAX_LISTED: usize = MAX_ANSWER_ENTRIES as usize;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub bpffs_path: String,
    pub capacity: u32,
    pub entries: Vec<EntryView>,
    /// Counter name and value summed over CPUs, in `Counter` order (a JSON
    /// object).
    #[serde(serialize_with = "as_map")]
    pub counters: Vec<(String, u64)>,
}

fn as_map<S: serde::Serializer>(pairs: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub name: String,
    pub qtype: String,
    pub rcode: String,
    pub authoritative: bool,
    /// Seconds the kernel will still serve the entry; `None` once expired.
    pub ttl_remaining: Option<u32>,
    pub max_ttl: u32,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub additionals: Vec<String>,
    /// Why the entry cannot be decoded (the kernel would not serve it).
    pub error: Option<String>,
}

/// Reads every entry and counter pinned under `bpffs_path`.
pub fn snapshot(bpffs_path: &Path) -> Result<Snapshot, FastPathError> {
    let layout = PinLayout::new(bpffs_path);
    if !layout.root().exists() {
        return Err(FastPathError::NothingPinned {
            path: bpffs_path.to_path_buf(),
        });
    }
    check_bpffs(layout.root())?;
    let answers: HashMap<MapData, AnswerKey, AnswerEntry> = open_pinned(&layout, MAP_ANSWERS)?;
    let counters: PerCpuArray<MapData, u64> = open_pinned(&layout, MAP_COUNTERS)?;
    let capacity = MapInfo::from_pin(layout.map(MAP_ANSWERS))
        .map_err(|e| FastPathError::map(MAP_ANSWERS, e))?
        .max_entries();
    let now = entry::boot_time_ns();
    let mut entries: Vec<EntryView> = answers
        .iter()
        .take(MAX_LISTED)
        .filter_map(Result::ok)
        .map(|(key, entry)| view(&key, &entry, now))
        .collect();
    entries.sort_by(|a, b| (&a.name, &a.qtype).cmp(&(&b.name, &b.qtype)));
    let counters = stats::read_counters(&counters)?
        .into_iter()
        .map(|(c, v)| (c.name().to_string(), v))
        .collect();
    Ok(Snapshot {
        bpffs_path: bpffs_path.display().to_string(),
        capacity,
        entries,
        counters,
    })
}

/// `dns-agent inspect`: prints the snapshot to stdout.
pub fn run_inspect(args: &InspectArgs) -> Result<(), FastPathError> {
    print!("{}", inspect(&args.bpffs_path, args.json)?);
    Ok(())
}

/// The snapshot as a table, or as JSON.
pub fn inspect(bpffs_path: &Path, json: bool) -> Result<String, FastPathError> {
    let snap = snapshot(bpffs_path)?;
    if json {
        return Ok(serde_json::to_string_pretty(&snap).expect("plain data serialises"));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel answers in {}: {} of {} entries",
        snap.bpffs_path,
        snap.entries.len(),
        snap.capacity
    );
    let _ = writeln!(
        out,
        "{:<40} {:<6} {:<9} {:<2} {:>8}  RECORDS",
        "NAME", "TYPE", "RCODE", "AA", "TTL"
    );
    for e in &snap.entries {
        let ttl = e
            .ttl_remaining
            .map_or_else(|| "expired".to_string(), |t| format!("{t}s"));
        let mut records: Vec<String> = e.answers.clone();
        records.extend(e.authority.iter().map(|r| format!("[authority] {r}")));
        records.extend(e.additionals.iter().map(|r| format!("[additional] {r}")));
        if let Some(err) = &e.error {
            records = vec![format!("<undecodable: {err}>")];
        }
        let aa = if e.authoritative { "aa" } else { "-" };
        let _ = writeln!(
            out,
            "{:<40} {:<6} {:<9} {:<2} {:>8}  {}",
            e.name,
            e.qtype,
            e.rcode,
            aa,
            ttl,
            records.join("; ")
        );
    }
    let _ = writeln!(out, "counters (all CPUs):");
    for (name, value) in &snap.counters {
        let _ = writeln!(out, "  {name:<20} {value}");
    }
    Ok(out)
}

fn view(key: &AnswerKey, entry: &AnswerEntry, now_ns: u64) -> EntryView {
    let mut v = EntryView {
        name: String::new(),
        qtype: RecordType::from(key.qtype).to_string(),
        rcode: ResponseCode::from(0, entry.rcode).to_string(),
        authoritative: entry.flags & ENTRY_FLAG_AUTHORITATIVE != 0,
        ttl_remaining: entry::served_ttl(entry, now_ns),
        max_ttl: entry.max_ttl,
        answers: Vec::new(),
        authority: Vec::new(),
        additionals: Vec::new(),
        error: None,
    };
    match entry::decode(key, entry) {
        Ok(decoded) => {
            v.name = decoded.name.to_string();
            v.answers = decoded.sections.answers.iter().map(record).collect();
            v.authority = decoded.sections.authority.iter().map(record).collect();
            v.additionals = decoded.sections.additionals.iter().map(record).collect();
        }
        Err(e) => {
            let len = usize::from(key.name_len).min(key.name.len());
            v.name = format!("{:?}", String::from_utf8_lossy(&key.name[..len]));
            v.error = Some(e.to_string());
        }
    }
    v
}

fn record(r: &Record) -> String {
    format!("{} {} {}", r.name, r.record_type(), r.data)
}
