//! The fast path's loader against the real kernel: pins, adoption,
//! attachments that follow interfaces, foreign programs, keep-on-exit and
//! hand-over, cleanup, the map sink, inspect and metrics.
//!
//! Needs root and bpffs on /sys/fs/bpf. Every test works in its own network
//! namespace and its own pin directory (`/sys/fs/bpf/nodedns-test-<pid>-<n>`),
//! removed by RAII guards even when the test fails.
//!
//! `NODEDNS_TEST_EBPF_OBJ=<file>` loads that object instead of the embedded
//! one (for a dns-ebpf build that has not been embedded yet).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, MapInfo};
use dns_agent::fastpath::{
    self, AttachMode, ExitPolicy, FastPath, FastPathArgs, FastPathError, SkipReason, XdpModeArg,
};
use dns_common::{AnswerEntry, AnswerKey, Config, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS, hash};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn require_root_and_bpffs() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "fast path tests need root (CAP_BPF, CAP_NET_ADMIN)"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf ")),
        "/sys/fs/bpf is not a bpffs mount: mount -t bpf bpf /sys/fs/bpf"
    );
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        require_root_and_bpffs();
        let name = format!("ndt-fp-{}-{}", std::process::id(), unique());
        run("ip", &["netns", "add", &name]);
        Self { name }
    }

    /// A veth pair inside the namespace, both ends up.
    fn add_veth(&self, a: &str, b: &str) {
        run(
            "ip",
            &[
                "-n", &self.name, "link", "add", a, "type", "veth", "peer", "name", b,
            ],
        );
        run("ip", &["-n", &self.name, "link", "set", a, "up"]);
        run("ip", &["-n", &self.name, "link", "set", b, "up"]);
    }

    fn del_link(&self, name: &str) {
        run("ip", &["-n", &self.name, "link", "del", name]);
    }

    /// Runs `f` on a thread that entered the namespace (threads it spawns
    /// stay there too).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a namespace file we hold open; affects this thread only.
                let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(ret, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// XDP program ids on `iface` as `ip -d -j link` reports them.
    fn xdp_progs(&self, iface: &str) -> Vec<u64> {
        let out = run(
            "ip",
            &["-n", &self.name, "-d", "-j", "link", "show", "dev", iface],
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ids = Vec::new();
        if let Some(xdp) = json[0].get("xdp") {
            collect_prog_ids(xdp, &mut ids);
        }
        // iproute2 lists a single program both flat and under "attached".
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn xdp_mode_word(&self, iface: &str) -> String {
        let out = run("ip", &["-n", &self.name, "link", "show", "dev", iface]);
        ["xdpgeneric", "xdpdrv", "xdpoffload", "xdpmulti", "xdp"]
            .iter()
            .find(|w| out.contains(&format!(" {w}")))
            .map_or_else(String::new, |w| w.to_string())
    }
}

fn collect_prog_ids(v: &serde_json::Value, out: &mut Vec<u64>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(id) = map
                .get("prog")
                .and_then(|p| p.get("id"))
                .and_then(|i| i.as_u64())
            {
                out.push(id);
            }
            for (k, child) in map {
                if k != "prog" {
                    collect_prog_ids(child, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_prog_ids(i, out)),
        _ => {}
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A unique pin directory; whatever the test left there is removed on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> Self {
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/nodedns-test-{}-{}",
            std::process::id(),
            unique()
        ));
        assert!(!path.exists(), "{} already exists", path.display());
        Self(path)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = fastpath::cleanup(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn listen() -> Vec<IpAddr> {
    vec![
        "169.254.20.10".parse().unwrap(),
        "fd00:53::10".parse().unwrap(),
    ]
}

fn args(pins: &PinDir, interfaces: &[&str]) -> FastPathArgs {
    let mut args = FastPathArgs::defaults();
    args.bpffs_path = pins.0.clone();
    args.interfaces = interfaces.iter().map(|s| s.to_string()).collect();
    args.ebpf_object = std::env::var_os("NODEDNS_TEST_EBPF_OBJ").map(PathBuf::from);
    args
}

fn start(ns: &Netns, args: &FastPathArgs) -> FastPath {
    ns.enter(|| FastPath::start(args, &listen(), 53))
        .unwrap_or_else(|e| panic!("FastPath::start: {e}"))
        .expect("xdp mode is not off")
}

/// Waits (bounded) for a condition the follower thread brings about.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(fp: &FastPath) -> Vec<String> {
    fp.interfaces().into_iter().map(|i| i.name).collect()
}

fn link_pins(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("links")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A one-A-record answer for `name`, as the entry encoder lays it out.
fn a_entry(name: &str, addr: [u8; 4], ttl: u32) -> (AnswerKey, AnswerEntry) {
    let mut key = AnswerKey::zeroed();
    let mut len = 0;
    for label in name.to_ascii_lowercase().trim_end_matches('.').split('.') {
        key.name[len] = label.len() as u8;
        key.name[len + 1..len + 1 + label.len()].copy_from_slice(label.as_bytes());
        len += 1 + label.len();
    }
    len += 1;
    key.name_len = len as u16;
    key.qtype = 1;
    let mut entry = AnswerEntry::zeroed();
    let body = [[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4].as_slice(), &addr].concat();
    entry.body[..body.len()].copy_from_slice(&body);
    entry.body_len = body.len() as u16;
    entry.ancount = 1;
    entry.ttl_count = 1;
    entry.ttl_offsets[0] = 6;
    entry.max_ttl = ttl;
    entry.body_sum = u32::from(hash::ones_sum(&body));
    entry.key_hash = hash::key_hash(&key.name[..len], key.qtype);
    entry.tail_hash = entry.key_hash;
    entry.generation = 7;
    entry.tail_generation = 7;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    entry.expires_ns =
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64 + u64::from(ttl) * 1_000_000_000;
    (key, entry)
}

fn pinned_answers(dir: &Path) -> HashMap<MapData, AnswerKey, AnswerEntry> {
    let data = MapData::from_pin(dir.join(MAP_ANSWERS)).unwrap();
    HashMap::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap()
}

#[test]
fn load_pins_maps_and_writes_config() {
    let ns = Netns::new();
    let pins = PinDir::new();
    let fp = start(&ns, &args(&pins, &["nomatch*"]));

    for map in [MAP_ANSWERS, MAP_COUNTERS, MAP_CONFIG] {
        assert!(pins.0.join(map).exists(), "{map} is pinned");
        let out = run(
            "bpftool",
            &[
                "-j",
                "map",
                "show",
                "pinned",
                pins.0.join(map).to_str().unwrap(),
            ],
        );
        assert!(
            out.contains(&map[..map.len().min(15)]),
            "bpftool names {map}: {out}"
        );
    }
    let data = MapData::from_pin(pins.0.join(MAP_CONFIG)).unwrap();
    let config: Array<MapData, Config> =
        Array::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    let expected = fastpath::loader::build_config(&listen(), 53).unwrap();
    assert_eq!(config.get(&0, 0).unwrap(), expected);
    assert_eq!(
        config.get(&0, 0).unwrap().v4_addrs[0].to_ne_bytes(),
        [169, 254, 20, 10]
    );

    let answers = MapInfo::from_pin(pins.0.join(MAP_ANSWERS)).unwrap();
    assert_eq!(answers.max_entries(), dns_common::DEFAULT_ANSWER_ENTRIES);
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
        !pins.0.exists(),
        "cleanup-on-exit removes the pin directory"
    );
}

#[test]
fn second_load_adopts_pinned_maps() {
    let ns = Netns::new();
    let pins = PinDir::new();
    let a = args(&pins, &["nomatch*"]);
    let first = start(&ns, &a);
    let (key, entry) = a_entry("web.default.svc.cluster.local", [10, 0, 0, 7], 30);
    first.sink().put(&key, &entry).unwrap();
    let map_id = MapInfo::from_pin(pins.0.join(MAP_ANSWERS)).unwrap().id();
    assert_eq!(first.exit_policy(), ExitPolicy::Detach);
    first.shutdown().unwrap();
    assert!(
        pins.0.join(MAP_ANSWERS).exists(),
        "maps stay pinned after a plain exit"
    );

    let second = start(&ns, &a);
    assert_eq!(
        MapInfo::from_pin(pins.0.join(MAP_ANSWERS)).unwrap().id(),
        map_id,
        "same map adopted"
    );
    assert_eq!(second.entry_count(), 1, "entries survive the restart");
    assert!(pinned_answers(&pins.0).get(&key, 0).is_ok());
    second.shutdown().unwrap();

    // Another capacity does not fit: the map is replaced, not reused.
    let mut smaller = a.clone();
    smaller.map_entries = 64;
    let third = start(&ns, &smaller);
    let info = MapInfo::from_pin(pins.0.join(MAP_ANSWERS)).unwrap();
    assert_ne!(info.id(), map_id);
    assert_eq!(info.max_entries(), 64);
    assert_eq!(third.entry_count(), 0);
}

#[test]
fn attachments_follow_interfaces() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(names(&fp), ["tfa0"]);
    assert_eq!(
        fp.interfaces()[0].mode,
        AttachMode::Skb,
        "auto picks generic mode on veth"
    );
    assert_eq!(ns.xdp_progs("tfa0"), [u64::from(fp.program_id())]);
    assert_eq!(ns.xdp_mode_word("tfa0"), "xdpgeneric");
    assert!(ns.xdp_progs("tfb0").is_empty(), "the peer is not selected");

    ns.add_veth("tfa1", "tfb1");
    wait_for("tfa1 attached", || names(&fp).contains(&"tfa1".to_string()));
    assert_eq!(ns.xdp_progs("tfa1"), [u64::from(fp.program_id())]);
    assert_eq!(link_pins(&pins.0).len(), 2);

    ns.del_link("tfa1");
    wait_for("tfa1 dropped", || !names(&fp).contains(&"tfa1".to_string()));

    // Detached behind the agent's back: the next rescan attaches again.
    let ifindex = fp.interfaces()[0].ifindex;
    let pin = pins.0.join(format!("links/xdp-if{ifindex}"));
    run(
        "bpftool",
        &["link", "detach", "pinned", pin.to_str().unwrap()],
    );
    assert!(ns.xdp_progs("tfa0").is_empty());
    fp.rescan();
    // The follower attaches, then pins the link: wait for both.
    wait_for("tfa0 re-attached and pinned", || {
        ns.xdp_progs("tfa0") == [u64::from(fp.program_id())] && !link_pins(&pins.0).is_empty()
    });
    assert_eq!(
        link_pins(&pins.0).len(),
        1,
        "the vanished interface's pin is removed"
    );

    fp.shutdown().unwrap();
    wait_for("a plain exit detaches", || ns.xdp_progs("tfa0").is_empty());
    assert!(link_pins(&pins.0).is_empty());
}

#[test]
fn native_mode_and_exclude() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    ns.add_veth("tfa1", "tfb1");
    let mut a = args(&pins, &["tfa*"]);
    a.exclude_interfaces = vec!["tfa1".into()];
    a.xdp_mode = XdpModeArg::Native;
    let fp = start(&ns, &a);
    assert_eq!(names(&fp), ["tfa0"]);
    assert_eq!(fp.interfaces()[0].mode, AttachMode::Native);
    assert_eq!(ns.xdp_mode_word("tfa0"), "xdp", "veth has native XDP");
    assert!(ns.xdp_progs("tfa1").is_empty(), "excluded");
    let mut fp = fp;
    fp.set_exit_policy(ExitPolicy::Cleanup);
    fp.shutdown().unwrap();
    assert!(!pins.0.exists());
    wait_for("tfa0 detached", || ns.xdp_progs("tfa0").is_empty());
}

#[test]
fn foreign_xdp_program_is_left_alone_and_counted() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    ns.add_veth("tfa1", "tfb1");
    // Someone else's XDP program on tfa0 (any XDP program will do).
    let mut foreign = aya::Ebpf::load(dns_agent::fastpath::object::EBPF_OBJECT).unwrap();
    let foreign_id = ns.enter(|| {
        let prog: &mut aya::programs::Xdp = foreign
            .program_mut(dns_common::PROGRAM_NAME)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        prog.attach("tfa0", aya::programs::XdpMode::Skb).unwrap();
        prog.info().unwrap().id()
    });

    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(names(&fp), ["tfa1"]);
    assert_eq!(fp.skipped().get(&SkipReason::ForeignProgram), Some(&1));
    assert_eq!(
        ns.xdp_progs("tfa0"),
        [u64::from(foreign_id)],
        "the foreign program is untouched"
    );

    // A rescan does not count it again.
    ns.add_veth("tfa2", "tfb2");
    wait_for("tfa2 attached", || names(&fp).contains(&"tfa2".to_string()));
    assert_eq!(fp.skipped().get(&SkipReason::ForeignProgram), Some(&1));
    fp.shutdown().unwrap();
    assert_eq!(
        ns.xdp_progs("tfa0"),
        [u64::from(foreign_id)],
        "still untouched after exit"
    );
    drop(foreign);
}

#[test]
fn keep_on_exit_then_adopt_without_duplicates() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    let first = start(&ns, &a);
    let old_prog = first.program_id();
    let (key, entry) = a_entry("kept.example.com", [192, 0, 2, 1], 60);
    first.sink().put(&key, &entry).unwrap();
    first.shutdown().unwrap();

    assert_eq!(
        ns.xdp_progs("tfa0"),
        [u64::from(old_prog)],
        "the kernel keeps the program attached"
    );
    assert_eq!(link_pins(&pins.0).len(), 1);
    let text = fastpath::inspect(&pins.0, false).unwrap();
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
        ns.xdp_progs("tfa0"),
        [u64::from(new_prog)],
        "program swapped in place, one attachment"
    );
    assert_eq!(link_pins(&pins.0).len(), 1, "no second pin");
    let links = run("bpftool", &["-j", "link", "show"]);
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
        pinned_answers(&pins.0).get(&key, 0).is_ok(),
        "entries survive the hand-over"
    );

    let mut second = second;
    second.set_exit_policy(ExitPolicy::Cleanup);
    second.shutdown().unwrap();
    assert!(!pins.0.exists());
    wait_for("tfa0 detached", || ns.xdp_progs("tfa0").is_empty());
}

