//! The fast path's loader against the real kernel: pins, adoption,
//! attachments that follow interfaces, foreign programs, keep-on-exit and
//! hand-over, cleanup, the map sink, inspect and metrics.
//!
//! Every test works in a lab namespace of its own (with veth pairs named
//! `tfaN`/`tfbN` inside it) and a pin path inside a bpffs directory of its
//! own, removed by guards even when the test fails.
//! `NODEDNS_XDP_OBJECT=<file>` loads that object instead of the embedded one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, MapInfo};
use aya::programs::XdpMode;
use dns_agent::fastpath::slots::{hash_of, read_slot};
use dns_common::{
    AnswerEntry, AnswerKey, AnswerSlot, Config, IndexValue, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS,
    MAP_INDEX, slots_for,
};
use nodedns_tests::client::DnsperfSummary;
use nodedns_tests::internals::{
    AnswerSink, AttachMode, ExitPolicy, FastPath, FastPathArgs, FastPathError, MapSink, NodeHealth,
    Repair, SinkError, SkipReason, XdpModeArg, build_config, fastpath_cleanup, fastpath_inspect,
    fastpath_snapshot, new_registry,
};
use nodedns_tests::lab::{
    BpffsDir, LISTEN_V4, Lab, Netns, PassProgram, XdpAttach, run_here, unique_suffix, wait_for,
};
use nodedns_tests::xdp::{EntryDef, Harness, object_override};

/// Bound on the interface follower catching up with a change.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// A pin path the loader creates itself, inside a bpffs directory of the
/// test's own (which goes, with whatever the loader left, on drop).
struct Pins {
    path: PathBuf,
    _dir: BpffsDir,
}

impl Pins {
    fn new() -> Self {
        let dir = BpffsDir::create().unwrap();
        Self {
            path: dir.path().join("nodedns"),
            _dir: dir,
        }
    }
}

/// A lab namespace with a veth pair per name in `hosts`, both ends up (the
/// peer of `tfaN` is `tfbN`), and pins of its own.
fn setup(hosts: &[&str]) -> (Netns, Pins) {
    let ns = Netns::create("loader").unwrap();
    for host in hosts {
        add_veth(&ns, host);
    }
    (ns, Pins::new())
}

fn add_veth(ns: &Netns, host: &str) {
    ns.add_veth(host, &host.replace("tfa", "tfb")).unwrap();
}

fn listen() -> Vec<IpAddr> {
    vec![LISTEN_V4.into(), "fd00:53::10".parse().unwrap()]
}

fn args(pins: &Pins, interfaces: &[&str]) -> FastPathArgs {
    let mut args = FastPathArgs::defaults();
    args.bpffs_path = pins.path.clone();
    args.interfaces = interfaces.iter().map(|s| s.to_string()).collect();
    args.ebpf_object = object_override();
    args
}

/// [`args`] of an agent that leaves its attachments and pins for a
/// successor (`--keep-on-exit`).
fn kept_args(pins: &Pins, interfaces: &[&str]) -> FastPathArgs {
    let mut args = args(pins, interfaces);
    args.keep_on_exit = true;
    args
}

fn start(ns: &Netns, args: &FastPathArgs) -> FastPath {
    ns.enter(|| FastPath::start(args, &listen(), 53))
        .unwrap()
        .unwrap_or_else(|e| panic!("FastPath::start: {e}"))
        .expect("xdp mode is not off")
}

/// Waits (bounded) for a condition the follower thread brings about.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, FOLLOW_TIMEOUT, || cond().then_some(())).unwrap();
}

fn progs(ns: &Netns, ifname: &str) -> Vec<u64> {
    ns.xdp_prog_ids(ifname).unwrap()
}

/// Stops `fp` with `--cleanup-on-exit`: its pins go, and `ifname` is
/// left without XDP.
fn exit_cleaning(mut fp: FastPath, ns: &Netns, pins: &Pins, ifname: &str) {
    fp.set_exit_policy(ExitPolicy::Cleanup);
    fp.shutdown().unwrap();
    assert!(
        !pins.path.exists(),
        "cleanup-on-exit removes the pin directory"
    );
    until(&format!("{ifname} detached"), || {
        progs(ns, ifname).is_empty()
    });
}

fn names(fp: &FastPath) -> Vec<String> {
    fp.interfaces().into_iter().map(|i| i.name).collect()
}

/// The pinned XDP links (`links/xdp-if<N>`).
fn link_pins(dir: &Path) -> Vec<String> {
    pins_named(dir, "xdp-if")
}

/// The pinned egress (TCX) links of fail-open (`links/tc-if<N>`), one next
/// to each XDP link.
fn egress_pins(dir: &Path) -> Vec<String> {
    pins_named(dir, "tc-if")
}

