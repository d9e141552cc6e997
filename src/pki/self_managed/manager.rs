//! The API side: read, plan, write one step, repeat; watch the Secret and serve its pair.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use rustls::crypto::CryptoProvider;

use super::observe::{
    CA_CRT, CA_KEY, Observed, TLS_CRT, TLS_KEY, bundle_pem, observe_secret, parse_cas,
    secret_source, verifies,
};
use super::plan::{Ca, Policy, Step, plan};
use super::{CertStatus, SelfManagedArgs, SelfManagedError};
use crate::pki::{CertResolver, certified_key, provider};
use crate::pki::{CertificateAuthority, Pair};

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
struct WebhookConfig {
    kind: Kind,
    name: String,
    resource_version: Option<String>,
    /// Each webhook's name and the CAs of its `caBundle`.
    webhooks: Vec<(String, Vec<Ca>)>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
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
struct Round {
    secret: Option<Secret>,
    observed: Observed,
    configs: Vec<WebhookConfig>,
    missing: Vec<String>,
}

/// Does the work of [`super::SelfManaged`].
pub struct Manager {
    secrets: Api<Secret>,
    mutating: Api<MutatingWebhookConfiguration>,
    validating: Api<ValidatingWebhookConfiguration>,
    secret_name: String,
    configs: Vec<String>,
    names: Vec<String>,
    ca_name: String,
    policy: Policy,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    /// The not-after dates, shared with the handle.
    pub status: Arc<CertStatus>,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// A lost race (the object changed or was created meanwhile) is not an error: the caller
/// re-reads and plans again.
/// `Ok(true)`: written; `Ok(false)`: lost the race.
fn raced<T>(
    result: Result<T, kube::Error>,
    action: impl FnOnce() -> String,
) -> Result<bool, SelfManagedError> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
            tracing::debug!(action = %action(), "self-managed certificates: lost a race, re-reading");
            Ok(false)
        }
        Err(error) => Err(SelfManagedError::Api {
            action: action(),
            error,
        }),
    }
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> SelfManagedError {
    let action = action.into();
    move |error| SelfManagedError::Api { action, error }
}

