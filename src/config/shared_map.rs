//! A map that snapshots share: its entries sit in shards behind `Arc`s, so a clone copies one
//! pointer and an edit copies the shard list (`SHARDS` pointers) and the one shard it touches
//! (about `len / SHARDS` entries) instead of every entry. The watch publishes a snapshot after
//! each event; with 10,000 namespaces that is ~40 entries copied instead of 10,000.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

const SHARDS: usize = 256;

/// A string-keyed map, cheap to clone and to edit while earlier clones are still read.
#[derive(Debug, Clone)]
pub struct SharedMap<V> {
    hasher: RandomState,
    shards: Arc<Vec<Arc<HashMap<String, V>>>>,
    len: usize,
}

impl<V> Default for SharedMap<V> {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: Arc::new((0..SHARDS).map(|_| Arc::default()).collect()),
            len: 0,
        }
    }
}

impl<V: Clone> SharedMap<V> {
    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    /// The one shard holding `key`, copied first if a clone still shares it.
    fn shard_mut(&mut self, key: &str) -> &mut HashMap<String, V> {
        let i = self.shard_of(key);
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i])
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.shards[self.shard_of(key)].get(key)
    }

    /// Is `key` held?
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Set `key`; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        let old = self.shard_mut(&key).insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k.borrow(), v)))
    }
}

impl<V: Clone> FromIterator<(String, V)> for SharedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        let mut map = Self::default();
        for (k, v) in entries {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_leave_earlier_clones_as_they_were() {
        let mut map: SharedMap<u32> = (0..1000).map(|i| (format!("ns-{i}"), i)).collect();
        let before = map.clone();
        assert_eq!(map.insert("ns-7".into(), 70), Some(7));
        assert_eq!(map.remove("ns-8"), Some(8));
        assert_eq!(map.remove("ns-8"), None);
        assert_eq!(map.insert("new".into(), 1), None);
        assert_eq!(
            (map.get("ns-7"), map.get("ns-8"), map.len()),
            (Some(&70), None, 1000)
        );
        assert_eq!(
            (before.get("ns-7"), before.get("ns-8"), before.len()),
            (Some(&7), Some(&8), 1000)
        );
        assert!(!before.contains_key("new"));
        assert_eq!(map.iter().count(), map.len());
        let untouched = (0..SHARDS)
            .filter(|i| Arc::ptr_eq(&map.shards[*i], &before.shards[*i]))
            .count();
        assert!(untouched >= SHARDS - 3, "{untouched} shards shared");
    }
}
