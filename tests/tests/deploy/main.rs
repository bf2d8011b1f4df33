//! The deploy tier: what ships, checked as a user would meet it. The
//! manifests in `deploy/` (offline schema validation, the security and
//! hand-over settings the README promises) and the README (every flag of
//! every subcommand documented), and the container image built from
//! `deploy/Dockerfile`, run with podman as the DaemonSet runs it.

mod image;
mod manifests;
mod readme;
