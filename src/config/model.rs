//! The typed Workload Identity configuration, parsed from ConfigMap data.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::extra::{ExtraEnvAllowlist, MAX_DATA_BYTES, MAX_EXTRA_BYTES, MAX_EXTRA_KEYS};
use super::keys::{self, REQUIRED};
use super::problem::{ConfigProblem, ConfigWarning, Rule};
use super::rules;
use crate::limits::{MAX_QUOTED_VALUE, cut};

/// A valid Workload Identity configuration, ready to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentityConfig {
    /// `<project>.<dataset>` for temporary tables.
    pub workflows_temp: String,
    /// Project charged for BigQuery.
    pub billing_project: String,
    /// Google service account email (also the ServiceAccount annotation).
    pub service_account_email: String,
    /// CARTO user owning the connection.
    pub connection_owner_id: String,
    /// Project hosting the GKE cluster, when given.
    pub gke_cluster_project: Option<String>,
    /// Extra `WORKSPACE_*` keys passed through as env vars, sorted by name.
    pub extra: Vec<(String, String)>,
    /// 12 hex chars of a SHA-256 over the sorted data: the config fingerprint.
    pub hash: String,
    /// Non-fatal remarks about this configuration.
    pub warnings: Vec<ConfigWarning>,
    env: Vec<(String, String)>,
}

