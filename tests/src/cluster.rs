//! The cluster-state sources in-process, without the agent binary: started
//! from `ClusterArgs` (a manifests folder, the fake API server), stopped on
//! drop, and the zone's answers as strings a test compares.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};
use tokio_util::sync::CancellationToken;

use crate::fakeapi::FakeApi;
use crate::fakeapi::fixtures::service;
use crate::internals::{ClusterArgs, ClusterHandle, Zone, ZoneLookup, new_registry, start_cluster};
use crate::lab::wait_until;
use crate::records::name;

/// The running sources; dropping it cancels them.
pub struct ClusterSources {
    pub handle: ClusterHandle,
    cancel: CancellationToken,
}

impl ClusterSources {
    /// Starts the sources `args` name (panics if they cannot start).
    pub async fn start(args: &ClusterArgs) -> Self {
        let cancel = CancellationToken::new();
        let mut registry = new_registry();
        let handle = start_cluster(args, &mut registry, cancel.clone())
            .await
            .expect("cluster start");
        Self { handle, cancel }
    }

    /// Starts the sources and waits, at most `deadline`, for the first full
    /// sync.
    pub async fn start_synced(args: &ClusterArgs, deadline: Duration) -> Self {
        let sources = Self::start(args).await;
        sources.wait_synced(deadline).await;
        sources
    }

    /// Waits, at most `deadline`, for the first full sync; panics after.
    pub async fn wait_synced(&self, deadline: Duration) {
        tokio::time::timeout(deadline, self.handle.wait_until_ready())
            .await
            .unwrap_or_else(|_| panic!("no first full sync within {deadline:?}"));
    }

    /// Stops the sources (their tasks end; `handle.tasks` drains).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for ClusterSources {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What the start of the sources `args` name fails with.
pub async fn start_error(args: &ClusterArgs) -> String {
    let mut registry = new_registry();
    match start_cluster(args, &mut registry, CancellationToken::new()).await {
        Ok(_) => panic!("start should fail"),
        Err(e) => e.to_string(),
    }
}

/// `zone`'s answer to `qname`/`qtype` as strings: the records' data sorted,
/// or `NODATA`, `NXDOMAIN`, another rcode, or the lookup's outcome
/// (`NotOurs`, `NotReady`).
pub fn answer(zone: &dyn Zone, qname: &str, qtype: RecordType) -> Vec<String> {
    match lookup(zone, qname, qtype) {
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NoError && !a.answers.is_empty() => {
            let mut v: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
            v.sort();
            v
        }
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NoError => vec!["NODATA".into()],
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NXDomain => vec!["NXDOMAIN".into()],
        ZoneLookup::Answer(a) => vec![format!("{:?}", a.rcode)],
        other => vec![format!("{other:?}")],
    }
}

/// `zone`'s lookup of `qname`/`qtype`.
pub fn lookup(zone: &dyn Zone, qname: &str, qtype: RecordType) -> ZoneLookup {
    zone.lookup(&LowerName::from(name(qname)), qtype)
}

/// Asserts [`answer`] for every `(name, qtype, expected)` row.
#[track_caller]
pub fn assert_answers(zone: &dyn Zone, rows: &[(&str, RecordType, &[&str])]) {
    for (qname, qtype, expected) in rows {
        assert_eq!(answer(zone, qname, *qtype), *expected, "{qname} {qtype}");
    }
}

/// Waits up to `bound` until [`answer`] gives every `(name, qtype,
/// expected)` row; returns how long it took.
pub async fn wait_answers(
    zone: &dyn Zone,
    what: &str,
    bound: Duration,
    rows: &[(&str, RecordType, &[&str])],
) -> Duration {
    let answered = || {
        rows.iter()
            .all(|(qname, qtype, want)| answer(zone, qname, *qtype) == *want)
    };
    wait_until(what, bound, answered).await.unwrap()
}

/// Applies a new Service `name` in `default` with the ClusterIP `ip` to
/// `api`, and waits up to `bound` until `zone` answers it (`what` names
/// the wait); returns how long it took.
pub async fn add_service_seen(
    api: &FakeApi,
    zone: &dyn Zone,
    what: &str,
    (name, ip): (&str, &str),
    bound: Duration,
) -> Duration {
    api.apply(service("default", name, &[ip], &[]));
    let qname = format!("{name}.default.svc.cluster.local.");
    wait_answers(zone, what, bound, &[(&qname, RecordType::A, &[ip])]).await
}

/// Manifests of ExternalName Services in namespace `default`, one YAML
/// document for each `(name, externalName)`, ready to join with `---`.
pub fn external_names(services: &[(&str, &str)]) -> String {
    services
        .iter()
        .map(|(name, target)| {
            format!(
                "apiVersion: v1\nkind: Service\n\
                 metadata: {{name: {name}, namespace: default}}\n\
                 spec: {{type: ExternalName, externalName: {target}}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
