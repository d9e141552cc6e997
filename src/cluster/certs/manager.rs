//! One reconcile: read, plan, write one step, repeat until the plan says done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rustls::crypto::CryptoProvider;

use super::observe::{CA_CRT, Observed, TLS_CRT, TLS_KEY, parse_cas, verifies};
use super::{CertStatus, SelfManagedArgs, SelfManagedError};
use crate::pki::plan::{Ca, Policy, Step, plan};
use crate::pki::{CertResolver, CertificateAuthority, Pair, provider};

/// How often the Secret and the webhook configurations are re-checked without an event.
pub const RECHECK: Duration = Duration::from_secs(60);
/// First retry delay when a webhook configuration is missing or the API fails; doubles up to
/// [`RECHECK`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Pause after losing a regeneration race on a webhook configuration.
const RACE_PAUSE: Duration = Duration::from_millis(300);
/// Writes per reconcile before giving up (a rotation takes four; the rest absorbs races).
const MAX_STEPS: usize = 12;

/// The result of a reconcile that reached [`Step::Done`].
pub struct Settled {
    /// The Secret's data as last read.
    pub secret: Option<BTreeMap<String, ByteString>>,
    /// How long to wait before the next check, all configurations present.
    pub wait: Duration,
    /// The webhook configurations not found.
    pub missing: Vec<String>,
}

/// One webhook configuration, as read.
pub(super) struct WebhookConfig {
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) resource_version: Option<String>,
    /// Each webhook's name and the CAs of its `caBundle`.
    pub(super) webhooks: Vec<(String, Vec<Ca>)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Mutating,
    Validating,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Mutating => "MutatingWebhookConfiguration",
            Kind::Validating => "ValidatingWebhookConfiguration",
        })
    }
}

/// What was read in one round.
pub(super) struct Round {
    pub(super) secret: Option<Secret>,
    pub(super) observed: Observed,
    pub(super) configs: Vec<WebhookConfig>,
    pub(super) missing: Vec<String>,
}

/// Does the work of [`super::SelfManaged`].
pub struct Manager {
    pub(super) secrets: Api<Secret>,
    pub(super) mutating: Api<MutatingWebhookConfiguration>,
    pub(super) validating: Api<ValidatingWebhookConfiguration>,
    pub(super) secret_name: String,
    pub(super) configs: Vec<String>,
    pub(super) names: Vec<String>,
    pub(super) ca_name: String,
    pub(super) policy: Policy,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) resolver: Arc<CertResolver>,
    /// The not-after dates, shared with the handle.
    pub status: Arc<CertStatus>,
}

pub(super) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

impl Manager {
    /// A manager for `namespace` with these flags.
    pub fn new(
        client: Client,
        namespace: &str,
        args: &SelfManagedArgs,
        resolver: Arc<CertResolver>,
    ) -> Result<Self, SelfManagedError> {
        Ok(Self {
            secrets: Api::namespaced(client.clone(), namespace),
            mutating: Api::all(client.clone()),
            validating: Api::all(client),
            secret_name: args.cert_secret.clone(),
            configs: args.webhook_configs.clone(),
            names: args.names(namespace),
            ca_name: format!("carto-wi-webhook CA {}.{namespace}", args.service),
            policy: args.policy()?,
            provider: provider(),
            resolver,
            status: Arc::default(),
        })
    }

    /// Plan and write until there is nothing left to do.
    pub async fn reconcile(&self) -> Result<Settled, SelfManagedError> {
        // A CA generated for a regeneration survives retries of that regeneration, so a lost
        // race on a webhook does not leave one more orphan CA in the bundle.
        let mut fresh: Option<(CertificateAuthority, Pair)> = None;
        for _ in 0..MAX_STEPS {
            let round = self.read().await?;
            let now = unix_now();
            let bundles: Vec<Vec<Ca>> = round
                .configs
                .iter()
                .flat_map(|c| c.webhooks.iter().map(|(_, cas)| cas.clone()))
                .collect();
            match plan(now, &round.observed.state, &bundles, &self.policy) {
                Step::Done { next_check } => return Ok(self.settled(round, now, next_check)),
                Step::Regenerate { keep, reason } => {
                    tracing::warn!(secret = %self.secret_name, %reason, "self-managed certificates: making a new CA and serving certificate");
                    let (ca, leaf) = match fresh.take() {
                        Some(f) => f,
                        None => self.new_ca_and_leaf(now)?,
                    };
                    let bundle = with_new(&ca, &keep);
                    // The webhooks trust the new CA before its certificate can be served.
                    if self.write_webhooks(&round.configs, &bundle).await? {
                        self.write_secret(round.secret.as_ref(), &bundle, ca.key_pem(), &leaf)
                            .await?;
                    } else {
                        // Likely another replica regenerating: give it time to store its
                        // Secret, which this one then adopts, rather than add one more CA.
                        tokio::time::sleep(RACE_PAUSE).await;
                    }
                    fresh = Some((ca, leaf));
                }
                step => {
                    self.apply(step, &round, now).await?;
                }
            }
        }
        Err(SelfManagedError::Unsettled(self.secret_name.clone()))
    }

