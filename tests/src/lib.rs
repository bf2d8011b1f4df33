//! `nodedns_tests`: the one support library of the integration tests, the
//! demo and the benchmark. What goes where:
//!
//! - [`lab`]: throwaway network namespaces playing a node and its pods,
//!   daemons, pins, all behind guards; `require_root`.
//! - [`client`]: `dig`, `kdig`, `getent`, dnsperf and an in-process client,
//!   and the one parser of each one's output.
//! - [`agent`]: the real `dns-agent` in a lab node (one spec, one readiness
//!   check) and what tests read from it; [`metrics`] and [`http`] for its
//!   pages.
//! - [`container`], [`daemonset`]: the agent's container image under
//!   podman, started as `deploy/daemonset.yaml` says.
//! - [`upstream`], [`hostile`], [`fakeapi`]: stand-ins for the agent's
//!   peers (dnsmasq, a misbehaving upstream, the Kubernetes API server);
//!   [`spoofer`]: the local attacker who forges the upstream's replies.
//! - [`resolver`], [`cluster`]: the resolver and the cluster-state sources
//!   in-process, without the binary.
//! - [`xdp`], [`frames`]: the XDP program through `BPF_PROG_TEST_RUN`.
//! - [`records`], [`repo`]: DNS test data and the repository's files.
//! - [`internals`]: every dns-agent item used in-process, named once.

pub mod agent;
pub mod client;
pub mod cluster;
pub mod container;
pub mod daemonset;
pub mod fakeapi;
pub mod frames;
pub mod hostile;
pub mod http;
pub mod internals;
pub mod lab;
pub mod metrics;
pub mod records;
pub mod repo;
pub mod resolver;
pub mod spoofer;
pub mod upstream;
pub mod xdp;
