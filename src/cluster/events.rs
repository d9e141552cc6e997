//! Events (events.k8s.io through kube-runtime's `Recorder`), each posted once: a resync, a
//! restart or a second replica does not repeat one already in the cluster.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::metrics::ClusterMetrics;

/// Normal, on each object the reconciler patched.
pub const INJECTED: &str = "WorkloadIdentityInjected";
/// Normal, on the ServiceAccount: the gcloud command that grants the IAM binding.
pub const BINDING_REQUIRED: &str = "WorkloadIdentityBindingRequired";
/// Warning, on a ConfigMap that breaks the rules.
pub const INVALID_CONFIG: &str = "InvalidConfig";

/// Posts Events, at most once per (object, reason, note).
pub struct Events {
    client: kube::Client,
    recorder: Recorder,
    posted: Mutex<HashSet<(String, &'static str, String)>>,
    metrics: ClusterMetrics,
}

impl Events {
    /// Events reported by `carto-wi-webhook`, instance `identity`.
    pub fn new(client: kube::Client, identity: &str, metrics: ClusterMetrics) -> Self {
        let reporter = Reporter {
            controller: "carto-wi-webhook".into(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            posted: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    fn key(
        on: &ObjectReference,
        reason: &'static str,
        note: &str,
    ) -> (String, &'static str, String) {
        (on.uid.clone().unwrap_or_default(), reason, note.to_owned())
    }

    fn seen(&self, key: &(String, &'static str, String)) -> bool {
        self.posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn remember(&self, key: (String, &'static str, String)) {
        self.posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    /// Post `reason` with `note` on `on` unless this process or an earlier one already did.
    pub async fn post_once(
        &self,
        on: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Self::key(on, reason, &note);
        if self.seen(&key) {
            return Ok(());
        }
        if self.in_cluster(on, reason, &note).await? {
            self.remember(key);
            return Ok(());
        }
        self.post(on, type_, reason, note).await?;
        self.remember(key);
        Ok(())
    }

    /// Post `reason` with `note` on `on` (a change that just happened).
    pub async fn post(
        &self,
        on: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action(reason).into(),
            secondary: None,
        };
        self.recorder.publish(&event, on).await?;
        self.metrics.event(reason);
        Ok(())
    }

    /// Is there already an Event with this reason and note about this object?
    async fn in_cluster(
        &self,
        on: &ObjectReference,
        reason: &str,
        note: &str,
    ) -> Result<bool, kube::Error> {
        let (Some(ns), Some(uid)) = (&on.namespace, &on.uid) else {
            return Ok(false);
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().fields(&format!("involvedObject.uid={uid},reason={reason}"));
        let list = api.list(&lp).await?;
        Ok(list
            .items
            .iter()
            .any(|e| e.message.as_deref() == Some(note)))
    }
}

fn action(reason: &str) -> &'static str {
    match reason {
        INJECTED => "Inject",
        BINDING_REQUIRED => "Annotate",
        _ => "Validate",
    }
}
