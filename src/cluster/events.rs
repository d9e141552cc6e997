//! Events (events.k8s.io through kube-runtime's `Recorder`), each posted once: a resync, a
//! restart or a second replica does not repeat one already in the cluster.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::metrics::ClusterMetrics;

/// Normal, on each object the reconciler patched.
pub const INJECTED: &str = "WorkloadIdentityInjected";
/// Normal, on the ServiceAccount: the gcloud command that grants the IAM binding.
pub const BINDING_REQUIRED: &str = "WorkloadIdentityBindingRequired";
/// Warning, on a target whose patch the API server refused (too large, invalid).
pub const PATCH_REFUSED: &str = "WorkloadIdentityPatchRefused";
/// Warning, on a ConfigMap that breaks the rules.
pub const INVALID_CONFIG: &str = "InvalidConfig";

/// How many posted Events are remembered. Each is kept as a 64-bit hash of (object uid, reason,
/// note), so this is ~200 KiB at most however many objects and config changes go by; once full,
/// the oldest is forgotten first, and a forgotten Event is looked up in the cluster again (one
/// list request) rather than posted twice.
pub const REMEMBERED: usize = 4096;

/// The Events this process knows are in the cluster: a set bounded by [`REMEMBERED`], evicting
/// the oldest entry first.
#[derive(Debug)]
struct Remembered {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Remembered {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.set.contains(&key)
    }

    fn insert(&mut self, key: u64) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

/// Posts Events, at most once per (object, reason, note).
pub struct Events {
    client: kube::Client,
    recorder: Recorder,
    posted: Mutex<Remembered>,
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
            posted: Mutex::new(Remembered::new(REMEMBERED)),
            metrics,
        }
    }

    fn key(on: &ObjectReference, reason: &'static str, note: &str) -> u64 {
        // SipHash with fixed keys: the same key in every run and replica.
        let mut h = std::hash::DefaultHasher::new();
        (on.uid.as_deref().unwrap_or_default(), reason, note).hash(&mut h);
        h.finish()
    }

    fn posted(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.posted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self, key: u64) -> bool {
        self.posted().contains(key)
    }

    fn remember(&self, key: u64) {
        self.posted().insert(key);
    }

    /// Post `reason` with `note` on `on` unless this process or an earlier one already did.
    pub async fn post_once(
        &self,
        on: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.post_once_related(on, None, type_, reason, note).await
    }

    /// [`post_once`](Self::post_once), the Event also naming `related` (e.g. the ConfigMap a
    /// patch came from). The API server's Event series are per (object, related, reason): a new
    /// `related` starts a new Event instead of counting up one whose note is older.
    pub async fn post_once_related(
        &self,
        on: &ObjectReference,
        related: Option<&ObjectReference>,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Self::key(on, reason, &note);
        if self.seen(key) {
            return Ok(());
        }
        if self.in_cluster(on, reason, &note).await? {
            self.remember(key);
            return Ok(());
        }
        self.publish(on, related, type_, reason, note).await?;
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
        self.publish(on, None, type_, reason, note).await
    }

    async fn publish(
        &self,
        on: &ObjectReference,
        related: Option<&ObjectReference>,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action(reason).into(),
            secondary: related.cloned(),
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
        PATCH_REFUSED => "Inject",
        _ => "Validate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_events_are_capped_oldest_first() {
        let mut r = Remembered::new(3);
        for k in 1..=3 {
            r.insert(k);
        }
        r.insert(2);
        assert_eq!(r.len(), 3, "a repeat takes no room");
        r.insert(4);
        assert_eq!(r.len(), 3);
        assert!(!r.contains(1), "the oldest went first");
        assert!(r.contains(2) && r.contains(3) && r.contains(4));
        for k in 5..10_000 {
            r.insert(k);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.set.len(), 3, "the set and the order agree");
        assert!(r.contains(9_999) && !r.contains(4));
    }

    #[test]
    fn keys_tell_object_reason_and_note_apart() {
        let on = |uid: &str| ObjectReference {
            uid: Some(uid.into()),
            ..ObjectReference::default()
        };
        let a = Events::key(&on("u1"), INJECTED, "n");
        assert_eq!(a, Events::key(&on("u1"), INJECTED, "n"));
        assert_ne!(a, Events::key(&on("u2"), INJECTED, "n"));
        assert_ne!(a, Events::key(&on("u1"), PATCH_REFUSED, "n"));
        assert_ne!(a, Events::key(&on("u1"), INJECTED, "m"));
    }
}
