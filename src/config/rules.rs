//! Pure value validators, one per rule of the product contract.

use super::problem::Rule;

/// Is `s` a GCP project id (6–30 chars, `[a-z][a-z0-9-]*[a-z0-9]`), optionally domain-scoped
/// (`example.com:my-project`)?
pub fn is_project_id(s: &str) -> bool {
    match s.split_once(':') {
        Some((domain, project)) => is_domain(domain) && is_plain_project_id(project),
        None => is_plain_project_id(s),
    }
}

/// A project id without a domain scope.
pub fn is_plain_project_id(s: &str) -> bool {
    let b = s.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
        && s.contains('.')
}

/// Is `s` a BigQuery dataset reference `<project>.<dataset>`?
pub fn is_dataset_ref(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((project, dataset)) => {
            is_project_id(project)
                && (1..=1024).contains(&dataset.len())
                && dataset
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
        }
        None => false,
    }
}

/// Is `s` a Google service account email `<account>@<project>.iam.gserviceaccount.com`?
pub fn is_service_account_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((account, domain)) => {
            is_plain_project_id(account)
                && domain
                    .strip_suffix(".iam.gserviceaccount.com")
                    .is_some_and(is_plain_project_id)
        }
        None => false,
    }
}

/// Is `s` an acceptable connection owner id (non-empty, no whitespace, control or invisible
/// characters, ≤255 chars)?
pub fn is_owner_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 255
        && !s.chars().any(|c| c.is_whitespace() || is_forbidden_char(c))
}

/// Is `key` a pass-through key: `WORKSPACE_` then one or more of `A-Z`, `0-9`, `_` (a portable
/// env var name), outside the reserved `WORKSPACE_WORKLOAD_IDENTITY_` prefix?
pub fn is_pass_through_key(key: &str) -> bool {
    use super::keys::{PASS_THROUGH_PREFIX, RESERVED_PREFIX};
    key.strip_prefix(PASS_THROUGH_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
    }) && !key.starts_with(RESERVED_PREFIX)
}

/// Characters no value may hold: Unicode general categories Cc (C0 and C1 controls, DEL) and
/// Cf (format characters: soft hyphen, zero-width spaces and joiners, bidi marks and overrides,
/// word joiner, BOM, tags...), plus the line and paragraph separators U+2028 and U+2029.
/// They are invisible or reorder text, so a value holding one is not what it looks like.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format_char(c)
}

/// Unicode 15.1 general category Cf.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// The first forbidden character of `s` (see [`is_forbidden_char`]) and its 1-based position
/// in characters.
pub fn forbidden_char(s: &str) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
        .map(|(i, c)| (i + 1, c))
}

/// Does the owner id have the usual `<provider>|<id>` shape?
pub fn is_provider_qualified(s: &str) -> bool {
    matches!(s.split_once('|'), Some((p, id)) if !p.is_empty() && !id.is_empty() && !id.contains('|'))
}

/// The rule a value for `key` breaks, if any. Keys without rules (pass-through) never fail.
pub fn check(key: &str, value: &str) -> Option<Rule> {
    use super::keys::*;
    let ok = match key {
        WORKFLOWS_TEMP => is_dataset_ref(value),
        BILLING_PROJECT | GKE_CLUSTER_PROJECT => is_project_id(value),
        SERVICE_ACCOUNT_EMAIL => is_service_account_email(value),
        CONNECTION_OWNER_ID => is_owner_id(value),
        _ => return None,
    };
    if ok {
        None
    } else if value != value.trim()
        && !value.trim().is_empty()
        && check(key, value.trim()).is_none()
    {
        Some(Rule::NoSurroundingWhitespace)
    } else {
        Some(match key {
            WORKFLOWS_TEMP => Rule::DatasetRef,
            SERVICE_ACCOUNT_EMAIL => Rule::ServiceAccountEmail,
            CONNECTION_OWNER_ID => Rule::OwnerId,
            _ => Rule::ProjectId,
        })
    }
}