#[test]
fn cleanup_removes_everything() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    ns.add_veth("tfa1", "tfb1");
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    let fp = start(&ns, &a);
    assert_eq!(names(&fp).len(), 2);
    fp.shutdown().unwrap();
    assert_eq!(ns.xdp_progs("tfa0").len(), 1);

    let report = ns.enter(|| fastpath::cleanup(&pins.0)).unwrap();
    println!("{report}");
    assert_eq!(report.links.len(), 2);
    assert_eq!(report.maps.len(), 3);
    assert!(report.removed_dir);
    assert!(report.still_attached.is_empty(), "{report}");
    assert!(!pins.0.exists());
    assert!(ns.xdp_progs("tfa0").is_empty() && ns.xdp_progs("tfa1").is_empty());
    let again = ns.enter(|| fastpath::cleanup(&pins.0)).unwrap();
    assert!(again.to_string().contains("nothing to clean up"));
}

#[test]
fn sink_put_delete_full() {
    let ns = Netns::new();
    let pins = PinDir::new();
    let mut a = args(&pins, &["nomatch*"]);
    a.map_entries = 4;
    let fp = start(&ns, &a);
    let sink = fp.sink();
    assert_eq!(sink.capacity(), 4);
    let entries: Vec<_> = (0..5)
        .map(|i| a_entry(&format!("n{i}.example"), [10, 0, 0, i], 30))
        .collect();
    for (key, entry) in &entries[..4] {
        sink.put(key, entry).unwrap();
    }
    let err = sink.put(&entries[4].0, &entries[4].1).unwrap_err();
    assert!(
        matches!(err, fastpath::sink::SinkError::Full { capacity: 4 }),
        "{err}"
    );
    sink.put(&entries[0].0, &entries[1].1)
        .expect("replacing an existing key fits");
    sink.delete(&entries[4].0)
        .expect("deleting an absent key is fine");
    sink.delete(&entries[0].0).unwrap();
    sink.put(&entries[4].0, &entries[4].1).unwrap();
    assert_eq!(fp.entry_count(), 4);
    let answers = pinned_answers(&pins.0);
    assert!(answers.get(&entries[0].0, 0).is_err());
    assert!(answers.get(&entries[4].0, 0).is_ok());
}

