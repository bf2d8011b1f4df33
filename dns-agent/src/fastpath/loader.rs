//! Loads the XDP object: reuses the pinned maps a previous agent left when
//! they still fit, pins fresh ones otherwise, loads the XDP and the egress
//! program and writes the config map.

use std::fs;
use std::mem::size_of;
use std::net::IpAddr;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, MapInfo, MapType, PerCpuArray, RingBuf};
use aya::programs::{Program, ProgramError, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};
use dns_common::answer_counters::ANSWER_COUNTERS;
use dns_common::failopen::FLOWS_CAPACITY;
use dns_common::hot_samples::HOT_SLOTS;
use dns_common::{
    AnswerSlot, Config, Counter, EDNS_UDP_SIZE, EGRESS_PROGRAM_NAME, FlowKey, FlowValue,
    IndexValue, InterfaceMacs, Liveness, MAP_ANSWER_COUNTS, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS,
    MAP_EGRESS, MAP_FLOWS, MAP_HOT_SAMPLES, MAP_INDEX, MAP_INTERFACES, MAP_LIVENESS, MAP_RING,
    MAX_CLUSTER_DNS_ADDRS, MAX_LISTEN_ADDRS, PROGRAM_NAME, slots_for,
};

use super::error::FastPathError;
use super::owner::DirLock;
use super::pins::{PINNED_MAPS, PinLayout, remove_pin};

/// The shape a pinned map must have to be reused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapSpec {
    pub name: &'static str,
    pub types: &'static [MapType],
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// The maps that only make sense together: the index names slots of the
/// answers array, so one is reused only with the other.
const ANSWER_MAPS: [&str; 2] = [MAP_INDEX, MAP_ANSWERS];

pub(crate) fn map_specs(answer_entries: u32) -> [MapSpec; 7] {
    [
        MapSpec {
            name: MAP_INDEX,
            types: &[MapType::Hash],
            key_size: size_of::<u64>() as u32,
            value_size: size_of::<IndexValue>() as u32,
            max_entries: answer_entries,
        },
        MapSpec {
            name: MAP_ANSWERS,
            types: &[MapType::Array],
            key_size: 4,
            value_size: size_of::<AnswerSlot>() as u32,
            max_entries: slots_for(answer_entries),
        },
        MapSpec::per_cpu_counters(MAP_COUNTERS, Counter::COUNT),
        MapSpec::per_cpu_counters(MAP_ANSWER_COUNTS, ANSWER_COUNTERS),
        MapSpec::per_cpu_counters(MAP_HOT_SAMPLES, HOT_SLOTS),
        MapSpec {
            name: MAP_CONFIG,
            types: &[MapType::Array],
            key_size: 4,
            value_size: size_of::<Config>() as u32,
            max_entries: 1,
        },
        MapSpec {
            name: MAP_FLOWS,
            types: &[MapType::LruHash],
            key_size: size_of::<FlowKey>() as u32,
            value_size: size_of::<FlowValue>() as u32,
            max_entries: FLOWS_CAPACITY,
        },
    ]
}

impl MapSpec {
    /// A per-CPU array of `entries` 64-bit counters.
    const fn per_cpu_counters(name: &'static str, entries: u32) -> Self {
        Self {
            name,
            types: &[MapType::PerCpuArray],
            key_size: 4,
            value_size: 8,
            max_entries: entries,
        }
    }

    /// Why `info` does not fit this spec, if it does not.
    pub(crate) fn mismatch(&self, info: &MapInfo) -> Option<(&'static str, u32, u32)> {
        let map_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        if !self.types.iter().any(|t| *t as u32 == map_type) {
            return Some(("type", map_type, self.types[0] as u32));
        }
        [
            ("key size", info.key_size(), self.key_size),
            ("value size", info.value_size(), self.value_size),
            ("max_entries", info.max_entries(), self.max_entries),
        ]
        .into_iter()
        .find(|(_, found, expected)| found != expected)
    }
}

