//! The deploy tier: what ships, checked as a user would meet it. The
//! manifests in `deploy/` (offline schema validation, the security and
//! hand-over settings the README promises) and the README (every flag of
//! every subcommand documented), and `deploy/monitoring/`. Tests of the
//! container image built from `deploy/Dockerfile` belong here too.

mod manifests;
mod monitoring;
mod readme;
