//! A hash map split into shards behind `Arc`s: cloning it (to publish a new
//! snapshot) copies only the shard pointers, and a write copies only the
//! shard it touches while an older snapshot still shares it. That keeps a
//! one-service change cheap at 10k services without a persistent-map crate.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::sync::Arc;

/// Number of shards: a write clones about 1/SHARDS of the map.
pub const SHARDS: usize = 256;

#[derive(Debug)]
pub struct ShardedMap<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
    len: usize,
}

impl<K, V> Clone for ShardedMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
        // A fixed hasher: the shard of a key must not change between calls.
        (BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize) % SHARDS
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[Self::shard_of(key)].get(key)
    }

    /// The key as the map holds it, with its value.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[Self::shard_of(key)].get_key_value(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(&key)]);
        let old = shard.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = self.shard_holding(key)?.remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Mutable access to one value (copies its shard if it is shared).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard_holding(key)?.get_mut(key)
    }

    /// The shard of `key` for writing, when the key is there: a shard
    /// shared with a snapshot is copied only for a key it holds.
    fn shard_holding<Q>(&mut self, key: &Q) -> Option<&mut HashMap<K, V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = Self::shard_of(key);
        if !self.shards[idx].contains_key(key) {
            return None;
        }
        Some(Arc::make_mut(&mut self.shards[idx]))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_is_isolated_from_later_writes() {
        let mut a: ShardedMap<u32, u32> = ShardedMap::default();
        for i in 0..1000 {
            a.insert(i, i);
        }
        let b = a.clone();
        a.insert(5, 50);
        a.remove(&6);
        assert_eq!(b.get(&5), Some(&5));
        assert_eq!(b.get(&6), Some(&6));
        assert_eq!(a.get(&5), Some(&50));
        assert_eq!(a.get(&6), None);
        assert_eq!((a.len(), b.len()), (999, 1000));
        assert_eq!(a.iter().count(), 999);
    }
}
