//! The interface that carries the listen addresses: a `dummy` link we
//! create (like NodeLocal DNSCache's `nodelocaldns`), or, where the kernel
//! has no dummy driver, the addresses added to `lo`. On exit exactly what
//! was added is removed, unless the agent is told to keep it for a restart.

use std::io;
use std::net::IpAddr;

use crate::health::{Fault, NodeHealth, Repair};
use crate::kernel::netlink::{Netlink, if_index};

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("cannot open a route netlink socket: {0} (the agent needs CAP_NET_ADMIN)")]
    Netlink(#[source] io::Error),
    #[error(
        "cannot create interface {name}: {source} (CAP_NET_ADMIN needed; or pre-configure the addresses and pass --no-create-interface)"
    )]
    CreateLink { name: String, source: io::Error },
    #[error("cannot bring interface {name} up: {source}")]
    LinkUp { name: String, source: io::Error },
    #[error("cannot remove {what}: {source}")]
    Remove { what: String, source: io::Error },
    #[error("cannot add address {addr} to {name}: {source}")]
    AddAddress {
        name: String,
        addr: IpAddr,
        source: io::Error,
    },
}

/// What we added, so exactly that is removed.
#[derive(Debug, Default)]
pub struct ListenInterface {
    /// The dummy link we created (deleting it removes its addresses).
    link: Option<(String, u32)>,
    /// Addresses we added to an interface we did not create (`lo`, or an
    /// existing link of our name, which may not be ours to delete).
    added: Vec<(u32, IpAddr)>,
    keep: bool,
    /// Where the addresses belong, when this agent put them there (not
    /// with `--no-create-interface`): what [`ListenInterface::repair`]
    /// restores.
    owned: Option<Owned>,
}

#[derive(Debug, Clone)]
struct Owned {
    /// The named interface, or `lo` where the kernel has no dummy links.
    name: String,
    on_named: bool,
}

/// The listen addresses that are not local now. A bind to the address is
/// the cheapest exact test: the kernel refuses it (`EADDRNOTAVAIL`) exactly
/// when no interface carries it.
pub fn missing(addrs: &[IpAddr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|&addr| {
            std::net::UdpSocket::bind((addr, 0))
                .is_err_and(|e| e.raw_os_error() == Some(libc::EADDRNOTAVAIL))
        })
        .collect()
}

impl ListenInterface {
    /// Makes `addrs` local: on a dummy link `name`, else on `lo`.
    pub fn setup(name: &str, addrs: &[IpAddr], keep: bool) -> Result<Self, InterfaceError> {
        let mut nl = Netlink::open().map_err(InterfaceError::Netlink)?;
        let mut this = Self {
            link: None,
            added: Vec::new(),
            keep,
            owned: None,
        };
        let (use_named, created) = match nl.add_dummy(name) {
            Ok(()) => {
                tracing::info!(
                    interface = name,
                    "created dummy interface for the listen addresses"
                );
                (true, true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // A dummy of our name was left by a previous agent told to
                // keep it: it is ours again. Anything else is used but never
                // deleted; only the addresses we add are removed.
                let dummy = if_index(name)
                    .and_then(|i| nl.link_kind(i).ok().flatten())
                    .is_some_and(|kind| kind == "dummy");
                tracing::info!(
                    interface = name,
                    adopted = dummy,
                    "interface already exists: using it"
                );
                (true, dummy)
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::warn!(
                    interface = name,
                    "this kernel has no `dummy` interface type: putting the listen addresses on `lo` instead"
                );
                (false, false)
            }
            Err(source) => {
                return Err(InterfaceError::CreateLink {
                    name: name.into(),
                    source,
                });
            }
        };
        let (dev, index) = if use_named {
            let index = if_index(name).ok_or_else(|| InterfaceError::CreateLink {
                name: name.into(),
                source: io::Error::new(io::ErrorKind::NotFound, "created but not found"),
            })?;
            if created {
                this.link = Some((name.to_string(), index));
            }
            (name.to_string(), index)
        } else {
            ("lo".to_string(), if_index("lo").unwrap_or(1))
        };
        this.owned = Some(Owned {
            name: dev.clone(),
            on_named: use_named,
        });
        nl.set_up(index).map_err(|source| InterfaceError::LinkUp {
            name: dev.clone(),
            source,
        })?;
        for &addr in addrs {
            match nl.add_address(index, addr, !use_named) {
                Ok(()) if !created => this.added.push((index, addr)),
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    // Already there: not ours to remove later.
                    tracing::info!(interface = dev, %addr, "listen address already present");
                }
                Err(source) => {
                    let err = InterfaceError::AddAddress {
                        name: dev,
                        addr,
                        source,
                    };
                    this.cleanup();
                    return Err(err);
                }
            }
        }
        Ok(this)
    }