#[test]
fn inspect_and_metrics() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    let (key, entry) = a_entry("Web.Default.svc.cluster.local", [10, 0, 0, 7], 30);
    fp.sink().put(&key, &entry).unwrap();
    let (key, mut entry) = a_entry("old.example", [10, 0, 0, 8], 30);
    entry.expires_ns = 1;
    fp.sink().put(&key, &entry).unwrap();

    let text = fastpath::inspect(&pins.0, false).unwrap();
    println!("{text}");
    assert!(text.contains("web.default.svc.cluster.local."), "{text}");
    assert!(text.contains("10.0.0.7"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(text.contains("pass_not_dns"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&fastpath::inspect(&pins.0, true).unwrap()).unwrap();
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

    // bpftool reads the pins; the maps are BTF-defined, so it decodes the
    // key and value into named fields instead of printing hex.
    let answers = pins.0.join(MAP_ANSWERS);
    let show = run(
        "bpftool",
        &["map", "show", "pinned", answers.to_str().unwrap()],
    );
    println!("{show}");
    assert!(show.contains("NODEDNS_ANSWERS"), "{show}");
    let dump = run(
        "bpftool",
        &["-j", "map", "dump", "pinned", answers.to_str().unwrap()],
    );
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump.as_array().unwrap().len(), 2, "{dump}");
    println!("{dump:#}");
    for entry in dump.as_array().unwrap() {
        let formatted = &entry["formatted"];
        assert_eq!(formatted["key"]["qtype"], 1, "A query key: {entry:#}");
        for field in ["name_len", "name"] {
            assert!(
                formatted["key"].get(field).is_some(),
                "key lacks {field}: {entry:#}"
            );
        }
        for field in ["key_hash", "expires_ns", "max_ttl", "rcode", "body"] {
            assert!(
                formatted["value"].get(field).is_some(),
                "value lacks {field}: {entry:#}"
            );
        }
    }

    let mut registry = dns_agent::metrics::new_registry();
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
    let ns = Netns::new();
    let mut a = FastPathArgs::defaults();
    a.ebpf_object = std::env::var_os("NODEDNS_TEST_EBPF_OBJ").map(PathBuf::from);
    a.bpffs_path = PathBuf::from(format!(
        "/tmp/nodedns-test-not-bpffs-{}",
        std::process::id()
    ));
    let err = ns
        .enter(|| FastPath::start(&a, &listen(), 53))
        .err()
        .expect("not bpffs");
    assert!(matches!(err, FastPathError::NotBpffs { .. }), "{err}");
    assert!(
        err.to_string().contains("mount -t bpf bpf /sys/fs/bpf"),
        "{err}"
    );
    assert!(!a.bpffs_path.exists());

    let pins = PinDir::new();
    let mut a = args(&pins, &["eth7"]);
    let err = ns
        .enter(|| FastPath::start(&a, &listen(), 53))
        .err()
        .expect("no such interface");
    assert_eq!(
        err.to_string(),
        "interface eth7 does not exist: check --interface (`ip link` lists interfaces)"
    );
    assert!(!pins.0.exists(), "nothing is created on error");

    a.xdp_mode = XdpModeArg::Off;
    assert!(
        ns.enter(|| FastPath::start(&a, &listen(), 53))
            .unwrap()
            .is_none()
    );
    assert!(!pins.0.exists(), "--xdp-mode off creates nothing");
}

/// dig from `pod` to the listen address; the answer's addresses, if any
/// (comma-separated).
/// No cookie: the kernel passes EDNS options it does not handle (pass_edns).
fn dig(pod: &Netns, name: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod.name,
            "dig",
            "+short",
            "+nocookie",
            "+tries=1",
            "+time=2",
            "@169.254.20.10",
            name,
            "A",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // +short also prints ";; no servers could be reached" on a timeout.
    let addrs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.parse::<IpAddr>().is_ok())
        .collect();
    addrs.join(",")
}

