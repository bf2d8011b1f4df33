//! The running fast path: loads the object, keeps the attachments in line
//! with the interfaces on a follower thread, and lends out the answers map,
//! the ring of redirected queries and the heartbeat.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, RingBuf};
use dns_common::{Config, Counter, MAP_ANSWERS, MAP_CONFIG, MAP_INDEX};

use super::args::{FastPathArgs, XdpModeArg};
use super::attach::{Attacher, InterfaceStatus, Release, SkipReason};
use super::debug_log::DebugLog;
use super::egress::EgressLinks;
use super::error::FastPathError;
use super::interface_macs::InterfaceMap;
use super::liveness::Heartbeat;
use super::loader::{self, build_config, open_pinned, set_cluster_dns};
use super::owner::DirLock;
use super::pins::{PINNED_MAPS, PinLayout};
use super::repair::{self, Repairer};
use super::selector::InterfaceSelector;
use super::shared::{Shared, State};
use super::{cleanup, stats};
use crate::health::NodeHealth;
use crate::kernel::netlink::{self, LinkEvents, Wake, Waker};

/// The kernel answers (index and slots), as promotion writes them.
pub type AnswersMap = super::slots::AnswerTable<MapData>;

/// What happens to the kernel side when the fast path stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitPolicy {
    /// Links and maps stay pinned; the kernel keeps answering.
    Keep,
    /// Links are removed; maps stay pinned for a warm restart.
    Detach,
    /// Links, maps and the pin directory are removed.
    Cleanup,
}

impl ExitPolicy {
    pub fn from_args(args: &FastPathArgs) -> Self {
        if args.keep_on_exit {
            Self::Keep
        } else if args.cleanup_on_exit {
            Self::Cleanup
        } else {
            Self::Detach
        }
    }
}

struct Follower {
    handle: JoinHandle<()>,
    waker: Waker,
    stop: Arc<AtomicBool>,
}

/// The loaded XDP fast path. Dropping it applies its [`ExitPolicy`];
/// [`FastPath::shutdown`] does the same and reports errors.
///
/// Attaching happens in the network namespace of the thread that called
/// [`FastPath::start`] (the follower thread inherits it).
pub struct FastPath {
    shared: Arc<Shared>,
    follower: Option<Follower>,
    exit: ExitPolicy,
    /// Forwards the program's records when it was built with debug-log.
    _debug_log: Option<DebugLog>,
}

impl FastPath {
    /// Loads and attaches the fast path for queries to `listen` addresses on
    /// `port`. `Ok(None)` with `--xdp-mode off`: no program, no maps.
    pub fn start(
        args: &FastPathArgs,
        listen: &[IpAddr],
        port: u16,
    ) -> Result<Option<Self>, FastPathError> {
        if args.xdp_mode == XdpModeArg::Off {
            tracing::info!("XDP fast path off (--xdp-mode off): userspace answers every query");
            return Ok(None);
        }
        let selector = InterfaceSelector::new(&args.interfaces, &args.exclude_interfaces)?;
        let mut config = build_config(listen, port)?;
        set_cluster_dns(&mut config, &args.cluster_dns_ips, args.transparent)?;
        let object: Cow<'static, [u8]> = match &args.ebpf_object {
            Some(path) => Cow::Owned(std::fs::read(path).map_err(|e| FastPathError::io(path, e))?),
            None => Cow::Borrowed(super::object::EBPF_OBJECT),
        };
        let layout = PinLayout::new(&args.bpffs_path);

        // Subscribe before the first listing so no link event falls between.
        let (events, waker) = LinkEvents::subscribe().map_err(|source| FastPathError::Netlink {
            op: "subscribe",
            source,
        })?;
        let interfaces = netlink::list_interfaces().map_err(|source| FastPathError::Netlink {
            op: "link dump",
            source,
        })?;
        for name in selector.literals() {
            if !interfaces.iter().any(|i| &i.name == name) {
                return Err(FastPathError::NoSuchInterface { name: name.clone() });
            }
        }

