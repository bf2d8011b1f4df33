//! Keeps the program attached to exactly the interfaces that match, and
//! never to an interface another XDP program owns.
//!
//! Every attachment is a bpf_link pinned at `links/xdp-if<ifindex>`, so it
//! outlives the agent when asked to, and the next agent finds it: it swaps
//! its own program into the link with `bpf_link_update` (atomic, no gap)
//! instead of attaching a second time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, Xdp, XdpMode};

use dns_common::PROGRAM_NAME;

use super::args::XdpModeArg;
use super::error::FastPathError;
use super::pins::{LinkKind, PinLayout, detach_and_unpin, remove_pin, sweep_link_pins};
use super::selector::InterfaceSelector;
use crate::kernel::bpf::{XdpLinkState, pin_xdp_link_of, read_pinned_xdp_link};
use crate::kernel::netlink::Interface;

/// How the program runs on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttachMode {
    /// Generic XDP, run by the kernel's network stack on each skb.
    Skb,
    /// Native XDP, run by the driver before any skb exists.
    Native,
}

impl AttachMode {
    pub fn label(self) -> &'static str {
        match self {
            Self::Skb => "skb",
            Self::Native => "native",
        }
    }

    fn aya(self) -> XdpMode {
        match self {
            Self::Skb => XdpMode::Skb,
            Self::Native => XdpMode::Driver,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a matching interface was left without our program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Another XDP program is attached; it is left alone.
    ForeignProgram,
    /// `--xdp-mode native` on a driver without native XDP.
    NativeUnsupported,
    /// The kernel refused the attachment for another reason (logged).
    AttachFailed,
}

impl SkipReason {
    pub const ALL: [SkipReason; 3] = [
        Self::ForeignProgram,
        Self::NativeUnsupported,
        Self::AttachFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::ForeignProgram => "foreign_program",
            Self::NativeUnsupported => "native_unsupported",
            Self::AttachFailed => "attach_failed",
        }
    }
}

/// A skip with what the kernel said, logged once by `note_skip`.
struct Skip(SkipReason, String);

/// One interface the program is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub ifindex: u32,
    pub name: String,
    pub mode: AttachMode,
    /// The link was left by a previous agent and taken over.
    pub adopted: bool,
}

/// One attachment: a pinned bpf_link (XDP links exist since kernel 5.9;
/// older netlink attachments cannot be pinned and are refused).
struct Attachment {
    status: InterfaceStatus,
    link: FdLink,
    pin: PathBuf,
}

/// What [`Attacher::adopt`] did with a pinned link.
enum Adopt {
    Adopted(Attachment),
    /// The pin is gone; `prog_id` is the program its link ran (0: none).
    Released {
        prog_id: u32,
    },
}

/// What to do with our attachments when the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Close our descriptors; pinned links stay attached.
    Keep,
    /// Unpin and close: the kernel detaches (unless a newer agent has
    /// swapped its program into the link, which is then left to it).
    Detach,
}

pub(crate) struct Attacher {
    layout: PinLayout,
    selector: InterfaceSelector,
    mode: XdpModeArg,
    attached: BTreeMap<u32, Attachment>,
    /// Interfaces currently left alone, so each is logged and counted once.
    skipped: BTreeMap<u32, SkipReason>,
    skip_totals: BTreeMap<SkipReason, u64>,
    /// Links found detached by something else (then attached afresh).
    detached_outside: u64,
    /// Links a newer agent took over while we run: never taken back.
    yielded: BTreeSet<u32>,
}

impl Attacher {
    pub fn new(layout: PinLayout, selector: InterfaceSelector, mode: XdpModeArg) -> Self {
        Self {
            layout,
            selector,
            mode,
            attached: BTreeMap::new(),
            skipped: BTreeMap::new(),
            skip_totals: BTreeMap::new(),
            detached_outside: 0,
            yielded: BTreeSet::new(),
        }
    }

    pub fn status(&self) -> Vec<InterfaceStatus> {
        self.attached.values().map(|a| a.status.clone()).collect()
    }

    pub fn skip_totals(&self) -> &BTreeMap<SkipReason, u64> {
        &self.skip_totals
    }

    /// Links found detached from outside since the agent started.
    pub fn detached_outside(&self) -> u64 {
        self.detached_outside
    }

