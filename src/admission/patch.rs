//! A small builder for minimal RFC 6902 patches with correctly escaped JSON pointers.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::Value;

/// Reads the present value of a key in a string map: `None` when absent, `Some(None)` when the
/// value is not a string.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Option<String>>;

/// Collects patch operations; paths are built from unescaped tokens (`/` → `~1`, `~` → `~0`).
#[derive(Debug, Default)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

/// Build a pointer from unescaped tokens.
pub fn pointer<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

impl PatchBuilder {
    /// `add` at `path`.
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// `replace` at `path`.
    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
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

    /// The patch, or `None` when there is nothing to change.
    pub fn build(self) -> Option<Patch> {
        (!self.ops.is_empty()).then_some(Patch(self.ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