        let mut loaded = loader::load(&object, &layout, args.map_entries, &config)?;
        let debug_log = DebugLog::start(&mut loaded.ebpf);
        let answers_reader = open_pinned(&layout, MAP_INDEX)?;
        let capacity = args.map_entries;
        tracing::info!(
            bpffs = %layout.root().display(), program_id = loaded.program_id, capacity,
            reused_maps = ?loaded.reused, memory_bytes = ?loaded.memory,
            "XDP fast path loaded"
        );
        let owner = take_owner(&layout)?;
        let pinned_maps = PINNED_MAPS
            .iter()
            .map(|&name| {
                MapData::from_pin(layout.map(name))
                    .map(|data| (name, data))
                    .map_err(|e| FastPathError::map(name, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let heartbeat = Heartbeat::new(loaded.liveness)?;
        let state = State {
            ebpf: loaded.ebpf,
            attacher: Attacher::new(layout.clone(), selector, args.xdp_mode),
            egress: EgressLinks::new(
                layout.clone(),
                loaded.egress_program_id,
                loaded.egress_interfaces,
            ),
            interface_map: InterfaceMap::new(loaded.interfaces),
        };
        let shared = Arc::new(Shared {
            layout,
            program_id: loaded.program_id,
            capacity,
            slot_half: loaded.slot_half,
            slot_lock: Mutex::new(loaded.slot_lock),
            answers_table: Mutex::new(None),
            answers_fresh: loaded.answers_fresh,
            memory: loaded.memory,
            counters: loaded.counters,
            answer_counts: loaded.answer_counts,
            answers: answers_reader,
            heartbeat,
            config: Mutex::new(config),
            ring: Mutex::new(Some(loaded.ring)),
            state: Mutex::new(state),
            owner: Mutex::new(Some(owner)),
            pinned_maps,
            health: OnceLock::new(),
        });
        shared.lock().attach(shared.program_id, &interfaces, true);

        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs(args.rescan_interval);
        let handle = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("nodedns-xdp-links".into())
                .spawn(move || follow(&shared, events, &stop, interval))
                .map_err(|e| FastPathError::io("thread nodedns-xdp-links", e))?
        };
        Ok(Some(Self {
            shared,
            follower: Some(Follower {
                handle,
                waker,
                stop,
            }),
            exit: ExitPolicy::from_args(args),
            _debug_log: debug_log,
        }))
    }

    /// The answer maps' writer (promotion's `MapSink`), on descriptors of
    /// its own so it does not wait for the readers here. It writes this
    /// agent's half of the slots (docs/design.md#torn-reads); there is one
    /// per agent, shared by every caller, so that one list of free and
    /// cooling slots covers every write.
    pub fn open_answers(&self) -> Result<Arc<Mutex<AnswersMap>>, FastPathError> {
        let mut table = lock(&self.shared.answers_table);
        if let Some(t) = table.as_ref() {
            return Ok(t.clone());
        }
        let t = Arc::new(Mutex::new(self.new_answers_table()?));
        *table = Some(t.clone());
        Ok(t)
    }

    fn new_answers_table(&self) -> Result<AnswersMap, FastPathError> {
        let layout = &self.shared.layout;
        // Reused slots: the half's previous writer may have taken some out
        // of the index just before it let go of the lock.
        let locked_at = lock(&self.shared.slot_lock).as_ref().map(|(_, at)| *at);
        if let (false, Some(locked_at)) = (self.shared.answers_fresh, locked_at) {
            let grace = Duration::from_nanos(dns_common::SLOT_GRACE_NS);
            std::thread::sleep(grace.saturating_sub(locked_at.elapsed()));
        }
        Ok(super::slots::AnswerTable::open(
            open_pinned(layout, MAP_INDEX)?,
            open_pinned(layout, MAP_ANSWERS)?,
            self.shared.capacity,
            self.shared.slot_half,
        ))
    }

    pub fn program_id(&self) -> u32 {
        self.shared.program_id
    }

    /// Where the follower reports what it repaired and what it cannot
    /// (`nodedns_repairs_total`, `/healthz`). Only the first call counts.
    pub fn report_to(&self, health: Arc<NodeHealth>) {
        let _ = self.shared.health.set(health);
    }

    /// This agent's heartbeat, which the resolver beats while it serves.
    pub fn heartbeat(&self) -> Heartbeat {
        self.shared.heartbeat.clone()
    }

    /// This agent's ring of redirected queries (transparent mode), for the
    /// one consumer: `None` once taken.
    pub fn take_ring(&self) -> Option<RingBuf<MapData>> {
        lock(&self.shared.ring).take()
    }

    /// Sets the cluster DNS Service addresses, for the rest of the run:
    /// the `--cluster-dns-ip` default learnt from the API server.
    pub fn cluster_dns(&self) -> ClusterDns {
        ClusterDns {
            shared: self.shared.clone(),
        }
    }

    /// The config the program runs with.
    pub fn config(&self) -> Config {
        *lock(&self.shared.config)
    }

    pub fn capacity(&self) -> u32 {
        self.shared.capacity
    }

    /// Kernel memory of each pinned map, in bytes.
    pub fn memory(&self) -> &[(&'static str, u64)] {
        &self.shared.memory
    }

    pub fn layout(&self) -> &PinLayout {
        &self.shared.layout
    }

    /// Interfaces the program is attached to, by ifindex.
    pub fn interfaces(&self) -> Vec<InterfaceStatus> {
        self.shared.lock().attacher.status()
    }

    /// Matching interfaces left alone so far, by reason.
    pub fn skipped(&self) -> BTreeMap<SkipReason, u64> {
        self.shared.lock().attacher.skip_totals().clone()
    }

    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, FastPathError> {
        stats::read_counters(&self.shared.counters)
    }

    pub fn entry_count(&self) -> u64 {
        stats::count_entries(&self.shared.answers, self.shared.capacity)
    }

    /// Asks the follower thread for a rescan now (it runs in the namespace
    /// the fast path was started in).
    pub fn rescan(&self) {
        if let Some(f) = &self.follower {
            f.waker.wake();
        }
    }

    /// The kernel's answer counts, for the CoreDNS-compatible families.
    pub fn answer_counts(&self) -> Arc<dyn crate::metrics::coredns::KernelAnswerSource> {
        Arc::new(super::metrics::AnswerCounts(self.shared.clone()))
    }

    /// Registers the `nodedns_xdp_*` metrics.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        registry.register_collector(self.collector());
    }

    /// The collector of the `nodedns_xdp_*` metrics.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(super::metrics::XdpCollector::new(self.shared.clone()))
    }

    pub fn exit_policy(&self) -> ExitPolicy {
        self.exit
    }

    /// Changes what [`FastPath::shutdown`] (or drop) does.
    pub fn set_exit_policy(&mut self, exit: ExitPolicy) {
        self.exit = exit;
    }

    /// Stops following interfaces and applies the exit policy.
    pub fn shutdown(mut self) -> Result<(), FastPathError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), FastPathError> {
        let Some(follower) = self.follower.take() else {
            return Ok(());
        };
        follower.stop.store(true, Ordering::SeqCst);
        follower.waker.wake();
        if follower.handle.join().is_err() {
            tracing::error!("the XDP interface follower panicked");
        }
        // Whatever stays attached fails open from now on, not in 750 ms.
        self.shared.heartbeat.stop();
        let mut state = self.shared.lock();
        let program_id = self.shared.program_id;
        match self.exit {
            ExitPolicy::Keep => {
                state.attacher.release_all(Release::Keep, program_id);
                state.egress.release_all(Release::Keep);
                tracing::info!(bpffs = %self.shared.layout.root().display(),
                    "leaving XDP and egress attachments and maps pinned (--keep-on-exit)");
                Ok(())
            }
            ExitPolicy::Detach => {
                state.attacher.release_all(Release::Detach, program_id);
                state.egress.release_all(Release::Detach);
                tracing::info!("XDP and egress detached; maps stay pinned for the next start");
                Ok(())
            }
            ExitPolicy::Cleanup => {
                state.attacher.release_all(Release::Detach, program_id);
                state.egress.release_all(Release::Detach);
                drop(state);
                cleanup::remove_if_unused(&self.shared.layout)
            }
        }
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "stopping the XDP fast path");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the cluster DNS Service addresses of a running fast path (a clone
/// of its handle, for a task that learns them later).
#[derive(Clone)]
pub struct ClusterDns {
    shared: Arc<Shared>,
}

impl ClusterDns {
    /// Writes `addrs` into the config map; the transparent setting stays.
    pub fn set(&self, addrs: &[IpAddr]) -> Result<(), FastPathError> {
        let mut config = lock(&self.shared.config);
        let mut next = *config;
        set_cluster_dns(&mut next, addrs, config.transparent != 0)?;
        let mut map: Array<MapData, Config> = open_pinned(&self.shared.layout, MAP_CONFIG)?;
        map.set(0, next, 0)
            .map_err(|e| FastPathError::map(MAP_CONFIG, e))?;
        *config = next;
        Ok(())
    }

    /// Whether any cluster DNS address is set.
    pub fn is_set(&self) -> bool {
        let config = lock(&self.shared.config);
        config.cluster_v4_count + config.cluster_v6_count > 0
    }
}

/// The follower thread: rescan on link events, on wake-ups and on a timer;
/// check the pins and links every [`repair::CHECK_INTERVAL`] and repair
/// them (docs/design.md#self-repair).
fn follow(shared: &Shared, mut events: LinkEvents, stop: &AtomicBool, interval: Duration) {
    /// Pause after a netlink error, so a broken socket cannot spin.
    const ERROR_BACKOFF: Duration = Duration::from_secs(1);
    let mut repairer = Repairer::default();
    repairer.after_reconcile(shared);
    let mut last_rescan = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut rescan = match events.wait(repair::CHECK_INTERVAL.min(interval)) {
            Ok(Wake::Woken) if stop.load(Ordering::SeqCst) => break,
            Ok(Wake::Timeout) => last_rescan.elapsed() >= interval,
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for link events failed; rescanning");
                std::thread::sleep(ERROR_BACKOFF);
                true
            }
        };
        rescan |= repairer.check(shared);
        if !rescan {
            continue;
        }
        last_rescan = Instant::now();
        if let Err(e) = shared.lock().reconcile(shared.program_id, false) {
            tracing::warn!(error = %e, "interface rescan failed");
        }
        repairer.after_reconcile(shared);
    }
}

/// The agent's lock on its pin directory, which `dns-agent cleanup` checks.
/// A cleanup that holds it now is short: wait for it a little.
fn take_owner(layout: &PinLayout) -> Result<DirLock, FastPathError> {
    const WAIT: Duration = Duration::from_secs(5);
    const STEP: Duration = Duration::from_millis(50);
    let deadline = Instant::now() + WAIT;
    loop {
        match repair::lock_dir(layout.root()) {
            Ok(lock) => return Ok(lock),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(STEP),
        }
    }
}
