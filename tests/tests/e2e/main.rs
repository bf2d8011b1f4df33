//! The e2e tier: the real `dns-agent` binary in a lab node
//! (`nodedns_tests::agent`), XDP on the pods' host-side veths, queried by
//! real clients in the pods (`dig`, `kdig`, glibc `getent`, dnsperf), with
//! real upstreams and the fake API server. What a user of a node would see:
//! cluster records (and their conformance to the schema and CoreDNS),
//! promotion to the kernel, restarts and hand-overs, and what operators
//! watch (metrics, logs).

mod adopt;
mod cluster;
mod conformance;
mod failopen;
mod fairness;
mod observe;
mod promotion;
mod repair;
mod restart;
mod spoofing;
mod start;
mod xdp;
mod xdp_frames;
