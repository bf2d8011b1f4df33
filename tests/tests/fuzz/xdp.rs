//! Fuzzes the XDP program through the kernel: random frames and mutations
//! of valid queries. Every XDP_TX output must be a well-formed answer to
//! its input carrying that name's entry (an input with EDNS options may only
//! be answered when they are one valid COOKIE, and the answer's OPT has no
//! options); everything else must be XDP_PASS with the frame unmodified.
//!
//! `NODEDNS_FUZZ_COUNT` sets the number of frames (default 100 000;
//! `cargo xtask fuzz-xdp --count N` sets it), `NODEDNS_FUZZ_SEED` replays
//! a run. Needs root.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use dns_common::MAX_NAME_LEN;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, NULL};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nodedns_tests::frames::{FrameSpec, IPPROTO_TCP};
use nodedns_tests::records::recase;
use nodedns_tests::xdp::{
    EdnsQ, EntryDef, Harness, Layout, TYPE_LIKE_QTYPE, XDP_PASS, XDP_TX, check_answer, cookie,
    endpoints, entry_kinds, frame_with_options, name_of_len, query_msg_for, single_a,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_COUNT: u64 = 100_000;
/// How many frames (`cargo xtask fuzz-xdp --count N` sets it).
const COUNT_ENV: &str = "NODEDNS_FUZZ_COUNT";
/// The seed of a run to replay.
const SEED_ENV: &str = "NODEDNS_FUZZ_SEED";

/// Every kind of entry the kernel tests use, a short name, and names at
/// the kernel's length limit, some starting with the bytes of a mapped type
/// and class IN (issue 16: a 128-byte name once had its type and class read
/// from its first bytes).
fn entries() -> Vec<EntryDef> {
    let mut v = entry_kinds();
    v.push(single_a("a.cluster.local.", 1));
    for wire_len in EDGE_LENGTHS.into_iter().filter(|l| *l <= MAX_NAME_LEN) {
        for layout in [Layout::Long, Layout::TypeLike] {
            let Some(owner) = name_of_len(wire_len, layout) else {
                continue;
            };
            let type_like = RecordType::Unknown(TYPE_LIKE_QTYPE);
            for (qtype, data) in [
                (
                    RecordType::A,
                    RData::A(A(Ipv4Addr::new(10, 0, 2, wire_len as u8))),
                ),
                (
                    type_like,
                    RData::Unknown {
                        code: type_like,
                        rdata: NULL::with(vec![wire_len as u8]),
                    },
                ),
            ] {
                let record = Record::from_rdata(owner.clone(), 30, data);
                let mut d = EntryDef::new(".", qtype, vec![record]);
                d.qname = owner.clone();
                v.push(d);
            }
        }
    }
    // Long-lived, so the served TTL stays at max_ttl however long the run.
    for d in &mut v {
        d.secs = 24 * 3600;
    }
    v
}

/// Wire lengths of names around the parser's limits: the shortest, the
/// kernel's `MAX_NAME_LEN` and its neighbours, and DNS's 255.
const EDGE_LENGTHS: [usize; 9] = [1, 3, 126, 127, 128, 129, 130, 254, 255];

/// A query for a name at one of the edge lengths, of a type and class
/// that may or may not be in the map.
fn edge_query(rng: &mut StdRng) -> Vec<u8> {
    let wire_len = EDGE_LENGTHS[rng.random_range(0..EDGE_LENGTHS.len())];
    let layout = if rng.random_bool(0.5) {
        Layout::Long
    } else {
        Layout::TypeLike
    };
    let owner = name_of_len(wire_len, layout)
        .or_else(|| name_of_len(wire_len, Layout::Long))
        .expect("every edge length has a name");
    let qtype = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::Unknown(TYPE_LIKE_QTYPE),
        RecordType::MX,
    ][rng.random_range(0..5)];
    let mut msg = query_msg_for(rng.random(), owner.clone(), qtype, None);
    if rng.random_bool(0.2) {
        let mut q = Query::query(owner, qtype);
        q.set_query_class(DNSClass::CH);
        msg.queries = vec![q];
    }
    let (c, s) = endpoints(rng.random_bool(0.5));
    FrameSpec::udp(c, s).build(&msg.to_vec().unwrap())
}

fn random_case(rng: &mut StdRng, name: &Name) -> Name {
    recase(name, |_| rng.random_bool(0.5))
}

fn valid_query(rng: &mut StdRng, defs: &[EntryDef]) -> Vec<u8> {
    let d = &defs[rng.random_range(0..defs.len())];
    let edns = match rng.random_range(0..3) {
        0 => None,
        _ => Some(EdnsQ {
            size: rng.random_range(0..5000),
            dnssec_ok: rng.random_bool(0.5),
        }),
    };
    let (v6, id) = (rng.random_bool(0.5), rng.random());
    let msg = query_msg_for(id, random_case(rng, &d.qname), d.qtype, edns);
    match edns {
        // Half the EDNS queries carry options: mostly a DNS COOKIE (which
        // the kernel ignores, like dig's default), of any length around the
        // valid ones, sometimes with another option (which it passes).
        Some(_) if rng.random_bool(0.5) => {
            let mut options = vec![cookie(rng.random_range(0..=44))];
            if rng.random_bool(0.2) {
                options.push((rng.random_range(11..=15), vec![0; rng.random_range(0..8)]));
                if rng.random_bool(0.5) {
                    options.reverse();
                }
            }
            frame_with_options(v6, msg, &options)
        }
        _ => {
            // The offload seed a pod's socket leaves, or a full checksum
            // that most mutations then break (pass_checksum).
            let (c, s) = endpoints(v6);
            let mut spec = FrameSpec::udp(c, s);
            spec.full_udp_checksum = rng.random_bool(0.3);
            spec.build(&msg.to_vec().unwrap())
        }
    }
}

