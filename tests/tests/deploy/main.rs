//! The deploy tier: what ships (manifests, README).

mod manifests;
mod readme;
