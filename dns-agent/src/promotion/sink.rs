//! Where the resolver writes the answers the kernel should serve. The real
//! implementation is the pinned BPF hash map; tests use [`MemorySink`].

use std::collections::HashMap;
use std::sync::Mutex;

use dns_common::{AnswerEntry, AnswerKey};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("kernel answers map is full ({capacity} entries)")]
    Full { capacity: u32 },
    #[error("kernel answers map update failed: {0}")]
    Map(String),
}

/// A bounded key/value store of kernel answers. Capacity is fixed; the
/// caller (the promotion policy) decides what to evict when it is full.
pub trait AnswerSink: Send + Sync + 'static {
    fn put(&self, key: &AnswerKey, entry: &AnswerEntry) -> Result<(), SinkError>;
    /// Removing a key that is not there is not an error.
    fn delete(&self, key: &AnswerKey) -> Result<(), SinkError>;
    fn capacity(&self) -> u32;

    /// Keys of the entries already present (a previous agent's, when the
    /// map was reused), each once and at most `capacity()` of them. A key
    /// may vanish before it is read; a sink that cannot list returns none.
    fn existing_keys(&self) -> Vec<AnswerKey> {
        Vec::new()
    }

    /// The entry under `key`, if it is (still) there.
    fn read(&self, _key: &AnswerKey) -> Option<AnswerEntry> {
        None
    }

    /// Key hashes (`AnswerEntry::key_hash`) of the hits the kernel sampled
    /// since the last call, one per sample (each stands for
    /// `dns_common::hot_samples::HOT_SAMPLE_EVERY` hits); a sink that
    /// cannot tell returns none.
    fn hit_samples(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// In-memory sink for tests and for `--xdp-mode off` accounting.
pub struct MemorySink {
    capacity: u32,
    entries: Mutex<HashMap<AnswerKey, AnswerEntry>>,
    samples: Mutex<Vec<u64>>,
}

impl MemorySink {
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// The kernel sampled a hit of `key`'s entry (for tests: what
    /// [`AnswerSink::hit_samples`] returns next).
    pub fn sample_hit(&self, key: &AnswerKey) {
        let hash = dns_common::hash::key_hash(&key.name[..key.name_len as usize], key.qtype);
        self.samples.lock().unwrap().push(hash);
    }

    pub fn get(&self, key: &AnswerKey) -> Option<AnswerEntry> {
        self.entries.lock().unwrap().get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AnswerSink for MemorySink {
    fn put(&self, key: &AnswerKey, entry: &AnswerEntry) -> Result<(), SinkError> {
        let mut entries = self.entries.lock().unwrap();
        if !entries.contains_key(key) && entries.len() >= self.capacity as usize {
            return Err(SinkError::Full {
                capacity: self.capacity,
            });
        }
        entries.insert(*key, *entry);
        Ok(())
    }

    fn delete(&self, key: &AnswerKey) -> Result<(), SinkError> {
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }

    fn capacity(&self) -> u32 {
        self.capacity
    }

    fn existing_keys(&self) -> Vec<AnswerKey> {
        let entries = self.entries.lock().unwrap();
        entries
            .keys()
            .take(self.capacity as usize)
            .copied()
            .collect()
    }

    fn read(&self, key: &AnswerKey) -> Option<AnswerEntry> {
        self.get(key)
    }

    fn hit_samples(&self) -> Vec<u64> {
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}