fn pins_named(dir: &Path, prefix: &str) -> Vec<String> {
    match std::fs::read_dir(dir.join("links")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The config a fast path writes without cluster DNS addresses: the
/// listen addresses, and `--transparent`'s default (which serves nothing
/// until an address is set).
fn config_without_cluster_dns() -> Config {
    let mut config = build_config(&listen(), 53).unwrap();
    config.transparent = 1;
    config
}

/// `name` A `addr`, non-authoritative, with `ttl` as its TTL cap and
/// lifetime.
fn a_entry(name: &str, addr: [u8; 4], ttl: u32) -> (AnswerKey, AnswerEntry) {
    let mut def = EntryDef::a(&format!("{}.", name.to_ascii_lowercase()), &[addr.into()]);
    def.authoritative = false;
    def.max_ttl = ttl;
    def.secs = u64::from(ttl);
    def.encode()
}

/// The entry the pinned index and slots publish for `key`, as the kernel
/// would find it.
fn pinned_entry(dir: &Path, key: &AnswerKey) -> Option<AnswerEntry> {
    let data = MapData::from_pin(dir.join(MAP_INDEX)).unwrap();
    let index: HashMap<MapData, u64, IndexValue> =
        HashMap::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    let data = MapData::from_pin(dir.join(MAP_ANSWERS)).unwrap();
    let slots: Array<MapData, AnswerSlot> =
        Array::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    let hash = hash_of(key);
    let slot = read_slot(&slots, hash, index.get(&hash, 0).ok()?)?;
    (slot.key == *key).then_some(slot.entry)
}

fn bpftool(args: &[&str]) -> String {
    run_here("bpftool", args).unwrap()
}

fn pinned_config(dir: &Path) -> Config {
    let data = MapData::from_pin(dir.join(MAP_CONFIG)).unwrap();
    let config: Array<MapData, Config> =
        Array::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    config.get(&0, 0).unwrap()
}

#[test]
fn load_pins_maps_and_writes_config() {
    let (ns, pins) = setup(&[]);
    let fp = start(&ns, &args(&pins, &["nomatch*"]));

    for map in [MAP_INDEX, MAP_ANSWERS, MAP_COUNTERS, MAP_CONFIG] {
        assert!(pins.path.join(map).exists(), "{map} is pinned");
        let out = bpftool(&[
            "-j",
            "map",
            "show",
            "pinned",
            pins.path.join(map).to_str().unwrap(),
        ]);
        assert!(
            out.contains(&map[..map.len().min(15)]),
            "bpftool names {map}: {out}"
        );
    }
    let config = pinned_config(&pins.path);
    assert_eq!(config, config_without_cluster_dns());
    assert_eq!(config.v4_addrs[0].to_ne_bytes(), [169, 254, 20, 10]);

    let index = MapInfo::from_pin(pins.path.join(MAP_INDEX)).unwrap();
    assert_eq!(index.max_entries(), dns_common::DEFAULT_ANSWER_ENTRIES);
    let answers = MapInfo::from_pin(pins.path.join(MAP_ANSWERS)).unwrap();
    assert_eq!(
        answers.max_entries(),
        slots_for(dns_common::DEFAULT_ANSWER_ENTRIES)
    );
    let memory: u64 = fp.memory().iter().map(|(_, b)| b).sum();
    println!(
        "map kernel memory at default capacity: {:?} (total {memory} bytes)",
        fp.memory()
    );
    assert!(memory > 0);
    assert_eq!(
        fp.counters().unwrap().len(),
        dns_common::Counter::COUNT as usize
    );
    assert_eq!(fp.entry_count(), 0);

    let mut fp = fp;
    fp.set_exit_policy(ExitPolicy::Cleanup);
    fp.shutdown().unwrap();
    assert!(
        !pins.path.exists(),
        "cleanup-on-exit removes the pin directory"
    );
}

#[test]
fn second_load_adopts_pinned_maps() {
    let (ns, pins) = setup(&[]);
    let a = args(&pins, &["nomatch*"]);
    let first = start(&ns, &a);
    let (key, entry) = a_entry("web.default.svc.cluster.local", [10, 0, 0, 7], 30);
    MapSink::open(&first).unwrap().put(&key, &entry).unwrap();
    let map_id = MapInfo::from_pin(pins.path.join(MAP_ANSWERS)).unwrap().id();
    assert_eq!(first.exit_policy(), ExitPolicy::Detach);
    first.shutdown().unwrap();
    assert!(
        pins.path.join(MAP_ANSWERS).exists(),
        "maps stay pinned after a plain exit"
    );

    let second = start(&ns, &a);
    assert_eq!(
        MapInfo::from_pin(pins.path.join(MAP_ANSWERS)).unwrap().id(),
        map_id,
        "same map adopted"
    );
    assert_eq!(second.entry_count(), 1, "entries survive the restart");
    assert!(pinned_entry(&pins.path, &key).is_some());
    second.shutdown().unwrap();

    // Another capacity does not fit: the map is replaced, not reused.
    let mut smaller = a.clone();
    smaller.map_entries = 64;
    let third = start(&ns, &smaller);
    let info = MapInfo::from_pin(pins.path.join(MAP_ANSWERS)).unwrap();
    assert_ne!(info.id(), map_id);
    assert_eq!(info.max_entries(), slots_for(64));
    let index = MapInfo::from_pin(pins.path.join(MAP_INDEX)).unwrap();
    assert_eq!(index.max_entries(), 64);
    assert_eq!(third.entry_count(), 0);
}

#[test]
fn attachments_follow_interfaces() {
    let (ns, pins) = setup(&["tfa0"]);
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(names(&fp), ["tfa0"]);
    assert_eq!(
        fp.interfaces()[0].mode,
        AttachMode::Skb,
        "auto picks generic mode on veth"
    );
    assert_eq!(progs(&ns, "tfa0"), [u64::from(fp.program_id())]);
    assert_eq!(ns.xdp_mode("tfa0").unwrap(), "xdpgeneric");
    assert!(progs(&ns, "tfb0").is_empty(), "the peer is not selected");

    add_veth(&ns, "tfa1");
    until("tfa1 attached", || names(&fp).contains(&"tfa1".to_string()));
    assert_eq!(progs(&ns, "tfa1"), [u64::from(fp.program_id())]);
    assert_eq!(link_pins(&pins.path).len(), 2);
    assert_eq!(egress_pins(&pins.path).len(), 2);

    ns.del_link("tfa1").unwrap();
    until("tfa1 dropped", || !names(&fp).contains(&"tfa1".to_string()));

    // Detached behind the agent's back: the next rescan attaches again.
    let ifindex = fp.interfaces()[0].ifindex;
    let pin = pins.path.join(format!("links/xdp-if{ifindex}"));
    bpftool(&["link", "detach", "pinned", pin.to_str().unwrap()]);
    assert!(progs(&ns, "tfa0").is_empty());
    fp.rescan();
    // The follower attaches, then pins the link: wait for both.
    until("tfa0 re-attached and pinned", || {
        progs(&ns, "tfa0") == [u64::from(fp.program_id())] && !link_pins(&pins.path).is_empty()
    });
    assert_eq!(
        link_pins(&pins.path).len(),
        1,
        "the vanished interface's pin is removed"
    );

    fp.shutdown().unwrap();
    until("a plain exit detaches", || progs(&ns, "tfa0").is_empty());
    assert!(link_pins(&pins.path).is_empty());
}

#[test]
fn native_mode_and_exclude() {
    let (ns, pins) = setup(&["tfa0", "tfa1"]);
    let mut a = args(&pins, &["tfa*"]);
    a.exclude_interfaces = vec!["tfa1".into()];
    a.xdp_mode = XdpModeArg::Native;
    let fp = start(&ns, &a);
    assert_eq!(names(&fp), ["tfa0"]);
    assert_eq!(fp.interfaces()[0].mode, AttachMode::Native);
    assert_eq!(ns.xdp_mode("tfa0").unwrap(), "xdp", "veth has native XDP");
    assert!(progs(&ns, "tfa1").is_empty(), "excluded");
    exit_cleaning(fp, &ns, &pins, "tfa0");
}

#[test]
fn foreign_xdp_program_is_left_alone_and_counted() {
    let (ns, pins) = setup(&["tfa0", "tfa1"]);
    // Someone else's XDP program on tfa0 (any program not named like ours:
    // an unpinned nodedns program is taken over instead, see
    // `unpinned_nodedns_program_is_taken_over`).
    let foreign = PassProgram::attach(&ns, "tfa0", XdpAttach::Skb).unwrap();
    let foreign_id = progs(&ns, "tfa0")[0] as u32;

    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(names(&fp), ["tfa1"]);
    assert_eq!(fp.skipped().get(&SkipReason::ForeignProgram), Some(&1));
    assert_eq!(
        progs(&ns, "tfa0"),
        [u64::from(foreign_id)],
        "the foreign program is untouched"
    );

    // A rescan does not count it again.
    add_veth(&ns, "tfa2");
    until("tfa2 attached", || names(&fp).contains(&"tfa2".to_string()));
    assert_eq!(fp.skipped().get(&SkipReason::ForeignProgram), Some(&1));
    fp.shutdown().unwrap();
    assert_eq!(
        progs(&ns, "tfa0"),
        [u64::from(foreign_id)],
        "still untouched after exit"
    );
    drop(foreign);
}

#[test]
fn keep_on_exit_then_adopt_without_duplicates() {
    let (ns, pins) = setup(&["tfa0"]);
    let a = kept_args(&pins, &["tfa*"]);
    let first = start(&ns, &a);
    let old_prog = first.program_id();
    let (key, entry) = a_entry("kept.example.com", [192, 0, 2, 1], 60);
    MapSink::open(&first).unwrap().put(&key, &entry).unwrap();
    first.shutdown().unwrap();

    assert_eq!(
        progs(&ns, "tfa0"),
        [u64::from(old_prog)],
        "the kernel keeps the program attached"
    );
    assert_eq!(link_pins(&pins.path).len(), 1);
    let text = fastpath_inspect(&pins.path, false).unwrap();
    assert!(
        text.contains("kept.example.com."),
        "inspect works with no agent running:\n{text}"
    );

    let second = start(&ns, &a);
    let new_prog = second.program_id();
    assert_ne!(new_prog, old_prog);
    let status = second.interfaces();
    assert_eq!(status.len(), 1);
    assert!(status[0].adopted, "the pinned link is adopted: {status:?}");
    assert_eq!(
        progs(&ns, "tfa0"),
        [u64::from(new_prog)],
        "program swapped in place, one attachment"
    );
    assert_eq!(link_pins(&pins.path).len(), 1, "no second pin");
    let links = bpftool(&["-j", "link", "show"]);
    let links: serde_json::Value = serde_json::from_str(&links).unwrap();
    let ours = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            [u64::from(old_prog), u64::from(new_prog)].contains(&l["prog_id"].as_u64().unwrap_or(0))
        })
        .count();
    assert_eq!(ours, 1, "exactly one XDP link runs either program: {links}");
    assert!(
        pinned_entry(&pins.path, &key).is_some(),
        "entries survive the hand-over"
    );

    exit_cleaning(second, &ns, &pins, "tfa0");
}

