//! The XDP program through the kernel without a network: loaded with fresh
//! maps, driven through `BPF_PROG_TEST_RUN` (crafted frames in, verdict,
//! bytes and counters out). Entries come from [`EntryDef`], queries from
//! [`query_frame`], and [`check_answer`] checks an answer against its entry.

mod check;
mod entry;
pub mod failopen;
mod kinds;
mod names;
mod query;
pub mod timing;

use std::path::PathBuf;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader, VerifierLogLevel};
use dns_agent::fastpath::slots::AnswerTable;
use dns_common::{
    AnswerEntry, AnswerKey, AnswerSlot, Config, Counter, EDNS_UDP_SIZE, IndexValue, InterfaceMacs,
    MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS, MAP_INDEX, MAP_INTERFACES, PROGRAM_NAME, slots_for,
};

pub use check::check_answer;
pub use entry::EntryDef;
pub use kinds::{cluster_a, cluster_aaaa, entry_kinds, single_a};
pub use names::{Layout, MAX_WIRE_NAME, TYPE_LIKE_QTYPE, name_of_len};
pub use query::{
    CLIENT_V4, CLIENT_V6, EdnsQ, OPT_COOKIE, SERVER_V4, SERVER_V6, cookie, endpoints,
    frame_with_options, query_frame, query_frame_with_options, query_msg, query_msg_for,
};

use crate::frames::SERVER_MAC;
use crate::internals::EBPF_OBJECT;
use crate::lab::require_root;

pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
/// Room for any answer frame the program can produce.
pub const OUT_BUF: usize = 2048;
/// The ifindex `BPF_PROG_TEST_RUN` reports: the caller namespace's `lo`.
pub const TEST_RUN_IFINDEX: u32 = 1;
/// Answers map capacity of [`Harness::new`].
const DEFAULT_ANSWERS: u32 = 1024;
/// Env var naming an object file to test instead of the one the agent
/// embeds, so a fresh `dns-ebpf` build can be tested without rebuilding
/// the agent (the harness and the loader's tests both honour it).
pub const OBJECT_ENV: &str = "NODEDNS_XDP_OBJECT";
/// Set to print the verifier's log and statistics when the program loads.
const VERIFIER_LOG_ENV: &str = "NODEDNS_VERIFIER_LOG";

/// The object file [`OBJECT_ENV`] names, if set.
pub fn object_override() -> Option<PathBuf> {
    std::env::var_os(OBJECT_ENV).map(PathBuf::from)
}

/// The XDP program loaded with fresh (unpinned) maps and an enabled config
/// listening on [`SERVER_V4`] and [`SERVER_V6`], port 53.
pub struct Harness {
    pub ebpf: Ebpf,
    /// The answers index and slots, written as the agent writes them
    /// (`dns_agent::fastpath::slots`); `None` once taken.
    answers: Option<AnswerTable<MapData>>,
}

