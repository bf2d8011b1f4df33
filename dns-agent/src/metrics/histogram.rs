//! A histogram that takes many equal observations at once. The kernel's
//! answers reach the CoreDNS duration histogram as a count per scrape (see
//! [`super::coredns`]), which prometheus-client's histogram could only take
//! one observation at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

#[derive(Clone, Debug)]
pub struct BulkHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the `+Inf` bucket is implied.
    bounds: &'static [f64],
    /// One count per bound plus `+Inf`, not cumulative.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum's f64 bits.
    sum: AtomicU64,
}

impl BulkHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            inner: Arc::new(Inner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        self.observe_n(v, 1);
    }

    /// `n` observations of `v`.
    pub fn observe_n(&self, v: f64, n: u64) {
        if n == 0 {
            return;
        }
        let inner = &self.inner;
        let bucket = inner
            .bounds
            .iter()
            .position(|bound| v <= *bound)
            .unwrap_or(inner.bounds.len());
        inner.buckets[bucket].fetch_add(n, Ordering::Relaxed);
        inner.count.fetch_add(n, Ordering::Relaxed);
        let add = v * n as f64;
        if add != 0.0 {
            let _ = inner
                .sum
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some((f64::from_bits(bits) + add).to_bits())
                });
        }
    }
}

impl TypedMetric for BulkHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BulkHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so the page is consistent even
        // while observations land.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn bulk_observations_land_in_their_bucket() {
        static BOUNDS: [f64; 2] = [0.001, 0.01];
        let h = BulkHistogram::new(&BOUNDS);
        h.observe_n(0.0, 1000);
        h.observe(0.005);
        h.observe(5.0);
        let mut r = Registry::default();
        r.register("d_seconds", "Duration", h);
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &r).unwrap();
        assert!(page.contains("d_seconds_count 1002\n"), "{page}");
        assert!(page.contains("d_seconds_sum 5.005\n"), "{page}");
        assert!(
            page.contains("d_seconds_bucket{le=\"0.001\"} 1000\n"),
            "{page}"
        );
        assert!(
            page.contains("d_seconds_bucket{le=\"0.01\"} 1001\n"),
            "{page}"
        );
        assert!(
            page.contains("d_seconds_bucket{le=\"+Inf\"} 1002\n"),
            "{page}"
        );
    }
}