    /// Apply one step; `Ok(false)` when a write lost a race.
    async fn apply(&self, step: Step, round: &Round, now: i64) -> Result<bool, SelfManagedError> {
        let old = round.secret.as_ref();
        let signer = round.observed.signer.as_ref();
        let stored_leaf = || Pair {
            cert_pem: string_of(old, TLS_CRT),
            key_pem: string_of(old, TLS_KEY),
        };
        match step {
            Step::RotateCa { keep } => {
                let ca = self.new_ca(now)?;
                let bundle = with_new(&ca, &keep);
                tracing::info!(secret = %self.secret_name, "self-managed certificates: the CA is near its end; new CA stored, trusted next to the old one");
                self.write_secret(old, &bundle, ca.key_pem(), &stored_leaf())
                    .await
            }
            Step::SecretBundle(bundle) => {
                tracing::info!(secret = %self.secret_name, cas = bundle.len(), "self-managed certificates: dropping expired CAs");
                let key = signer.map_or("", |s| s.key_pem.as_str());
                self.write_secret(old, &bundle, key, &stored_leaf()).await
            }
            Step::WebhookBundle(bundle) => self.write_webhooks(&round.configs, &bundle).await,
            Step::IssueLeaf { reason } => {
                let Some(signer) = signer else {
                    return Ok(false); // the plan only issues from a usable CA
                };
                tracing::info!(secret = %self.secret_name, %reason, "self-managed certificates: issuing a serving certificate");
                let ca = CertificateAuthority::from_pem(
                    &signer.common_name,
                    &signer.cert_pem,
                    &signer.key_pem,
                )?;
                let leaf = self.issue(&ca, now)?;
                let bundle = parse_cas(string_of(old, CA_CRT).as_bytes());
                self.write_secret(old, &bundle, &signer.key_pem, &leaf)
                    .await
            }
            Step::Regenerate { .. } | Step::Done { .. } => Ok(true),
        }
    }

    fn settled(&self, round: Round, now: i64, next_check: i64) -> Settled {
        if let Some(signer) = round.observed.signer.as_ref() {
            let ca = parse_cas(signer.cert_pem.as_bytes());
            if let Some(ca) = ca.first() {
                self.status
                    .ca
                    .store(ca.not_after, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Settled {
            secret: round.secret.and_then(|s| s.data),
            wait: secs(next_check - now).min(RECHECK),
            missing: round.missing,
        }
    }

    fn new_ca(&self, now: i64) -> Result<CertificateAuthority, SelfManagedError> {
        let name = format!("{} {now}", self.ca_name);
        Ok(CertificateAuthority::with_validity(
            &name,
            secs(self.policy.ca_validity),
        )?)
    }

    fn new_ca_and_leaf(&self, now: i64) -> Result<(CertificateAuthority, Pair), SelfManagedError> {
        let ca = self.new_ca(now)?;
        let leaf = self.issue(&ca, now)?;
        Ok((ca, leaf))
    }

    /// A serving certificate from `ca`, checked to chain to it for every name.
    fn issue(&self, ca: &CertificateAuthority, now: i64) -> Result<Pair, SelfManagedError> {
        let leaf = ca.issue_server_valid_for(&self.names, secs(self.policy.leaf_validity))?;
        let chains = parse_cas(leaf.cert_pem.as_bytes())
            .first()
            .zip(parse_cas(ca.cert_pem().as_bytes()).first())
            .is_some_and(|(l, c)| {
                verifies(
                    &l.der.clone().into(),
                    &c.der,
                    &self.names,
                    now,
                    &self.provider,
                )
            });
        if chains {
            Ok(leaf)
        } else {
            Err(SelfManagedError::ForeignCa(self.secret_name.clone()))
        }
    }
}

/// A new CA first, then the CAs kept (a retried regeneration finds its own CA among them).
fn with_new(ca: &CertificateAuthority, keep: &[Ca]) -> Vec<Ca> {
    let mut bundle = parse_cas(ca.cert_pem().as_bytes());
    for k in keep {
        if !bundle.iter().any(|b| b.der == k.der) {
            bundle.push(k.clone());
        }
    }
    bundle
}

fn string_of(secret: Option<&Secret>, key: &str) -> String {
    secret
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_regeneration_does_not_repeat_its_ca() {
        let ca = CertificateAuthority::with_validity("new", Duration::from_secs(3600)).unwrap();
        let other = CertificateAuthority::with_validity("old", Duration::from_secs(3600)).unwrap();
        let keep = [
            parse_cas(other.cert_pem().as_bytes()),
            parse_cas(ca.cert_pem().as_bytes()),
        ]
        .concat();
        let bundle = with_new(&ca, &keep);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[0], keep[1], "the new CA first");
    }
}