impl WorkloadIdentityConfig {
    /// Parse and check ConfigMap `data`; every problem is reported at once. A pass-through key
    /// is valid only when `allowed` names it.
    pub fn from_data(
        data: &BTreeMap<String, String>,
        allowed: &ExtraEnvAllowlist,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = size_problems(data);
        let mut extra = Vec::new();
        let mut suggestions_left = MAX_SUGGESTED_KEYS;
        for (key, value) in data {
            match check_entry(key, value, &mut suggestions_left) {
                Ok(Entry::Known) => {}
                Ok(Entry::PassThrough) if allowed.allows(key) => {
                    extra.push((key.clone(), value.clone()))
                }
                Ok(Entry::PassThrough) => problems.push(ConfigProblem::ExtraNotAllowed {
                    key: key.clone(),
                    allowed: allowed_text(allowed),
                }),
                Err(p) => problems.push(p),
            }
        }
        problems.extend(extras_problems(&extra));
        for key in REQUIRED {
            if !data.contains_key(key) {
                problems.push(ConfigProblem::Missing {
                    key,
                    example: keys::example(key),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self::from_valid(data, extra))
    }

    fn from_valid(data: &BTreeMap<String, String>, extra: Vec<(String, String)>) -> Self {
        let get = |k: &str| data[k].clone();
        let mut warnings = Vec::new();
        let owner = get(keys::CONNECTION_OWNER_ID);
        if !rules::is_provider_qualified(&owner) {
            warnings.push(ConfigWarning::OwnerIdFormat {
                key: keys::CONNECTION_OWNER_ID,
                value: owner.clone(),
            });
        }
        let gke_cluster_project = data.get(keys::GKE_CLUSTER_PROJECT).cloned();
        if gke_cluster_project.is_none() {
            warnings.push(ConfigWarning::ClusterProjectAssumed(get(
                keys::BILLING_PROJECT,
            )));
        }
        let mut env: Vec<(String, String)> =
            REQUIRED.iter().map(|k| (k.to_string(), get(k))).collect();
        env.extend(extra.iter().cloned());
        Self {
            workflows_temp: get(keys::WORKFLOWS_TEMP),
            billing_project: get(keys::BILLING_PROJECT),
            service_account_email: get(keys::SERVICE_ACCOUNT_EMAIL),
            connection_owner_id: owner,
            gke_cluster_project,
            extra,
            hash: fingerprint(data),
            warnings,
            env,
        }
    }

    /// The env vars to inject, in order: the four required ones, then the extras by name.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The value this config gives env var `name`, if it manages it.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The project whose Workload Identity pool (`<project>.svc.id.goog`) the cluster uses.
    pub fn cluster_project(&self) -> &str {
        self.gke_cluster_project
            .as_deref()
            .unwrap_or(&self.billing_project)
    }

    /// The `gcloud` command that grants the Kubernetes ServiceAccount `namespace/sa` the right to act
    /// as the Google service account.
    pub fn iam_binding(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "gcloud iam service-accounts add-iam-policy-binding {} --role roles/iam.workloadIdentityUser \
             --member \"serviceAccount:{}.svc.id.goog[{namespace}/{service_account}]\"",
            self.service_account_email,
            self.cluster_project()
        )
    }
}

/// Unknown keys beyond this many get no "did you mean": nobody reads that far, and each costs
/// an edit-distance search.
const MAX_SUGGESTED_KEYS: usize = 20;

/// Keys longer than this (in characters) are not typos of a known key: no suggestion.
const MAX_SUGGESTION_KEY_CHARS: usize = 64;

/// The whole `data` over [`MAX_DATA_BYTES`].
fn size_problems(data: &BTreeMap<String, String>) -> Vec<ConfigProblem> {
    let bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_DATA_BYTES {
        vec![ConfigProblem::DataTooLarge {
            bytes,
            limit: MAX_DATA_BYTES,
        }]
    } else {
        Vec::new()
    }
}

/// The allowed extras over [`MAX_EXTRA_KEYS`] or [`MAX_EXTRA_BYTES`].
fn extras_problems(extra: &[(String, String)]) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if extra.len() > MAX_EXTRA_KEYS {
        problems.push(ConfigProblem::TooManyExtras {
            count: extra.len(),
            limit: MAX_EXTRA_KEYS,
        });
    }
    let bytes: usize = extra.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_EXTRA_BYTES {
        problems.push(ConfigProblem::ExtrasTooLarge {
            bytes,
            limit: MAX_EXTRA_BYTES,
        });
    }
    problems
}

/// What the platform allows, for a message (bounded: the list comes from a flag, not a tenant).
fn allowed_text(allowed: &ExtraEnvAllowlist) -> String {
    if allowed.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<&str> = allowed.names().collect();
    cut(&names.join(", "), 256).into_owned()
}

/// What a valid data entry is.
enum Entry {
    Known,
    PassThrough,
}

/// Check one data entry; `suggestions_left` bounds the "did you mean" searches of one config.
fn check_entry(
    key: &str,
    value: &str,
    suggestions_left: &mut usize,
) -> Result<Entry, ConfigProblem> {
    if keys::KNOWN.contains(&key) {
        return match known_value_problem(key, value) {
            Some(p) => Err(p),
            None => Ok(Entry::Known),
        };
    }
    if rules::is_pass_through_key(key) {
        return match rules::forbidden_char(value) {
            Some((position, character)) => Err(ConfigProblem::ForbiddenCharacter {
                key: key.to_owned(),
                character,
                position,
                example: keys::example(key).to_owned(),
            }),
            None => Ok(Entry::PassThrough),
        };
    }
    let mut suggestion = || {
        *suggestions_left = suggestions_left.checked_sub(1)?;
        Some(())
    };
    if key.starts_with(keys::PASS_THROUGH_PREFIX) && !key.starts_with(keys::RESERVED_PREFIX) {
        let suggestion = suggestion()
            .and_then(|()| normalized(key))
            .filter(|k| rules::is_pass_through_key(k));
        return Err(ConfigProblem::InvalidPassThroughKey {
            key: key.to_owned(),
            suggestion,
        });
    }
    Err(ConfigProblem::UnknownKey {
        key: key.to_owned(),
        suggestion: suggestion().and_then(|()| suggest(key)),
    })
}

/// The problem with the value of a known key. Surrounding whitespace is named first (trimming
/// fixes it), then an invisible or control character (which explains a value that looks right),
/// then the key's rule.
fn known_value_problem(key: &str, value: &str) -> Option<ConfigProblem> {
    let rule = rules::check(key, value);
    if rule != Some(Rule::NoSurroundingWhitespace)
        && let Some((position, character)) = rules::forbidden_char(value)
    {
        return Some(ConfigProblem::ForbiddenCharacter {
            key: key.to_owned(),
            character,
            position,
            example: format!("\"{}\"", keys::example(key)),
        });
    }
    rule.map(|rule| ConfigProblem::Invalid {
        key: key.to_owned(),
        // Kept as quoted: a rejected value is never stored whole (the problem lives in memory).
        value: cut(value, MAX_QUOTED_VALUE).into_owned(),
        rule,
        example: keys::example(key),
    })
}

/// A key upper-cased with `-` and `.` as `_`, when it is short enough to be a plausible typo.
fn normalized(key: &str) -> Option<String> {
    if key.chars().nth(MAX_SUGGESTION_KEY_CHARS).is_some() {
        return None;
    }
    Some(key.to_ascii_uppercase().replace(['-', '.'], "_"))
}

/// 12 hex chars of SHA-256 over the sorted `key`/`value` pairs (length-prefixed, so unambiguous).
pub fn fingerprint(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The known key closest to a misspelt one, if any is close enough to be a plausible typo.
/// Keys over 64 characters get none (the search stays cheap whatever the input).
pub fn suggest(key: &str) -> Option<String> {
    let upper = normalized(key)?;
    let len = upper.chars().count();
    let best = keys::KNOWN
        .iter()
        .map(|k| (k, (k.len() / 4).max(2)))
        // The distance is at least the difference in length: skip the search when that is too far.
        .filter(|(k, max)| len.abs_diff(k.len()) <= *max)
        .map(|(k, max)| (strsim::levenshtein(&upper, k), *k, max))
        .filter(|(d, _, max)| d <= max)
        .min()
        .map(|(d, k, _)| (d, k));
    match best {
        Some((_, k)) => Some(k.to_string()),
        // Not a typo of a known key; a lower-case pass-through key is still recognisable.
        None if upper != key && rules::is_pass_through_key(&upper) => Some(upper),
        // A reserved-prefix key is always one of the four: name the one sharing the most words
        // (`..._EMAIL` → `..._SERVICE_ACCOUNT_EMAIL`), when exactly one does.
        None => upper.strip_prefix(keys::RESERVED_PREFIX).and_then(|rest| {
            let words: Vec<&str> = rest.split('_').filter(|w| !w.is_empty()).collect();
            let shared = |k: &str| {
                k[keys::RESERVED_PREFIX.len()..]
                    .split('_')
                    .filter(|w| words.contains(w))
                    .count()
            };
            let best = REQUIRED.iter().map(|k| shared(k)).max()?;
            let mut top = REQUIRED.iter().filter(|k| shared(k) == best);
            match (best, top.next(), top.next()) {
                (1.., Some(k), None) => Some(k.to_string()),
                _ => None,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJCT").as_deref(),
            Some(keys::BILLING_PROJECT)
        );
        assert_eq!(
            suggest("workspace_workload_identity_billing_project").as_deref(),
            Some(keys::BILLING_PROJECT)
        );
        assert_eq!(
            suggest("GKE_CLUSTER_PROJET").as_deref(),
            Some(keys::GKE_CLUSTER_PROJECT)
        );
        assert_eq!(
            suggest("workspace_sync_data_enabled").as_deref(),
            Some("WORKSPACE_SYNC_DATA_ENABLED")
        );
        assert_eq!(suggest("FOO"), None);
    }

    #[test]
    fn no_suggestion_for_absurd_keys() {
        let long = format!("{}{}", keys::BILLING_PROJECT, "X".repeat(30));
        assert_eq!(suggest(&long), None);
        assert_eq!(suggest(&"workspace_a".repeat(100_000)), None);
        assert_eq!(suggest(&"é".repeat(65)), None);
    }

    #[test]
    fn fingerprint_is_12_hex_and_order_free() {
        let a: BTreeMap<String, String> =
            [("A".into(), "1".into()), ("B".into(), "2".into())].into();
        let h = fingerprint(&a);
        assert_eq!(h.len(), 12);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit()));
        let b: BTreeMap<String, String> = [("A".into(), "12".into())].into();
        assert_ne!(h, fingerprint(&b));
    }
}