/// The kernel side after a successful load.
pub(crate) struct Loaded {
    pub ebpf: Ebpf,
    pub program_id: u32,
    /// The egress program's id (loaded, not attached yet).
    pub egress_program_id: u32,
    pub counters: PerCpuArray<MapData, u64>,
    /// The answers sent, by kind (`dns_common::answer_counters`).
    pub answer_counts: PerCpuArray<MapData, u64>,
    /// The program's own (unpinned) interfaces map, still empty.
    pub interfaces: HashMap<MapData, u32, InterfaceMacs>,
    /// The program's own (unpinned) map of interfaces where the egress
    /// program runs, still empty.
    pub egress_interfaces: HashMap<MapData, u32, u32>,
    /// This agent's ring of redirected queries.
    pub ring: RingBuf<MapData>,
    /// This agent's liveness map (one [`Liveness`]), zero: no heartbeat
    /// yet.
    pub liveness: MapData,
    /// Maps a previous agent pinned, reused as they are (their entries
    /// survive).
    pub reused: Vec<&'static str>,
    /// The half of the answers array this agent writes
    /// (`Config::slot_half`), its lock, held for the agent's life, and when
    /// it was taken.
    pub slot_half: u8,
    pub slot_lock: Option<(DirLock, std::time::Instant)>,
    /// The index and the answers array were made by this load (nothing
    /// has read them yet).
    pub answers_fresh: bool,
    /// Kernel memory of each pinned map (`memlock` in fdinfo), in bytes.
    pub memory: Vec<(&'static str, u64)>,
}

/// The config map's value for these listen addresses.
pub fn build_config(addrs: &[IpAddr], port: u16) -> Result<Config, FastPathError> {
    let mut config = Config::zeroed();
    let (v4, v6): (Vec<_>, Vec<_>) = addrs.iter().partition(|a| a.is_ipv4());
    if v4.len() > MAX_LISTEN_ADDRS {
        return Err(FastPathError::TooManyListenAddrs {
            family: 4,
            count: v4.len(),
        });
    }
    if v6.len() > MAX_LISTEN_ADDRS {
        return Err(FastPathError::TooManyListenAddrs {
            family: 6,
            count: v6.len(),
        });
    }
    for (slot, addr) in v4.iter().enumerate() {
        if let IpAddr::V4(a) = addr {
            // The kernel compares the address as the packet holds it.
            config.v4_addrs[slot] = u32::from_ne_bytes(a.octets());
        }
    }
    for (slot, addr) in v6.iter().enumerate() {
        if let IpAddr::V6(a) = addr {
            config.v6_addrs[slot] = a.octets();
        }
    }
    config.v4_count = v4.len() as u8;
    config.v6_count = v6.len() as u8;
    config.enabled = 1;
    config.port = port;
    config.edns_udp_size = EDNS_UDP_SIZE;
    Ok(config)
}

/// Adds the cluster DNS Service's addresses to `config`: where queries
/// fail open to, and, with `transparent`, addresses the kernel serves too.
pub fn set_cluster_dns(
    config: &mut Config,
    addrs: &[IpAddr],
    transparent: bool,
) -> Result<(), FastPathError> {
    let (v4, v6): (Vec<_>, Vec<_>) = addrs.iter().partition(|a| a.is_ipv4());
    for (family, count) in [(4, v4.len()), (6, v6.len())] {
        if count > MAX_CLUSTER_DNS_ADDRS {
            return Err(FastPathError::TooManyClusterDnsAddrs { family, count });
        }
    }
    config.cluster_v4_addrs = [0; MAX_CLUSTER_DNS_ADDRS];
    config.cluster_v6_addrs = [[0; 16]; MAX_CLUSTER_DNS_ADDRS];
    for (slot, addr) in v4.iter().enumerate() {
        if let IpAddr::V4(a) = addr {
            if config.v4_addrs[..config.v4_count as usize].contains(&u32::from_ne_bytes(a.octets()))
            {
                return Err(FastPathError::ClusterDnsIsListen { addr: *addr });
            }
            config.cluster_v4_addrs[slot] = u32::from_ne_bytes(a.octets());
        }
    }
    for (slot, addr) in v6.iter().enumerate() {
        if let IpAddr::V6(a) = addr {
            if config.v6_addrs[..config.v6_count as usize].contains(&a.octets()) {
                return Err(FastPathError::ClusterDnsIsListen { addr: *addr });
            }
            config.cluster_v6_addrs[slot] = a.octets();
        }
    }
    config.cluster_v4_count = v4.len() as u8;
    config.cluster_v6_count = v6.len() as u8;
    config.transparent = transparent as u8;
    Ok(())
}

/// Loads `object` with its maps pinned under `layout` and writes `config`.
pub(crate) fn load(
    object: &[u8],
    layout: &PinLayout,
    answer_entries: u32,
    config: &Config,
) -> Result<Loaded, FastPathError> {
    let root_existed = layout.root().exists();
    layout.ensure()?;
    let specs = map_specs(answer_entries);
    let mut reused = Vec::new();
    let mut created = Vec::new();
    // The index and the answers array go together: when either does not
    // fit (or is missing), both are made anew.
    let answers_fit = ANSWER_MAPS.iter().all(|name| {
        let spec = specs.iter().find(|s| s.name == *name).expect("a spec");
        MapInfo::from_pin(layout.map(name)).is_ok_and(|info| spec.mismatch(&info).is_none())
    });
    for spec in &specs {
        let path = layout.map(spec.name);
        if !path.exists() {
            created.push(spec.name);
            continue;
        }
        if !answers_fit && ANSWER_MAPS.contains(&spec.name) {
            tracing::warn!(map = spec.name, path = %path.display(),
                "pinned answer maps do not fit together; replacing them (their entries are re-synced)");
            remove_pin(&path)?;
            created.push(spec.name);
            continue;
        }
        match MapInfo::from_pin(&path).map(|info| spec.mismatch(&info)) {
            Ok(None) => reused.push(spec.name),
            Ok(Some((what, found, expected))) => {
                // Left by an agent with another layout or --map-entries. The
                // old program keeps its own reference until its links move
                // to the new program, so unpinning breaks nothing.
                tracing::warn!(map = spec.name, what, found, expected, path = %path.display(),
                    "pinned map does not fit; replacing it (its entries are re-synced)");
                remove_pin(&path)?;
                created.push(spec.name);
            }
            Err(e) => {
                tracing::warn!(map = spec.name, path = %path.display(), error = %e,
                    "unreadable pin; replacing it");
                remove_pin(&path)?;
                created.push(spec.name);
            }
        }
    }

    // A previous agent's answers stay: it may still be writing its half of
    // the slots (docs/design.md#torn-reads), so this agent takes the other.
    let mut config = *config;
    let preferred = if answers_fit {
        previous_half(layout).map_or(0, |h| 1 - (h & 1))
    } else {
        0
    };
    let slot_lock = [preferred, 1 - preferred].into_iter().find_map(|half| {
        DirLock::exclusive(&layout.slot_lock_dir(half))
            .ok()
            .map(|lock| (half, lock, std::time::Instant::now()))
    });
    let result = match slot_lock {
        Some((half, _, _)) => {
            config.slot_half = half;
            load_pinned(object, layout, answer_entries, &config)
        }
        None => Err(FastPathError::SlotHalvesTaken {
            path: layout.root().to_path_buf(),
        }),
    };
    if result.is_err() {
        // Leave the directory as it was: drop only pins this attempt made.
        for name in &created {
            let _ = remove_pin(&layout.map(name));
        }
        if !root_existed {
            let _ = fs::remove_dir(layout.links_dir());
            let _ = fs::remove_dir(layout.slot_lock_dir(0));
            let _ = fs::remove_dir(layout.slot_lock_dir(1));
            let _ = fs::remove_dir(layout.root());
        }
    }
    let mut loaded = result?;
    loaded.answers_fresh = !answers_fit;
    loaded.reused = reused;
    loaded.slot_lock = slot_lock.map(|(_, lock, at)| (lock, at));
    loaded.memory = PINNED_MAPS
        .iter()
        .map(|name| (*name, map_memory(&layout.map(name)).unwrap_or(0)))
        .collect();
    Ok(loaded)
}

fn load_pinned(
    object: &[u8],
    layout: &PinLayout,
    answer_entries: u32,
    config: &Config,
) -> Result<Loaded, FastPathError> {
    let paths: Vec<_> = PINNED_MAPS
        .iter()
        .map(|name| (*name, layout.map(name)))
        .collect();
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(MAP_INDEX, answer_entries);
    loader.map_max_entries(MAP_ANSWERS, slots_for(answer_entries));
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(object)
        .map_err(|e| FastPathError::Load(Box::new(e)))?;

    for spec in map_specs(answer_entries) {
        if ebpf.map(spec.name).is_none() {
            return Err(FastPathError::MissingMap { name: spec.name });
        }
        let info = MapInfo::from_pin(layout.map(spec.name))
            .map_err(|e| FastPathError::map(spec.name, e))?;
        if let Some((what, found, expected)) = spec.mismatch(&info) {
            return Err(FastPathError::MapLayout {
                name: spec.name,
                what,
                found,
                expected,
            });
        }
    }

    let program_id = load_program(&mut ebpf, PROGRAM_NAME, FastPathError::Program, |p| {
        <&mut Xdp>::try_from(p)?.load()
    })?;
    let egress_program_id = load_program(
        &mut ebpf,
        EGRESS_PROGRAM_NAME,
        FastPathError::EgressProgram,
        |p| <&mut SchedClassifier>::try_from(p)?.load(),
    )?;

    let mut config_map: Array<MapData, Config> = take(&mut ebpf, MAP_CONFIG)?;
    config_map
        .set(0, config, 0)
        .map_err(|e| FastPathError::map(MAP_CONFIG, e))?;
    Ok(Loaded {
        program_id,
        egress_program_id,
        counters: take(&mut ebpf, MAP_COUNTERS)?,
        answer_counts: take(&mut ebpf, MAP_ANSWER_COUNTS)?,
        interfaces: take(&mut ebpf, MAP_INTERFACES)?,
        egress_interfaces: take(&mut ebpf, MAP_EGRESS)?,
        ring: take(&mut ebpf, MAP_RING)?,
        liveness: take_array_data(&mut ebpf, MAP_LIVENESS)?,
        ebpf,
        reused: Vec::new(),
        slot_half: config.slot_half,
        slot_lock: None,
        answers_fresh: false,
        memory: Vec::new(),
    })
}

/// The slot half the agent that wrote the pinned config writes, if there
/// is one.
fn previous_half(layout: &PinLayout) -> Option<u8> {
    let config: Array<MapData, Config> = open_pinned(layout, MAP_CONFIG).ok()?;
    config.get(&0, 0).ok().map(|c| c.slot_half)
}

/// Loads program `name` into the kernel with `load` (its type's own load),
/// and returns the id the kernel gave it; `error` wraps what went wrong.
fn load_program(
    ebpf: &mut Ebpf,
    name: &str,
    error: fn(Box<ProgramError>) -> FastPathError,
    load: impl FnOnce(&mut Program) -> Result<(), ProgramError>,
) -> Result<u32, FastPathError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(FastPathError::MissingProgram)?;
    load(program).map_err(|e| error(Box::new(e)))?;
    let info = program.info().map_err(|e| error(Box::new(e)))?;
    Ok(info.id())
}

