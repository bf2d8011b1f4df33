//! Cluster-state metrics (`nodedns_cluster_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels: `source` = services | endpointslices | manifests | custom.
pub type SourceLabels = [(&'static str, &'static str); 1];

#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    pub services: Gauge,
    pub endpoint_slices: Gauge,
    pub endpoints: Gauge,
    pub memory_bytes: Gauge,
    pub ready: Gauge,
    pub generation: Gauge,
    pub custom_records: Gauge,
    pub source_events: Family<SourceLabels, Counter>,
    pub source_errors: Family<SourceLabels, Counter>,
    pub source_up: Family<SourceLabels, Gauge>,
    pub manifest_files: Gauge,
    pub manifest_reads: Counter,
    pub manifest_files_refused: Gauge,
    pub manifest_duplicates: Gauge,
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "services",
            "Services in the cluster state",
            self.services.clone(),
        );
        r.register(
            "endpointslices",
            "EndpointSlices in the cluster state",
            self.endpoint_slices.clone(),
        );
        r.register(
            "endpoints",
            "Endpoints in all EndpointSlices",
            self.endpoints.clone(),
        );
        r.register(
            "memory_bytes",
            "Approximate bytes held for cluster state (objects, views, indexes)",
            self.memory_bytes.clone(),
        );
        r.register(
            "ready",
            "1 once every source finished its first full sync",
            self.ready.clone(),
        );
        r.register(
            "generation",
            "Snapshot generation (moves on every change)",
            self.generation.clone(),
        );
        r.register(
            "custom_records",
            "Names in the custom host records",
            self.custom_records.clone(),
        );
        r.register(
            "source_events",
            "Events received from each source",
            self.source_events.clone(),
        );
        r.register(
            "source_errors",
            "Errors from each source (watch failures, bad files, bad objects)",
            self.source_errors.clone(),
        );
        r.register(
            "source_up",
            "1 while a watched source answers, 0 while its watch fails and is retried with backoff",
            self.source_up.clone(),
        );
        r.register(
            "manifest_files",
            "Manifest files loaded from --manifests",
            self.manifest_files.clone(),
        );
        r.register(
            "manifest_reads",
            "Manifest files read: all at start, then only those an event names (and all after lost events)",
            self.manifest_reads.clone(),
        );
        r.register(
            "manifest_files_refused",
            "Manifest files not loaded because of --manifests-max-files (each logged as an error)",
            self.manifest_files_refused.clone(),
        );
        r.register(
            "manifest_duplicates",
            "Objects defined in more than one manifest file (the first file by path wins)",
            self.manifest_duplicates.clone(),
        );
    }

    pub fn event(&self, source: &'static str) {
        self.source_events
            .get_or_create(&[("source", source)])
            .inc();
    }

    pub fn set_up(&self, source: &'static str, up: bool) {
        self.source_up
            .get_or_create(&[("source", source)])
            .set(i64::from(up));
    }

    pub fn error(&self, source: &'static str) {
        self.source_errors
            .get_or_create(&[("source", source)])
            .inc();
    }
}
