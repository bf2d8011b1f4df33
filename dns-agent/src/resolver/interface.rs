//! The interface that carries the listen addresses: a `dummy` link we
//! create (like NodeLocal DNSCache's `nodelocaldns`), or, where the kernel
//! has no dummy driver, the addresses added to `lo`. On exit exactly what
//! was added is removed, unless the agent is told to keep it for a restart.

use std::io;
use std::net::IpAddr;

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
}

impl ListenInterface {
    /// Makes `addrs` local: on a dummy link `name`, else on `lo`.
    pub fn setup(name: &str, addrs: &[IpAddr], keep: bool) -> Result<Self, InterfaceError> {
        let mut nl = Netlink::open().map_err(InterfaceError::Netlink)?;
        let mut this = Self {
            link: None,
            added: Vec::new(),
            keep,
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

    /// Removes what setup added (unless keeping); safe to call twice.
    pub fn cleanup(&mut self) {
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