fn take<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, FastPathError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(FastPathError::MissingMap { name })?;
    M::try_from(map).map_err(|e| FastPathError::map(name, e))
}

/// An array map as raw `MapData`, for the few uses aya's typed maps do not
/// cover (a shared mapping needs the descriptor).
fn take_array_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, FastPathError> {
    match ebpf.take_map(name) {
        Some(aya::maps::Map::Array(data)) => {
            let value_size = data.info().map(|i| i.value_size()).unwrap_or(0);
            if value_size != size_of::<Liveness>() as u32 {
                return Err(FastPathError::MapLayout {
                    name,
                    what: "value size",
                    found: value_size,
                    expected: size_of::<Liveness>() as u32,
                });
            }
            Ok(data)
        }
        Some(_) => Err(FastPathError::MapLayout {
            name,
            what: "type",
            found: 0,
            expected: MapType::Array as u32,
        }),
        None => Err(FastPathError::MissingMap { name }),
    }
}

/// Opens a pinned map of the given typed kind.
pub(crate) fn open_pinned<M>(layout: &PinLayout, name: &'static str) -> Result<M, FastPathError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let path = layout.map(name);
    if !path.exists() {
        return Err(FastPathError::NothingPinned {
            path: layout.root().to_path_buf(),
        });
    }
    let data = MapData::from_pin(&path).map_err(|e| FastPathError::map(name, e))?;
    let map = aya::maps::Map::from_map_data(data).map_err(|e| FastPathError::map(name, e))?;
    M::try_from(map).map_err(|e| FastPathError::map(name, e))
}