fn mutate(rng: &mut StdRng, mut f: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..10) {
            // Flip bits, mostly in the DNS part where the parser's decisions are.
            0..=5 => {
                let lo = if rng.random_bool(0.7) {
                    42.min(f.len() - 1)
                } else {
                    0
                };
                let i = rng.random_range(lo..f.len());
                f[i] ^= 1 << rng.random_range(0..8);
            }
            6 => {
                let i = rng.random_range(0..f.len());
                f[i] = rng.random();
            }
            7 => {
                let n = rng.random_range(14..=f.len());
                f.truncate(n);
            }
            8 => {
                for _ in 0..rng.random_range(1..8) {
                    f.push(rng.random());
                }
            }
            _ => {
                // Case flip of a letter: still a hit.
                let i = rng.random_range(0..f.len());
                if f[i].is_ascii_alphabetic() {
                    f[i] ^= 0x20;
                }
            }
        }
    }
    f
}

fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let v6 = rng.random_bool(0.5);
    let (c, s) = endpoints(v6);
    let mut spec = FrameSpec::udp(c, s);
    if rng.random_bool(0.1) {
        spec.proto = IPPROTO_TCP;
    }
    let len = rng.random_range(0..200);
    let mut payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if payload.len() >= 12 && rng.random_bool(0.7) {
        // A plausible header so the question walker sees garbage names.
        payload[2] &= 0x01;
        payload[3] = 0;
        payload[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, rng.random_range(0..2)]);
    }
    if rng.random_bool(0.2) {
        let n = rng.random_range(14..300);
        return (0..n).map(|_| rng.random()).collect();
    }
    spec.build(&payload)
}

#[test]
fn fuzz_frames_through_the_kernel() {
    let count: u64 = std::env::var(COUNT_ENV)
        .ok()
        .map_or(DEFAULT_COUNT, |v| v.parse().expect(COUNT_ENV));
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .map(|v| v.parse().expect(SEED_ENV))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("xdp fuzz: {count} frames, seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut xdp = Harness::new();
    let defs = entries();
    let mut by_key = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        xdp.insert_entry(d);
        by_key.insert((d.qname.to_lowercase().to_ascii(), d.qtype), i);
    }
    let (mut tx, mut pass) = (0u64, 0u64);
    for n in 0..count {
        let frame = match rng.random_range(0..10) {
            0 => {
                let q = edge_query(&mut rng);
                if rng.random_bool(0.5) {
                    q
                } else {
                    mutate(&mut rng, q)
                }
            }
            1..=5 => {
                let q = valid_query(&mut rng, &defs);
                if rng.random_bool(0.15) {
                    q
                } else {
                    mutate(&mut rng, q)
                }
            }
            _ => random_frame(&mut rng),
        };
        if frame.len() < 14 {
            continue;
        }
        let r = xdp.run(&frame);
        let hex = || frame.iter().map(|b| format!("{b:02x}")).collect::<String>();
        match r.action {
            XDP_PASS => {
                assert_eq!(
                    r.out,
                    frame,
                    "frame {n} passed but modified; seed {seed}; input {}",
                    hex()
                );
                pass += 1;
            }
            XDP_TX => {
                let checked = catch_unwind(AssertUnwindSafe(|| {
                    let l4 = if frame[12..14] == [0x08, 0x00] {
                        34
                    } else {
                        54
                    };
                    let q =
                        Message::from_vec(&frame[l4 + 8..]).expect("answered input parses as DNS");
                    let question = &q.queries[0];
                    assert_eq!(
                        question.query_class(),
                        DNSClass::IN,
                        "answered a class other than IN"
                    );
                    let key = (
                        question.name().to_lowercase().to_ascii(),
                        question.query_type(),
                    );
                    let def = &defs[*by_key
                        .get(&key)
                        .expect("answered a question that has no entry")];
                    check_answer(&frame, &r.out, def);
                }));
                if let Err(e) = checked {
                    eprintln!("frame {n} answered wrongly; seed {seed}; input {}", hex());
                    resume_unwind(e);
                }
                tx += 1;
            }
            other => panic!(
                "frame {n}: action {other} (only PASS and TX are allowed); seed {seed}; input {}",
                hex()
            ),
        }
    }
    println!(
        "xdp fuzz: {tx} answered, {pass} passed; counters {:?}",
        xdp.counters()
    );
    assert!(
        tx > count / 20,
        "too few answers ({tx}): the generator no longer produces hits"
    );
}
