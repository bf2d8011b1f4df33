//! Cluster-state metrics (`nodedns_cluster_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::metric_families;

/// Labels: `source` = services | endpointslices | manifests | custom.
pub type SourceLabels = [(&'static str, &'static str); 1];

metric_families! {
    #[derive(Debug, Clone, Default)]
    pub struct ClusterMetrics, registered later by pub fn register, under "cluster" {
        /// Services in the cluster state
        pub services: Gauge,
        /// EndpointSlices in the cluster state
        pub endpoint_slices: Gauge as "endpointslices",
        /// Endpoints in all EndpointSlices
        pub endpoints: Gauge,
        /// Approximate bytes held for cluster state (objects, views, indexes)
        pub memory_bytes: Gauge,
        /// 1 once every source finished its first full sync
        pub ready: Gauge,
        /// Snapshot generation (moves on every change)
        pub generation: Gauge,
        /// Names in the custom host records
        pub custom_records: Gauge,
        /// Events received from each source
        pub source_events: Family<SourceLabels, Counter>,
        /// Errors from each source (watch failures, bad files, bad objects)
        pub source_errors: Family<SourceLabels, Counter>,
        /// 1 while a watched source answers, 0 while its watch fails and is retried with backoff
        pub source_up: Family<SourceLabels, Gauge>,
        /// Manifest files loaded from --manifests
        pub manifest_files: Gauge,
        /// Manifest files read: all at start, then only those an event names (and all after
        /// lost events)
        pub manifest_reads: Counter,
        /// Manifest files not loaded because of --manifests-max-files (each logged as an error)
        pub manifest_files_refused: Gauge,
        /// Objects defined in more than one manifest file (the first file by path wins)
        pub manifest_duplicates: Gauge,
    }
}

impl ClusterMetrics {
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