    /// Brings the attachments in line with `interfaces` (the namespace's
    /// current links). `startup`: also remove pins for interfaces no longer
    /// selected, which only the first pass may judge.
    pub fn reconcile(
        &mut self,
        program: &mut Xdp,
        program_id: u32,
        interfaces: &[Interface],
        startup: bool,
    ) {
        let by_index: BTreeMap<u32, &Interface> =
            interfaces.iter().map(|i| (i.ifindex, i)).collect();
        self.drop_vanished(&by_index, program_id);
        self.skipped
            .retain(|ifindex, _| by_index.contains_key(ifindex));
        self.yielded
            .retain(|ifindex| by_index.contains_key(ifindex));

        for iface in interfaces {
            if !self.selector.matches(&iface.name)
                || self.attached.contains_key(&iface.ifindex)
                || self.yielded.contains(&iface.ifindex)
            {
                continue;
            }
            match self.attach_or_adopt(program, program_id, iface) {
                Ok(attachment) => {
                    self.skipped.remove(&iface.ifindex);
                    self.attached.insert(iface.ifindex, attachment);
                }
                Err(skip) => self.note_skip(iface, skip),
            }
        }
        self.sweep_pins(&by_index, startup);
    }

    /// Counts and logs a skipped interface once per reason, however often
    /// later rescans retry it.
    fn note_skip(&mut self, iface: &Interface, skip: Skip) {
        let Skip(reason, detail) = skip;
        if self.skipped.insert(iface.ifindex, reason) == Some(reason) {
            tracing::debug!(interface = %iface.name, reason = reason.label(), %detail, "still skipped");
            return;
        }
        *self.skip_totals.entry(reason).or_default() += 1;
        tracing::warn!(interface = %iface.name, ifindex = iface.ifindex, reason = reason.label(),
            skb_prog = iface.xdp.skb, drv_prog = iface.xdp.drv, %detail,
            "not attaching the XDP fast path to this interface");
    }

    fn drop_vanished(&mut self, by_index: &BTreeMap<u32, &Interface>, program_id: u32) {
        let ifindexes: Vec<u32> = self.attached.keys().copied().collect();
        for ifindex in ifindexes {
            let att = &self.attached[&ifindex];
            match by_index.get(&ifindex) {
                None => {
                    tracing::info!(interface = %att.status.name, ifindex, "interface gone; dropping its XDP link");
                    let att = self.attached.remove(&ifindex).expect("present");
                    release(att, Release::Detach, None);
                }
                Some(iface) if !self.selector.matches(&iface.name) => {
                    tracing::info!(interface = %iface.name, ifindex, "interface no longer selected; detaching");
                    let att = self.attached.remove(&ifindex).expect("present");
                    release(att, Release::Detach, Some(program_id));
                }
                Some(iface) if iface.xdp.is_empty() => {
                    // Detached from outside (bpftool, a cleanup): forget
                    // the link; the loop below attaches afresh.
                    tracing::warn!(interface = %iface.name, ifindex, "XDP link was detached from outside; re-attaching");
                    self.detached_outside += 1;
                    let att = self.attached.remove(&ifindex).expect("present");
                    release(att, Release::Detach, None);
                }
                Some(iface) if !iface.xdp.contains(program_id) => {
                    // A newer agent swapped its program into our link (a
                    // rolling update): the link is its now.
                    tracing::info!(interface = %iface.name, ifindex, "a newer agent took over this XDP link");
                    let att = self.attached.remove(&ifindex).expect("present");
                    release(att, Release::Keep, None);
                    self.yielded.insert(ifindex);
                }
                Some(iface) => {
                    let att = self.attached.get_mut(&ifindex).expect("present");
                    att.status.name.clone_from(&iface.name);
                }
            }
        }
    }

