//! A small builder for minimal RFC 6902 patches with correctly escaped JSON pointers.

use std::io;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use super::limits::MAX_PATCH_BYTES;

/// Reads the present value of a key in a string map: `None` when absent, `Some(None)` when the
/// value is not a string.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Option<String>>;

/// Collects patch operations; paths are built from unescaped tokens (`/` → `~1`, `~` → `~0`).
/// The patch's JSON size is kept within a budget ([`MAX_PATCH_BYTES`] by default): once an
/// operation would pass it, the builder is full, drops what it holds and builds no patch.
#[derive(Debug)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
    /// The JSON size of `ops`, as `[op,op]`.
    bytes: usize,
    budget: usize,
    full: bool,
}

impl Default for PatchBuilder {
    fn default() -> Self {
        Self::with_budget(MAX_PATCH_BYTES)
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of `op` in JSON.
fn json_len(op: &PatchOperation) -> usize {
    let mut c = Counter(0);
    serde_json::to_writer(&mut c, op).map_or(usize::MAX, |()| c.0)
}

/// Build a pointer from unescaped tokens.
pub fn pointer<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

impl PatchBuilder {
    /// A builder whose patch may be at most `budget` bytes of JSON.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            ops: Vec::new(),
            bytes: 2,
            budget,
            full: false,
        }
    }

    /// `add` at `path`.
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// `replace` at `path`.
    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    /// `remove` at `path`.
    pub fn remove(&mut self, path: PointerBuf) {
        self.push(PatchOperation::Remove(RemoveOperation { path }));
    }

    fn push(&mut self, op: PatchOperation) {
        if self.full {
            return;
        }
        // One comma per operation after the first.
        let size = json_len(&op).saturating_add(usize::from(!self.ops.is_empty()));
        if self.bytes.saturating_add(size) > self.budget {
            self.full = true;
            self.ops = Vec::new();
            return;
        }
        self.bytes += size;
        self.ops.push(op);
    }

    /// True once the patch would pass its budget: it is then dropped, and more work is useless.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Make the string map at `map_path` hold every `(key, value)` of `entries`, adding the map
    /// when `current` is `None` (absent or null), adding missing keys and replacing other values.
    /// `current(key)` gives the present value: `None` when absent, `Some(None)` when not a string.
    /// Returns the keys whose previous value was replaced, with that value.
    pub fn set_string_map<'k>(
        &mut self,
        map_path: &[&str],
        current: Option<Lookup<'_>>,
        entries: &[(&'k str, &str)],
    ) -> Vec<(&'k str, Option<String>)> {
        let Some(current) = current else {
            let m: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect();
            self.add(pointer(map_path.iter().copied()), Value::Object(m));
            return Vec::new();
        };
        let mut replaced = Vec::new();
        for (key, value) in entries {
            let path = || pointer(map_path.iter().copied().chain([*key]));
            match current(key) {
                None => self.add(path(), Value::String((*value).to_owned())),
                Some(Some(old)) if old == *value => {}
                Some(old) => {
                    self.replace(path(), Value::String((*value).to_owned()));
                    replaced.push((*key, old));
                }
            }
        }
        replaced
    }

    /// True when no operation was collected.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The patch, or `None` when there is nothing to change (or it passed its budget).
    pub fn build(self) -> Option<Patch> {
        (!self.full && !self.ops.is_empty()).then_some(Patch(self.ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_tracked_exactly_and_the_budget_holds() {
        let mut p = PatchBuilder::with_budget(1_000);
        for i in 0..5 {
            p.add(pointer(["a", &i.to_string()]), Value::String("x~\"".into()));
        }
        let bytes = p.bytes;
        let patch = p.build().expect("under budget");
        assert_eq!(serde_json::to_vec(&patch).unwrap().len(), bytes);

        let mut p = PatchBuilder::with_budget(bytes);
        for i in 0..6 {
            p.add(pointer(["a", &i.to_string()]), Value::String("x~\"".into()));
        }
        assert!(p.is_full());
        assert!(p.build().is_none());
    }

    #[test]
    fn escapes_slash_and_tilde() {
        let p = pointer([
            "metadata",
            "annotations",
            "iam.gke.io/gcp-service-account",
            "a~b",
        ]);
        assert_eq!(
            p.as_str(),
            "/metadata/annotations/iam.gke.io~1gcp-service-account/a~0b"
        );
    }
}