/// A node namespace with the listen address on lo and `tfa0`, wired to a
/// pod namespace (`tfb0`, 10.77.0.2) that routes the listen address to it.
fn node_and_pod() -> (Netns, Netns) {
    let node = Netns::new();
    let pod = Netns::new();
    node.add_veth("tfa0", "tfb0");
    run(
        "ip",
        &["-n", &node.name, "link", "set", "tfb0", "netns", &pod.name],
    );
    for cmd in [
        vec!["-n", &node.name, "link", "set", "lo", "up"],
        vec![
            "-n",
            &node.name,
            "addr",
            "add",
            "169.254.20.10/32",
            "dev",
            "lo",
        ],
        vec![
            "-n",
            &node.name,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "tfa0",
        ],
        vec!["-n", &pod.name, "link", "set", "lo", "up"],
        vec!["-n", &pod.name, "link", "set", "tfb0", "up"],
        vec![
            "-n",
            &pod.name,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            "tfb0",
        ],
        vec![
            "-n",
            &pod.name,
            "route",
            "add",
            "169.254.20.10/32",
            "dev",
            "tfb0",
        ],
    ] {
        run("ip", &cmd);
    }
    (node, pod)
}

/// hot.example.com A 192.0.2.53, served for the next two minutes.
fn hot_entry() -> (AnswerKey, AnswerEntry) {
    use dns_agent::fastpath::entry::{EntrySpec, boot_time_ns, encode};
    use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
    let name = Name::from_ascii("hot.example.com.").unwrap();
    let answer = Record::from_rdata(name.clone(), 30, RData::A(A::new(192, 0, 2, 53)));
    encode(&EntrySpec {
        qname: &name,
        qtype: RecordType::A,
        rcode: hickory_proto::op::ResponseCode::NoError,
        authoritative: false,
        answers: &[answer],
        authority: &[],
        additionals: &[],
        max_ttl: 30,
        expires_boot_ns: boot_time_ns() + 120_000_000_000,
        generation: 1,
    })
    .unwrap()
}

