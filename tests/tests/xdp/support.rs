//! Shared harness of the XDP kernel tests: loads the program with fresh
//! maps, drives it through `BPF_PROG_TEST_RUN`, builds queries and entries,
//! and checks answers against what the entry says.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader, VerifierLogLevel};
use dns_agent::fastpath::entry::{self, EntrySpec};
use dns_common::{
    AnswerEntry, AnswerKey, Config, Counter, EDNS_UDP_SIZE, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS,
    PROGRAM_NAME,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nodedns_tests::frames::{FrameSpec, parse_udp};

pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
/// Room for any answer frame the program can produce.
pub const OUT_BUF: usize = 2048;
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x53);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x1007);
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Env var naming an object file to test instead of the embedded one, so
/// a fresh `dns-ebpf` build can be tested without rebuilding the agent.
pub const OBJECT_ENV: &str = "NODEDNS_XDP_OBJECT";

/// BPF_PROG_TEST_RUN needs CAP_BPF/CAP_NET_ADMIN; these tests must not
/// pass vacuously without them.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the XDP kernel tests load BPF programs and need root (CAP_BPF + CAP_NET_ADMIN): run them with sudo"
    );
}

pub struct Lab {
    pub ebpf: Ebpf,
}

pub struct Run {
    pub action: u32,
    pub out: Vec<u8>,
}

impl Lab {
    /// Loads the program with fresh (unpinned) maps and an enabled config
    /// listening on SERVER_V4 and SERVER_V6, port 53.
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    pub fn with_capacity(answers: u32) -> Self {
        require_root();
        let bytes = match std::env::var_os(OBJECT_ENV) {
            Some(path) => std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading {OBJECT_ENV}={path:?}: {e}")),
            None => dns_agent::fastpath::object::EBPF_OBJECT.to_vec(),
        };
        let mut loader = EbpfLoader::new();
        if std::env::var_os("NODEDNS_VERIFIER_LOG").is_some() {
            loader.verifier_log_level(VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS);
        }
        let mut ebpf = loader
            .map_max_entries(MAP_ANSWERS, answers)
            .load(&bytes)
            .unwrap_or_else(|e| panic!("loading the XDP object failed: {e:?}"));
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("program nodedns_xdp")
            .try_into()
            .unwrap();
        if let Err(e) = prog.load() {
            panic!("the verifier rejected nodedns_xdp: {e}\n{e:?}");
        }
        let mut lab = Self { ebpf };
        lab.set_config(default_config());
        lab
    }

    pub fn set_config(&mut self, cfg: Config) {
        let mut map: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut(MAP_CONFIG).unwrap()).unwrap();
        map.set(0, cfg, 0).unwrap();
    }

    pub fn answers(&mut self) -> HashMap<&mut MapData, AnswerKey, AnswerEntry> {
        HashMap::try_from(self.ebpf.map_mut(MAP_ANSWERS).unwrap()).unwrap()
    }

    pub fn insert(&mut self, key: &AnswerKey, entry: &AnswerEntry) {
        self.answers().insert(key, entry, 0).unwrap();
    }

    fn prog(&self) -> &Xdp {
        self.ebpf.program(PROGRAM_NAME).unwrap().try_into().unwrap()
    }

    pub fn run(&self, frame: &[u8]) -> Run {
        run_prog(self.prog(), frame)
    }

    /// Mean ns per run over `repeat` runs inside the kernel.
    pub fn bench(&self, frame: &[u8], repeat: u32) -> u64 {
        let mut out = vec![0u8; OUT_BUF];
        let r = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .unwrap();
        r.duration.as_nanos() as u64
    }

    /// One run, returning the verdict and the kernel-measured ns.
    pub fn bench_once(&self, frame: &[u8]) -> (u32, u64) {
        let mut out = vec![0u8; OUT_BUF];
        let r = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .unwrap();
        (r.return_value, r.duration.as_nanos() as u64)
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Vec<u64> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_COUNTERS).unwrap()).unwrap();
        (0..Counter::COUNT)
            .map(|i| map.get(&i, 0).unwrap().iter().sum())
            .collect()
    }

    /// Runs `frame` and asserts it came back untouched with XDP_PASS and
    /// exactly `reason` counted.
    pub fn expect_pass(&self, frame: &[u8], reason: Counter) {
        let before = self.counters();
        let r = self.run(frame);
        assert_eq!(r.action, XDP_PASS, "expected XDP_PASS ({reason:?})");
        assert_eq!(r.out, frame, "passed frame was modified ({reason:?})");
        let after = self.counters();
        let diff: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .map(|c| (*c, after[*c as usize] - before[*c as usize]))
            .filter(|(_, d)| *d != 0)
            .collect();
        assert_eq!(diff, vec![(reason, 1)], "counted the wrong reason");
    }
}

pub fn run_prog(prog: &Xdp, frame: &[u8]) -> Run {
    let mut out = vec![0u8; OUT_BUF];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN failed: {e:?}"));
    out.truncate(r.data_size_out as usize);
    Run {
        action: r.return_value,
        out,
    }
}

