//! The kernel's answer counts, turned into increments. The XDP program's
//! counters are totals since their map was created (a map a previous agent
//! pinned keeps counting across restarts); each scrape adds what is new
//! since the last one to the CoreDNS families, which are this process's
//! counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use dns_common::answer_counters::AnswerCounterKey;

/// Something that reads the kernel's per-answer counters (the fast path).
pub trait KernelAnswerSource: Send + Sync {
    /// Every slot with its total, summed over CPUs; empty when the counters
    /// cannot be read.
    fn answer_counts(&self) -> Vec<(AnswerCounterKey, u64)>;
}

/// The source, set once the fast path has loaded, and the totals last seen.
#[derive(Default)]
pub struct KernelAnswers {
    source: OnceLock<Arc<dyn KernelAnswerSource>>,
    seen: Mutex<HashMap<AnswerCounterKey, u64>>,
}

impl KernelAnswers {
    /// From now on, count the answers `source` reports. The totals it has
    /// at this moment were answered before this agent (or before its
    /// counters were read) and are not counted.
    pub fn set(&self, source: Arc<dyn KernelAnswerSource>) {
        let baseline = source.answer_counts();
        if self.source.set(source).is_ok() {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = baseline.into_iter().collect();
        }
    }

    /// What each slot counted since the last call. A total below the last
    /// one means the map was replaced: all of it is new.
    pub(super) fn take_new(&self) -> Vec<(AnswerCounterKey, u64)> {
        let Some(source) = self.source.get() else {
            return Vec::new();
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = Vec::new();
        for (key, total) in source.answer_counts() {
            let last = seen.insert(key, total).unwrap_or(0);
            let delta = if total >= last { total - last } else { total };
            if delta > 0 {
                new.push((key, delta));
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Mutex<u64>);

    impl KernelAnswerSource for Fake {
        fn answer_counts(&self) -> Vec<(AnswerCounterKey, u64)> {
            vec![(AnswerCounterKey::from_index(7), *self.0.lock().unwrap())]
        }
    }

    #[test]
    fn counts_only_what_is_new() {
        let fake = Arc::new(Fake(Mutex::new(100)));
        let answers = KernelAnswers::default();
        assert!(answers.take_new().is_empty());
        answers.set(fake.clone());
        assert!(answers.take_new().is_empty(), "the baseline is not new");
        *fake.0.lock().unwrap() = 130;
        assert_eq!(answers.take_new()[0].1, 30);
        assert!(answers.take_new().is_empty());
        *fake.0.lock().unwrap() = 5; // the map was replaced
        assert_eq!(answers.take_new()[0].1, 5);
    }
}