/// Kernel memory charged to a pinned map (aya's `MapInfo` does not carry it).
pub(crate) fn map_memory(path: &Path) -> Option<u64> {
    use std::os::fd::AsFd;
    let data = MapData::from_pin(path).ok()?;
    crate::kernel::bpf::map_memlock(data.fd().as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_packet_byte_order() {
        let addrs: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "fd00::53".parse().unwrap(),
        ];
        let config = build_config(&addrs, 53).unwrap();
        assert_eq!(config.v4_addrs[0].to_ne_bytes(), [169, 254, 20, 10]);
        assert_eq!(config.v4_count, 1);
        assert_eq!(config.v6_addrs[0][15], 0x53);
        assert_eq!(config.v6_count, 1);
        assert_eq!(
            (config.enabled, config.port, config.edns_udp_size),
            (1, 53, EDNS_UDP_SIZE)
        );
    }

    #[test]
    fn cluster_dns_addresses_by_family() {
        let listen: Vec<IpAddr> = vec!["169.254.20.10".parse().unwrap()];
        let mut config = build_config(&listen, 53).unwrap();
        let cluster: Vec<IpAddr> = vec!["10.96.0.10".parse().unwrap(), "fd00::a".parse().unwrap()];
        set_cluster_dns(&mut config, &cluster, true).unwrap();
        assert_eq!(config.cluster_v4_addrs[0].to_ne_bytes(), [10, 96, 0, 10]);
        assert_eq!(config.cluster_v6_addrs[0][15], 0xa);
        assert_eq!(
            (
                config.cluster_v4_count,
                config.cluster_v6_count,
                config.transparent
            ),
            (1, 1, 1)
        );
        let err = set_cluster_dns(&mut config, &listen, false).unwrap_err();
        assert!(err.to_string().contains("both a listen address"), "{err}");
        let many: Vec<IpAddr> = (1..=5).map(|i| IpAddr::from([10, 96, 0, i])).collect();
        let err = set_cluster_dns(&mut config, &many, true).unwrap_err();
        assert!(err.to_string().contains("at most 4"), "{err}");
    }

    #[test]
    fn too_many_addresses_is_an_error() {
        let addrs: Vec<IpAddr> = (1..=5).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let err = build_config(&addrs, 53).unwrap_err();
        assert!(err.to_string().contains("at most 4"), "{err}");
    }
}