/// The point of --keep-on-exit: with no agent process at all, the kernel
/// still answers the names in the map (nothing listens on port 53 here).
#[test]
fn kernel_answers_while_the_agent_is_gone() {
    let (node, pod) = node_and_pod();
    let pins = PinDir::new();
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    let fp = start(&node, &a);

    let (key, entry) = hot_entry();
    fp.sink().put(&key, &entry).unwrap();
    assert_eq!(
        dig(&pod, "hot.example.com"),
        "192.0.2.53",
        "answered by XDP while the agent runs"
    );
    fp.shutdown().unwrap();

    assert_eq!(
        dig(&pod, "HOT.example.com"),
        "192.0.2.53",
        "still answered with no agent process"
    );
    assert_eq!(
        dig(&pod, "cold.example.com"),
        "",
        "a miss goes to (absent) userspace"
    );
    let counters = fastpath::snapshot(&pins.0).unwrap().counters;
    let hits = counters.iter().find(|(n, _)| n == "hit").unwrap().1;
    assert!(hits >= 2, "{counters:?}");

    let report = node.enter(|| fastpath::cleanup(&pins.0)).unwrap();
    assert_eq!(report.links.len(), 1);
    assert_eq!(
        dig(&pod, "hot.example.com"),
        "",
        "nothing answers after cleanup"
    );
}

