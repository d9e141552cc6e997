//! Which pass-through `WORKSPACE_*` variables a ConfigMap may set: the platform's allowlist
//! (`--extra-env`), and the caps on what the extras of one ConfigMap may add to every target.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::rules::is_pass_through_key;

/// At most this many extra variables in one ConfigMap.
pub const MAX_EXTRA_KEYS: usize = 32;
/// At most this many bytes of extra names and values in one ConfigMap: what injection adds to
/// each container is bounded whatever a namespace writes.
pub const MAX_EXTRA_BYTES: usize = 8 * 1024;
/// At most this many bytes of keys and values in a ConfigMap's `data` (a valid one needs ~2 KB).
pub const MAX_DATA_BYTES: usize = 16 * 1024;

/// The pass-through variable names the platform allows a ConfigMap to set. Empty by default:
/// a ConfigMap then sets the four Workload Identity variables only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraEnvAllowlist(Arc<BTreeSet<String>>);

impl ExtraEnvAllowlist {
    /// Allow exactly `names` (each a pass-through key, checked by [`extra_env_name`]).
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self(Arc::new(names.into_iter().map(Into::into).collect()))
    }

    /// Allow nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// May a ConfigMap set `name`?
    pub fn allows(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// The allowed names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A name for `--extra-env`: a pass-through key (`WORKSPACE_[A-Z0-9_]+`, not one of the reserved
/// `WORKSPACE_WORKLOAD_IDENTITY_*`); a clap value parser, so the error is a message.
pub fn extra_env_name(s: &str) -> Result<String, String> {
    if is_pass_through_key(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a pass-through variable name (WORKSPACE_ then A-Z, 0-9 or '_', \
             outside WORKSPACE_WORKLOAD_IDENTITY_*)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_allows_only_its_names() {
        let a = ExtraEnvAllowlist::new(["WORKSPACE_SYNC_DATA_ENABLED"]);
        assert!(a.allows("WORKSPACE_SYNC_DATA_ENABLED"));
        assert!(!a.allows("WORKSPACE_POSTGRES_PASSWORD"));
        assert!(!ExtraEnvAllowlist::none().allows("WORKSPACE_SYNC_DATA_ENABLED"));
    }

    #[test]
    fn flag_names_are_pass_through_keys() {
        assert!(extra_env_name("WORKSPACE_SYNC_DATA_ENABLED").is_ok());
        for bad in [
            "WORKSPACE_WORKLOAD_IDENTITY_X",
            "workspace_a",
            "HOME",
            "WORKSPACE_",
        ] {
            let e = extra_env_name(bad).unwrap_err();
            assert!(e.contains("not a pass-through variable name"), "{e}");
        }
    }
}
