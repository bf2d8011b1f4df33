//! The API server source: `kube::runtime::watcher` streams for Services and
//! EndpointSlices (list + watch only, so a read-only ServiceAccount will do).
//!
//! A (re)list arrives as `Init`, `InitApply`..., `InitDone`; the objects are
//! buffered and applied as one replace, so a relist after `410 Gone` never
//! shows an empty window. Errors (dropped watches, 5xx, the API server down)
//! are retried with `default_backoff()` while the last good state keeps
//! serving: names never turn into NXDOMAIN because we lost the connection.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::model::{ModelError, ObjectKey, ServiceInfo, SliceInfo};
use super::store::{Change, ClusterZone, SyncSource};

/// Server-side timeout of each watch call. kube's watcher also treats a
/// watch that sends nothing for this long (plus a margin) as hung and
/// reconnects, so this bounds how long a silently stuck connection delays
/// updates (kube's default is 290 s).
pub const WATCH_TIMEOUT_SECS: u32 = 120;

/// How one kind of object becomes changes.
struct Kind<K, T> {
    source: &'static str,
    sync: SyncSource,
    convert: fn(&K) -> Result<T, ModelError>,
    /// The object as the store holds it when unchanged.
    share: fn(&ClusterZone, T) -> Arc<T>,
    upsert: fn(Arc<T>) -> Change,
    delete: fn(ObjectKey) -> Change,
    replace: fn(Vec<Arc<T>>) -> Change,
}

/// Spawns the Service and EndpointSlice watchers.
pub fn spawn(
    client: Client,
    zone: Arc<ClusterZone>,
    tasks: &mut JoinSet<()>,
    cancel: CancellationToken,
) {
    let services = Kind {
        source: "services",
        sync: SyncSource::Services,
        convert: ServiceInfo::from_service,
        share: ClusterZone::share_service,
        upsert: Change::UpsertService,
        delete: Change::DeleteService,
        replace: Change::ReplaceServices,
    };
    let slices = Kind {
        source: "endpointslices",
        sync: SyncSource::EndpointSlices,
        convert: SliceInfo::from_slice,
        share: ClusterZone::share_slice,
        upsert: Change::UpsertSlice,
        delete: Change::DeleteSlice,
        replace: Change::ReplaceSlices,
    };
    tasks.spawn(run(
        Api::<Service>::all(client.clone()),
        services,
        zone.clone(),
        cancel.clone(),
    ));
    tasks.spawn(run(Api::<EndpointSlice>::all(client), slices, zone, cancel));
}

fn key_of<K: Resource>(obj: &K) -> ObjectKey {
    ObjectKey::new(
        obj.meta().namespace.as_deref().unwrap_or("default"),
        obj.meta().name.as_deref().unwrap_or_default(),
    )
}

async fn run<K, T>(api: Api<K>, kind: Kind<K, T>, zone: Arc<ClusterZone>, cancel: CancellationToken)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let metrics = zone.metrics().clone();
    let stream =
        watcher(api, watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // The relist in progress. Its size is the cluster's object count: it
    // cannot be bounded lower without giving up the atomic swap. Objects
    // that did not change are the store's own (`share`), so until the swap
    // only the changed ones exist twice.
    let mut relist: Vec<Arc<T>> = Vec::new();
    let convert = |obj: &K| match (kind.convert)(obj) {
        Ok(info) => Some(info),
        Err(err) => {
            // One bad object must not take the others down with it.
            tracing::warn!(source = kind.source, object = %key_of(obj), %err, "skipping object");
            metrics.error(kind.source);
            None
        }
    };
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else {
            tracing::error!(
                source = kind.source,
                "watch stream ended; cluster state is frozen"
            );
            return;
        };
        metrics.event(kind.source);
        match event {
            Ok(Event::Init) => relist = Vec::new(),
            Ok(Event::InitApply(obj)) => {
                relist.extend(convert(&obj).map(|info| (kind.share)(&zone, info)))
            }
            Ok(Event::InitDone) => {
                let list = std::mem::take(&mut relist);
                tracing::info!(
                    source = kind.source,
                    objects = list.len(),
                    "full list applied"
                );
                zone.apply([(kind.replace)(list)]);
                zone.mark_synced(kind.sync);
                super::release_freed_memory();
            }
            Ok(Event::Apply(obj)) => {
                if let Some(info) = convert(&obj) {
                    zone.apply([(kind.upsert)(Arc::new(info))]);
                }
            }
            Ok(Event::Delete(obj)) => zone.apply([(kind.delete)(key_of(&obj))]),
            Err(err) => {
                metrics.error(kind.source);
                tracing::warn!(source = kind.source, %err, "watch error; retrying with backoff, last good state keeps serving");
            }
        }
    }
}
