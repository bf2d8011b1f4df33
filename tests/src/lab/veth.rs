//! A veth pair between two lab namespaces, removed on drop.

use super::command::ip;
use super::error::Result;
use super::names::check_ifname;
use super::netns::Netns;

/// A veth pair created directly inside two namespaces, so neither end ever
/// appears in the namespace the tests run in.
#[derive(Debug)]
pub struct VethPair {
    host_netns: String,
    host: String,
    peer: String,
}

impl VethPair {
    /// Creates `host` in `host_netns` (the node side, where XDP attaches) and
    /// `peer` in `peer_netns` (the pod's `eth0`). Both ends are left down.
    pub fn create(host_netns: &Netns, host: &str, peer_netns: &Netns, peer: &str) -> Result<Self> {
        check_ifname(host)?;
        check_ifname(peer)?;
        ip(&[
            "-n",
            host_netns.name(),
            "link",
            "add",
            host,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            peer_netns.name(),
        ])?;
        Ok(Self {
            host_netns: host_netns.name().to_string(),
            host: host.to_string(),
            peer: peer.to_string(),
        })
    }

    /// The node-side interface name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The pod-side interface name.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both. If the namespace is already gone the
        // pair went with it, which is what we want.
        if Netns::exists(&self.host_netns)
            && let Err(e) = ip(&["-n", &self.host_netns, "link", "del", &self.host])
        {
            eprintln!(
                "lab: could not remove veth {} in {}: {e}",
                self.host, self.host_netns
            );
        }
    }
}