#[test]
fn cleanup_removes_everything() {
    let (ns, pins) = setup(&["tfa0", "tfa1"]);
    let a = kept_args(&pins, &["tfa*"]);
    let fp = start(&ns, &a);
    assert_eq!(names(&fp).len(), 2);
    fp.shutdown().unwrap();
    assert_eq!(progs(&ns, "tfa0").len(), 1);

    let report = ns.enter(|| fastpath_cleanup(&pins.path)).unwrap().unwrap();
    println!("{report}");
    assert_eq!(report.links.len(), 2);
    assert_eq!(report.egress_links.len(), 2);
    assert_eq!(
        report.maps.len(),
        7,
        "index, answers, counters, answer counts, hot samples, config, flows"
    );
    assert!(report.removed_dir);
    assert!(report.still_attached.is_empty(), "{report}");
    assert!(!pins.path.exists());
    assert!(progs(&ns, "tfa0").is_empty() && progs(&ns, "tfa1").is_empty());
    let again = ns.enter(|| fastpath_cleanup(&pins.path)).unwrap().unwrap();
    assert!(again.to_string().contains("nothing to clean up"));
}

#[test]
fn sink_put_delete_full() {
    let (ns, pins) = setup(&[]);
    let mut a = args(&pins, &["nomatch*"]);
    a.map_entries = 4;
    let fp = start(&ns, &a);
    let sink = MapSink::open(&fp).unwrap();
    assert_eq!(sink.capacity(), 4);
    let entries: Vec<_> = (0..5)
        .map(|i| a_entry(&format!("n{i}.example"), [10, 0, 0, i], 30))
        .collect();
    for (key, entry) in &entries[..4] {
        sink.put(key, entry).unwrap();
    }
    let err = sink.put(&entries[4].0, &entries[4].1).unwrap_err();
    assert!(matches!(err, SinkError::Full { capacity: 4 }), "{err}");
    sink.put(&entries[0].0, &entries[1].1)
        .expect("replacing an existing key fits");
    sink.delete(&entries[4].0)
        .expect("deleting an absent key is fine");
    sink.delete(&entries[0].0).unwrap();
    sink.put(&entries[4].0, &entries[4].1).unwrap();
    assert_eq!(fp.entry_count(), 4);
    assert!(pinned_entry(&pins.path, &entries[0].0).is_none());
    assert!(pinned_entry(&pins.path, &entries[4].0).is_some());
}

