//! The interfaces map (`NODEDNS_IFACES`): for every interface of the
//! namespace, the destination MAC addresses the XDP program answers
//! queries to, as the stack would take them: the interface's own and, on a
//! bridge port, the bridge's. It is rebuilt from every link dump, before
//! attaching, so the program never runs on an interface it cannot check
//! (it would pass every query there, counted as `pass_mac`). Not pinned:
//! each agent fills its own before its program takes over the links
//! (docs/design.md#accepted-frames).

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData};
use dns_common::{InterfaceMacs, MAP_INTERFACES, MAX_INTERFACES};

use crate::kernel::netlink::Interface;

pub(crate) struct InterfaceMap {
    map: HashMap<MapData, u32, InterfaceMacs>,
    /// What the map holds, so a rescan writes only what changed.
    written: BTreeMap<u32, InterfaceMacs>,
    /// A write failed (the map is full, ...); warned about once.
    warned: bool,
}

impl InterfaceMap {
    pub fn new(map: HashMap<MapData, u32, InterfaceMacs>) -> Self {
        Self {
            map,
            written: BTreeMap::new(),
            warned: false,
        }
    }

    /// Brings the map in line with `interfaces` (the namespace's links).
    pub fn sync(&mut self, interfaces: &[Interface]) {
        let wanted = wanted(interfaces);
        let map = &mut self.map;
        self.written.retain(|ifindex, _| {
            let keep = wanted.contains_key(ifindex);
            if !keep {
                // Already gone from the map is as good as removed.
                let _ = map.remove(ifindex);
            }
            keep
        });
        for (ifindex, macs) in wanted {
            if self.written.get(&ifindex) == Some(&macs) {
                continue;
            }
            match self.map.insert(ifindex, macs, 0) {
                Ok(()) => {
                    self.written.insert(ifindex, macs);
                }
                Err(e) if !self.warned => {
                    self.warned = true;
                    tracing::warn!(ifindex, map = MAP_INTERFACES, capacity = MAX_INTERFACES,
                        error = %e, "cannot record an interface's MAC address; the kernel passes its queries to userspace (pass_mac)");
                }
                Err(_) => {}
            }
        }
    }
}

/// The map's content for these interfaces. Links without an Ethernet
/// address (loopback's is all zero) have nothing to match and get no entry.
fn wanted(interfaces: &[Interface]) -> BTreeMap<u32, InterfaceMacs> {
    let by_index: BTreeMap<u32, &Interface> = interfaces.iter().map(|i| (i.ifindex, i)).collect();
    interfaces
        .iter()
        .filter_map(|iface| {
            let mac = iface.mac.filter(|m| *m != [0; 6])?;
            let bridge_mac = iface
                .master
                .and_then(|m| by_index.get(&m))
                .filter(|m| m.kind.as_deref() == Some("bridge"))
                .and_then(|m| m.mac)
                .unwrap_or([0; 6]);
            Some((iface.ifindex, InterfaceMacs { mac, bridge_mac }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::XdpPrograms;

    fn iface(ifindex: u32, kind: Option<&str>, mac: [u8; 6], master: Option<u32>) -> Interface {
        Interface {
            ifindex,
            name: format!("if{ifindex}"),
            kind: kind.map(str::to_string),
            mac: Some(mac),
            master,
            xdp: XdpPrograms::default(),
        }
    }

    #[test]
    fn bridge_ports_also_take_the_bridges_address() {
        let bridge = [2, 0, 0, 0, 0, 0xb1];
        let bond = [2, 0, 0, 0, 0, 0xb2];
        let all = [
            iface(1, None, [0; 6], None),
            iface(2, Some("bridge"), bridge, None),
            iface(3, Some("veth"), [2, 0, 0, 0, 0, 3], Some(2)),
            iface(4, Some("veth"), [2, 0, 0, 0, 0, 4], None),
            iface(5, Some("bond"), bond, None),
            iface(6, None, [2, 0, 0, 0, 0, 6], Some(5)),
        ];
        let w = wanted(&all);
        assert!(!w.contains_key(&1), "loopback has no address to match");
        assert_eq!(w[&3].mac, [2, 0, 0, 0, 0, 3]);
        assert_eq!(w[&3].bridge_mac, bridge);
        assert_eq!(w[&4].bridge_mac, [0; 6]);
        // A bond's slaves receive for the bond's address, which is theirs
        // already; only bridges deliver to an address of their own.
        assert_eq!(w[&6].bridge_mac, [0; 6]);
        assert_eq!(w[&2].mac, bridge);
    }
}
