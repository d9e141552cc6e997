//! Read what `plan` and `status` need, read-only, with paged cluster-wide lists: the number of
//! requests grows with the number of objects / page size, never with the number of namespaces.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Error, Result};
use crate::admission::view::Object;
use crate::admission::{Kind, target};
use crate::cluster::events::{BINDING_REQUIRED, INJECTED, INVALID_CONFIG, PATCH_REFUSED};
use crate::config::{ConfigEntry, config_from_object};
use crate::plan::LiveState;
use crate::plan::state::{LastEvent, LiveObject};
use crate::settings::{INJECT_LABEL, Settings};

/// Items per list request.
const PAGE: u32 = 500;
/// The chart's mutating webhook, whose Service lives in the webhook's namespace.
const MUTATING_WEBHOOK: &str = "mutate.workload-identity.carto.com";
/// The namespace when no webhook configuration names one.
pub const FALLBACK_NAMESPACE: &str = "carto-wi-system";

/// A client that counts its requests (for the scale benchmark and the `--verbose` line).
pub struct Reader {
    client: kube::Client,
    /// List requests made so far.
    pub requests: usize,
}

impl Reader {
    /// A reader over `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            requests: 0,
        }
    }

    /// Every item of a cluster-wide list, page by page, each handed to `keep`.
    async fn list_all<K>(
        &mut self,
        lp: ListParams,
        mut keep: impl FnMut(K),
    ) -> Result<(), kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let mut lp = lp.limit(PAGE);
        loop {
            self.requests += 1;
            let page = api.list(&lp).await?;
            page.items.into_iter().for_each(&mut keep);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => lp.continue_token = Some(token),
                _ => return Ok(()),
            }
        }
    }

    /// The webhook's namespace: the flag, else the namespace of the Service the chart's mutating
    /// webhook calls, else [`FALLBACK_NAMESPACE`].
    pub async fn webhook_namespace(&mut self, flag: Option<&str>) -> Result<String> {
        if let Some(ns) = flag {
            return Ok(ns.to_owned());
        }
        let mut found = None;
        self.list_all(ListParams::default(), |c: MutatingWebhookConfiguration| {
            for w in c.webhooks.into_iter().flatten() {
                if w.name == MUTATING_WEBHOOK
                    && let Some(svc) = w.client_config.service
                {
                    found.get_or_insert(svc.namespace);
                }
            }
        })
        .await
        .map_err(|e| Error::ListWebhookConfigurations {
            source: Box::new(e),
        })?;
        Ok(found.unwrap_or_else(|| FALLBACK_NAMESPACE.to_owned()))
    }

    /// Everything `plan` and `status` start from.
    pub async fn live_state(
        &mut self,
        webhook_namespace: String,
        excluded: BTreeSet<String>,
        settings: &Settings,
    ) -> Result<LiveState> {
        let mut live = LiveState {
            webhook_namespace,
            excluded,
            ..LiveState::default()
        };
        self.config_maps(&mut live, settings).await?;
        self.namespaces(&mut live).await?;
        self.service_accounts(&mut live, settings).await?;
        self.deployments(&mut live, settings).await?;
        self.events(&mut live).await?;
        Ok(live)
    }

    async fn config_maps(&mut self, live: &mut LiveState, settings: &Settings) -> Result<()> {
        let lp = ListParams::default().fields(&format!("metadata.name={}", settings.config_map));
        self.list_all(lp, |cm: ConfigMap| {
            let ns = cm.metadata.namespace.clone().unwrap_or_default();
            let value = serde_json::to_value(&cm).unwrap_or(Value::Null);
            let entry = ConfigEntry::from_result(config_from_object(&value, &settings.extra_env));
            live.config_maps.insert(ns, entry);
        })
        .await
        .map_err(|e| Error::ListConfigMaps {
            source: Box::new(e),
        })
    }

    async fn namespaces(&mut self, live: &mut LiveState) -> Result<()> {
        self.list_all(ListParams::default(), |ns: Namespace| {
            if opted_out(&ns.metadata) {
                live.opted_out.insert(ns.metadata.name.unwrap_or_default());
            }
        })
        .await
        .map_err(|e| Error::ListNamespaces {
            source: Box::new(e),
        })
    }

    async fn service_accounts(&mut self, live: &mut LiveState, settings: &Settings) -> Result<()> {
        let lp =
            ListParams::default().fields(&format!("metadata.name={}", settings.service_account));
        self.list_all(lp, |mut sa: ServiceAccount| {
            sa.metadata.managed_fields = None;
            keep_target(
                live,
                Kind::ServiceAccount,
                serde_json::to_value(&sa),
                settings,
            );
        })
        .await
        .map_err(|e| Error::ListServiceAccounts {
            source: Box::new(e),
        })
    }

    async fn deployments(&mut self, live: &mut LiveState, settings: &Settings) -> Result<()> {
        self.list_all(ListParams::default(), |mut d: Deployment| {
            d.metadata.managed_fields = None;
            d.status = None;
            keep_target(live, Kind::Deployment, serde_json::to_value(&d), settings);
        })
        .await
        .map_err(|e| Error::ListDeployments {
            source: Box::new(e),
        })
    }

    /// The reconciler's last Event per namespace (one of its own reasons).
    async fn events(&mut self, live: &mut LiveState) -> Result<()> {
        let lp = ListParams::default().fields("reportingComponent=carto-wi-webhook");
        self.list_all(lp, |e: Event| {
            let reasons = [INJECTED, BINDING_REQUIRED, PATCH_REFUSED, INVALID_CONFIG];
            let Some(reason) = e.reason.clone().filter(|r| reasons.contains(&r.as_str())) else {
                return;
            };
            let ns = e.metadata.namespace.clone().unwrap_or_default();
            let event = LastEvent {
                reason,
                object: format!(
                    "{}/{}",
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default()
                ),
                message: e.message.unwrap_or_default(),
                time: event_time(&e.event_time, &e.last_timestamp, &e.metadata),
            };
            match live.events.get(&ns) {
                Some(old) if old.time >= event.time => {}
                _ => {
                    live.events.insert(ns, event);
                }
            }
        })
        .await
        .map_err(|e| Error::ListEvents {
            source: Box::new(e),
        })
    }
}

/// When an Event last happened, as RFC 3339 (sortable as text).
fn event_time(
    event_time: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
    last: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    meta: &ObjectMeta,
) -> String {
    let text = |v: serde_json::Result<Value>| v.ok().and_then(|v| v.as_str().map(str::to_owned));
    last.as_ref()
        .and_then(|t| text(serde_json::to_value(t)))
        .or_else(|| {
            event_time
                .as_ref()
                .and_then(|t| text(serde_json::to_value(t)))
        })
        .or_else(|| {
            meta.creation_timestamp
                .as_ref()
                .and_then(|t| text(serde_json::to_value(t)))
        })
        .unwrap_or_default()
}

/// Keep an object that is a target, its own opt-out label aside (shown as left alone).
fn keep_target(
    live: &mut LiveState,
    kind: Kind,
    value: serde_json::Result<Value>,
    settings: &Settings,
) {
    let Ok(object) = value else { return };
    let any_label = Settings {
        object_opt_out: false,
        ..settings.clone()
    };
    let is_target = Object::from_value(&object)
        .is_ok_and(|view| target::is_target(kind, view.name(), &view, &any_label));
    if is_target {
        live.objects.push(LiveObject { kind, object });
    }
}

/// The namespace label `workload-identity.carto.com/inject: "false"`, as the watches read it.
fn opted_out(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}
