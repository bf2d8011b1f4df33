//! Races map updates against lookups: a writer flips one name between two
//! answers of different lengths (delete + re-insert, and overwrite) with
//! the agent's write protocol (`dns_agent::fastpath::slots`: a fresh slot,
//! then the index; a slot taken out cools for a second before it is
//! written again) as fast as it can, while churning other names so the
//! preallocated index recycles its elements at once, and while the program
//! answers queries for the name. Every answer must be exactly one of the
//! two versions, never a mix; passes are fine (a rewrite finding no cooled
//! slot takes the name out of the index until the next one). Needs root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dns_common::Counter;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::frames::parse_udp;
use nodedns_tests::records::rec;
use nodedns_tests::xdp::{EntryDef, Harness, XDP_PASS, XDP_TX, query_frame};

const NAME: &str = "flip.default.svc.cluster.local.";
const RUN_FOR: Duration = Duration::from_secs(3);
/// Other keys the writer churns so freed index elements get reused at once.
const CHURN_KEYS: u32 = 64;
/// Index capacity: slots enough for thousands of rewrites a second.
const CAPACITY: u32 = 8192;

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
    let mut xdp = Harness::with_capacity(CAPACITY);
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
    let (key, entry) = short.encode();
    let mut map = xdp.take_answers();
    map.put(&key, &entry).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, published) = (stop.clone(), writes.clone(), published.clone());
        std::thread::spawn(move || {
            let mut generation = 1u64;
            let mut churn = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for def in [&long, &short] {
                    generation += 1;
                    let mut d = EntryDef::new(NAME, RecordType::A, def.sections.answers.clone());
                    d.generation = generation;
                    let (k, e) = d.encode();
                    if !generation.is_multiple_of(2) {
                        map.delete(&k).unwrap();
                    }
                    // No cooled slot is fine: the name passes until the
                    // next write finds one.
                    if map.put(&k, &e).is_ok() {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    // Free and reuse other index elements too.
                    let other = EntryDef::new(
                        &format!("churn{}.cluster.local.", churn % CHURN_KEYS),
                        RecordType::A,
                        vec![],
                    );
                    let (ok, oe) = other.encode();
                    map.delete(&ok).unwrap();
                    if map.put(&ok, &oe).is_ok() {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
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
    let published = published.load(Ordering::Relaxed);
    println!(
        "race: {answered} answered ({} short, {} long), {passed} passed ({} miss, {} invalid entry), \
         {} rewrites of the name, {published} slots published",
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
    let half = u64::from(dns_common::slots_for(CAPACITY) / 2);
    assert!(
        published > half,
        "the writer must have reused cooled slots ({published} published, {half} slots)"
    );
}
