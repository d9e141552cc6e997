//! The IAM binding check against a local stand-in of Google's endpoints: the real client,
//! pointed at the stand-in by `GCE_METADATA_HOST` (metadata token) and the IAM endpoint URL
//! (HTTPS, trusting the stand-in's CA), or by a service-account key file.

#[path = "iam_standin/mod.rs"]
mod standin;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::json;

use carto_wi_webhook::iam::{
    BindingState, Credentials, HttpClient, IamClient, IamMetrics, UnknownReason, Verifier,
    VerifierConfig, workload_member,
};
use standin::keys::{key_file, rsa_key};
use standin::{Answer, StandIn};

const PROJECT: &str = "acme-gke";
const EMAIL: &str = "carto-wi@acme-analytics.iam.gserviceaccount.com";

fn member(ns: &str) -> String {
    workload_member(PROJECT, ns, "carto-common-backend")
}

fn config(recheck_ms: u64, backoff_ms: u64) -> VerifierConfig {
    VerifierConfig {
        recheck: Duration::from_millis(recheck_ms),
        min_interval: Duration::from_millis(1),
        backoff: Duration::from_millis(backoff_ms),
    }
}

/// The real client and verifier, credentials chosen from `env` (not the process environment).
fn verifier(
    stand: &StandIn,
    env: &[(&str, String)],
    config: VerifierConfig,
) -> (Verifier, Registry) {
    let http = HttpClient::new(std::slice::from_ref(&stand.ca), Duration::from_secs(5)).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let creds = Credentials::from_lookup(http.clone(), |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let mut registry = Registry::with_prefix("carto_wi");
    let metrics = IamMetrics::register(&mut registry);
    let v = Verifier::new(IamClient::new(&stand.iam_url, http, creds), config, metrics);
    (v, registry)
}

fn on_metadata(stand: &StandIn, config: VerifierConfig) -> (Verifier, Registry) {
    verifier(
        stand,
        &[("GCE_METADATA_HOST", stand.metadata_host.clone())],
        config,
    )
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

#[tokio::test]
async fn standin_states_present_missing_conditional_unknown() {
    let stand = StandIn::start().await;
    let (ok, other, cond, denied, gone) = (
        "ok@p.iam.gserviceaccount.com",
        "other@p.iam.gserviceaccount.com",
        "cond@p.iam.gserviceaccount.com",
        "denied@p.iam.gserviceaccount.com",
        "deleted@p.iam.gserviceaccount.com",
    );
    stand.grant(ok, &[member("carto")]);
    stand.grant(other, &[member("someone-else")]);
    stand.set(
        cond,
        Answer::Policy(json!({"version": 3, "bindings": [{
            "role": "roles/iam.workloadIdentityUser", "members": [member("carto")],
            "condition": {"title": "temporary", "expression": "request.time < timestamp('2027-01-01T00:00:00Z')"}}]})),
    );
    stand.set(denied, Answer::Status(403, None));
    let (v, registry) = on_metadata(&stand, config(60_000, 60_000));

    assert_eq!(v.check(ok, &member("carto")).await, BindingState::Present);
    assert_eq!(
        v.check(other, &member("carto")).await,
        BindingState::Missing
    );
    assert_eq!(
        v.check(cond, &member("carto")).await,
        BindingState::Unknown(UnknownReason::Conditional)
    );
    assert_eq!(
        v.check(denied, &member("carto")).await,
        BindingState::Unknown(UnknownReason::PermissionDenied)
    );
    assert_eq!(
        v.check(gone, &member("carto")).await,
        BindingState::Unknown(UnknownReason::NotFound)
    );
    // One metadata token serves every call; one IAM request per account.
    assert_eq!(stand.metadata_requests(), 1);
    assert_eq!(stand.iam_requests(), 5);
    let text = metrics_text(&registry);
    for line in [
        "carto_wi_iam_binding{state=\"present\"} 1",
        "carto_wi_iam_binding{state=\"missing\"} 1",
        "carto_wi_iam_binding{state=\"unknown_not_found\"} 1",
        "carto_wi_iam_requests_total{outcome=\"ok\"} 3",
        "carto_wi_iam_requests_total{outcome=\"permission_denied\"} 1",
        "carto_wi_iam_requests_total{outcome=\"not_found\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn standin_metadata_unreachable_is_unknown_credentials_and_backs_off() {
    let stand = StandIn::start().await;
    stand.grant(EMAIL, &[member("carto")]);
    // A port nothing listens on: the token fetch fails, the IAM API is never called.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (v, registry) = verifier(
        &stand,
        &[("GCE_METADATA_HOST", host)],
        config(60_000, 60_000),
    );
    for _ in 0..3 {
        assert_eq!(
            v.check(EMAIL, &member("carto")).await,
            BindingState::Unknown(UnknownReason::Credentials)
        );
    }
    assert_eq!(stand.iam_requests(), 0);
    let text = metrics_text(&registry);
    assert!(
        text.contains("carto_wi_iam_requests_total{outcome=\"credentials_error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn standin_stalled_endpoint_times_out_as_api_error() {
    let stand = StandIn::start().await;
    // Accepts connections and never answers, not even the TLS handshake.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", stalled.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = stalled.accept().await {
            held.push(conn);
        }
    });
    let http =
        HttpClient::new(std::slice::from_ref(&stand.ca), Duration::from_millis(300)).unwrap();
    let metadata = [("GCE_METADATA_HOST".to_owned(), stand.metadata_host.clone())];
    let creds = Credentials::from_lookup(http.clone(), |name| {
        metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let mut registry = Registry::with_prefix("carto_wi");
    let v = Verifier::new(
        IamClient::new(&url, http, creds),
        config(60_000, 60_000),
        IamMetrics::register(&mut registry),
    );
    let state = tokio::time::timeout(Duration::from_secs(5), v.check(EMAIL, &member("carto")))
        .await
        .expect("the deadline ends the exchange");
    assert_eq!(state, BindingState::Unknown(UnknownReason::ApiError));
    let text = metrics_text(&registry);
    assert!(
        text.contains("carto_wi_iam_requests_total{outcome=\"transport_error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn standin_oversized_policy_is_refused_unread() {
    let stand = StandIn::start().await;
    // 40,000 members of ~40 bytes: over the 1 MiB bound on a policy answer.
    let members: Vec<String> = (0..40_000).map(|i| member(&format!("ns-{i:06}"))).collect();
    stand.grant(EMAIL, &members);
    let (v, registry) = on_metadata(&stand, config(60_000, 60_000));
    assert_eq!(
        v.check(EMAIL, &member("ns-000001")).await,
        BindingState::Unknown(UnknownReason::ApiError)
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("carto_wi_iam_requests_total{outcome=\"transport_error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn standin_200_namespaces_one_request_per_ttl() {
    let stand = StandIn::start().await;
    let members: Vec<String> = (0..200).map(|i| member(&format!("tenant-{i}"))).collect();
    stand.grant(EMAIL, &members);
    let (v, registry) = on_metadata(&stand, config(1_000, 1_000));
    let v = Arc::new(v);

    let check_all = || {
        let tasks: Vec<_> = members
            .iter()
            .map(|m| {
                let (v, m) = (v.clone(), m.clone());
                tokio::spawn(async move { v.check(EMAIL, &m).await })
            })
            .collect();
        futures::future::join_all(tasks)
    };
    for r in check_all().await {
        assert_eq!(r.unwrap(), BindingState::Present);
    }
    assert_eq!(
        stand.iam_requests(),
        1,
        "200 namespaces, one account, one TTL"
    );
    for r in check_all().await {
        assert_eq!(r.unwrap(), BindingState::Present);
    }
    assert_eq!(stand.iam_requests(), 1, "still within the TTL");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for r in check_all().await {
        assert_eq!(r.unwrap(), BindingState::Present);
    }
    assert_eq!(stand.iam_requests(), 2, "one more after the TTL");
    assert!(metrics_text(&registry).contains("carto_wi_iam_binding{state=\"present\"} 200"));
}

#[tokio::test]
async fn standin_config_change_rechecks_at_once() {
    let stand = StandIn::start().await;
    let next = "carto-wi-2@acme-analytics.iam.gserviceaccount.com";
    stand.grant(EMAIL, &[]);
    stand.grant(next, &[member("carto")]);
    let (v, registry) = on_metadata(&stand, config(600_000, 60_000));

    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Missing
    );
    // The binding is added on Google's side: the cached answer holds until the TTL...
    stand.grant(EMAIL, &[member("carto")]);
    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Missing
    );
    assert_eq!(stand.iam_requests(), 1);
    // ...but a config naming another account is checked at once.
    assert_eq!(v.check(next, &member("carto")).await, BindingState::Present);
    assert_eq!(stand.iam_requests(), 2);
    // And an explicit recheck of the first reads its new policy.
    v.invalidate(EMAIL).await;
    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Present
    );
    assert_eq!(stand.iam_requests(), 3);
    v.forget(EMAIL, &member("carto"));
    assert!(metrics_text(&registry).contains("carto_wi_iam_binding{state=\"present\"} 1"));
}

/// Every log line of this test binary (one global subscriber: per-thread ones race with
/// tracing's callsite cache when tests run in parallel); tests filter by their own account.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn global() -> Self {
        static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Captured::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        })
        .clone()
    }

    fn lines_about(&self, account: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(account))
            .count()
    }
}