    /// Modes to try on `iface`, best first.
    fn modes(&self, iface: &Interface) -> &'static [AttachMode] {
        let veth = iface.kind.as_deref() == Some("veth");
        match self.mode {
            // Native XDP_TX on veth only reaches the peer if the peer runs
            // an XDP program itself (docs/design.md#generic-xdp-on-veth);
            // generic mode always works.
            XdpModeArg::Auto if veth => &[AttachMode::Skb],
            XdpModeArg::Auto => &[AttachMode::Native, AttachMode::Skb],
            XdpModeArg::Native => &[AttachMode::Native],
            XdpModeArg::Skb | XdpModeArg::Off => &[AttachMode::Skb],
        }
    }

    fn attach_or_adopt(
        &mut self,
        program: &mut Xdp,
        program_id: u32,
        iface: &Interface,
    ) -> Result<Attachment, Skip> {
        let pin = self.layout.link(iface.ifindex);
        // The program of a pinned link that adopt() just let go of: the
        // netlink snapshot may still show it.
        let mut released = 0;
        if pin.exists() {
            match self.adopt(program, iface, &pin) {
                Ok(Adopt::Adopted(att)) => return Ok(att),
                Ok(Adopt::Released { prog_id }) => released = prog_id,
                Err(e) => {
                    return Err(Skip(
                        SkipReason::AttachFailed,
                        format!("cannot adopt pinned link: {e}"),
                    ));
                }
            }
        }
        let xdp = iface.xdp;
        let others: Vec<u32> = [xdp.skb, xdp.drv, xdp.hw]
            .into_iter()
            .filter(|&id| id != 0 && id != program_id && id != released)
            .collect();
        if let [other] = others[..]
            && is_nodedns_program(other)
        {
            return self.take_over_unpinned(program, iface, other, pin);
        }
        if !others.is_empty() {
            return Err(Skip(
                SkipReason::ForeignProgram,
                "another XDP program is attached".into(),
            ));
        }
        self.attach(program, iface, pin)
    }

    /// Another agent's program runs on `iface` through a link nobody
    /// pinned here (its pins were removed, or it pinned elsewhere): pin that
    /// link and adopt it like a pinned one, with no moment without XDP
    /// (docs/design.md#self-repair).
    fn take_over_unpinned(
        &mut self,
        program: &mut Xdp,
        iface: &Interface,
        other: u32,
        pin: PathBuf,
    ) -> Result<Attachment, Skip> {
        match pin_xdp_link_of(iface.ifindex, other, &pin) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Skip(
                    SkipReason::ForeignProgram,
                    format!("{PROGRAM_NAME} (id {other}) is attached through netlink, not a link"),
                ));
            }
            Err(e) => {
                return Err(Skip(
                    SkipReason::AttachFailed,
                    format!("cannot take over the unpinned {PROGRAM_NAME} link: {e}"),
                ));
            }
        }
        tracing::warn!(interface = %iface.name, ifindex = iface.ifindex, old_prog = other,
            "another agent's XDP link was not pinned here (its pins were removed?); taking it over");
        match self.adopt(program, iface, &pin) {
            Ok(Adopt::Adopted(att)) => Ok(att),
            // Detached for another mode: the interface is free now.
            Ok(Adopt::Released { .. }) => self.attach(program, iface, pin),
            Err(e) => Err(Skip(
                SkipReason::AttachFailed,
                format!("cannot adopt the unpinned link: {e}"),
            )),
        }
    }

    /// Pins again every link we hold whose pin was removed (the pin
    /// directory must exist). The names of the interfaces re-pinned.
    pub fn repin(&mut self) -> Vec<String> {
        repin_held(&mut self.attached).0
    }

    /// Whether every link we hold is pinned.
    pub fn pins_present(&self) -> bool {
        self.attached.values().all(|att| att.pin.exists())
    }

    /// Whether a link we hold no longer runs `program_id` on its interface
    /// (detached from outside, or taken over): a reconcile sorts it out.
    pub fn needs_reconcile(&self, program_id: u32) -> bool {
        self.attached.iter().any(|(&ifindex, att)| {
            !matches!(read_pinned_xdp_link(&att.pin),
                Ok(Some(s)) if s.ifindex == ifindex && s.prog_id == program_id)
        })
    }

    /// Interfaces among `ifindexes` where attaching failed, with the reason.
    pub fn failing(&self, ifindexes: &BTreeSet<u32>) -> Vec<u32> {
        ifindexes
            .iter()
            .copied()
            .filter(|i| {
                matches!(
                    self.skipped.get(i),
                    Some(SkipReason::AttachFailed | SkipReason::NativeUnsupported)
                )
            })
            .collect()
    }

    /// Whether a matching interface runs another program.
    pub fn skips_foreign(&self) -> bool {
        self.skipped
            .values()
            .any(|r| *r == SkipReason::ForeignProgram)
    }

    /// Whether `ifindex` still exists as far as the last reconcile knows:
    /// attached, or skipped.
    pub fn knows(&self, ifindex: u32) -> bool {
        self.attached.contains_key(&ifindex) || self.skipped.contains_key(&ifindex)
    }

    /// Takes over the link a previous agent pinned for `iface`, or removes
    /// the pin when it is stale or in a mode we no longer want.
    fn adopt(
        &self,
        program: &mut Xdp,
        iface: &Interface,
        pin: &PathBuf,
    ) -> Result<Adopt, FastPathError> {
        let link_err = |reason: String| FastPathError::Link {
            path: pin.clone(),
            reason,
        };
        let state = match read_pinned_xdp_link(pin) {
            Ok(Some(state)) if state.ifindex == iface.ifindex => state,
            other => {
                tracing::info!(pin = %pin.display(), state = ?other, "removing stale XDP link pin");
                remove_pin(pin)?;
                return Ok(Adopt::Released { prog_id: 0 });
            }
        };
        let current = mode_of(iface, &state);
        if current.is_none_or(|mode| !self.modes(iface).contains(&mode)) {
            tracing::info!(interface = %iface.name, current = ?current, wanted = ?self.modes(iface),
                "pinned XDP link runs in another mode; re-attaching");
            detach_and_unpin(pin)?;
            return Ok(Adopt::Released {
                prog_id: state.prog_id,
            });
        }
        let mode = current.expect("checked");
        let fd_link = FdLink::from(PinnedLink::from_pin(pin).map_err(|e| link_err(e.to_string()))?);
        let xdp_link = XdpLink::try_from(fd_link).map_err(|e| link_err(e.to_string()))?;
        let id = program
            .attach_to_link(xdp_link)
            .map_err(|e| FastPathError::Attach {
                interface: iface.name.clone(),
                source: Box::new(e),
            })?;
        let link = program.take_link(id).map_err(|e| FastPathError::Attach {
            interface: iface.name.clone(),
            source: Box::new(e),
        })?;
        let link = FdLink::try_from(link).map_err(|e| link_err(e.to_string()))?;
        tracing::info!(interface = %iface.name, ifindex = iface.ifindex, mode = mode.label(),
            old_prog = state.prog_id, "adopted pinned XDP link; program swapped in place");
        Ok(Adopt::Adopted(Attachment {
            status: InterfaceStatus {
                ifindex: iface.ifindex,
                name: iface.name.clone(),
                mode,
                adopted: true,
            },
            link,
            pin: pin.clone(),
        }))
    }

    fn attach(
        &self,
        program: &mut Xdp,
        iface: &Interface,
        pin: PathBuf,
    ) -> Result<Attachment, Skip> {
        let modes = self.modes(iface);
        for (i, &mode) in modes.iter().enumerate() {
            let last = i + 1 == modes.len();
            let id = match program.attach_to_if_index(iface.ifindex, mode.aya()) {
                Ok(id) => id,
                Err(e) => {
                    let errno = errno_of(&e);
                    if matches!(errno, Some(libc::EBUSY | libc::EEXIST)) {
                        // Raced with another program since the netlink read.
                        return Err(Skip(SkipReason::ForeignProgram, e.to_string()));
                    }
                    if !last {
                        tracing::info!(interface = %iface.name, mode = mode.label(), error = %e,
                            "XDP mode unavailable; falling back");
                        continue;
                    }
                    let native_only = modes == [AttachMode::Native];
                    let unsupported = matches!(errno, Some(libc::EOPNOTSUPP | libc::EINVAL));
                    let reason = if native_only && unsupported {
                        SkipReason::NativeUnsupported
                    } else {
                        SkipReason::AttachFailed
                    };
                    return Err(Skip(reason, format!("{mode} attach: {e}")));
                }
            };
            let failed = |detail: String| Skip(SkipReason::AttachFailed, detail);
            let link = program
                .take_link(id)
                .map_err(|e| failed(format!("link lost: {e}")))?;
            let Ok(fd_link) = FdLink::try_from(link) else {
                // Dropping the netlink attachment detached it again.
                return Err(failed(
                    "this kernel has no XDP bpf_link (needs Linux 5.9+): attachments cannot be pinned".into(),
                ));
            };
            let link = match fd_link.pin(&pin) {
                Ok(pinned) => FdLink::from(pinned),
                // The unpinned link was dropped, hence detached.
                Err(e) => return Err(failed(format!("cannot pin {}: {e}", pin.display()))),
            };
            tracing::info!(interface = %iface.name, ifindex = iface.ifindex, mode = mode.label(), "XDP attached");
            return Ok(Attachment {
                status: InterfaceStatus {
                    ifindex: iface.ifindex,
                    name: iface.name.clone(),
                    mode,
                    adopted: false,
                },
                link,
                pin,
            });
        }
        Err(Skip(SkipReason::AttachFailed, "no XDP mode to try".into()))
    }

    /// Removes pins of links the kernel already detached (interface gone)
    /// and, at startup, of interfaces no longer selected.
    fn sweep_pins(&mut self, by_index: &BTreeMap<u32, &Interface>, startup: bool) {
        let pins = match self.layout.pinned_links() {
            Ok(pins) => pins,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list pinned XDP links");
                return;
            }
        };
        // A link selected by an earlier configuration comes off at startup.
        sweep_link_pins(
            pins,
            LinkKind::Xdp,
            |ifindex| self.attached.contains_key(&ifindex) || self.yielded.contains(&ifindex),
            |ifindex| {
                startup
                    && by_index
                        .get(&ifindex)
                        .is_none_or(|i| !self.selector.matches(&i.name))
            },
        );
    }

    /// Releases every attachment (on shutdown).
    pub fn release_all(&mut self, how: Release, program_id: u32) {
        for (_, att) in std::mem::take(&mut self.attached) {
            release(att, how, Some(program_id));
        }
    }
}