/// One run: the verdict and the frame as the program left it.
pub struct Run {
    pub action: u32,
    pub out: Vec<u8>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_ANSWERS)
    }

    /// With an answers map of `answers` entries. Panics unless root: the
    /// kernel tests must not pass by skipping.
    pub fn with_capacity(answers: u32) -> Self {
        require_root().unwrap();
        let bytes = match object_override() {
            Some(path) => std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading {OBJECT_ENV}={}: {e}", path.display())),
            None => EBPF_OBJECT.to_vec(),
        };
        let mut loader = EbpfLoader::new();
        if std::env::var_os(VERIFIER_LOG_ENV).is_some() {
            loader.verifier_log_level(VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS);
        }
        let mut ebpf = loader
            .map_max_entries(MAP_INDEX, answers)
            .map_max_entries(MAP_ANSWERS, slots_for(answers))
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
        let take =
            |ebpf: &mut Ebpf, name| ebpf.take_map(name).unwrap_or_else(|| panic!("map {name}"));
        let index = HashMap::try_from(take(&mut ebpf, MAP_INDEX)).unwrap();
        let slots = Array::try_from(take(&mut ebpf, MAP_ANSWERS)).unwrap();
        let answers = Some(AnswerTable::fresh(index, slots, answers));
        let mut harness = Self { ebpf, answers };
        harness.set_config(default_config());
        // BPF_PROG_TEST_RUN runs the program as if on the loopback device
        // of the caller's namespace; the frames go to SERVER_MAC. (An
        // object from before the interfaces map, given in OBJECT_ENV for a
        // before/after benchmark, has no such map to fill.)
        if harness.ebpf.map(MAP_INTERFACES).is_some() {
            harness.set_interface(
                TEST_RUN_IFINDEX,
                InterfaceMacs {
                    mac: SERVER_MAC,
                    bridge_mac: [0; 6],
                },
            );
        }
        harness
    }

    fn interfaces(&mut self) -> HashMap<&mut MapData, u32, InterfaceMacs> {
        HashMap::try_from(self.ebpf.map_mut(MAP_INTERFACES).unwrap()).unwrap()
    }

    /// The MAC addresses the program takes queries to on `ifindex`, as the
    /// agent writes them for every interface.
    pub fn set_interface(&mut self, ifindex: u32, macs: InterfaceMacs) {
        self.interfaces().insert(ifindex, macs, 0).unwrap();
    }

    pub fn remove_interface(&mut self, ifindex: u32) {
        self.interfaces().remove(&ifindex).unwrap();
    }

    pub fn set_config(&mut self, cfg: Config) {
        let mut map: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut(MAP_CONFIG).unwrap()).unwrap();
        map.set(0, cfg, 0).unwrap();
    }

    /// Publishes `entry` for `key` as the agent does (a fresh slot, then
    /// the index).
    pub fn insert(&mut self, key: &AnswerKey, entry: &AnswerEntry) {
        self.answers().put(key, entry).unwrap();
    }

    pub fn remove(&mut self, key: &AnswerKey) {
        self.answers().delete(key).unwrap();
    }

    /// The answers table (panics once taken).
    pub fn answers(&mut self) -> &mut AnswerTable<MapData> {
        self.answers.as_mut().expect("the answers table was taken")
    }

    /// Takes the answers table out, for a writer on another thread.
    pub fn take_answers(&mut self) -> AnswerTable<MapData> {
        self.answers.take().expect("the answers table was taken")
    }

    /// Writes `slot` into slot number `n` and points the index entry
    /// `hash` at it, unchecked: for slots the agent would never write.
    pub fn insert_raw(&mut self, hash: u64, n: u32, slot: &AnswerSlot) {
        let (index, slots) = self.answers().maps_mut();
        slots.set(n, slot, 0).unwrap();
        index.insert(hash, IndexValue::new(n), 0).unwrap();
    }

    /// Encodes `def` and puts it into the answers map.
    pub fn insert_entry(&mut self, def: &EntryDef) {
        let (key, entry) = def.encode();
        self.insert(&key, &entry);
    }

    pub fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn prog(&self) -> &Xdp {
        self.ebpf.program(PROGRAM_NAME).unwrap().try_into().unwrap()
    }

    pub fn run(&self, frame: &[u8]) -> Run {
        test_run(self.prog(), frame, 1).0
    }

    /// Mean ns per run over `repeat` runs inside the kernel.
    pub fn bench(&self, frame: &[u8], repeat: u32) -> u64 {
        test_run(self.prog(), frame, repeat).1
    }

    /// One run, returning the verdict and the kernel-measured ns.
    pub fn bench_once(&self, frame: &[u8]) -> (u32, u64) {
        let (run, ns) = test_run(self.prog(), frame, 1);
        (run.action, ns)
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

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// `BPF_PROG_TEST_RUN` of `frame`, `repeat` times: the last run and the
/// mean ns per run.
fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> (Run, u64) {
    let mut out = vec![0u8; OUT_BUF];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN failed: {e:?}"));
    out.truncate(r.data_size_out as usize);
    let ns = r.duration.as_nanos() as u64;
    (
        Run {
            action: r.return_value,
            out,
        },
        ns,
    )
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