/// A rolling update: the new agent starts while the old one still runs.
/// The new one takes the links over; the old one lets go and, when it
/// stops (even without --keep-on-exit), leaves them attached.
#[test]
fn rolling_update_hands_links_over() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    let a = args(&pins, &["tfa*"]);
    let old = start(&ns, &a);
    assert_eq!(old.exit_policy(), ExitPolicy::Detach);
    let new = start(&ns, &a);
    assert!(new.interfaces()[0].adopted);
    assert_eq!(ns.xdp_progs("tfa0"), [u64::from(new.program_id())]);

    old.rescan();
    wait_for("the old agent to yield tfa0", || {
        old.interfaces().is_empty()
    });
    old.shutdown().unwrap();
    assert_eq!(
        ns.xdp_progs("tfa0"),
        [u64::from(new.program_id())],
        "the old agent's exit leaves the new agent's link alone"
    );
    assert_eq!(link_pins(&pins.0).len(), 1);
    assert!(pins.0.join(MAP_ANSWERS).exists());

    // The same, when the old agent exits before it noticed the takeover.
    let newer = start(&ns, &a);
    let mut new = new;
    new.set_exit_policy(ExitPolicy::Cleanup);
    new.shutdown().unwrap();
    assert_eq!(ns.xdp_progs("tfa0"), [u64::from(newer.program_id())]);
    assert!(
        pins.0.join(MAP_ANSWERS).exists(),
        "cleanup-on-exit keeps pins a newer agent uses"
    );
    let mut newer = newer;
    newer.set_exit_policy(ExitPolicy::Cleanup);
    newer.shutdown().unwrap();
    assert!(!pins.0.exists());
    wait_for("tfa0 detached", || ns.xdp_progs("tfa0").is_empty());
}

