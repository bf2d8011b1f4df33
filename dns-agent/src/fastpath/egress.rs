//! The egress program's attachments: a TCX egress link on every interface
//! the XDP program runs on, pinned at `links/tc-if<ifindex>`, and the
//! program's map of those interfaces (`NODEDNS_EGRESS`). The XDP program
//! fails a listen-address query open only where the egress program runs,
//! because only there does the reply get the listen address back as its
//! source (docs/design.md#fail-open).
//!
//! Like the XDP links: the links outlive the agent when asked to, the next
//! agent swaps its program into them (`bpf_link_update`, atomic), an agent
//! whose link a newer agent took over yields it for good, and on exit a
//! link that runs another agent's program is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};

use super::attach::{HeldLink, HeldParts, InterfaceStatus, Release, repin_held};
use super::pins::{LinkKind, PinLayout, detach_and_unpin, remove_pin, sweep_link_pins};
use crate::kernel::bpf::read_pinned_tcx_egress_link;
use crate::kernel::netlink::Interface;

/// Value of the egress map's entries: present means "runs here".
const RUNS: u32 = 1;

struct EgressLink {
    name: String,
    link: FdLink,
    pin: PathBuf,
}

pub(crate) struct EgressLinks {
    layout: PinLayout,
    program_id: u32,
    attached: BTreeMap<u32, EgressLink>,
    /// Links a newer agent took over while we run: never taken back.
    yielded: BTreeSet<u32>,
    /// Interfaces where attaching failed, warned about once.
    failed: BTreeSet<u32>,
    map: HashMap<MapData, u32, u32>,
}

impl EgressLinks {
    pub fn new(layout: PinLayout, program_id: u32, map: HashMap<MapData, u32, u32>) -> Self {
        Self {
            layout,
            program_id,
            attached: BTreeMap::new(),
            yielded: BTreeSet::new(),
            failed: BTreeSet::new(),
            map,
        }
    }

    /// Interfaces the egress program runs on.
    pub fn count(&self) -> usize {
        self.attached.len()
    }

    /// At startup, before the XDP program is swapped in: takes over every
    /// egress link a previous agent pinned on an interface that still
    /// exists. The new XDP program fails queries open only where its map
    /// says the egress program runs; filled afterwards, the moment between
    /// the XDP swap and the egress reconcile would pass those queries
    /// nowhere. Links of interfaces the XDP program then does not run on
    /// are dropped by [`EgressLinks::reconcile`].
    pub fn adopt_pinned(&mut self, program: &mut SchedClassifier, interfaces: &[Interface]) {
        for (ifindex, _) in self.pinned() {
            let Some(iface) = interfaces.iter().find(|i| i.ifindex == ifindex) else {
                continue;
            };
            if self.attached.contains_key(&ifindex) {
                continue;
            }
            self.take(program, ifindex, &iface.name);
        }
    }

