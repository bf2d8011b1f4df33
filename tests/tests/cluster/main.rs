//! The cluster tier: the cluster-state sources in-process.

mod apiserver;
mod manifests;
mod scale;
