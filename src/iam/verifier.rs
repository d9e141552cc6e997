//! The verifier: answers "is this binding present?" from a per-account cache of IAM policies.
//! One getIamPolicy per Google service account per recheck interval whatever the number of
//! namespaces asking (callers for one account wait on the same fetch); an account never asked
//! about is fetched at once; transient failures back off; every request waits its turn behind a
//! minimum interval; logs carry one line per change of what an account's fetch yields (readable,
//! or unknown for a given reason), so an outage of any length is one line, its end another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::{FetchError, IamClient};
use super::metrics::IamMetrics;
use super::policy::{BindingState, Policy, UnknownReason, decide};
use crate::backoff::Backoff;

/// Accounts cached at most (tenants can name any email); idle expired entries go first.
const MAX_ACCOUNTS: usize = 4096;

/// Timing of the verifier.
#[derive(Debug, Clone, Copy)]
pub struct VerifierConfig {
    /// How long an answer (policy, 403, 404) is trusted.
    pub recheck: Duration,
    /// Minimum time between two IAM requests of the process.
    pub min_interval: Duration,
    /// First back-off after a transient failure (doubled each time up to `recheck`).
    pub backoff: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            recheck: Duration::from_secs(600),
            min_interval: Duration::from_millis(200),
            backoff: Duration::from_secs(15),
        }
    }
}

#[derive(Debug)]
struct Account {
    answer: Option<Result<Arc<Policy>, UnknownReason>>,
    valid_until: Option<Instant>,
    backoff: Backoff,
    /// What the last fetch made of the account (`None`: readable), for logging changes only.
    last_logged: Option<Option<UnknownReason>>,
}

impl Account {
    fn new(config: &VerifierConfig) -> Self {
        Self {
            answer: None,
            valid_until: None,
            backoff: Backoff::doubling(config.backoff, config.recheck),
            last_logged: None,
        }
    }

    fn fresh(&self, now: Instant) -> Option<&Result<Arc<Policy>, UnknownReason>> {
        match self.valid_until {
            Some(until) if now < until => self.answer.as_ref(),
            _ => None,
        }
    }
}

/// The verifier shared by every caller.
#[derive(Debug)]
pub struct Verifier {
    client: IamClient,
    config: VerifierConfig,
    metrics: IamMetrics,
    accounts: SyncMutex<HashMap<String, Arc<Mutex<Account>>>>,
    states: SyncMutex<HashMap<(String, String), BindingState>>,
    next_slot: Mutex<Instant>,
}

impl Verifier {
    /// A verifier over `client`.
    pub fn new(client: IamClient, config: VerifierConfig, metrics: IamMetrics) -> Self {
        Self {
            client,
            config,
            metrics,
            accounts: SyncMutex::default(),
            states: SyncMutex::default(),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// The state of `member`'s Workload Identity binding on the service account `email`.
    pub async fn check(&self, email: &str, member: &str) -> BindingState {
        let slot = self.account(email);
        let mut account = slot.lock().await;
        if account.fresh(Instant::now()).is_none() {
            self.refresh(email, &mut account).await;
        }
        let state = match account.answer.as_ref() {
            Some(Ok(policy)) => decide(policy, member),
            Some(Err(reason)) => BindingState::Unknown(*reason),
            None => BindingState::Unknown(UnknownReason::ApiError),
        };
        drop(account);
        self.record(email, member, state);
        state
    }

    /// Drop `member`'s binding on `email` from the metrics (its namespace went away or moved
    /// to another account).
    pub fn forget(&self, email: &str, member: &str) {
        let mut states = lock(&self.states);
        states.remove(&(email.to_owned(), member.to_owned()));
        self.publish(&states);
    }

    /// Forget the cached answer for `email`: the next check asks Google (e.g. after a
    /// `gcloud add-iam-policy-binding` the user reports).
    pub async fn invalidate(&self, email: &str) {
        let slot = lock(&self.accounts).get(email).cloned();
        if let Some(slot) = slot {
            slot.lock().await.valid_until = None;
        }
    }

    fn account(&self, email: &str) -> Arc<Mutex<Account>> {
        let mut accounts = lock(&self.accounts);
        if !accounts.contains_key(email) && accounts.len() >= MAX_ACCOUNTS {
            evict_idle(&mut accounts);
        }
        accounts
            .entry(email.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Account::new(&self.config))))
            .clone()
    }

    async fn refresh(&self, email: &str, account: &mut Account) {
        self.wait_turn().await;
        let result = self.client.get_iam_policy(email).await;
        let now = Instant::now();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.request(outcome);
        let seen = result.as_ref().err().map(FetchError::reason);
        if account.last_logged != Some(seen) {
            log_change(email, &result);
            account.last_logged = Some(seen);
        }
        let (answer, ttl) = match result {
            Ok(policy) => {
                account.backoff.reset();
                (Ok(Arc::new(policy)), self.config.recheck)
            }
            Err(e) if e.is_transient() => {
                // The server's Retry-After wins over a shorter back-off, never over the recheck.
                let delay = account.backoff.next_delay();
                let asked = e.retry_after().unwrap_or_default();
                (Err(e.reason()), delay.max(asked).min(self.config.recheck))
            }
            Err(e) => {
                account.backoff.reset();
                (Err(e.reason()), self.config.recheck)
            }
        };
        account.answer = Some(answer);
        account.valid_until = Some(now + ttl);
    }

    async fn wait_turn(&self) {
        let start = {
            let mut slot = self.next_slot.lock().await;
            let start = (*slot).max(Instant::now());
            *slot = start + self.config.min_interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    fn record(&self, email: &str, member: &str, state: BindingState) {
        let mut states = lock(&self.states);
        let previous = states.insert((email.to_owned(), member.to_owned()), state);
        if previous != Some(state) {
            self.publish(&states);
        }
    }

    fn publish(&self, states: &HashMap<(String, String), BindingState>) {
        for s in BindingState::ALL {
            self.metrics
                .set_bindings(s, states.values().filter(|v| **v == s).count());
        }
    }
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drop accounts nobody is checking whose answer has expired.
fn evict_idle(accounts: &mut HashMap<String, Arc<Mutex<Account>>>) {
    let now = Instant::now();
    accounts.retain(|_, slot| {
        Arc::strong_count(slot) > 1
            || slot
                .try_lock()
                .map(|a| a.fresh(now).is_some())
                .unwrap_or(true)
    });
}

fn log_change(email: &str, result: &Result<Policy, FetchError>) {
    match result {
        Ok(_) => tracing::info!(
            account = email,
            "IAM policy of the service account readable"
        ),
        Err(e) if e.is_transient() => tracing::warn!(
            account = email,
            outcome = e.outcome(),
            error = %e,
            "IAM policy unreadable, retrying with back-off; its bindings are unknown meanwhile"
        ),
        Err(e) => tracing::warn!(
            account = email,
            outcome = e.outcome(),
            error = %e,
            "IAM policy unreadable; its bindings are unknown"
        ),
    }
}
