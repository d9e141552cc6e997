//! Helpers: start a server in-process on ephemeral ports, HTTPS clients, AdmissionReviews.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use carto_wi_webhook::app::{App, ServeArgs, StartError};
use carto_wi_webhook::cli::{Cli, Command};
use carto_wi_webhook::pki::Pair;
use carto_wi_webhook::server::AppState;
use carto_wi_webhook::shutdown::Shutdown;

/// The example standalone configuration (acme values).
pub const CONFIG: &str = include_str!("../../examples/workload-identity.yaml");
/// The example CARTO Deployment review.
pub const DEPLOYMENT_REVIEW: &str = include_str!("../../examples/admission-review-deployment.json");

pub const EMAIL: &str = "carto-wi@acme-analytics.iam.gserviceaccount.com";

/// Parse `serve` flags as the binary would, on ephemeral loopback ports.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "carto-wi-webhook",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Serve(a) => *a,
        other => panic!("not serve: {other:?}"),
    }
}

/// A temporary directory holding a config file (and whatever a test puts there).
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), CONFIG).unwrap();
        Self { dir }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn config(&self) -> String {
        self.path("config.yaml").display().to_string()
    }
    pub fn ca_out(&self) -> String {
        self.path("ephemeral-ca.crt").display().to_string()
    }
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<AppState>,
    /// The CA that clients must trust.
    pub ca_pem: Vec<u8>,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Start with `args`; `ca_pem` is the CA to trust (None: read the ephemeral CA file).
    pub async fn start(args: ServeArgs, ca_pem: Option<Vec<u8>>) -> Self {
        let server = App::start(args, Shutdown::new())
            .await
            .expect("server starts");
        Self::run(server, ca_pem)
    }

    /// Run a started server.
    pub fn run(server: App, ca_pem: Option<Vec<u8>>) -> Self {
        let ca_pem = ca_pem.unwrap_or_else(|| {
            std::fs::read(server.ephemeral_ca().expect("an ephemeral CA")).unwrap()
        });
        let (addr, admin, state, shutdown) = (
            server.local_addr(),
            server.admin_addr(),
            server.state().clone(),
            server.shutdown().clone(),
        );
        let task = tokio::spawn(server.run());
        Self {
            addr,
            admin,
            state,
            ca_pem,
            shutdown,
            task: Some(task),
        }
    }

    /// Start standalone with the example config and an ephemeral certificate.
    pub async fn standalone(files: &Files, extra: &[&str]) -> Self {
        let (config, ca_out) = (files.config(), files.ca_out());
        let mut flags = vec![
            "--config",
            &config,
            "--ephemeral-ca-out",
            &ca_out,
            "--reload-interval",
            "50ms",
        ];
        flags.extend_from_slice(extra);
        Self::start(serve_args(&flags), None).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn client(&self) -> reqwest::Client {
        client_builder(&self.ca_pem).build().unwrap()
    }

    /// Begin the shutdown (as the first SIGTERM does).
    pub fn signal(&mut self) {
        self.shutdown.request();
    }

    /// Shut down and wait until `run` has returned.
    pub async fn stop(mut self) {
        self.signal();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task does not panic");
    }

    /// Wait for `run` to return (after [`Running::signal`]).
    pub async fn join(mut self) {
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task does not panic");
    }

    /// GET an admin path: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(self.admin_url(path)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// POST a review and return (status, JSON body).
    pub async fn post(&self, path: &str, review: &Value) -> (u16, Value) {
        post(&self.client(), &self.url(path), review).await
    }
}

pub fn client_builder(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .timeout(Duration::from_secs(30))
}

pub async fn post(client: &reqwest::Client, url: &str, review: &Value) -> (u16, Value) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(review).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Poll `check` every 20 ms until it returns Some, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample in a metrics text, 0 when absent.
pub fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// An AdmissionReview for `object` (or `old` for DELETE).
pub fn review(uid: &str, op: &str, object: Option<Value>, old: Option<Value>) -> Value {
    let obj = object.as_ref().or(old.as_ref()).expect("an object");
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_ascii_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": op,
            "userInfo": {"username": "test"},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

/// The object of the example Deployment review.
pub fn deployment() -> Value {
    let r: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    r["request"]["object"].clone()
}

pub fn service_account(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "carto-common-backend", "namespace": "carto", "annotations": annotations},
    })
}

pub fn config_map(data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity", "namespace": "carto"},
        "data": data,
    })
}

/// The data of the example config.
pub fn config_data() -> Value {
    json!({
        "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP": "acme-analytics.carto_workflows_temp",
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT": "acme-gke-prod",
        "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL": EMAIL,
        "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID": "auth0|3idsj230990sj4wsddd10",
        "GKE_CLUSTER_PROJECT": "acme-gke-prod",
    })
}

/// The decoded JSON patch of a response (None when there is none).
pub fn patch_of(body: &Value) -> Option<Value> {
    let b64 = body["response"]["patch"].as_str()?;
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is JSON"))
}

/// Apply a decoded patch.
pub fn apply(object: &Value, patch: &Value) -> Value {
    let mut o = object.clone();
    let p: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut o, &p).expect("the patch applies");
    o
}

pub fn warnings(body: &Value) -> Vec<String> {
    body["response"]["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// A raw TLS connection (HTTP/1.1 only), optionally with a client certificate.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
    identity: Option<&Pair>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(p) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(p.cert_pem.as_bytes()).unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(p.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// The leaf certificate a fresh connection is served.
pub async fn served_cert(addr: SocketAddr, ca_pem: &[u8]) -> Vec<u8> {
    let tls = tls_connect(addr, ca_pem, None).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Read one HTTP/1.1 response (status, headers lower-cased, body) from a raw stream.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    if status == 100 {
        // An interim response: what follows belongs to the final one.
        return Ok((status, head, body));
    }
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, head, body))
}

/// Write all of `bytes` and flush.
pub async fn send<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// The message of a start error.
pub async fn start_error(args: ServeArgs) -> String {
    match App::start(args, Shutdown::new()).await {
        Ok(_) => panic!("the server started"),
        Err(e) => {
            let e: StartError = e;
            e.to_string()
        }
    }
}

pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

/// Replace a file whole (write beside it, then rename).
pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
