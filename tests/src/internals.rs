//! Every dns-agent item the tests drive in-process, named here once: the
//! test binaries and the rest of this library import them from this module,
//! so when a module of the agent moves, this file is the one to fix.

pub use dns_agent::answer::AnswerSections;
pub use dns_agent::cluster::{
    Change, ClusterArgs, ClusterHandle, ClusterZone, ServiceInfo, SliceInfo, SyncSource,
    ZoneConfig, start as start_cluster,
};
pub use dns_agent::fastpath::loader::build_config;
pub use dns_agent::fastpath::object::EBPF_OBJECT;
pub use dns_agent::fastpath::{
    AttachMode, ExitPolicy, FastPath, FastPathArgs, FastPathError, SkipReason, XdpModeArg,
    cleanup as fastpath_cleanup,
};
pub use dns_agent::health::{NodeHealth, Repair};
pub use dns_agent::inspect::{inspect as fastpath_inspect, snapshot as fastpath_snapshot};
pub use dns_agent::kernel::netlink::{Netlink, if_index};
pub use dns_agent::metrics::coredns::Coredns;
pub use dns_agent::metrics::{Registry, new_registry};
pub use dns_agent::promotion::encoding::{
    EntrySpec, boot_time_ns, encode as encode_entry, key_for,
};
pub use dns_agent::promotion::{AnswerSink, MapSink, MemorySink, SinkError};
pub use dns_agent::resolver::interface::{ListenInterface, remove_all as remove_listen_interface};
pub use dns_agent::resolver::metrics::ResolverMetrics;
pub use dns_agent::resolver::transparent::Query as TransparentQuery;
pub use dns_agent::resolver::{ResolverArgs, ResolverDeps, Sink, start as start_resolver};
pub use dns_agent::zone::{ForwardPolicy, Zone, ZoneLookup};
