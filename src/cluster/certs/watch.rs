//! The loop: watch the Secret, serve its pair, re-check on every change and on a timer.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};

use super::SelfManagedError;
use super::manager::{FIRST_RETRY, Manager, RECHECK, Settled};
use super::observe::{TLS_CRT, TLS_KEY, secret_source};
use crate::backoff::Backoff;
use crate::pki::certified_key;

/// The next item of a stream. (No `futures` dependency: the bound brings `poll_next` in.)
async fn next_item<S: WatchStreamExt>(mut stream: Pin<&mut S>) -> Option<S::Item> {
    std::future::poll_fn(move |cx| stream.as_mut().poll_next(cx)).await
}

impl Manager {
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
            .and_then(|c| crate::pki::der::cert_facts(c).ok())
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
        let mut retry = Backoff::doubling(FIRST_RETRY, RECHECK);
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
                    // One step further than the missing-configuration retry would wait.
                    retry.grow();
                    retry.current()
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
fn after(settled: &Settled, retry: &mut Backoff, advance: bool) -> Duration {
    if settled.missing.is_empty() {
        retry.reset();
        return settled.wait;
    }
    if retry.is_fresh() && advance {
        tracing::info!(missing = ?settled.missing, "self-managed certificates: webhook configurations not found yet; retrying");
    }
    if advance {
        retry.next_delay()
    } else {
        retry.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(missing: bool) -> Settled {
        Settled {
            secret: None,
            wait: Duration::from_secs(45),
            missing: if missing { vec!["x".into()] } else { vec![] },
        }
    }

    #[test]
    fn a_missing_configuration_is_retried_sooner_then_later_until_found() {
        let mut retry = Backoff::doubling(FIRST_RETRY, RECHECK);
        let timed: Vec<u64> = (0..8)
            .map(|_| after(&settled(true), &mut retry, true).as_secs())
            .collect();
        assert_eq!(timed, [1, 2, 4, 8, 16, 32, 60, 60]);
        retry.reset();
        after(&settled(true), &mut retry, true);
        let on_event = after(&settled(true), &mut retry, false);
        assert_eq!(
            on_event,
            Duration::from_secs(2),
            "an event does not grow it"
        );
        assert_eq!(after(&settled(true), &mut retry, true).as_secs(), 2);
        assert_eq!(after(&settled(false), &mut retry, true).as_secs(), 45);
        assert!(retry.is_fresh(), "found: the next miss starts over");
    }
}