/// `auto` tries native mode off veth and falls back to generic mode where
/// the driver has none (a bridge); `native` skips such an interface.
#[test]
fn auto_falls_back_and_native_skips_without_driver_support() {
    let ns = Netns::new();
    let pins = PinDir::new();
    run(
        "ip",
        &["-n", &ns.name, "link", "add", "tfa0", "type", "bridge"],
    );
    run("ip", &["-n", &ns.name, "link", "set", "tfa0", "up"]);
    let fp = start(&ns, &args(&pins, &["tfa*"]));
    assert_eq!(fp.interfaces()[0].mode, AttachMode::Skb);
    assert_eq!(ns.xdp_mode_word("tfa0"), "xdpgeneric");
    fp.shutdown().unwrap();
    wait_for("tfa0 detached", || ns.xdp_progs("tfa0").is_empty());

    let mut a = args(&pins, &["tfa*"]);
    a.xdp_mode = XdpModeArg::Native;
    let fp = start(&ns, &a);
    assert!(fp.interfaces().is_empty());
    assert_eq!(fp.skipped().get(&SkipReason::NativeUnsupported), Some(&1));
    assert!(ns.xdp_progs("tfa0").is_empty());
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

/// The DaemonSet grants only CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN: load,
/// pin, adopt, attach, follow links, write the map, read counters, inspect
/// and detach must all work with exactly those.
#[test]
fn least_capabilities_suffice() {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    ns.enter(|| {
        restrict_thread_caps(&[CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF]);
        // SAFETY: unshare of a UTS namespace only affects this thread.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
        assert_ne!(unshared, 0, "CAP_SYS_ADMIN must be gone");
        let first = FastPath::start(&a, &listen(), 53).unwrap().unwrap();
        let (key, entry) = a_entry("caps.example", [10, 0, 0, 9], 30);
        first.sink().put(&key, &entry).unwrap();
        first.shutdown().unwrap();
        // Adoption (a restart) under the same capabilities.
        let mut second = FastPath::start(&a, &listen(), 53).unwrap().unwrap();
        assert!(second.interfaces()[0].adopted);
        assert_eq!(second.entry_count(), 1);
        assert!(second.counters().is_ok());
        assert!(
            fastpath::inspect(&pins.0, false)
                .unwrap()
                .contains("caps.example.")
        );
        ns.add_veth("tfa1", "tfb1");
        wait_for("tfa1 attached", || names(&second).len() == 2);
        second.set_exit_policy(ExitPolicy::Cleanup);
        second.shutdown().unwrap();
    });
    assert!(!pins.0.exists());
    wait_for("detached", || ns.xdp_progs("tfa0").is_empty());
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
    let (node, pod) = node_and_pod();
    let pins = PinDir::new();
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    let mut fp = start(&node, &a);
    let (key, entry) = hot_entry();
    fp.sink().put(&key, &entry).unwrap();
    let queries = std::env::temp_dir().join(format!(
        "nodedns-test-{}-{}.q",
        std::process::id(),
        unique()
    ));
    std::fs::write(&queries, "hot.example.com A\n").unwrap();

    let perf = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod.name,
            "dnsperf",
            "-s",
            "169.254.20.10",
            "-d",
        ])
        .arg(&queries)
        .args(["-l", SECONDS, "-Q", QPS, "-t", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut programs = vec![fp.program_id()];
    for _ in 0..RESTARTS {
        std::thread::sleep(Duration::from_millis(500));
        fp.shutdown().unwrap();
        fp = start(&node, &a);
        assert!(fp.interfaces()[0].adopted);
        programs.push(fp.program_id());
    }
    let out = perf.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&queries);
    let report = String::from_utf8_lossy(&out.stdout);
    println!("programs {programs:?}\n{report}");
    let field = |name: &str| -> u64 {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {report}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let completed = field("Queries completed:");
    let lost = field("Queries lost:");
    assert!(completed > 1000, "{report}");
    assert_eq!(
        lost, 0,
        "queries lost across {RESTARTS} restarts:\n{report}"
    );
    fp.set_exit_policy(ExitPolicy::Cleanup);
    fp.shutdown().unwrap();
}

/// A restart with a narrower --interface selection takes the program off
/// the interfaces no longer selected and keeps (adopts) the others.
#[test]
fn restart_with_narrower_selection_detaches_the_rest() {
    let ns = Netns::new();
    let pins = PinDir::new();
    ns.add_veth("tfa0", "tfb0");
    ns.add_veth("tfa1", "tfb1");
    let mut a = args(&pins, &["tfa*"]);
    a.keep_on_exit = true;
    let first = start(&ns, &a);
    assert_eq!(names(&first), ["tfa0", "tfa1"]);
    first.shutdown().unwrap();

    a.exclude_interfaces = vec!["tfa1".into()];
    let second = start(&ns, &a);
    assert_eq!(names(&second), ["tfa0"]);
    assert!(second.interfaces()[0].adopted);
    assert!(
        ns.xdp_progs("tfa1").is_empty(),
        "no longer selected: detached at once"
    );
    assert_eq!(link_pins(&pins.0).len(), 1);
}

/// The BTF id bpftool reports for a pinned map (absent, so 0, without BTF).
fn map_btf_id(pin: &Path) -> u64 {
    let show = run(
        "bpftool",
        &["-j", "map", "show", "pinned", pin.to_str().unwrap()],
    );
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    show["btf_id"].as_u64().unwrap_or(0)
}

#[test]
fn upgrade_adopts_maps_pinned_without_btf() {
    // An agent from before the BTF-defined maps left maps of the same shape
    // but without BTF: they are adopted as they are (bpftool dumps them in
    // hex until they are next replaced), and the program loads against them.
    let ns = Netns::new();
    let pins = PinDir::new();
    std::fs::create_dir_all(&pins.0).unwrap();
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
        let pin = pins.0.join(name);
        run(
            "bpftool",
            &[
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
            ],
        );
        assert_eq!(map_btf_id(&pin), 0, "{name} is created without BTF");
    }
    let answers = pins.0.join(MAP_ANSWERS);
    let legacy_id = MapInfo::from_pin(&answers).unwrap().id();

    let fp = start(&ns, &args(&pins, &["nomatch*"]));
    assert_eq!(
        MapInfo::from_pin(&answers).unwrap().id(),
        legacy_id,
        "the legacy map is adopted"
    );
    let (key, entry) = a_entry("web.default.svc.cluster.local", [10, 0, 0, 7], 30);
    fp.sink().put(&key, &entry).unwrap();
    assert_eq!(fp.entry_count(), 1);
    let data = MapData::from_pin(pins.0.join(MAP_CONFIG)).unwrap();
    let config: Array<MapData, Config> =
        Array::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    let expected = fastpath::loader::build_config(&listen(), 53).unwrap();
    assert_eq!(config.get(&0, 0).unwrap(), expected, "config written");
    fp.shutdown().unwrap();

    // A fresh directory gets BTF-described maps.
    let fresh = PinDir::new();
    let fp = start(&ns, &args(&fresh, &["nomatch*"]));
    for name in [MAP_ANSWERS, MAP_COUNTERS, MAP_CONFIG] {
        assert_ne!(map_btf_id(&fresh.0.join(name)), 0, "{name} carries BTF");
    }
    fp.shutdown().unwrap();
}
