//! The Google side of Workload Identity: does the Kubernetes ServiceAccount hold
//! `roles/iam.workloadIdentityUser` on the Google service account it is annotated with?
//! Kubernetes-free: the reconciler asks a [`Verifier`] and reports what it answers.
//!
//! - [`policy`]: the decision, a pure function over a service account's IAM policy.
//! - [`credentials`], [`key_file`]: access tokens from the metadata server or a key file.
//! - [`client`]: the `getIamPolicy` call; [`http`]: the HTTP(S) client under both.
//! - [`verifier`]: the cache, rate limit and quiet logging; [`metrics`]; [`args`]: the flags.
//!
//! The Google client is written here on hyper + tokio-rustls + ring rather than taken from a
//! crate: `gcp_auth` and `google-cloud-auth` build their own HTTP client for the token exchange
//! (no way to trust an extra root for a private endpoint or the tests' stand-in), the latter
//! defaults to aws-lc and brings reqwest and google-cloud-gax in; the two token flows and one
//! call needed are ~300 lines on crates the webhook already has.

pub mod args;
pub mod client;
pub mod credentials;
pub mod http;
pub mod key_file;
pub mod metrics;
pub mod policy;
pub mod verifier;

pub use args::{IamArgs, IamSetupError};
pub use client::{DEFAULT_ENDPOINT, FetchError, IamClient};
pub use credentials::Credentials;
pub use http::HttpClient;
pub use metrics::IamMetrics;
pub use policy::{BindingState, UnknownReason, decide, workload_member};
pub use verifier::{Verifier, VerifierConfig};
