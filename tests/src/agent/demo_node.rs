//! The most common e2e fixture: a one-pod lab node whose agent serves the
//! demo cluster from an editable copy of the example manifests, forwarding
//! to a dnsmasq in the node.

use std::path::{Path, PathBuf};

use super::{Agent, AgentSpec, Source};
use crate::lab::{Lab, Pod};
use crate::metrics::Metrics;
use crate::repo::copy_examples;
use crate::upstream::{Dnsmasq, DnsmasqSpec};

/// The agent, its upstream and its manifests in a one-pod lab. Field order
/// is drop order: the agent stops first, the lab goes last.
pub struct DemoNode {
    pub agent: Agent,
    pub upstream: Dnsmasq,
    /// The agent's manifests folder: a copy of the examples, to edit with
    /// [`crate::repo::write_atomic`].
    pub manifests: PathBuf,
    pub lab: Lab,
}

impl DemoNode {
    /// Copies the examples (`add_manifests` may write more files into the
    /// copy before the agent reads it), starts `upstream` in the node, then
    /// the agent with `args`, and waits until it serves.
    pub fn start(upstream: &DnsmasqSpec, args: &[&str], add_manifests: impl FnOnce(&Path)) -> Self {
        let lab = Lab::new(1).unwrap();
        let manifests = copy_examples(&lab.log_dir().join("manifests"));
        add_manifests(&manifests);
        let upstream = upstream.start(&lab, lab.node(), "upstream").unwrap();
        let agent = AgentSpec::new(Source::Manifests(manifests.clone()))
            .upstream(upstream.addr())
            .args(args)
            .start(&lab, "dns-agent");
        Self {
            agent,
            upstream,
            manifests,
            lab,
        }
    }

    /// The lab's one pod.
    pub fn pod(&self) -> &Pod {
        self.lab.pod(0)
    }

    /// The agent's `/metrics`, scraped now.
    pub fn metrics(&self) -> Metrics {
        self.agent.metrics(self.lab.node())
    }
}
