//! Typed configuration problems and warnings.

use std::fmt;

use crate::limits::{MAX_QUOTED_NAME, MAX_QUOTED_VALUE, cut, quote};

/// A key quoted in a message, cut (it may be anything a client wrote).
fn k(key: &str) -> std::borrow::Cow<'_, str> {
    cut(key, MAX_QUOTED_NAME)
}

/// A value quoted in a message, cut and quoted.
fn v(value: &str) -> String {
    quote(value, MAX_QUOTED_VALUE)
}

/// A free-form message (it may quote client input), cut.
const MAX_MALFORMED: usize = 512;

/// A rule a configuration value breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// GCP project id: 6–30 chars, `[a-z][a-z0-9-]*[a-z0-9]` (optionally `domain:` scoped).
    ProjectId,
    /// `<project>.<dataset>` with dataset `[A-Za-z0-9_]{1,1024}`.
    DatasetRef,
    /// `<account>@<project>.iam.gserviceaccount.com`.
    ServiceAccountEmail,
    /// Non-empty, no whitespace, control or invisible characters, at most 255 characters.
    OwnerId,
    /// No leading or trailing whitespace (values are never trimmed).
    NoSurroundingWhitespace,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::ProjectId => {
                "is not a GCP project id (6-30 chars of a-z, 0-9 or '-', starting with a letter; or domain:project)"
            }
            Rule::DatasetRef => "is not <project>.<dataset> (dataset: 1-1024 letters, digits or '_')",
            Rule::ServiceAccountEmail => {
                "is not <account>@<project>.iam.gserviceaccount.com (account: 6-30 chars like a project id)"
            }
            Rule::OwnerId => {
                "must be 1-255 characters without whitespace, control or invisible characters"
            }
            Rule::NoSurroundingWhitespace => {
                "has leading or trailing whitespace (values are never trimmed)"
            }
        })
    }
}

/// One problem with a configuration; all problems are collected at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// A required key is absent.
    #[error("{key}: required key is missing; e.g. {key}: \"{example}\"")]
    Missing {
        /// The missing key.
        key: &'static str,
        /// A valid example value.
        example: &'static str,
    },
    /// A value breaks a rule.
    #[error("{}: {} {rule}; e.g. \"{example}\"", k(.key), v(.value))]
    Invalid {
        /// The key at fault.
        key: String,
        /// The value as given.
        value: String,
        /// The rule broken.
        rule: Rule,
        /// A valid example value.
        example: &'static str,
    },
    /// A key the webhook does not know.
    #[error("{}: unknown key{}", k(.key), suggestion_text(.suggestion))]
    UnknownKey {
        /// The key as given.
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
    },
    /// A `WORKSPACE_*` key that is not a valid env var name (`WORKSPACE_[A-Z0-9_]+`).
    #[error(
        "{}: not a valid pass-through key: WORKSPACE_ must be followed by one or more of A-Z, 0-9 \
         and '_' (an env var name){}; e.g. WORKSPACE_SYNC_DATA_ENABLED",
        super::quote::quoted(.key),
        did_you_mean(.suggestion)
    )]
    InvalidPassThroughKey {
        /// The key as given.
        key: String,
        /// The key upper-cased, when that makes it valid.
        suggestion: Option<String>,
    },
    /// A value holding a control or invisible character (see [`super::rules::is_forbidden_char`]).
    #[error(
        "{}: the value holds the control or invisible character U+{:04X} at character {position}; \
         values may not hold control characters, zero-width or bidi formatting characters; e.g. {example}",
        super::quote::cut(.key),
        u32::from(*.character)
    )]
    ForbiddenCharacter {
        /// The key whose value is at fault.
        key: String,
        /// The first forbidden character.
        character: char,
        /// Its 1-based position in the value, in characters.
        position: usize,
        /// A valid example (value of a known key, or a whole pass-through entry).
        example: String,
    },
    /// A pass-through key the platform does not allow (`--extra-env`).
    #[error(
        "{}: not an allowed extra variable: the platform allows {allowed} (serve/review/check \
         --extra-env, chart value policy.extraEnvAllowed); remove the key or ask the platform team",
        k(.key)
    )]
    ExtraNotAllowed {
        /// The key as given.
        key: String,
        /// The allowed names, or `none`.
        allowed: String,
    },
    /// More extra variables than one ConfigMap may set.
    #[error("{count} extra WORKSPACE_* variables: at most {limit} may be passed through")]
    TooManyExtras {
        /// How many were given.
        count: usize,
        /// The cap.
        limit: usize,
    },
    /// The extra variables' names and values are too large to add to every container.
    #[error(
        "the extra WORKSPACE_* variables hold {bytes} bytes of names and values: at most {limit} \
         (each is copied into every container of every target)"
    )]
    ExtrasTooLarge {
        /// Their size.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
    /// The whole `data` is too large to be a configuration.
    #[error("data holds {bytes} bytes of keys and values: a configuration holds at most {limit}")]
    DataTooLarge {
        /// Its size.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
    /// `binaryData` is not read by the webhook.
    #[error("binaryData.{}: binary values are not supported; put the value under data", k(.key))]
    BinaryData {
        /// The binary key.
        key: String,
    },
    /// A data value that is not a string (YAML `true` or `123` unquoted).
    #[error("{key}: value must be a string; quote it, e.g. {key}: \"true\"", key = k(.key))]
    NotAString {
        /// The key at fault.
        key: String,
    },
    /// The document is not a ConfigMap at all.
    #[error("{}", cut(.0, MAX_MALFORMED))]
    Malformed(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!("; did you mean {s}?"))
        .unwrap_or_default()
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean {}?", k(s)),
        None => format!(
            "; allowed keys are {}, {}, or any other WORKSPACE_* key to pass through as an env var",
            super::keys::REQUIRED.join(", "),
            super::keys::GKE_CLUSTER_PROJECT
        ),
    }
}

/// Something worth saying about a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    /// The owner id does not look like `<provider>|<id>`.
    #[error(
        "{key}: {} does not look like <provider>|<id> (e.g. auth0|3idsj230990sj4wsddd10)", v(.value)
    )]
    OwnerIdFormat {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// `GKE_CLUSTER_PROJECT` is absent; the billing project is assumed for the IAM member.
    #[error(
        "GKE_CLUSTER_PROJECT not set: assuming the billing project {} hosts the cluster for the IAM member", v(.0)
    )]
    ClusterProjectAssumed(String),
}
