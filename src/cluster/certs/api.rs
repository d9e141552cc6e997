//! The reads and the guarded writes: the Secret and the webhook configurations.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};

use super::SelfManagedError;
use super::manager::{Kind, Manager, Round, WebhookConfig, unix_now};
use super::observe::{CA_CRT, CA_KEY, TLS_CRT, TLS_KEY, bundle_pem, observe_secret, parse_cas};
use crate::pki::Pair;
use crate::pki::plan::{Ca, same_set};

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

impl Manager {
    pub(super) async fn read(&self) -> Result<Round, SelfManagedError> {
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
    pub(super) async fn write_webhooks(
        &self,
        configs: &[WebhookConfig],
        bundle: &[Ca],
    ) -> Result<bool, SelfManagedError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem(bundle));
        let pp = PatchParams::default();
        let mut all = true;
        for config in configs {
            if config.webhooks.iter().all(|(_, cas)| same_set(cas, bundle)) {
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
    pub(super) async fn write_secret(
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
}
