//! The fast path's state shared by its owner ([`super::FastPath`]), the
//! interface follower thread and the metrics collector.

use std::sync::{Mutex, MutexGuard};

use aya::Ebpf;
use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::Xdp;
use dns_common::{AnswerEntry, AnswerKey, PROGRAM_NAME};

use super::attach::Attacher;
use super::error::FastPathError;
use super::interface_macs::InterfaceMap;
use super::pins::PinLayout;
use crate::kernel::netlink::{self, Interface};

pub(crate) struct Shared {
    pub layout: PinLayout,
    pub program_id: u32,
    pub capacity: u32,
    pub memory: Vec<(&'static str, u64)>,
    pub counters: PerCpuArray<MapData, u64>,
    /// The answers sent, by kind (`dns_common::answer_counters`).
    pub answer_counts: PerCpuArray<MapData, u64>,
    /// A second descriptor of the answers map for reads, so walking it does
    /// not hold up the sink's writers.
    pub answers: HashMap<MapData, AnswerKey, AnswerEntry>,
    pub state: Mutex<State>,
}

pub(crate) struct State {
    pub ebpf: Ebpf,
    pub attacher: Attacher,
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
    /// addresses before it runs there.
    pub(crate) fn attach(&mut self, program_id: u32, interfaces: &[Interface], startup: bool) {
        self.interface_map.sync(interfaces);
        let program = program(&mut self.ebpf);
        self.attacher
            .reconcile(program, program_id, interfaces, startup);
    }
}

pub(crate) fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the loader checked the program")
}
