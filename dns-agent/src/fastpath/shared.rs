//! The fast path's state shared by its owner ([`super::FastPath`]), the
//! interface follower thread and the metrics collector.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use aya::Ebpf;
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, Xdp};
use dns_common::{Config, EGRESS_PROGRAM_NAME, IndexValue, PROGRAM_NAME};

use super::attach::Attacher;
use super::egress::EgressLinks;
use super::error::FastPathError;
use super::interface_macs::InterfaceMap;
use super::liveness::Heartbeat;
use super::owner::DirLock;
use super::pins::PinLayout;
use crate::health::NodeHealth;
use crate::kernel::netlink::{self, Interface};

pub(crate) struct Shared {
    pub layout: PinLayout,
    pub program_id: u32,
    pub capacity: u32,
    /// The half of the answer slots this agent writes, and its lock (held
    /// until the agent exits) with when it was taken.
    pub slot_half: u8,
    pub slot_lock: Mutex<Option<(DirLock, std::time::Instant)>>,
    /// The answer maps were made by this agent's load.
    pub answers_fresh: bool,
    /// The one writer of the answer maps, once opened.
    pub answers_table: Mutex<Option<Arc<Mutex<super::AnswersMap>>>>,
    pub memory: Vec<(&'static str, u64)>,
    pub counters: PerCpuArray<MapData, u64>,
    /// The answers sent, by kind (`dns_common::answer_counters`).
    pub answer_counts: PerCpuArray<MapData, u64>,
    /// A second descriptor of the answers index for reads, so walking it
    /// does not hold up the sink's writers.
    pub answers: HashMap<MapData, u64, IndexValue>,
    pub heartbeat: Heartbeat,
    /// The config the program runs with, as last written.
    pub config: Mutex<Config>,
    /// This agent's ring of redirected queries, until the resolver takes it.
    pub ring: Mutex<Option<RingBuf<MapData>>>,
    pub state: Mutex<State>,
    /// This agent's shared lock on the pin directory, taken again when the
    /// directory is made again (docs/design.md#self-repair).
    pub owner: Mutex<Option<DirLock>>,
    /// A descriptor of each pinned map, opened from its pin at start, to
    /// pin it again if the pin is removed.
    pub pinned_maps: Vec<(&'static str, MapData)>,
    /// Where repairs and faults are reported, once the agent says.
    pub health: OnceLock<Arc<NodeHealth>>,
}

pub(crate) struct State {
    pub ebpf: Ebpf,
    pub attacher: Attacher,
    pub egress: EgressLinks,
    pub interface_map: InterfaceMap,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    pub(crate) fn reconcile(
        &mut self,
        program_id: u32,
        startup: bool,
    ) -> Result<(), FastPathError> {
        let interfaces = netlink::list_interfaces().map_err(|source| FastPathError::Netlink {
            op: "link dump",
            source,
        })?;
        self.attach(program_id, &interfaces, startup);
        Ok(())
    }

    /// The interfaces map first: the program must know an interface's MAC
    /// addresses before it runs there. The egress program follows the XDP
    /// program onto (and off) each interface.
    pub(crate) fn attach(&mut self, program_id: u32, interfaces: &[Interface], startup: bool) {
        self.interface_map.sync(interfaces);
        if startup {
            // Before the XDP swap: see `EgressLinks::adopt_pinned`.
            let egress = egress_program(&mut self.ebpf);
            self.egress.adopt_pinned(egress, interfaces);
        }
        let program = program(&mut self.ebpf);
        self.attacher
            .reconcile(program, program_id, interfaces, startup);
        let xdp = self.attacher.status();
        let egress = egress_program(&mut self.ebpf);
        self.egress.reconcile(egress, &xdp, interfaces, startup);
    }
}

pub(crate) fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the loader checked the program")
}

pub(crate) fn egress_program(ebpf: &mut Ebpf) -> &mut SchedClassifier {
    ebpf.program_mut(EGRESS_PROGRAM_NAME)
        .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        .expect("the loader checked the egress program")
}