/// A link we hold and keep pinned: an XDP attachment, or an egress link.
pub(crate) trait HeldLink: Sized {
    fn pin_path(&self) -> &Path;
    /// The link, its pin, its interface's name, and how to put it together
    /// again.
    fn into_parts(self) -> HeldParts<Self>;
}

pub(crate) type HeldParts<T> = (FdLink, PathBuf, String, Box<dyn FnOnce(FdLink) -> T>);

impl HeldLink for Attachment {
    fn pin_path(&self) -> &Path {
        &self.pin
    }

    fn into_parts(self) -> HeldParts<Self> {
        let Attachment { status, link, pin } = self;
        let (name, at) = (status.name.clone(), pin.clone());
        (
            link,
            at,
            name,
            Box::new(move |link| Attachment { status, link, pin }),
        )
    }
}

/// Pins again every link of `held` whose pin was removed
/// (docs/design.md#self-repair). The ifindexes re-pinned, and those whose
/// link was lost (the next reconcile attaches afresh there).
pub(crate) fn repin_held<T: HeldLink>(held: &mut BTreeMap<u32, T>) -> (Vec<String>, Vec<u32>) {
    let lost: Vec<u32> = held
        .iter()
        .filter(|(_, h)| !h.pin_path().exists())
        .map(|(&ifindex, _)| ifindex)
        .collect();
    let (mut repinned, mut failed) = (Vec::new(), Vec::new());
    for ifindex in lost {
        let (link, pin, interface, rebuild) = held.remove(&ifindex).expect("listed").into_parts();
        match link.pin(&pin) {
            Ok(pinned) => {
                repinned.push(pin.display().to_string());
                held.insert(ifindex, rebuild(FdLink::from(pinned)));
            }
            // The link is dropped, hence detached.
            Err(e) => {
                tracing::warn!(%interface, error = %e, "cannot pin a link again; attaching afresh");
                failed.push(ifindex);
            }
        }
    }
    (repinned, failed)
}