    /// Makes `missing` listen addresses local again (docs/design.md#self-repair):
    /// the dummy interface is created again if it is gone, brought up, and
    /// the addresses added. `Ok(false)`: not ours to repair
    /// (`--no-create-interface`: whoever configured the addresses owns them).
    pub fn repair(&mut self, missing: &[IpAddr]) -> Result<bool, InterfaceError> {
        let Some(owned) = self.owned.clone() else {
            return Ok(false);
        };
        let mut nl = Netlink::open().map_err(InterfaceError::Netlink)?;
        let index = match if_index(&owned.name) {
            Some(index) => index,
            None if owned.on_named => {
                match nl.add_dummy(&owned.name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(source) => {
                        return Err(InterfaceError::CreateLink {
                            name: owned.name,
                            source,
                        });
                    }
                }
                let index = if_index(&owned.name).ok_or_else(|| InterfaceError::CreateLink {
                    name: owned.name.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "created but not found"),
                })?;
                tracing::warn!(
                    interface = owned.name,
                    "the listen interface was removed; created it again"
                );
                // Ours again, whoever made the one that was removed.
                self.link = Some((owned.name.clone(), index));
                self.added.clear();
                index
            }
            None => {
                return Err(InterfaceError::LinkUp {
                    name: owned.name,
                    source: io::Error::new(io::ErrorKind::NotFound, "no such interface"),
                });
            }
        };
        nl.set_up(index).map_err(|source| InterfaceError::LinkUp {
            name: owned.name.clone(),
            source,
        })?;
        for &addr in missing {
            match nl.add_address(index, addr, !owned.on_named) {
                Ok(()) => {
                    let ours = self.link.as_ref().is_some_and(|(_, i)| *i == index);
                    if !ours && !self.added.contains(&(index, addr)) {
                        self.added.push((index, addr));
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(InterfaceError::AddAddress {
                        name: owned.name,
                        addr,
                        source,
                    });
                }
            }
        }
        Ok(true)
    }

    /// Removes what setup added (unless keeping); safe to call twice.
    pub fn cleanup(&mut self) {
        self.owned = None;
        if self.keep {
            if self.link.is_some() || !self.added.is_empty() {
                tracing::info!("keeping the listen interface and addresses for the next agent");
            }
            self.link = None;
            self.added.clear();
            return;
        }
        let Ok(mut nl) = Netlink::open() else {
            tracing::warn!("cannot open netlink to remove the listen interface");
            return;
        };
        if let Some((name, index)) = self.link.take() {
            match nl.delete_link(index) {
                Ok(()) => tracing::info!(interface = name, "removed the listen interface"),
                Err(e) => {
                    tracing::warn!(interface = name, error = %e, "could not remove the listen interface")
                }
            }
        }
        for (index, addr) in self.added.drain(..) {
            if let Err(e) = nl.delete_address(index, addr) {
                tracing::warn!(%addr, error = %e, "could not remove a listen address we added");
            }
        }
    }
}

/// How often the listen addresses are checked: a bind per address, so the
/// idle cost stays near nothing.
pub const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks the listen addresses every [`CHECK_INTERVAL`] until `cancel`,
/// repairs what this agent put there, and reports to `/healthz` what it
/// cannot repair (docs/design.md#self-repair).
pub async fn watch(
    interface: std::sync::Arc<std::sync::Mutex<ListenInterface>>,
    addrs: Vec<IpAddr>,
    health: std::sync::Arc<NodeHealth>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let gone = missing(&addrs);
        if gone.is_empty() {
            health.clear(Fault::Address);
            continue;
        }
        let repaired = interface
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .repair(&gone);
        let still = missing(&addrs);
        match repaired {
            Ok(true) if still.is_empty() => {
                tracing::warn!(addresses = ?gone, "listen addresses were removed from the node; added them again");
                health.repaired(Repair::address);
                health.clear(Fault::Address);
            }
            Ok(true) => health.fault(
                Fault::Address,
                format!(
                    "listen addresses {still:?} are missing and did not come back when added again"
                ),
            ),
            Ok(false) => health.fault(
                Fault::Address,
                format!(
                    "listen addresses {still:?} are on no interface (--no-create-interface: \
                     whoever configured them must add them back)"
                ),
            ),
            Err(e) => health.fault(
                Fault::Address,
                format!("listen addresses {still:?} are missing and cannot be added again: {e}"),
            ),
        }
    }
}

/// `dns-agent cleanup`: removes what a (kept) agent left, by name. The link
/// is deleted only if it is a `dummy` (so a mistyped name never takes down
/// a real interface); otherwise `addrs` are removed from it. `addrs` are
/// also removed from `lo` (the fallback). Missing pieces are not errors.
pub fn remove_all(name: &str, addrs: &[IpAddr]) -> Result<(), InterfaceError> {
    let mut nl = Netlink::open().map_err(InterfaceError::Netlink)?;
    let absent = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV) | Some(libc::ENOENT)
        )
    };
    let mut from = Vec::new();
    if let Some(index) = if_index(name) {
        let kind = nl
            .link_kind(index)
            .map_err(|source| InterfaceError::Remove {
                what: format!("interface {name}"),
                source,
            })?;
        if kind.as_deref() == Some("dummy") {
            nl.delete_link(index)
                .map_err(|source| InterfaceError::Remove {
                    what: format!("interface {name}"),
                    source,
                })?;
            tracing::info!(interface = name, "removed the listen interface");
        } else {
            from.push((name, index));
        }
    }
    if let Some(lo) = if_index("lo") {
        from.push(("lo", lo));
    }
    for (dev, index) in from {
        for &addr in addrs {
            match nl.delete_address(index, addr) {
                Ok(()) => tracing::info!(interface = dev, %addr, "removed listen address"),
                Err(e) if absent(&e) => {}
                Err(source) => {
                    return Err(InterfaceError::Remove {
                        what: format!("{addr} on {dev}"),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

impl Drop for ListenInterface {
    fn drop(&mut self) {
        self.cleanup();
    }
}
