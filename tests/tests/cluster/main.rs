//! The cluster tier: the cluster-state sources in-process (no agent
//! binary), from a manifests folder and from the fake API server with the
//! real kube client, checked through the zone they build. Scale figures
//! are printed, never asserted.

mod apiserver;
mod apiserver_retry;
mod manifests;
mod manifests_watch;
mod scale;
