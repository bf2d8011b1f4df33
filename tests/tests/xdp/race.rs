//! Races map updates against lookups: a writer flips one name between two
//! answers of different lengths (delete + re-insert, and overwrite) while
//! the program answers queries for it. Every answer must be exactly one of
//! the two versions, never a mix; passes are fine. Needs root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use dns_common::{AnswerEntry, AnswerKey, Counter, MAP_ANSWERS};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::frames::parse_udp;
use nodedns_tests::records::rec;
use nodedns_tests::xdp::{EntryDef, Harness, XDP_PASS, XDP_TX, query_frame};

const NAME: &str = "flip.default.svc.cluster.local.";
const RUN_FOR: Duration = Duration::from_secs(3);
/// Other keys the writer churns so freed elements get reused at once.
const CHURN_KEYS: u32 = 64;

fn version(n: u8) -> EntryDef {
    EntryDef::new(
        NAME,
        RecordType::A,
        (1..=n)
            .map(|i| rec(NAME, 30, RData::A(A(Ipv4Addr::new(10, n, 0, i)))))
            .collect(),
    )
}

fn addrs(msg: &Message) -> BTreeSet<String> {
    msg.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn concurrent_updates_never_produce_a_mixed_answer() {
    let mut xdp = Harness::with_capacity(256);
    let short = version(1);
    let long = version(7);
    let expected: Vec<BTreeSet<String>> = [&short, &long]
        .iter()
        .map(|d| {
            d.sections
                .answers
                .iter()
                .map(|r| r.data.to_string())
                .collect()
        })
        .collect();
    let (key, _) = short.encode();
    let mut map: HashMap<MapData, AnswerKey, AnswerEntry> =
        HashMap::try_from(xdp.ebpf.take_map(MAP_ANSWERS).unwrap()).unwrap();
    map.insert(key, short.encode().1, 0).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let mut generation = 1u64;
            let mut churn = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for def in [&long, &short] {
                    generation += 1;
                    let mut d = EntryDef::new(NAME, RecordType::A, def.sections.answers.clone());
                    d.generation = generation;
                    let (k, e) = d.encode();
                    if generation.is_multiple_of(2) {
                        map.insert(k, e, 0).unwrap();
                    } else {
                        let _ = map.remove(&k);
                        map.insert(k, e, 0).unwrap();
                    }
                    // Free and reuse other elements too.
                    let other = EntryDef::new(
                        &format!("churn{}.cluster.local.", churn % CHURN_KEYS),
                        RecordType::A,
                        vec![],
                    );
                    let (ok, oe) = other.encode();
                    let _ = map.remove(&ok);
                    map.insert(ok, oe, 0).unwrap();
                    churn += 1;
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let start = Instant::now();
    let (mut answered, mut passed) = (0u64, 0u64);
    let mut seen = [0u64; 2];
    let mut id = 0u16;
    while start.elapsed() < RUN_FOR {
        id = id.wrapping_add(1);
        let q = query_frame(id.is_multiple_of(2), id, NAME, RecordType::A, None);
        let r = xdp.run(&q);
        match r.action {
            XDP_TX => {
                let frame = parse_udp(&r.out).expect("answer frame checksums");
                let msg = Message::from_vec(&frame.payload).expect("answer parses");
                assert_eq!(msg.metadata.id, id);
                let got = addrs(&msg);
                let which = expected.iter().position(|e| *e == got);
                let which = which.unwrap_or_else(|| panic!("mixed answer: {got:?}"));
                assert_eq!(msg.answers.len(), expected[which].len());
                seen[which] += 1;
                answered += 1;
            }
            XDP_PASS => {
                assert_eq!(r.out, q, "a passed frame must be untouched");
                passed += 1;
            }
            other => panic!("action {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let c = xdp.counters();
    println!(
        "race: {answered} answered ({} short, {} long), {passed} passed ({} miss, {} invalid entry), {} writes",
        seen[0],
        seen[1],
        c[Counter::Miss as usize],
        c[Counter::PassInvalidEntry as usize],
        writes.load(Ordering::Relaxed)
    );
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both versions must have been served"
    );
}
