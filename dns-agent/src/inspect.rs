//! `dns-agent inspect`: the kernel answers and counters, read from the pins
//! the fast path made (works while an agent runs, and after one exited with
//! --keep-on-exit), each entry decoded as promotion encoded it, and the
//! entries the kernel serves most, from its sampled hits
//! (`dns_common::hot_samples`).

use std::fmt::Write as _;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, MapInfo, PerCpuArray};
use dns_common::hot_samples::{HOT_CURSOR, HOT_SAMPLE_EVERY, HOT_SLOTS};
use dns_common::{
    AnswerEntry, AnswerKey, AnswerSlot, ENTRY_FLAG_AUTHORITATIVE, IndexValue, MAP_ANSWERS,
    MAP_COUNTERS, MAP_HOT_SAMPLES, MAP_INDEX,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use serde::Serialize;

use crate::fastpath::args::{InspectArgs, MAX_ANSWER_ENTRIES};
use crate::fastpath::loader::open_pinned;
use crate::fastpath::pins::{PinLayout, check_bpffs};
use crate::fastpath::{FastPathError, slots, stats};
use crate::promotion::encoding as entry;

/// Most entries `inspect` reads: the largest map `--map-entries` allows.
const MAX_LISTED: usize = MAX_ANSWER_ENTRIES as usize;
/// Entries in the hottest list.
const HOT_LISTED: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub bpffs_path: String,
    pub capacity: u32,
    pub entries: Vec<EntryView>,
    /// Counter name and value summed over CPUs, in `Counter` order (a JSON
    /// object).
    #[serde(serialize_with = "as_map")]
    pub counters: Vec<(String, u64)>,
    /// The entries the kernel served most among its recent hits, hottest
    /// first (at most [`HOT_LISTED`]).
    pub hot: Vec<HotView>,
    /// Samples the hottest list is drawn from (each stands for
    /// `HOT_SAMPLE_EVERY` hits).
    pub hot_samples: u64,
}

/// One entry of the hottest list.
#[derive(Debug, Clone, Serialize)]
pub struct HotView {
    /// `None` when the sampled entry has left the map since.
    pub name: Option<String>,
    pub qtype: Option<String>,
    /// Samples of this entry in the rings.
    pub samples: u64,
    /// Estimated hits in the window the rings cover (`samples` times
    /// `HOT_SAMPLE_EVERY`).
    pub hits: u64,
    /// Share of the sampled hits, in percent.
    pub share: f64,
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
    let index: HashMap<MapData, u64, IndexValue> = open_pinned(&layout, MAP_INDEX)?;
    let slots: Array<MapData, AnswerSlot> = open_pinned(&layout, MAP_ANSWERS)?;
    let counters: PerCpuArray<MapData, u64> = open_pinned(&layout, MAP_COUNTERS)?;
    let capacity = MapInfo::from_pin(layout.map(MAP_INDEX))
        .map_err(|e| FastPathError::map(MAP_INDEX, e))?
        .max_entries();
    let now = entry::boot_time_ns();
    let mut by_hash = std::collections::HashMap::new();
    let mut entries: Vec<EntryView> = slots::published(&index, &slots, MAX_LISTED)
        .into_iter()
        .map(|slot| {
            let v = view(&slot.key, &slot.entry, now);
            by_hash.insert(slot.entry.key_hash, (v.name.clone(), v.qtype.clone()));
            v
        })
        .collect();
    entries.sort_by(|a, b| (&a.name, &a.qtype).cmp(&(&b.name, &b.qtype)));
    let (hot, hot_samples) = hottest(&layout, &by_hash)?;
    let counters = stats::read_counters(&counters)?
        .into_iter()
        .map(|(c, v)| (c.name().to_string(), v))
        .collect();
    Ok(Snapshot {
        bpffs_path: bpffs_path.display().to_string(),
        capacity,
        entries,
        counters,
        hot,
        hot_samples,
    })
}

/// The sampled hits of every CPU's ring, tallied by key hash and named
/// from the entries (`by_hash`). Pins from an agent without the rings give
/// an empty list.
fn hottest(
    layout: &PinLayout,
    by_hash: &std::collections::HashMap<u64, (String, String)>,
) -> Result<(Vec<HotView>, u64), FastPathError> {
    if !layout.map(MAP_HOT_SAMPLES).exists() {
        return Ok((Vec::new(), 0));
    }
    let rings: PerCpuArray<MapData, u64> = open_pinned(layout, MAP_HOT_SAMPLES)?;
    let mut tally: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for slot in (0..HOT_SLOTS).filter(|&s| s != HOT_CURSOR) {
        let values = rings
            .get(&slot, 0)
            .map_err(|e| FastPathError::map(MAP_HOT_SAMPLES, e))?;
        // 0: a slot no sample reached yet.
        for hash in values.iter().copied().filter(|&h| h != 0) {
            *tally.entry(hash).or_default() += 1;
        }
    }
    let total: u64 = tally.values().sum();
    let mut hot: Vec<(u64, u64)> = tally.into_iter().collect();
    // Most samples first; the hash breaks ties so the order is stable.
    hot.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let hot = hot
        .into_iter()
        .take(HOT_LISTED)
        .map(|(hash, samples)| {
            let (name, qtype) = by_hash.get(&hash).cloned().unzip();
            HotView {
                name,
                qtype,
                samples,
                hits: samples * HOT_SAMPLE_EVERY,
                share: 100.0 * samples as f64 / total as f64,
            }
        })
        .collect();
    Ok((hot, total))
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
    let _ = writeln!(
        out,
        "hottest entries ({} sampled hits, one in {HOT_SAMPLE_EVERY} answers, recent ones per CPU):",
        snap.hot_samples
    );
    if snap.hot.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for h in &snap.hot {
        let name = h.name.as_deref().unwrap_or("<no longer in the map>");
        let qtype = h.qtype.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "  {name:<40} {qtype:<6} {:>5.1}%  ~{} hits",
            h.share, h.hits
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