pub fn default_config() -> Config {
    let mut cfg = Config::zeroed();
    cfg.v4_addrs[0] = u32::from_ne_bytes(SERVER_V4.octets());
    cfg.v4_count = 1;
    cfg.v6_addrs[0] = SERVER_V6.octets();
    cfg.v6_count = 1;
    cfg.enabled = 1;
    cfg.port = 53;
    cfg.edns_udp_size = EDNS_UDP_SIZE;
    cfg
}

pub fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// A client socket and our listen address of the family `v6`.
pub fn endpoints(v6: bool) -> (SocketAddr, SocketAddr) {
    if v6 {
        (
            SocketAddr::new(IpAddr::V6(CLIENT_V6), 41000),
            SocketAddr::new(IpAddr::V6(SERVER_V6), 53),
        )
    } else {
        (
            SocketAddr::new(IpAddr::V4(CLIENT_V4), 41000),
            SocketAddr::new(IpAddr::V4(SERVER_V4), 53),
        )
    }
}

/// EDNS in a query: advertised size, DO bit.
#[derive(Clone, Copy, Debug)]
pub struct EdnsQ {
    pub size: u16,
    pub dnssec_ok: bool,
}

pub fn query_msg(id: u16, qname: &str, qtype: RecordType, edns: Option<EdnsQ>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(e) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(e.size);
        opt.set_dnssec_ok(e.dnssec_ok);
        m.set_edns(opt);
    }
    m
}

pub fn query_frame(
    v6: bool,
    id: u16,
    qname: &str,
    qtype: RecordType,
    edns: Option<EdnsQ>,
) -> Vec<u8> {
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(&query_msg(id, qname, qtype, edns).to_vec().unwrap())
}

/// EDNS option code of a DNS COOKIE (RFC 7873).
pub const OPT_COOKIE: u16 = 10;

/// A query with an OPT record carrying `options` (code, data) in order.
pub fn query_frame_with_options(
    v6: bool,
    id: u16,
    qname: &str,
    qtype: RecordType,
    edns: EdnsQ,
    options: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut msg = query_msg(id, qname, qtype, Some(edns));
    let mut opt = msg.edns.clone().unwrap();
    for (code, data) in options {
        opt.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                *code,
                data.clone(),
            ));
    }
    msg.set_edns(opt);
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(&msg.to_vec().unwrap())
}

/// A cookie option's data of `len` bytes (a client cookie is 8, with a
/// server cookie 16..=40).
pub fn cookie(len: usize) -> (u16, Vec<u8>) {
    (
        OPT_COOKIE,
        (0..len as u8).map(|b| b.wrapping_mul(37)).collect(),
    )
}

/// Whether the kernel may answer a query carrying these EDNS options: none,
/// or exactly one COOKIE of a valid length, which it ignores.
fn answerable_options(options: &[(u16, Vec<u8>)]) -> bool {
    match options {
        [] => true,
        [(OPT_COOKIE, data)] => data.len() == 8 || (16..=40).contains(&data.len()),
        _ => false,
    }
}

/// Wire length of the name starting at `msg[12]`: the question echoed
/// in the answer is that plus type and class.
fn wire_name_len(msg: &[u8]) -> usize {
    let mut p = 12;
    while msg[p] != 0 {
        p += 1 + msg[p] as usize;
    }
    p + 1 - 12
}

/// An entry valid for `secs` seconds from now.
pub struct EntryDef {
    pub qname: Name,
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    pub max_ttl: u32,
    pub secs: u64,
    pub generation: u64,
}

impl EntryDef {
    pub fn new(qname: &str, qtype: RecordType, answers: Vec<Record>) -> Self {
        Self {
            qname: name(qname),
            qtype,
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authority: vec![],
            additionals: vec![],
            max_ttl: 30,
            secs: 60,
            generation: 1,
        }
    }

    pub fn encode(&self) -> (AnswerKey, AnswerEntry) {
        entry::encode(&EntrySpec {
            qname: &self.qname,
            qtype: self.qtype,
            rcode: self.rcode,
            authoritative: self.authoritative,
            answers: &self.answers,
            authority: &self.authority,
            additionals: &self.additionals,
            max_ttl: self.max_ttl,
            expires_boot_ns: entry::boot_time_ns() + self.secs * NS_PER_SEC,
            generation: self.generation,
        })
        .unwrap()
    }
}

pub fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

