//! The configuration in force: one snapshot, swapped whole. Request handlers read it lock-free;
//! every source of configuration (the standalone file, the cluster watch) publishes into it.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::snapshot::ConfigSnapshot;

/// A shared, atomically replaced [`ConfigSnapshot`]. Cloning shares the same store.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    current: Arc<ArcSwap<ConfigSnapshot>>,
}

impl Default for ConfigStore {
    /// An empty snapshot: no configuration anywhere yet.
    fn default() -> Self {
        Self::new(ConfigSnapshot::default())
    }
}

impl ConfigStore {
    /// A store holding `initial`.
    pub fn new(initial: ConfigSnapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(initial)),
        }
    }

    /// The snapshot in force, for the length of one request (cheap, lock-free).
    pub fn load(&self) -> Guard<Arc<ConfigSnapshot>> {
        self.current.load()
    }

    /// The snapshot in force, to keep.
    pub fn load_full(&self) -> Arc<ConfigSnapshot> {
        self.current.load_full()
    }

    /// Replace the snapshot; requests in flight keep the one they loaded.
    pub fn publish(&self, snapshot: ConfigSnapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigEntry, ConfigOrigin, ConfigProblem, Resolved};

    #[test]
    fn readers_keep_their_snapshot_across_a_publish() {
        let store = ConfigStore::default();
        let before = store.load_full();
        assert_eq!(before.resolve("carto"), Resolved::None);
        let problems = vec![ConfigProblem::Malformed("x".into())];
        let broken = ConfigEntry::Invalid(Arc::new(problems.clone()));
        store.clone().publish(ConfigSnapshot::with_default(broken));
        assert_eq!(before.resolve("carto"), Resolved::None);
        assert_eq!(
            store.load().resolve("carto"),
            Resolved::Broken(&problems, ConfigOrigin::Default)
        );
    }
}