#[tokio::test]
async fn standin_429_and_5xx_back_off_and_log_once_per_change() {
    let logs = Captured::global();
    const EMAIL: &str = "outage@acme-analytics.iam.gserviceaccount.com";
    let stand = StandIn::start().await;
    stand.set(EMAIL, Answer::Status(503, None));
    let (v, registry) = on_metadata(&stand, config(600_000, 200));
    let unknown = BindingState::Unknown(UnknownReason::ApiError);

    assert_eq!(v.check(EMAIL, &member("a")).await, unknown);
    assert_eq!(v.check(EMAIL, &member("b")).await, unknown);
    assert_eq!(
        stand.iam_requests(),
        1,
        "within the back-off nothing is asked"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(v.check(EMAIL, &member("a")).await, unknown);
    assert_eq!(stand.iam_requests(), 2, "retried after the back-off");
    // The second back-off is twice the first.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(v.check(EMAIL, &member("a")).await, unknown);
    assert_eq!(stand.iam_requests(), 2, "back-off doubled");
    // 429 with Retry-After: the server's delay wins over the shorter back-off.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stand.set(EMAIL, Answer::Status(429, Some(2)));
    assert_eq!(v.check(EMAIL, &member("a")).await, unknown);
    assert_eq!(stand.iam_requests(), 3);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(v.check(EMAIL, &member("a")).await, unknown);
    assert_eq!(stand.iam_requests(), 3, "Retry-After honoured");
    assert_eq!(logs.lines_about(EMAIL), 1, "an outage is one line");

    stand.grant(EMAIL, &[member("a")]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(v.check(EMAIL, &member("a")).await, BindingState::Present);
    assert_eq!(logs.lines_about(EMAIL), 2, "its end another");
    let text = metrics_text(&registry);
    assert!(
        text.contains("carto_wi_iam_requests_total{outcome=\"server_error\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("carto_wi_iam_requests_total{outcome=\"rate_limited\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn standin_service_account_key_file() {
    let stand = StandIn::start().await;
    stand.grant(EMAIL, &[member("carto")]);
    let (pem, public) = rsa_key();
    stand.trust_key(public);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            key_file(&dir, &stand, &pem),
        ),
        // The key file wins over the metadata server, as in Google's libraries.
        ("GCE_METADATA_HOST", stand.metadata_host.clone()),
    ];
    let (v, _) = verifier(&stand, &env, config(1, 60_000));
    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Present
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Present
    );
    assert_eq!(stand.iam_requests(), 2);
    assert_eq!(
        stand.oauth_requests(),
        1,
        "the token is reused until near expiry"
    );
    assert_eq!(stand.metadata_requests(), 0);
}

#[tokio::test]
async fn standin_key_file_signed_by_another_key_is_refused() {
    let stand = StandIn::start().await;
    stand.grant(EMAIL, &[member("carto")]);
    let (_, trusted) = rsa_key();
    let (other_pem, _) = rsa_key();
    stand.trust_key(trusted);
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "GOOGLE_APPLICATION_CREDENTIALS",
        key_file(&dir, &stand, &other_pem),
    )];
    let (v, _) = verifier(&stand, &env, config(60_000, 60_000));
    assert_eq!(
        v.check(EMAIL, &member("carto")).await,
        BindingState::Unknown(UnknownReason::Credentials)
    );
    assert_eq!(stand.oauth_requests(), 1);
    assert_eq!(stand.iam_requests(), 0);
}