/// Checks `out` is a well-formed answer to `query_frame` carrying exactly
/// `def`'s records; returns the parsed answer message.
pub fn check_answer(query_frame: &[u8], out: &[u8], def: &EntryDef) -> Message {
    let q = parse_query_frame(query_frame);
    let a = parse_udp(out).unwrap_or_else(|e| panic!("answer frame is broken: {e}"));
    assert_eq!(a.src, q.dst, "answer must come from the address queried");
    assert_eq!(a.dst, q.src, "answer must go back to the client");
    assert_eq!(a.dst_mac, q.src_mac);
    assert_eq!(a.src_mac, q.dst_mac);
    let query = Message::from_vec(&q.payload).unwrap();
    let msg =
        Message::from_vec(&a.payload).unwrap_or_else(|e| panic!("answer does not parse: {e}"));
    let md = &msg.metadata;
    assert_eq!(md.id, query.metadata.id);
    assert_eq!(md.message_type, MessageType::Response);
    assert_eq!(md.op_code, OpCode::Query);
    assert_eq!(md.authoritative, def.authoritative);
    assert!(!md.truncation);
    assert_eq!(md.recursion_desired, query.metadata.recursion_desired);
    assert_eq!(md.checking_disabled, query.metadata.checking_disabled);
    assert!(md.recursion_available);
    assert!(!md.authentic_data);
    assert_eq!(md.response_code, def.rcode);
    // The question is echoed byte for byte (0x20 case preserved).
    let qlen = wire_name_len(&q.payload) + 4;
    assert_eq!(&a.payload[12..12 + qlen], &q.payload[12..12 + qlen]);
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(
        msg.queries[0].name().to_string(),
        query.queries[0].name().to_string()
    );
    // One TTL for the whole entry: its lifetime, capped by the smallest
    // record TTL and the entry's max_ttl.
    let all = def
        .answers
        .iter()
        .chain(&def.authority)
        .chain(&def.additionals);
    let bound = all.map(|r| r.ttl).fold(def.max_ttl, u32::min);
    check_section("answer", &msg.answers, &def.answers, bound);
    check_section("authority", &msg.authorities, &def.authority, bound);
    check_section("additional", &msg.additionals, &def.additionals, bound);
    match (&query.edns, &msg.edns) {
        (None, None) => {}
        (Some(qe), Some(e)) => {
            let options: Vec<(u16, Vec<u8>)> = qe
                .options()
                .as_ref()
                .iter()
                .map(|(code, o)| match o {
                    hickory_proto::rr::rdata::opt::EdnsOption::Unknown(c, d) => (*c, d.clone()),
                    other => (u16::from(*code), vec![0; other.len() as usize]),
                })
                .collect();
            assert!(
                answerable_options(&options),
                "answered a query with EDNS options other than one valid COOKIE: {options:?}"
            );
            assert_eq!(e.max_payload(), EDNS_UDP_SIZE);
            assert_eq!(e.version(), 0);
            assert!(!e.flags().dnssec_ok, "DO must be cleared");
            assert!(
                e.options().as_ref().is_empty(),
                "no EDNS options in answers"
            );
            assert_eq!(e.rcode_high(), 0);
        }
        (q, a) => panic!("EDNS mismatch: query {q:?}, answer {a:?}"),
    }
    let limit = query
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, EDNS_UDP_SIZE) as usize);
    assert!(
        a.payload.len() <= limit,
        "answer of {} bytes exceeds {limit}",
        a.payload.len()
    );
    msg
}

fn check_section(what: &str, got: &[Record], want: &[Record], bound: u32) {
    assert_eq!(got.len(), want.len(), "{what} section record count");
    for (g, w) in got.iter().zip(want) {
        assert!(g.name == w.name, "{what} owner {} vs {}", g.name, w.name);
        assert_eq!(g.record_type(), w.record_type(), "{what} type");
        assert_eq!(g.data, w.data, "{what} data");
        assert!(
            g.ttl <= bound && g.ttl + 2 >= bound,
            "{what} TTL {} not within ({bound}-2..={bound})",
            g.ttl
        );
    }
}

/// The query frames the tests build are always valid; parse with a full
/// checksum so `parse_udp` accepts them.
fn parse_query_frame(frame: &[u8]) -> nodedns_tests::frames::UdpFrame {
    let mut fixed = frame.to_vec();
    let l4 = if fixed[12..14] == [0x08, 0x00] {
        34
    } else {
        54
    };
    let (s, d): (IpAddr, IpAddr) = if l4 == 34 {
        (
            <[u8; 4]>::try_from(&fixed[26..30]).unwrap().into(),
            <[u8; 4]>::try_from(&fixed[30..34]).unwrap().into(),
        )
    } else {
        (
            <[u8; 16]>::try_from(&fixed[22..38]).unwrap().into(),
            <[u8; 16]>::try_from(&fixed[38..54]).unwrap().into(),
        )
    };
    let sport = u16::from_be_bytes([fixed[l4], fixed[l4 + 1]]);
    let dport = u16::from_be_bytes([fixed[l4 + 2], fixed[l4 + 3]]);
    let ip_end = if l4 == 34 {
        14 + u16::from_be_bytes([fixed[16], fixed[17]]) as usize
    } else {
        54 + u16::from_be_bytes([fixed[18], fixed[19]]) as usize
    };
    fixed.truncate(ip_end);
    let payload = fixed[l4 + 8..].to_vec();
    let mut spec = FrameSpec::udp(SocketAddr::new(s, sport), SocketAddr::new(d, dport));
    spec.full_udp_checksum = true;
    let mut p = parse_udp(&spec.build(&payload)).unwrap();
    p.dst_mac = frame[0..6].try_into().unwrap();
    p.src_mac = frame[6..12].try_into().unwrap();
    p
}
