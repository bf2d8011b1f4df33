//! The API server source: `kube::runtime::watcher` streams for Services and
//! EndpointSlices (list + watch only, so a read-only ServiceAccount will do).
//!
//! A (re)list arrives as `Init`, `InitApply`..., `InitDone`; the objects are
//! buffered and applied as one replace, so a relist after `410 Gone` never
//! shows an empty window. Errors (dropped watches, 5xx, the API server down)
//! are retried with the backoff of [`super::retry`] while the last good
//! state keeps serving: names never turn into NXDOMAIN because we lost the
//! connection.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::metrics::ClusterMetrics;
use super::model::{ModelError, ObjectKey, ServiceInfo, SliceInfo};
use super::retry::{Progress, Retry};
use super::store::{Change, ClusterZone, SyncSource};

/// Server-side timeout of each watch call (`--watch-timeout-secs`). kube's
/// watcher also treats a watch that sends nothing for this long plus 5 s
/// (no event, no bookmark) as hung and reconnects, so 50 s restarts a
/// silently stuck watch within a minute (kube's default is 290 s). The
/// API server ends each watch after it, and the next resumes where it was:
/// a request a minute per resource, no relist.
pub const WATCH_TIMEOUT_SECS: u32 = 50;

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
    watch_timeout: u32,
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
    let config = watcher::Config::default().timeout(watch_timeout);
    tasks.spawn(run(
        Api::<Service>::all(client.clone()),
        config.clone(),
        services,
        zone.clone(),
        cancel.clone(),
    ));
    tasks.spawn(run(
        Api::<EndpointSlice>::all(client),
        config,
        slices,
        zone,
        cancel,
    ));
}

/// The next event of a kube watcher `stream`, errors retried here: logged
/// as [`Retry`] says, counted, and waited out. None once the stream ends
/// or `cancel` fires.
pub async fn next_event<K>(
    stream: &mut (impl Stream<Item = watcher::Result<Event<K>>> + Unpin),
    retry: &mut Retry,
    source: &'static str,
    metrics: &ClusterMetrics,
    cancel: &CancellationToken,
) -> Option<Event<K>> {
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return None,
            item = stream.next() => item,
        };
        let Some(item) = item else {
            tracing::error!(source, "watch stream ended; cluster state is frozen");
            return None;
        };
        metrics.event(source);
        match item {
            Ok(event) => {
                let progress = match &event {
                    Event::Init => Progress::Starting,
                    Event::InitApply(_) | Event::InitDone => Progress::Listed,
                    Event::Apply(_) | Event::Delete(_) => Progress::Changed,
                };
                if let Some(report) = retry.progress(progress, tokio::time::Instant::now()) {
                    tracing::info!(source, "{}", retry.describe(report, None));
                }
                if progress != Progress::Starting {
                    metrics.set_up(source, true);
                }
                return Some(event);
            }
            Err(err) => {
                metrics.error(source);
                metrics.set_up(source, false);
                let after = retry.error(tokio::time::Instant::now());
                match after.report {
                    Some(report) => {
                        let line = retry.describe(report, Some(&err.to_string()));
                        tracing::warn!(source, "{line}")
                    }
                    None => tracing::debug!(source, %err, retry_in = ?after.wait, "watch error"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(after.wait) => {}
                }
            }
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> ObjectKey {
    ObjectKey::new(
        obj.meta().namespace.as_deref().unwrap_or("default"),
        obj.meta().name.as_deref().unwrap_or_default(),
    )
}

async fn run<K, T>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind<K, T>,
    zone: Arc<ClusterZone>,
    cancel: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let metrics = zone.metrics().clone();
    let mut stream = std::pin::pin!(watcher(api, config));
    let mut retry = Retry::new(kind.source);
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
    while let Some(event) =
        next_event(&mut stream, &mut retry, kind.source, &metrics, &cancel).await
    {
        match event {
            Event::Init => relist = Vec::new(),
            Event::InitApply(obj) => {
                relist.extend(convert(&obj).map(|info| (kind.share)(&zone, info)))
            }
            Event::InitDone => {
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
            Event::Apply(obj) => {
                if let Some(info) = convert(&obj) {
                    zone.apply([(kind.upsert)((kind.share)(&zone, info))]);
                }
            }
            Event::Delete(obj) => zone.apply([(kind.delete)(key_of(&obj))]),
        }
    }
}