/// The next item of a stream. (No `futures` dependency: the bound brings `poll_next` in.)
async fn next_item<S: WatchStreamExt>(mut stream: Pin<&mut S>) -> Option<S::Item> {
    std::future::poll_fn(move |cx| stream.as_mut().poll_next(cx)).await
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

    async fn read(&self) -> Result<Round, SelfManagedError> {
        let secret = self
            .secrets
            .get_opt(&self.secret_name)
            .await
            .map_err(api_error(format!("get Secret {}", self.secret_name)))?;
        let observed = observe_secret(
            secret.as_ref().and_then(|s| s.data.as_ref()),
            &self.names,
            unix_now(),
            &self.provider,
        );
        let mut configs = Vec::new();
        let mut missing = Vec::new();
        for name in &self.configs {
            for kind in [Kind::Mutating, Kind::Validating] {
                match self.read_config(kind, name).await? {
                    Some(c) => configs.push(c),
                    None => missing.push(format!("{kind} {name}")),
                }
            }
        }
        Ok(Round {
            secret,
            observed,
            configs,
            missing,
        })
    }

    async fn read_config(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<WebhookConfig>, SelfManagedError> {
        let err = api_error(format!("get {kind} {name}"));
        let bundle = |b: &Option<ByteString>| b.as_ref().map_or(Vec::new(), |b| parse_cas(&b.0));
        let (meta, webhooks) = match kind {
            Kind::Mutating => match self.mutating.get_opt(name).await.map_err(err)? {
                None => return Ok(None),
                Some(c) => (c.metadata, {
                    let w = c.webhooks.unwrap_or_default();
                    w.into_iter()
                        .map(|w| (w.name, bundle(&w.client_config.ca_bundle)))
                        .collect()
                }),
            },
            Kind::Validating => match self.validating.get_opt(name).await.map_err(err)? {
                None => return Ok(None),
                Some(c) => (c.metadata, {
                    let w = c.webhooks.unwrap_or_default();
                    w.into_iter()
                        .map(|w| (w.name, bundle(&w.client_config.ca_bundle)))
                        .collect()
                }),
            },
        };
        Ok(Some(WebhookConfig {
            kind,
            name: name.to_owned(),
            resource_version: meta.resource_version,
            webhooks,
        }))
    }

    /// Write `bundle` into every webhook of every configuration whose `caBundle` differs: one
    /// strategic merge patch per configuration (webhooks merge by name), guarded by its
    /// `resourceVersion`.
    async fn write_webhooks(
        &self,
        configs: &[WebhookConfig],
        bundle: &[Ca],
    ) -> Result<bool, SelfManagedError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem(bundle));
        let pp = PatchParams::default();
        let mut all = true;
        for config in configs {
            if config
                .webhooks
                .iter()
                .all(|(_, cas)| super::plan::same_set(cas, bundle))
            {
                continue;
            }
            let webhooks: Vec<serde_json::Value> = config
                .webhooks
                .iter()
                .map(|(name, _)| serde_json::json!({"name": name, "clientConfig": {"caBundle": encoded}}))
                .collect();
            let patch = Patch::Strategic(serde_json::json!({
                "metadata": {"resourceVersion": config.resource_version},
                "webhooks": webhooks,
            }));
            let action = || format!("patch the caBundle of {} {}", config.kind, config.name);
            let result = match config.kind {
                Kind::Mutating => self
                    .mutating
                    .patch(&config.name, &pp, &patch)
                    .await
                    .map(drop),
                Kind::Validating => self
                    .validating
                    .patch(&config.name, &pp, &patch)
                    .await
                    .map(drop),
            };
            if raced(result, action)? {
                tracing::info!(kind = %config.kind, name = %config.name, cas = bundle.len(), "self-managed certificates: caBundle written");
            } else {
                all = false;
            }
        }
        Ok(all)
    }

    /// Create the Secret, or replace our keys in it guarded by its `resourceVersion`.
    async fn write_secret(
        &self,
        old: Option<&Secret>,
        bundle: &[Ca],
        ca_key: &str,
        leaf: &Pair,
    ) -> Result<bool, SelfManagedError> {
        let ours = [
            (TLS_CRT, leaf.cert_pem.as_str()),
            (TLS_KEY, leaf.key_pem.as_str()),
            (CA_CRT, &bundle_pem(bundle)),
            (CA_KEY, ca_key),
        ];
        let pp = PostParams::default();
        let action = || format!("write Secret {}", self.secret_name);
        let mut secret = old.cloned().unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "carto-wi-webhook".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        });
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in ours {
            data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        }
        let result = match old {
            None => self.secrets.create(&pp, &secret).await.map(drop),
            Some(_) => self
                .secrets
                .replace(&self.secret_name, &pp, &secret)
                .await
                .map(drop),
        };
        let wrote = raced(result, action)?;
        if wrote {
            tracing::info!(secret = %self.secret_name, created = old.is_none(), cas = bundle.len(), "self-managed certificates: Secret written");
        }
        Ok(wrote)
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

    /// Serve the Secret's pair if it is consistent and new.
    pub fn serve_pair(
        &self,
        data: &Option<BTreeMap<String, ByteString>>,
    ) -> Result<(), SelfManagedError> {
        let get = |k: &str| {
            data.as_ref()
                .and_then(|d| d.get(k))
                .map_or(&[][..], |b| &b.0[..])
        };
        let ck = certified_key(get(TLS_CRT), get(TLS_KEY), &secret_source(), &self.provider)
            .map_err(|error| SelfManagedError::Pair {
                secret: self.secret_name.clone(),
                error,
            })?;
        let served = self.resolver.current();
        if served.cert.first() == ck.cert.first() {
            return Ok(());
        }
        let not_after = ck
            .cert
            .first()
            .and_then(|c| super::der::cert_facts(c).ok())
            .map_or(0, |f| f.not_after);
        self.resolver.store(ck);
        self.status
            .serving
            .store(not_after, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(secret = %self.secret_name, not_after, "self-managed certificates: serving the Secret's certificate");
        Ok(())
    }

    /// Watch the Secret and re-check on every change and at least every [`RECHECK`].
    pub async fn run(self, first: Settled) {
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", self.secret_name));
        let stream = watcher(self.secrets.clone(), config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut retry = FIRST_RETRY;
        let mut wait = after(&first, &mut retry, true);
        loop {
            let timer = tokio::select! {
                event = next_item(stream.as_mut()) => match event {
                    Some(Ok(event)) if self.on_event(&event) => false,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, secret = %self.secret_name, "self-managed certificates: watch error; retrying");
                        continue;
                    }
                    None => return,
                },
                () = tokio::time::sleep(wait) => true,
            };
            wait = match self.reconcile().await {
                Ok(settled) => {
                    if let Err(e) = self.serve_pair(&settled.secret) {
                        tracing::warn!(error = %e, "self-managed certificates: keeping the served pair");
                    }
                    after(&settled, &mut retry, timer)
                }
                Err(e) => {
                    tracing::error!(error = %e, "self-managed certificates: cannot bring the certificates up to date; retrying");
                    retry = (retry * 2).min(RECHECK);
                    retry
                }
            };
        }
    }

    /// Serve a changed Secret's pair; whether the event calls for a reconcile.
    fn on_event(&self, event: &watcher::Event<Secret>) -> bool {
        match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                if let Err(e) = self.serve_pair(&s.data) {
                    tracing::warn!(error = %e, "self-managed certificates: keeping the served pair");
                }
                true
            }
            watcher::Event::Delete(_) => {
                tracing::warn!(secret = %self.secret_name, "self-managed certificates: the Secret was deleted; regenerating");
                true
            }
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

/// How long to wait after a reconcile: until the next deadline, or, while a webhook
/// configuration is missing (the chart may create it after the pod), a delay that grows with
/// each timed retry (`advance`; a reconcile caused by a Secret event does not count).
fn after(settled: &Settled, retry: &mut Duration, advance: bool) -> Duration {
    if settled.missing.is_empty() {
        *retry = FIRST_RETRY;
        return settled.wait;
    }
    if *retry == FIRST_RETRY && advance {
        tracing::info!(missing = ?settled.missing, "self-managed certificates: webhook configurations not found yet; retrying");
    }
    let wait = *retry;
    if advance {
        *retry = (*retry * 2).min(RECHECK);
    }
    wait
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