/// Drops our hold on an attachment. With `Release::Detach` and a
/// `program_id`, a link that now runs another program (a newer agent's) is
/// left pinned.
fn release(att: Attachment, how: Release, program_id: Option<u32>) {
    let Attachment { status, link, pin } = att;
    if how == Release::Detach {
        let ours = program_id.is_none_or(|id| {
            read_pinned_xdp_link(&pin).map_or(true, |s| s.is_none_or(|s| s.prog_id == id))
        });
        if ours {
            if let Err(e) = detach_and_unpin(&pin) {
                tracing::warn!(error = %e, "cannot detach XDP link");
            }
        } else {
            tracing::info!(interface = %status.name, "XDP link belongs to a newer agent; leaving it");
        }
    }
    drop(link);
}

/// The mode the pinned link runs in, from the interface's XDP programs.
fn mode_of(iface: &Interface, state: &XdpLinkState) -> Option<AttachMode> {
    if iface.xdp.skb == state.prog_id {
        Some(AttachMode::Skb)
    } else if iface.xdp.drv == state.prog_id {
        Some(AttachMode::Native)
    } else {
        None
    }
}

/// Whether the loaded program `id` is a nodedns XDP program (of any agent,
/// any version): named like ours.
fn is_nodedns_program(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .is_some_and(|p| p.name_as_str() == Some(PROGRAM_NAME))
}

fn errno_of(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::IOError(io) => io.raw_os_error(),
        _ => None,
    }
}
