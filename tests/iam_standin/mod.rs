//! A local stand-in for Google's side: the metadata server's token endpoint (plain HTTP, as on
//! GKE), and over HTTPS (a test CA) the OAuth token endpoint of service-account keys and the IAM
//! API's `getIamPolicy`, with their documented request and response shapes. Each account's
//! answer comes from a table the test changes; every endpoint counts its requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use carto_wi_webhook::pki::CertificateAuthority;

pub mod keys;

const METADATA_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// What `getIamPolicy` answers for one account.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this policy JSON.
    Policy(Value),
    /// This status with Google's error body (and `Retry-After: secs` when given).
    Status(u16, Option<u64>),
}

#[derive(Default)]
struct Shared {
    accounts: Mutex<HashMap<String, Answer>>,
    /// The public key (RSAPublicKey DER) JWT assertions must be signed with.
    sa_public_key: Mutex<Option<Vec<u8>>>,
    iam_requests: AtomicUsize,
    metadata_requests: AtomicUsize,
    oauth_requests: AtomicUsize,
    issued: AtomicUsize,
}

/// The running stand-in.
pub struct StandIn {
    shared: Arc<Shared>,
    /// `host:port` of the metadata side, for `GCE_METADATA_HOST`.
    pub metadata_host: String,
    /// `https://127.0.0.1:port`, for `--iam-endpoint`.
    pub iam_url: String,
    /// The CA the HTTPS side's certificate is signed by.
    pub ca: CertificateDer<'static>,
}

impl StandIn {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route(METADATA_PATH, get(metadata_token))
            .route("/token", post(oauth_token))
            .route(
                "/v1/projects/-/serviceAccounts/{name}",
                post(get_iam_policy),
            )
            .with_state(shared.clone());
        let metadata = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metadata_host = metadata.local_addr().unwrap().to_string();
        let plain = app.clone();
        tokio::spawn(async move { axum::serve(metadata, plain).await.unwrap() });
        let (acceptor, ca) = tls();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let iam_url = format!("https://{}", https.local_addr().unwrap());
        tokio::spawn(serve_tls(https, acceptor, app));
        Self {
            shared,
            metadata_host,
            iam_url,
            ca,
        }
    }

    /// Set what `email`'s policy request answers.
    pub fn set(&self, email: &str, answer: Answer) {
        self.shared
            .accounts
            .lock()
            .unwrap()
            .insert(email.to_owned(), answer);
    }

    /// A policy granting `roles/iam.workloadIdentityUser` to `members`.
    pub fn grant(&self, email: &str, members: &[String]) {
        self.set(
            email,
            Answer::Policy(json!({
                "version": 1,
                "etag": "BwXhqDtvCEM=",
                "bindings": [{"role": "roles/iam.workloadIdentityUser", "members": members}],
            })),
        );
    }

    /// Accept JWT assertions signed by this RSA public key (DER RSAPublicKey).
    pub fn trust_key(&self, public_key: Vec<u8>) {
        *self.shared.sa_public_key.lock().unwrap() = Some(public_key);
    }

    pub fn iam_requests(&self) -> usize {
        self.shared.iam_requests.load(Ordering::SeqCst)
    }

    pub fn metadata_requests(&self) -> usize {
        self.shared.metadata_requests.load(Ordering::SeqCst)
    }

    pub fn oauth_requests(&self) -> usize {
        self.shared.oauth_requests.load(Ordering::SeqCst)
    }
}

fn tls() -> (TlsAcceptor, CertificateDer<'static>) {
    let ca = CertificateAuthority::new("iam stand-in CA", 1).unwrap();
    let pair = ca
        .issue_server(&["127.0.0.1".to_owned(), "localhost".to_owned()], 1)
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let root = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    (TlsAcceptor::from(Arc::new(config)), root)
}

async fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}

fn issue_token(shared: &Shared) -> Response {
    let n = shared.issued.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "access_token": format!("ya29.standin-{n}"),
        "expires_in": 3599,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// The metadata server refuses requests without `Metadata-Flavor: Google`.
async fn metadata_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.metadata_requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    issue_token(&shared)
}

/// RFC 7523: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`, the JWT
/// RS256-signed by the trusted key, its claims those Google documents.
async fn oauth_token(State(shared): State<Arc<Shared>>, body: String) -> Response {
    shared.oauth_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<&str, &str> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let grant = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
    let key = shared.sa_public_key.lock().unwrap().clone();
    match (form.get("grant_type"), form.get("assertion"), key) {
        (Some(g), Some(jwt), Some(key)) if *g == grant && assertion_ok(jwt, &key) => {
            issue_token(&shared)
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            ),
        )
            .into_response(),
    }
}

fn assertion_ok(jwt: &str, public_key: &[u8]) -> bool {
    let Some((signed, sig)) = jwt.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    );
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return false;
    }
    let part = |i: usize| -> Option<Value> {
        let b = URL_SAFE_NO_PAD.decode(signed.split('.').nth(i)?).ok()?;
        serde_json::from_slice(&b).ok()
    };
    let (Some(header), Some(claims)) = (part(0), part(1)) else {
        return false;
    };
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    header["alg"] == "RS256"
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
        && claims["iss"].as_str().is_some_and(|i| i.contains('@'))
        && matches!((iat, exp), (Some(i), Some(e)) if e > i && e - i <= 3600)
}

fn google_error(code: u16, status: &str, message: &str, retry_after: Option<u64>) -> Response {
    let body = json!({"error": {"code": code, "message": message, "status": status}});
    let mut resp = (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
    }
    resp
}

/// `POST /v1/projects/-/serviceAccounts/{email}:getIamPolicy`, body
/// `{"options":{"requestedPolicyVersion":3}}`, with a token this stand-in issued.
async fn get_iam_policy(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    shared.iam_requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ya29.standin-"));
    if !authorized {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            None,
        );
    }
    let Some(email) = name.strip_suffix(":getIamPolicy") else {
        return google_error(404, "NOT_FOUND", "Method not found.", None);
    };
    let version = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["options"]["requestedPolicyVersion"].as_u64());
    if version != Some(3) {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "requestedPolicyVersion must be 3 here.",
            None,
        );
    }
    let answer = shared.accounts.lock().unwrap().get(email).cloned();
    match answer {
        Some(Answer::Policy(p)) => axum::Json(p).into_response(),
        Some(Answer::Status(403, _)) => google_error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'iam.serviceAccounts.getIamPolicy' denied on resource (or it may not exist): projects/-/serviceAccounts/{email}"
            ),
            None,
        ),
        Some(Answer::Status(429, after)) => {
            google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", after)
        }
        Some(Answer::Status(code, after)) => google_error(
            code,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            after,
        ),
        None => google_error(
            404,
            "NOT_FOUND",
            &format!("Unknown service account: {email}"),
            None,
        ),
    }
}