/// A Kubernetes object name (RFC 1123 subdomain); a clap value parser, so the error is a message.
pub fn dns_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids() {
        for ok in [
            "acme-gke-prod",
            "abcdef",
            "a23456789012345678901234567890",
            "example.com:my-project",
        ] {
            assert!(is_project_id(ok), "{ok}");
        }
        for bad in [
            "abcde",
            "Acme-prod",
            "1acme-prod",
            "acme-prod-",
            "acme_prod",
            "a234567890123456789012345678901",
            ":acme-prod",
            "example:acme-prod",
            " acme-prod",
            "",
        ] {
            assert!(!is_project_id(bad), "{bad}");
        }
    }

    #[test]
    fn dataset_refs() {
        assert!(is_dataset_ref("acme-analytics.carto_workflows_temp"));
        assert!(is_dataset_ref("example.com:acme-analytics.Temp_1"));
        assert!(!is_dataset_ref("acme-analytics"));
        assert!(!is_dataset_ref("acme-analytics."));
        assert!(!is_dataset_ref("acme-analytics.bad-dataset"));
        assert!(!is_dataset_ref(&format!(
            "acme-analytics.{}",
            "a".repeat(1025)
        )));
        assert!(is_dataset_ref(&format!(
            "acme-analytics.{}",
            "a".repeat(1024)
        )));
    }

    #[test]
    fn emails() {
        assert!(is_service_account_email(
            "carto-wi@acme-analytics.iam.gserviceaccount.com"
        ));
        assert!(!is_service_account_email(
            "carto-wi@acme-analytics.iam.gserviceaccount"
        ));
        assert!(!is_service_account_email(
            "cw@acme-analytics.iam.gserviceaccount.com"
        ));
        assert!(!is_service_account_email(
            "carto-wi.acme-analytics.iam.gserviceaccount.com"
        ));
        assert!(!is_service_account_email(
            "carto-wi@@acme-analytics.iam.gserviceaccount.com"
        ));
    }

    #[test]
    fn owner_ids() {
        assert!(is_owner_id("auth0|3idsj230990sj4wsddd10"));
        assert!(!is_owner_id(""));
        assert!(!is_owner_id("auth0| x"));
        assert!(!is_owner_id(&"x".repeat(256)));
        assert!(is_provider_qualified("auth0|abc"));
        assert!(!is_provider_qualified("abc"));
        assert!(!is_provider_qualified("|abc"));
    }

    #[test]
    fn pass_through_keys() {
        for ok in [
            "WORKSPACE_SYNC_DATA_ENABLED",
            "WORKSPACE_A",
            "WORKSPACE_1",
            "WORKSPACE__",
        ] {
            assert!(is_pass_through_key(ok), "{ok}");
        }
        for bad in [
            "WORKSPACE_",
            "WORKSPACE_A B",
            "WORKSPACE_\n",
            "WORKSPACE_a",
            "WORKSPACE_A-B",
            "WORKSPACE_A.B",
            "WORKSPACE_É",
            "workspace_a",
            "WORKSPACE_WORKLOAD_IDENTITY_X",
            "GKE_X",
        ] {
            assert!(!is_pass_through_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn forbidden_chars() {
        for c in [
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{ad}',
            '\u{200b}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
        ] {
            assert!(is_forbidden_char(c), "{:?}", c);
        }
        for c in [
            ' ',
            'a',
            'é',
            '|',
            '\u{a0}',
            '\u{3000}',
            '\u{2010}',
            '\u{1f600}',
        ] {
            assert!(!is_forbidden_char(c), "{:?}", c);
        }
        assert_eq!(forbidden_char("ab\u{200b}c"), Some((3, '\u{200b}')));
        assert_eq!(forbidden_char("abc"), None);
        assert!(!is_owner_id("auth0|\u{200b}abc"));
    }

    #[test]
    fn whitespace_is_named_when_trimming_would_fix_it() {
        use super::super::keys::BILLING_PROJECT;
        assert_eq!(
            check(BILLING_PROJECT, " acme-gke-prod"),
            Some(Rule::NoSurroundingWhitespace)
        );
        assert_eq!(check(BILLING_PROJECT, "acme gke"), Some(Rule::ProjectId));
        assert_eq!(check(BILLING_PROJECT, "acme-gke-prod"), None);
    }
}