#[test]
fn inspect_and_metrics() {
    let (ns, pins) = setup(&["tfa0"]);
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    let (key, entry) = a_entry("Web.Default.svc.cluster.local", [10, 0, 0, 7], 30);
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();
    let (key, mut entry) = a_entry("old.example", [10, 0, 0, 8], 30);
    entry.expires_ns = 1;
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();

    let text = fastpath_inspect(&pins.path, false).unwrap();
    println!("{text}");
    assert!(text.contains("web.default.svc.cluster.local."), "{text}");
    assert!(text.contains("10.0.0.7"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(text.contains("pass_not_dns"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&fastpath_inspect(&pins.path, true).unwrap()).unwrap();
    let live = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "web.default.svc.cluster.local.")
        .unwrap();
    assert_eq!(live["qtype"], "A");
    assert!(json["counters"]["hit"].is_u64(), "{json}");
    assert_eq!(live["rcode"], "No Error");
    assert!(live["ttl_remaining"].as_u64().unwrap() <= 30);
    assert_eq!(
        live["answers"][0],
        "web.default.svc.cluster.local. A 10.0.0.7"
    );

    // bpftool reads the pins, as the README shows: the index names each
    // question's slot, the slot holds the question and the answer. The maps
    // are BTF-defined, so it decodes them into named fields, not hex.
    let index = pins.path.join(MAP_INDEX);
    let answers = pins.path.join(MAP_ANSWERS);
    let show = bpftool(&["map", "show", "pinned", answers.to_str().unwrap()]);
    println!("{show}");
    assert!(show.contains("NODEDNS_ANSWERS"), "{show}");
    let dump = bpftool(&["-j", "map", "dump", "pinned", index.to_str().unwrap()]);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump.as_array().unwrap().len(), 2, "{dump}");
    println!("{dump:#}");
    for entry in dump.as_array().unwrap() {
        let slot = entry["formatted"]["value"]["slot"]
            .as_u64()
            .unwrap_or_else(|| panic!("index value lacks slot: {entry:#}"));
        let key: Vec<String> = (slot as u32)
            .to_le_bytes()
            .iter()
            .map(|b| b.to_string())
            .collect();
        let mut args = vec!["-j", "map", "lookup", "pinned", answers.to_str().unwrap()];
        args.push("key");
        args.extend(key.iter().map(String::as_str));
        let found: serde_json::Value = serde_json::from_str(&bpftool(&args)).unwrap();
        let value = &found["formatted"]["value"];
        assert_eq!(value["key"]["qtype"], 1, "A query key: {found:#}");
        for field in ["name_len", "name"] {
            assert!(
                value["key"].get(field).is_some(),
                "slot key lacks {field}: {found:#}"
            );
        }
        for field in ["key_hash", "expires_ns", "max_ttl", "rcode", "body"] {
            assert!(
                value["entry"].get(field).is_some(),
                "slot entry lacks {field}: {found:#}"
            );
        }
    }

    let mut registry = new_registry();
    fp.register_metrics(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    println!("{out}");
    for needle in [
        "nodedns_xdp_packets_total{outcome=\"hit\"} 0",
        "nodedns_xdp_map_entries 2",
        "nodedns_xdp_map_capacity 16384",
        "nodedns_xdp_map_memory_bytes{map=\"NODEDNS_ANSWERS\"}",
        "nodedns_xdp_interface_info{interface=\"tfa0\",mode=\"skb\"} 1",
        "nodedns_xdp_attach_skipped_total{reason=\"foreign_program\"} 0",
    ] {
        assert!(out.contains(needle), "metrics lack {needle}:\n{out}");
    }
}

#[test]
fn clear_errors() {
    let (ns, pins) = setup(&[]);
    let mut a = FastPathArgs::defaults();
    a.ebpf_object = object_override();
    a.bpffs_path = std::env::temp_dir().join(format!("ndlab-not-bpffs-{}", unique_suffix()));
    let err = ns
        .enter(|| FastPath::start(&a, &listen(), 53))
        .unwrap()
        .err()
        .expect("not bpffs");
    assert!(matches!(err, FastPathError::NotBpffs { .. }), "{err}");
    assert!(
        err.to_string().contains("mount -t bpf bpf /sys/fs/bpf"),
        "{err}"
    );
    assert!(!a.bpffs_path.exists());

    let mut a = args(&pins, &["eth7"]);
    let err = ns
        .enter(|| FastPath::start(&a, &listen(), 53))
        .unwrap()
        .err()
        .expect("no such interface");
    assert_eq!(
        err.to_string(),
        "interface eth7 does not exist: check --interface (`ip link` lists interfaces)"
    );
    assert!(!pins.path.exists(), "nothing is created on error");

    a.xdp_mode = XdpModeArg::Off;
    assert!(
        ns.enter(|| FastPath::start(&a, &listen(), 53))
            .unwrap()
            .unwrap()
            .is_none()
    );
    assert!(!pins.path.exists(), "--xdp-mode off creates nothing");
}

/// dig from the lab's pod to the listen address; the answer's addresses,
/// if any (comma-separated). No cookie: the kernel passes EDNS options it
/// does not handle (pass_edns).
fn dig(lab: &Lab, name: &str) -> String {
    let at = format!("@{LISTEN_V4}");
    let reply = lab.pod(0).dig(&["+nocookie", &at, name, "A"]).unwrap();
    reply.addresses().join(",")
}

/// A lab node with one pod, and the loader's arguments for the pod's veth.
/// Nothing listens on port 53 in the node: only the kernel answers.
fn node_and_pod(pins: &Pins) -> (Lab, FastPathArgs) {
    // Lost queries are what one of these tests measures: no other lab of
    // this binary runs meanwhile.
    let lab = Lab::new_alone(1).unwrap();
    let a = kept_args(pins, &[lab.pod(0).node_ifname()]);
    (lab, a)
}

/// hot.example.com A 192.0.2.53, served for the next two minutes.
fn hot_entry() -> (AnswerKey, AnswerEntry) {
    let mut def = EntryDef::a("hot.example.com.", &[[192, 0, 2, 53].into()]);
    def.authoritative = false;
    def.secs = 120;
    def.encode()
}

/// The point of --keep-on-exit: with no agent process at all, the kernel
/// still answers the names in the map (nothing listens on port 53 here).
#[test]
fn kernel_answers_while_the_agent_is_gone() {
    let pins = Pins::new();
    let (lab, a) = node_and_pod(&pins);
    let fp = start(lab.node(), &a);

    let (key, entry) = hot_entry();
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();
    assert_eq!(
        dig(&lab, "hot.example.com"),
        "192.0.2.53",
        "answered by XDP while the agent runs"
    );
    fp.shutdown().unwrap();

    assert_eq!(
        dig(&lab, "HOT.example.com"),
        "192.0.2.53",
        "still answered with no agent process"
    );
    assert_eq!(
        dig(&lab, "cold.example.com"),
        "",
        "a miss goes to (absent) userspace"
    );
    let counters = fastpath_snapshot(&pins.path).unwrap().counters;
    let hits = counters.iter().find(|(n, _)| n == "hit").unwrap().1;
    assert!(hits >= 2, "{counters:?}");

    let report = lab
        .node()
        .enter(|| fastpath_cleanup(&pins.path))
        .unwrap()
        .unwrap();
    assert_eq!(report.links.len(), 1);
    assert_eq!(
        dig(&lab, "hot.example.com"),
        "",
        "nothing answers after cleanup"
    );
}

/// A rolling update: the new agent starts while the old one still runs.
/// The new one takes the links over; the old one lets go and, when it
/// stops (even without --keep-on-exit), leaves them attached.
#[test]
fn rolling_update_hands_links_over() {
    let (ns, pins) = setup(&["tfa0"]);
    let a = args(&pins, &["tfa*"]);
    let old = start(&ns, &a);
    assert_eq!(old.exit_policy(), ExitPolicy::Detach);
    let new = start(&ns, &a);
    assert!(new.interfaces()[0].adopted);
    assert_eq!(progs(&ns, "tfa0"), [u64::from(new.program_id())]);

    old.rescan();
    until("the old agent to yield tfa0", || {
        old.interfaces().is_empty()
    });
    old.shutdown().unwrap();
    assert_eq!(
        progs(&ns, "tfa0"),
        [u64::from(new.program_id())],
        "the old agent's exit leaves the new agent's link alone"
    );
    assert_eq!(link_pins(&pins.path).len(), 1);
    assert_eq!(egress_pins(&pins.path).len(), 1, "and its egress link");
    assert!(pins.path.join(MAP_ANSWERS).exists());

    // The same, when the old agent exits before it noticed the takeover.
    let newer = start(&ns, &a);
    let mut new = new;
    new.set_exit_policy(ExitPolicy::Cleanup);
    new.shutdown().unwrap();
    assert_eq!(progs(&ns, "tfa0"), [u64::from(newer.program_id())]);
    assert!(
        pins.path.join(MAP_ANSWERS).exists(),
        "cleanup-on-exit keeps pins a newer agent uses"
    );
    exit_cleaning(newer, &ns, &pins, "tfa0");
}

/// `auto` tries native mode off veth and falls back to generic mode where
/// the driver has none (a bridge); `native` skips such an interface.
#[test]
fn auto_falls_back_and_native_skips_without_driver_support() {
    let (ns, pins) = setup(&[]);
    ns.ip(&["link", "add", "tfa0", "type", "bridge"]).unwrap();
    ns.ip(&["link", "set", "tfa0", "up"]).unwrap();
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(fp.interfaces()[0].mode, AttachMode::Skb);
    assert_eq!(ns.xdp_mode("tfa0").unwrap(), "xdpgeneric");
    fp.shutdown().unwrap();
    until("tfa0 detached", || progs(&ns, "tfa0").is_empty());

    let mut a = args(&pins, &["tfa*"]);
    a.xdp_mode = XdpModeArg::Native;
    let fp = start(&ns, &a);
    assert!(fp.interfaces().is_empty());
    assert_eq!(fp.skipped().get(&SkipReason::NativeUnsupported), Some(&1));
    assert!(progs(&ns, "tfa0").is_empty());
}

/// Limits the calling thread (and threads it spawns) to `caps`.
fn restrict_thread_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut data = [Data::default(); 2];
    for &cap in caps {
        let d = &mut data[(cap / 32) as usize];
        d.effective |= 1 << (cap % 32);
        d.permitted |= 1 << (cap % 32);
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: capset with a v3 header and two data words; affects this thread.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    assert_eq!(ret, 0, "capset: {}", std::io::Error::last_os_error());
}

/// An agent whose pins were removed (by a cleanup, by hand) still holds
/// its XDP link. The next agent recognises the program as nodedns's by its
/// name and swaps its own program into that link, as it would into a
/// pinned one: XDP never stops running on the interface, and it is not
/// skipped as `foreign_program` (docs/design.md#self-repair).
#[test]
fn unpinned_nodedns_program_is_taken_over() {
    let (ns, pins) = setup(&["tfa0"]);
    // An older agent's program, attached through a link nobody pinned.
    let mut old = Harness::new();
    let program = old.program();
    let old_id = ns
        .enter(|| {
            program.attach("tfa0", XdpMode::Skb).unwrap();
            program.info().unwrap().id()
        })
        .unwrap();
    assert_eq!(progs(&ns, "tfa0"), [u64::from(old_id)]);

    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(names(&fp), ["tfa0"], "{:?}", fp.skipped());
    assert!(fp.interfaces()[0].adopted, "taken over, not attached anew");
    assert_eq!(fp.skipped().get(&SkipReason::ForeignProgram), None);
    assert_eq!(progs(&ns, "tfa0"), [u64::from(fp.program_id())]);
    assert_eq!(
        link_pins(&pins.path).len(),
        1,
        "the taken-over link is pinned"
    );
    // The old holder letting go leaves the link (now ours and pinned) up.
    drop(old);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(progs(&ns, "tfa0"), [u64::from(fp.program_id())]);
    exit_cleaning(fp, &ns, &pins, "tfa0");
}

/// `dns-agent cleanup --force` under a running fast path detaches its
/// links and removes every pin and the directory. Within seconds the
/// follower pins the same maps again (their entries survive), attaches XDP
/// and the egress program again, and counts both repairs.
#[test]
fn removed_pins_and_detached_links_are_repaired() {
    let (ns, pins) = setup(&["tfa0"]);
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    let health = Arc::new(NodeHealth::default());
    fp.report_to(health.clone());
    let (key, entry) = a_entry("repair.example", [10, 0, 0, 7], 300);
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();

    ns.enter(|| fastpath_cleanup(&pins.path)).unwrap().unwrap();
    until("XDP, egress and pins back", || {
        progs(&ns, "tfa0") == [u64::from(fp.program_id())]
            && link_pins(&pins.path).len() == 1
            && egress_pins(&pins.path).len() == 1
            && pins.path.join(MAP_ANSWERS).exists()
    });
    assert_eq!(
        ns.tcx_egress_programs("tfa0").unwrap(),
        ["nodedns_egress"],
        "the egress program runs again, once"
    );
    let listing = fastpath_inspect(&pins.path, false).unwrap();
    assert!(
        listing.contains("repair.example."),
        "the same map, entries kept:\n{listing}"
    );
    until("repairs counted", || {
        health.repairs(Repair::pins) >= 1 && health.repairs(Repair::xdp) >= 1
    });
    assert!(health.faults().is_empty(), "{:?}", health.faults());
    exit_cleaning(fp, &ns, &pins, "tfa0");
}

/// The DaemonSet grants only CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN: load,
/// pin, adopt, attach, follow links, write the map, read counters, inspect
/// and detach must all work with exactly those.
#[test]
fn least_capabilities_suffice() {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let (ns, pins) = setup(&["tfa0"]);
    let a = kept_args(&pins, &["tfa*"]);
    ns.enter(|| {
        restrict_thread_caps(&[CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF]);
        // SAFETY: unshare of a UTS namespace only affects this thread.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
        assert_ne!(unshared, 0, "CAP_SYS_ADMIN must be gone");
        let first = FastPath::start(&a, &listen(), 53).unwrap().unwrap();
        let (key, entry) = a_entry("caps.example", [10, 0, 0, 9], 30);
        MapSink::open(&first).unwrap().put(&key, &entry).unwrap();
        first.shutdown().unwrap();
        // Adoption (a restart) under the same capabilities.
        let mut second = FastPath::start(&a, &listen(), 53).unwrap().unwrap();
        assert!(second.interfaces()[0].adopted);
        assert_eq!(second.entry_count(), 1);
        assert!(second.counters().is_ok());
        assert!(
            fastpath_inspect(&pins.path, false)
                .unwrap()
                .contains("caps.example.")
        );
        add_veth(&ns, "tfa1");
        until("tfa1 attached", || names(&second).len() == 2);
        second.set_exit_policy(ExitPolicy::Cleanup);
        second.shutdown().unwrap();
    })
    .unwrap();
    assert!(!pins.path.exists());
    until("detached", || progs(&ns, "tfa0").is_empty());
}

/// Restarts with --keep-on-exit under load: dnsperf asks for a hot name at
/// a fixed rate from the pod while the fast path is stopped and started
/// again (each new one adopting the links and maps) five times. Nothing
/// listens on port 53, so every answer comes from the kernel: a single gap
/// in the hand-over would show as lost queries.
#[test]
fn restarts_lose_no_hot_query() {
    /// dnsperf's run: long enough to span the restarts, bounded.
    const SECONDS: &str = "4";
    const QPS: &str = "2000";
    const RESTARTS: usize = 5;
    /// dnsperf's run plus its timeout and some slack.
    const PERF_BOUND: Duration = Duration::from_secs(15);
    let pins = Pins::new();
    let (lab, a) = node_and_pod(&pins);
    let mut fp = start(lab.node(), &a);
    let (key, entry) = hot_entry();
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();
    let queries = lab.log_dir().join("hot.q");
    std::fs::write(&queries, "hot.example.com A\n").unwrap();
    let server = LISTEN_V4.to_string();
    let query_file = queries.display().to_string();
    let mut perf = lab
        .start_in(
            lab.pod(0).netns(),
            "dnsperf",
            "dnsperf",
            &[
                "-s",
                &server,
                "-d",
                &query_file,
                "-l",
                SECONDS,
                "-Q",
                QPS,
                "-t",
                "1",
            ],
        )
        .unwrap();
    let mut programs = vec![fp.program_id()];
    for _ in 0..RESTARTS {
        std::thread::sleep(Duration::from_millis(500));
        fp.shutdown().unwrap();
        fp = start(lab.node(), &a);
        assert!(fp.interfaces()[0].adopted);
        programs.push(fp.program_id());
    }
    let status = perf.wait(PERF_BOUND).unwrap();
    let report = perf.log();
    println!("programs {programs:?}\n{report}");
    assert!(status.success(), "dnsperf failed ({status}):\n{report}");
    let summary = DnsperfSummary::parse(&report).expect("a dnsperf summary");
    assert!(summary.completed > 1000, "{report}");
    assert_eq!(
        summary.lost, 0,
        "queries lost across {RESTARTS} restarts:\n{report}"
    );
    fp.set_exit_policy(ExitPolicy::Cleanup);
    fp.shutdown().unwrap();
}

/// A restart with a narrower --interface selection takes the program off
/// the interfaces no longer selected and keeps (adopts) the others.
#[test]
fn restart_with_narrower_selection_detaches_the_rest() {
    let (ns, pins) = setup(&["tfa0", "tfa1"]);
    let mut a = kept_args(&pins, &["tfa*"]);
    let first = start(&ns, &a);
    assert_eq!(names(&first), ["tfa0", "tfa1"]);
    first.shutdown().unwrap();

    a.exclude_interfaces = vec!["tfa1".into()];
    let second = start(&ns, &a);
    assert_eq!(names(&second), ["tfa0"]);
    assert!(second.interfaces()[0].adopted);
    assert!(
        progs(&ns, "tfa1").is_empty(),
        "no longer selected: detached at once"
    );
    assert_eq!(link_pins(&pins.path).len(), 1);
    assert_eq!(egress_pins(&pins.path).len(), 1, "the egress link too");
}

/// The BTF id bpftool reports for a pinned map (absent, so 0, without BTF).
fn map_btf_id(pin: &Path) -> u64 {
    let show = bpftool(&["-j", "map", "show", "pinned", pin.to_str().unwrap()]);
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    show["btf_id"].as_u64().unwrap_or(0)
}

#[test]
fn upgrade_adopts_maps_pinned_without_btf() {
    // An agent from before the BTF-defined maps left maps without BTF:
    // those of the same shape are adopted as they are (bpftool dumps them in
    // hex until they are next replaced), and the program loads against
    // them. Its answers map, a hash by whole question from before the
    // index and slots, does not fit: the answers start fresh, cleanly.
    let (ns, pins) = setup(&[]);
    std::fs::create_dir_all(&pins.path).unwrap();
    let legacy = [
        (
            MAP_ANSWERS,
            "hash",
            size_of::<AnswerKey>(),
            size_of::<AnswerEntry>(),
            16_384,
        ),
        (
            MAP_COUNTERS,
            "percpu_array",
            4,
            8,
            dns_common::Counter::COUNT as usize,
        ),
        (MAP_CONFIG, "array", 4, size_of::<Config>(), 1),
    ];
    for (name, kind, key, value, entries) in legacy {
        let pin = pins.path.join(name);
        bpftool(&[
            "map",
            "create",
            pin.to_str().unwrap(),
            "type",
            kind,
            "key",
            &key.to_string(),
            "value",
            &value.to_string(),
            "entries",
            &entries.to_string(),
            "name",
            name,
        ]);
        assert_eq!(map_btf_id(&pin), 0, "{name} is created without BTF");
    }
    let answers = pins.path.join(MAP_ANSWERS);
    let legacy_id = MapInfo::from_pin(&answers).unwrap().id();

    let counters = pins.path.join(MAP_COUNTERS);
    let counters_id = MapInfo::from_pin(&counters).unwrap().id();

    let fp = start(&ns, &args(&pins, &["nomatch*"]));
    assert_eq!(
        MapInfo::from_pin(&counters).unwrap().id(),
        counters_id,
        "the legacy counters are adopted"
    );
    assert_ne!(
        MapInfo::from_pin(&answers).unwrap().id(),
        legacy_id,
        "the old answers map is replaced"
    );
    let (key, entry) = a_entry("web.default.svc.cluster.local", [10, 0, 0, 7], 30);
    MapSink::open(&fp).unwrap().put(&key, &entry).unwrap();
    assert_eq!(fp.entry_count(), 1);
    assert_eq!(
        pinned_config(&pins.path),
        config_without_cluster_dns(),
        "config written"
    );
    fp.shutdown().unwrap();

    // A fresh directory gets BTF-described maps.
    let fresh = Pins::new();
    let fp = start(&ns, &args(&fresh, &["nomatch*"]));
    for name in [MAP_INDEX, MAP_ANSWERS, MAP_COUNTERS, MAP_CONFIG] {
        assert_ne!(map_btf_id(&fresh.path.join(name)), 0, "{name} carries BTF");
    }
    fp.shutdown().unwrap();
}
