//! The decision: does a Kubernetes ServiceAccount hold `roles/iam.workloadIdentityUser` on a
//! Google service account, given that account's IAM policy? A pure function over the policy JSON
//! (<https://cloud.google.com/iam/docs/reference/rest/v1/Policy>).

use serde::Deserialize;

/// The role that lets a Workload Identity member act as the Google service account.
pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// An IAM policy, as `getIamPolicy` returns it (only the fields the decision reads).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Policy {
    /// Policy schema version (1 or 3; 3 when a binding has a condition).
    #[serde(default)]
    pub version: u32,
    /// Role bindings (absent in the JSON when the policy is empty).
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

/// One role binding.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Binding {
    /// `roles/...` or a custom role name.
    #[serde(default)]
    pub role: String,
    /// Principals: `serviceAccount:...`, `user:...`, `deleted:...`, ...
    #[serde(default)]
    pub members: Vec<String>,
    /// A CEL condition, when the binding is conditional.
    #[serde(default)]
    pub condition: Option<serde_json::Value>,
}

/// Why the binding state is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnknownReason {
    /// The member holds the role only through a binding with a condition, which the webhook
    /// cannot evaluate.
    Conditional,
    /// The webhook's Google identity may not read the policy (403).
    PermissionDenied,
    /// The Google service account does not exist (404: deleted or misspelt).
    NotFound,
    /// The IAM API failed (429, 5xx, network, bad response); retried later.
    ApiError,
    /// No access token could be obtained (metadata server or key file).
    Credentials,
}

/// The state of one Workload Identity binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingState {
    /// The member holds the role directly, without a condition.
    Present,
    /// The member does not hold the role.
    Missing,
    /// Cannot tell.
    Unknown(UnknownReason),
}

impl BindingState {
    /// Every state, in metric-label order.
    pub const ALL: [Self; 7] = [
        Self::Present,
        Self::Missing,
        Self::Unknown(UnknownReason::Conditional),
        Self::Unknown(UnknownReason::PermissionDenied),
        Self::Unknown(UnknownReason::NotFound),
        Self::Unknown(UnknownReason::ApiError),
        Self::Unknown(UnknownReason::Credentials),
    ];

    /// Label value of `carto_wi_iam_binding{state}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Unknown(UnknownReason::Conditional) => "unknown_conditional",
            Self::Unknown(UnknownReason::PermissionDenied) => "unknown_permission_denied",
            Self::Unknown(UnknownReason::NotFound) => "unknown_not_found",
            Self::Unknown(UnknownReason::ApiError) => "unknown_api_error",
            Self::Unknown(UnknownReason::Credentials) => "unknown_credentials",
        }
    }
}

impl std::fmt::Display for BindingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Unknown(UnknownReason::Conditional) => "unknown (conditional binding)",
            Self::Unknown(UnknownReason::PermissionDenied) => "unknown (permission denied)",
            Self::Unknown(UnknownReason::NotFound) => "unknown (service account not found)",
            Self::Unknown(UnknownReason::ApiError) => "unknown (IAM API error)",
            Self::Unknown(UnknownReason::Credentials) => "unknown (no Google credentials)",
        })
    }
}

/// The IAM member of the Kubernetes ServiceAccount `namespace/service_account` in the Workload
/// Identity pool of `cluster_project`.
pub fn workload_member(cluster_project: &str, namespace: &str, service_account: &str) -> String {
    format!("serviceAccount:{cluster_project}.svc.id.goog[{namespace}/{service_account}]")
}

/// Does `member` hold the Workload Identity User role in `policy`? A direct binding wins over a
/// conditional one; only conditional ones make the answer unknown.
pub fn decide(policy: &Policy, member: &str) -> BindingState {
    let mut conditional = false;
    for binding in policy
        .bindings
        .iter()
        .filter(|b| b.role == WORKLOAD_IDENTITY_USER)
    {
        if !binding.members.iter().any(|m| m == member) {
            continue;
        }
        match &binding.condition {
            None | Some(serde_json::Value::Null) => return BindingState::Present,
            Some(_) => conditional = true,
        }
    }
    if conditional {
        BindingState::Unknown(UnknownReason::Conditional)
    } else {
        BindingState::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "serviceAccount:acme-gke.svc.id.goog[carto/carto-common-backend]";

    fn parse(json: &str) -> Policy {
        serde_json::from_str(json).expect("policy JSON")
    }

    #[test]
    fn member_names_the_pool_namespace_and_account() {
        assert_eq!(
            workload_member("acme-gke", "carto", "carto-common-backend"),
            MEMBER
        );
    }

    #[test]
    fn direct_binding_is_present() {
        let p = parse(&format!(
            r#"{{"version":1,"etag":"BwXhqDtvCEM=","bindings":[
              {{"role":"roles/iam.serviceAccountUser","members":["user:ops@acme.com"]}},
              {{"role":"roles/iam.workloadIdentityUser","members":["serviceAccount:other.svc.id.goog[carto/x]","{MEMBER}"]}}]}}"#
        ));
        assert_eq!(decide(&p, MEMBER), BindingState::Present);
    }

    #[test]
    fn empty_policy_is_missing() {
        // An account with no bindings answers only the etag.
        assert_eq!(
            decide(&parse(r#"{"etag":"ACAB"}"#), MEMBER),
            BindingState::Missing
        );
    }

    #[test]
    fn other_role_or_other_member_is_missing() {
        let p = parse(&format!(
            r#"{{"bindings":[{{"role":"roles/iam.serviceAccountTokenCreator","members":["{MEMBER}"]}},
              {{"role":"roles/iam.workloadIdentityUser","members":["serviceAccount:acme-gke.svc.id.goog[carto/other]"]}}]}}"#
        ));
        assert_eq!(decide(&p, MEMBER), BindingState::Missing);
    }

    #[test]
    fn deleted_member_is_missing() {
        let p = parse(&format!(
            r#"{{"bindings":[{{"role":"roles/iam.workloadIdentityUser","members":["deleted:{MEMBER}?uid=123"]}}]}}"#
        ));
        assert_eq!(decide(&p, MEMBER), BindingState::Missing);
    }

    #[test]
    fn conditional_binding_is_unknown() {
        let p = parse(&format!(
            r#"{{"version":3,"bindings":[{{"role":"roles/iam.workloadIdentityUser","members":["{MEMBER}"],
              "condition":{{"title":"until 2027","expression":"request.time < timestamp('2027-01-01T00:00:00Z')"}}}}]}}"#
        ));
        assert_eq!(
            decide(&p, MEMBER),
            BindingState::Unknown(UnknownReason::Conditional)
        );
    }

    #[test]
    fn direct_binding_wins_over_conditional() {
        let p = parse(&format!(
            r#"{{"version":3,"bindings":[
              {{"role":"roles/iam.workloadIdentityUser","members":["{MEMBER}"],"condition":{{"expression":"true"}}}},
              {{"role":"roles/iam.workloadIdentityUser","members":["{MEMBER}"]}}]}}"#
        ));
        assert_eq!(decide(&p, MEMBER), BindingState::Present);
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = BindingState::ALL.iter().map(|s| s.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), BindingState::ALL.len());
    }
}