    /// The egress links pinned now, by ifindex; none (logged) when the pin
    /// directory cannot be read.
    fn pinned(&self) -> Vec<(u32, PathBuf)> {
        self.layout.pinned_egress_links().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list pinned egress links");
            Vec::new()
        })
    }

    /// Attaches (or adopts) on `ifindex` and records it in the map.
    fn take(&mut self, program: &mut SchedClassifier, ifindex: u32, name: &str) {
        match self.attach_or_adopt(program, ifindex, name) {
            Ok(link) => {
                // The XDP program may fail queries open here from now on.
                if let Err(e) = self.map.insert(ifindex, RUNS, 0) {
                    tracing::warn!(interface = name, error = %e,
                        "cannot record the egress program's interface: its listen-address queries do not fail open");
                }
                self.failed.remove(&ifindex);
                self.attached.insert(ifindex, link);
            }
            Err(detail) => {
                if self.failed.insert(ifindex) {
                    tracing::warn!(interface = name, ifindex, %detail,
                        "egress program not attached: listen-address queries on this interface do not fail open");
                }
            }
        }
    }

    /// Brings the egress links in line with `xdp`, the interfaces our XDP
    /// program runs on (`interfaces`: the namespace's links). `startup`:
    /// also remove pins of interfaces no longer served, which only the
    /// first pass may judge.
    pub fn reconcile(
        &mut self,
        program: &mut SchedClassifier,
        xdp: &[InterfaceStatus],
        interfaces: &[Interface],
        startup: bool,
    ) {
        let wanted: BTreeMap<u32, &str> =
            xdp.iter().map(|s| (s.ifindex, s.name.as_str())).collect();
        let present: BTreeSet<u32> = interfaces.iter().map(|i| i.ifindex).collect();
        self.drop_unwanted(&wanted, &present);
        self.yielded.retain(|i| present.contains(i));
        self.failed.retain(|i| wanted.contains_key(i));
        for (&ifindex, &name) in &wanted {
            if self.attached.contains_key(&ifindex) || self.yielded.contains(&ifindex) {
                continue;
            }
            self.take(program, ifindex, name);
        }
        self.sweep_pins(&wanted, startup);
    }

    fn drop_unwanted(&mut self, wanted: &BTreeMap<u32, &str>, present: &BTreeSet<u32>) {
        let ifindexes: Vec<u32> = self.attached.keys().copied().collect();
        for ifindex in ifindexes {
            let detached = matches!(read_pinned_tcx_egress_link(&self.attached[&ifindex].pin),
                Ok(Some(s)) if s.ifindex != ifindex);
            if detached {
                // Detached from outside (a cleanup): forget it; the loop
                // in `reconcile` attaches afresh.
                let link = self.attached.remove(&ifindex).expect("present");
                tracing::warn!(interface = %link.name, ifindex, "egress link was detached from outside; re-attaching");
                let _ = self.map.remove(&ifindex);
                let _ = remove_pin(&link.pin);
                continue;
            }
            let runs = self.runs_ours(&self.attached[&ifindex].pin);
            let gone = !present.contains(&ifindex);
            if !gone && runs && wanted.contains_key(&ifindex) {
                continue;
            }
            let link = self.attached.remove(&ifindex).expect("present");
            let _ = self.map.remove(&ifindex);
            if gone {
                // The kernel detached it with its interface.
                let _ = remove_pin(&link.pin);
            } else if !runs {
                tracing::info!(interface = %link.name, ifindex, "a newer agent took over this egress link");
                self.yielded.insert(ifindex);
            } else {
                tracing::info!(interface = %link.name, ifindex, "XDP no longer runs here; detaching the egress program");
                if let Err(e) = detach_and_unpin(&link.pin) {
                    tracing::warn!(error = %e, "cannot detach the egress link");
                }
            }
        }
    }

    /// Pins again every link we hold whose pin was removed (the pin
    /// directory must exist). The pins made again.
    pub fn repin(&mut self) -> Vec<String> {
        let (repinned, failed) = repin_held(&mut self.attached);
        for ifindex in failed {
            let _ = self.map.remove(&ifindex);
        }
        repinned
    }

    /// Whether every link we hold is pinned.
    pub fn pins_present(&self) -> bool {
        self.attached.values().all(|l| l.pin.exists())
    }

    /// Whether a link we hold no longer runs our program on its interface.
    pub fn needs_reconcile(&self) -> bool {
        self.attached.iter().any(|(&ifindex, l)| {
            !matches!(read_pinned_tcx_egress_link(&l.pin),
                Ok(Some(s)) if s.ifindex == ifindex && s.prog_id == self.program_id)
        })
    }

    /// Whether the pinned link still runs our program (not a newer
    /// agent's). An unreadable pin counts as ours: it is ours to clean.
    fn runs_ours(&self, pin: &Path) -> bool {
        match read_pinned_tcx_egress_link(pin) {
            Ok(Some(state)) => state.prog_id == self.program_id,
            _ => true,
        }
    }

    fn attach_or_adopt(
        &self,
        program: &mut SchedClassifier,
        ifindex: u32,
        name: &str,
    ) -> Result<EgressLink, String> {
        let pin = self.layout.egress_link(ifindex);
        if pin.exists() {
            match read_pinned_tcx_egress_link(&pin) {
                Ok(Some(state)) if state.ifindex == ifindex => {
                    let link = adopt(program, &pin)
                        .map_err(|e| format!("cannot adopt {}: {e}", pin.display()))?;
                    tracing::info!(
                        interface = name,
                        ifindex,
                        old_prog = state.prog_id,
                        "adopted pinned egress link; program swapped in place"
                    );
                    return Ok(EgressLink {
                        name: name.to_string(),
                        link,
                        pin,
                    });
                }
                other => {
                    tracing::info!(pin = %pin.display(), state = ?other, "removing stale egress link pin");
                    remove_pin(&pin).map_err(|e| e.to_string())?;
                }
            }
        }
        let id = program
            .attach_with_options(
                name,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|e| format!("TCX egress attach (needs Linux 6.6+): {e}"))?;
        let link = program
            .take_link(id)
            .map_err(|e| format!("link lost: {e}"))?;
        let link = FdLink::try_from(link).map_err(|e| format!("not a TCX link: {e}"))?;
        // Dropping the unpinned link on error detaches it again.
        let link = FdLink::from(
            link.pin(&pin)
                .map_err(|e| format!("cannot pin {}: {e}", pin.display()))?,
        );
        tracing::info!(interface = name, ifindex, "egress program attached (TCX)");
        Ok(EgressLink {
            name: name.to_string(),
            link,
            pin,
        })
    }

    /// Removes pins of links the kernel already detached (interface gone)
    /// and, at startup, of interfaces our XDP program does not run on.
    fn sweep_pins(&mut self, wanted: &BTreeMap<u32, &str>, startup: bool) {
        sweep_link_pins(
            self.pinned(),
            LinkKind::Egress,
            |ifindex| self.attached.contains_key(&ifindex) || self.yielded.contains(&ifindex),
            |ifindex| startup && !wanted.contains_key(&ifindex),
        );
    }

    /// Releases every attachment (on shutdown). With `Release::Detach`, a
    /// link that now runs a newer agent's program is left to it.
    pub fn release_all(&mut self, how: Release) {
        for (_, link) in std::mem::take(&mut self.attached) {
            if how == Release::Detach {
                if self.runs_ours(&link.pin) {
                    if let Err(e) = detach_and_unpin(&link.pin) {
                        tracing::warn!(error = %e, "cannot detach the egress link");
                    }
                } else {
                    tracing::info!(interface = %link.name, "egress link belongs to a newer agent; leaving it");
                }
            }
            drop(link.link);
        }
    }
}

impl HeldLink for EgressLink {
    fn pin_path(&self) -> &Path {
        &self.pin
    }

    fn into_parts(self) -> HeldParts<Self> {
        let EgressLink { name, link, pin } = self;
        let (interface, at) = (name.clone(), pin.clone());
        (
            link,
            at,
            interface,
            Box::new(move |link| EgressLink { name, link, pin }),
        )
    }
}

/// Swaps `program` into the pinned TCX link at `pin`.
fn adopt(program: &mut SchedClassifier, pin: &Path) -> Result<FdLink, String> {
    let fd_link = FdLink::from(PinnedLink::from_pin(pin).map_err(|e| e.to_string())?);
    let link = SchedClassifierLink::try_from(fd_link).map_err(|e| e.to_string())?;
    let id = program.attach_to_link(link).map_err(|e| e.to_string())?;
    let link = program.take_link(id).map_err(|e| e.to_string())?;
    FdLink::try_from(link).map_err(|e| e.to_string())
}
