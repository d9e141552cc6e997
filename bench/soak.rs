//! Soak with faults, standalone part (issue 9, item 6), run by `bench/soak.sh`.
//!
//! Starts the release `carto-wi-webhook serve --config FILE --tls-cert C --tls-key K` on
//! loopback, finds its maximum (a short closed-loop saturation run, as `loadbench` does), then
//! drives it for `--duration` seconds at half that rate (open loop, HTTP/1.1 keep-alive over TLS,
//! alternately `/mutate` and `/validate` of CARTO's workspace-api review) while:
//! - the certificate rotates every 10 s: a new key and leaf from the CA the client trusts, swapped
//!   in as a Secret volume does (both files behind a `..data` symlink replaced by one rename);
//! - the config file changes every second, cycling through two valid versions and an invalid one
//!   (written to a temp file and renamed over the old one).
//!
//! Every answer is checked: HTTP 200, an `admission.k8s.io/v1` AdmissionReview with the request's
//! uid; every `/mutate` patch is applied to the object and the four variables of every container
//! and the `config-hash` stamp must all be one version's (never a mix, never the invalid one, and
//! the version in force at some time during the request, allowing the poll interval and a grace).
//! New connections (each connection is replaced after 10 s) must get a certificate the CA signed,
//! the newest one shortly after each swap. The server's VmRSS, open file descriptors and threads
//! are sampled every second; its reload counters are compared with the changes made. Prints a
//! markdown table (and writes `soak.json` in `--out`); exits 1 when a check fails.
//!
//! `soak --server BIN --review FILE --out DIR [--duration S] [--saturation S]
//!  [--server-cpus LIST] [--reload-interval MS] [--connections N]`

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use carto_wi_webhook::config::{parse_config, standalone_snapshot};
use carto_wi_webhook::settings::Settings;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

const CONFIG_MAP: &str = "carto-workload-identity";
const HASH_ANNOTATION: &str = "workload-identity.carto.com/config-hash";
const KEYS: [&str; 4] = [
    "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP",
    "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
    "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
    "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
];
const CERT_EVERY: Duration = Duration::from_secs(10);
const CONFIG_EVERY: Duration = Duration::from_secs(1);
/// A connection is replaced after this long, so new handshakes meet every certificate.
const RECYCLE: Duration = Duration::from_secs(10);
/// Slack on top of the poll interval for a change to be in force (a stalled VM, a busy worker).
const GRACE: Duration = Duration::from_secs(1);
/// Extra open file descriptors tolerated between the first and the last window: a connection
/// being replaced is briefly two.
const FD_SLACK: u64 = 2;

// ---------------------------------------------------------------------------------------------
// Config versions

/// One version of the config file.
struct Version {
    name: &'static str,
    yaml: String,
    /// The `config-hash` stamp and the four values; `None` for the invalid version.
    valid: Option<(String, BTreeMap<String, String>)>,
}

fn config_yaml(tag: &str, billing: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CONFIG_MAP}\n  namespace: carto\ndata:\n  \
         WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: acme-analytics.carto_workflows_{tag}\n  \
         WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: {billing}\n  \
         WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: carto-wi-{tag}@acme-analytics.iam.gserviceaccount.com\n  \
         WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: \"auth0|owner-{tag}\"\n  \
         GKE_CLUSTER_PROJECT: acme-gke-prod\n"
    )
}

/// Versions A and B (every value differs), and X, invalid (a billing project with capitals and
/// an underscore) but otherwise with values of its own, so that serving it would show.
fn versions() -> anyhow::Result<Vec<Version>> {
    let mut out = Vec::new();
    for (name, tag, billing) in [
        ("A", "a", "acme-billing-a"),
        ("B", "b", "acme-billing-b"),
        ("X (invalid)", "x", "Acme_Billing_X"),
    ] {
        let yaml = config_yaml(tag, billing);
        let valid = match parse_config(yaml.as_bytes(), CONFIG_MAP, &Default::default()) {
            Ok(c) => {
                let values = [
                    &c.workflows_temp,
                    &c.billing_project,
                    &c.service_account_email,
                    &c.connection_owner_id,
                ];
                let values = KEYS
                    .iter()
                    .zip(values)
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                Some((c.hash.clone(), values))
            }
            Err(_) => None,
        };
        out.push(Version { name, yaml, valid });
    }
    if out[0].valid.is_none() || out[1].valid.is_none() || out[2].valid.is_some() {
        bail!("versions A and B must be valid and X invalid");
    }
    Ok(out)
}

/// Write `content` to `path` through a temp file renamed over it (atomic).
fn replace_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------------------------
// Certificates, laid out as a Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..gen-N

struct Certs {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    generation: usize,
}

/// What the rotation made: each leaf's DER (to recognise it in a handshake) and when it was
/// swapped in.
#[derive(Default)]
struct CertLog {
    generation_of: HashMap<Vec<u8>, usize>,
    swapped_at: Vec<Instant>,
}

impl Certs {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        std::fs::write(dir.join("ca.crt"), ca.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca, ca_key);
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(f), dir.join(f))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            issuer,
            generation: 0,
        })
    }

    /// Write generation N+1 in its own directory and swap `..data` to it with one rename.
    fn rotate(&mut self, log: &Mutex<CertLog>) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate()?;
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?
            .signed_by(&key, &self.issuer)?;
        let gen_dir = |g: usize| self.dir.join(format!("..gen-{g:05}"));
        let next = self.generation + 1;
        std::fs::create_dir_all(gen_dir(next))?;
        std::fs::write(gen_dir(next).join("tls.crt"), leaf.pem())?;
        std::fs::write(gen_dir(next).join("tls.key"), key.serialize_pem())?;
        lock(log).generation_of.insert(leaf.der().to_vec(), next);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..gen-{next:05}"), &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        lock(log).swapped_at.push(Instant::now());
        // As the kubelet does, the old generation goes; the one before it, so that a reader that
        // resolved `..data` just before the swap still finds its files.
        if next >= 2 {
            let _ = std::fs::remove_dir_all(gen_dir(next - 2));
        }
        self.generation = next;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server logged: review lines are counted, every other line is kept in a file.
#[derive(Default, Debug)]
struct LogCounts {
    reviews: u64,
    warn: u64,
    error: u64,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn start_server(a: &Args, config: &Path, tls: &Path) -> anyhow::Result<Server> {
    let (listen, admin) = (free_port()?, free_port()?);
    let mut cmd = match &a.server_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(&a.server);
            c
        }
        None => Command::new(&a.server),
    };
    let child = cmd
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--tls-cert")
        .arg(tls.join("tls.crt"))
        .arg("--tls-key")
        .arg(tls.join("tls.key"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--reload-interval", &format!("{}ms", a.reload.as_millis())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", a.server.display()))?;
    let mut srv = Server {
        child,
        listen,
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while admin_get(admin, "/readyz").map(|(s, _)| s) != Some(200) {
        if Instant::now() > deadline {
            bail!("serve not ready after 15 s");
        }
        if let Some(st) = srv.child.try_wait()? {
            bail!("serve exited at start: {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(srv)
}

/// Read the server's log on a thread of its own (the server's log thread must never wait).
fn drain_log(srv: &mut Server, file: &Path) -> anyhow::Result<std::thread::JoinHandle<LogCounts>> {
    let stderr = srv.child.stderr.take().context("no stderr")?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    Ok(std::thread::spawn(move || {
        let mut c = LogCounts::default();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(r#""message":"review""#) {
                c.reviews += 1;
                continue;
            }
            if line.contains(r#""level":"WARN""#) {
                c.warn += 1;
            } else if line.contains(r#""level":"ERROR""#) {
                c.error += 1;
            }
            let _ = writeln!(out, "{line}");
        }
        c
    }))
}

/// `GET path` on the admin listener: status and body.
fn admin_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The reload counters, by series with labels, e.g. `carto_wi_config_reloads_total{result="success"}`.
fn reload_counters(admin: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let (_, body) = admin_get(admin, "/metrics").context("GET /metrics failed")?;
    Ok(body
        .lines()
        .filter(|l| {
            l.starts_with("carto_wi_config_reloads_total")
                || l.starts_with("carto_wi_tls_reloads_total")
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

/// One line of /proc/PID/status, in its unit (kB for VmRSS).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// User + system CPU time of the process (USER_HZ 100).
fn cpu_time(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) * 10)
}

/// A sample of the server, every second of the soak.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

fn spawn_sampler(
    pid: u32,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut next = start;
        while !stop.load(Ordering::Relaxed) {
            out.push(Sample {
                at: start.elapsed(),
                rss_kib: proc_status(pid, "VmRSS"),
                fds: open_fds(pid),
                threads: proc_status(pid, "Threads"),
            });
            next += Duration::from_secs(1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// The faults: config changes every second, certificate rotations every 10 s

/// The config writes made: when, and which version (index into the versions).
type ChangeLog = Mutex<Vec<(Instant, usize)>>;

#[derive(Default, Debug, Clone, Copy)]
struct Changes {
    valid: u64,
    invalid: u64,
    rotations: u64,
}

/// Until `end`: B, X, A, B, X, A, ... one a second (A is in force at the start), and a new
/// certificate every 10 s.
fn spawn_faults(
    ctx: Arc<Ctx>,
    mut certs: Certs,
    config: PathBuf,
    start: Instant,
    end: Instant,
) -> std::thread::JoinHandle<anyhow::Result<Changes>> {
    std::thread::spawn(move || {
        let mut done = Changes::default();
        let (mut next_config, mut next_cert) = (start + CONFIG_EVERY, start + CERT_EVERY);
        let mut i = 0usize;
        loop {
            let next = next_config.min(next_cert);
            if next >= end {
                return Ok(done);
            }
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            if next == next_cert {
                certs.rotate(&ctx.certs)?;
                done.rotations += 1;
                next_cert += CERT_EVERY;
            } else {
                let v = [1, 2, 0][i % 3];
                replace_file(&config, ctx.versions[v].yaml.as_bytes())?;
                lock(&ctx.changes).push((Instant::now(), v));
                if ctx.versions[v].valid.is_some() {
                    done.valid += 1;
                } else {
                    done.invalid += 1;
                }
                i += 1;
                next_config += CONFIG_EVERY;
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The client

/// What every request shares.
struct Ctx {
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    /// The review body split around its uid (36 chars), to send a fresh uid each time.
    mutate: (Vec<u8>, Vec<u8>),
    /// The same review of the object as patched for version A and for B (what the API server
    /// sends the validating webhook after each version's mutation).
    validate: [(Vec<u8>, Vec<u8>); 2],
    /// The request's object, to apply each patch to.
    object: Value,
    versions: Vec<Version>,
    reload: Duration,
    changes: ChangeLog,
    certs: Mutex<CertLog>,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    answered: u64,
    failed: u64,
    failures: Vec<String>,
    mutate_by_version: [u64; 2],
    mixed: u64,
    mixed_examples: Vec<String>,
    stale: u64,
    stale_examples: Vec<String>,
    validate_allowed: [u64; 2],
    validate_denied: [u64; 2],
    /// Verdict on each distinct patch: the version it belongs to, or why it mixes versions.
    patches: HashMap<String, Result<usize, String>>,
    handshakes: u64,
    certs_seen: std::collections::BTreeSet<usize>,
    /// Handshakes that got an older certificate than the newest, more than the poll interval
    /// plus [`GRACE`] after the newest was swapped in.
    stale_handshakes: u64,
    latencies_ns: Vec<u64>,
}

impl Stats {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(what);
        }
    }
}

struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    born: Instant,
}

fn client_tls(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Full handshakes, as the API server's client makes: a resumed session would report the
    // certificate of the session it resumes, not the one the server holds now.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

async fn connect(ctx: &Ctx) -> Result<Conn, String> {
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(ctx.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(ctx.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    note_certificate(ctx, &leaf, started)?;
    let (send, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(Conn {
        send,
        born: Instant::now(),
    })
}

/// Which certificate a handshake started at `started` got, and whether it was the newest one
/// that had been in place for longer than the poll interval plus [`GRACE`].
fn note_certificate(ctx: &Ctx, leaf: &[u8], started: Instant) -> Result<(), String> {
    let (generation, newest_due) = {
        let log = lock(&ctx.certs);
        let generation = *log.generation_of.get(leaf).unwrap_or(&usize::MAX);
        let due = log
            .swapped_at
            .iter()
            .rposition(|t| *t + ctx.reload + GRACE <= started)
            .map_or(0, |i| i + 1);
        (generation, due)
    };
    let mut st = lock(&ctx.stats);
    st.handshakes += 1;
    if generation == usize::MAX {
        return Err("the server presented a certificate the rotation never wrote".into());
    }
    st.certs_seen.insert(generation);
    if generation < newest_due {
        st.stale_handshakes += 1;
    }
    Ok(())
}

/// A request: `/mutate` when `k` is even, else `/validate` of the object patched for version A
/// or B in turn.
struct Sent {
    k: u64,
    uid: String,
    at: Instant,
}

impl Sent {
    fn path(&self) -> &'static str {
        if self.k.is_multiple_of(2) {
            "/mutate"
        } else {
            "/validate"
        }
    }

    fn validate_version(&self) -> usize {
        ((self.k / 2) % 2) as usize
    }

    fn body(&self, ctx: &Ctx) -> Bytes {
        let (head, tail) = if self.k.is_multiple_of(2) {
            &ctx.mutate
        } else {
            &ctx.validate[self.validate_version()]
        };
        let mut b = Vec::with_capacity(head.len() + 36 + tail.len());
        b.extend_from_slice(head);
        b.extend_from_slice(self.uid.as_bytes());
        b.extend_from_slice(tail);
        b.into()
    }
}

/// One request on `conn`; the connection comes back unless it broke. Latency counts from `due`.
async fn exchange(ctx: &Ctx, mut conn: Conn, k: u64, due: Instant, timed: bool) -> Option<Conn> {
    let sent = Sent {
        k,
        uid: format!("00000000-0000-4000-8000-{k:012x}"),
        at: Instant::now(),
    };
    let req = Request::post(sent.path())
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(sent.body(ctx)))
        .expect("a valid request");
    let result = async {
        conn.send.ready().await?;
        let resp = conn.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await;
    let done = Instant::now();
    match result {
        Ok((status, body)) => {
            check_answer(ctx, &sent, status, &body, done);
            if timed {
                lock(&ctx.stats)
                    .latencies_ns
                    .push((done - due).as_nanos() as u64);
            }
            Some(conn)
        }
        Err(e) => {
            lock(&ctx.stats).fail(format!("{} k={k}: {e}", sent.path()));
            None
        }
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    response: AnswerResponse,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerResponse {
    uid: String,
    allowed: bool,
    patch: Option<String>,
    patch_type: Option<String>,
}

fn check_answer(ctx: &Ctx, sent: &Sent, status: u16, body: &[u8], done: Instant) {
    let path = sent.path();
    let answer = match parse_answer(sent, status, body) {
        Ok(a) => a,
        Err(e) => {
            let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return lock(&ctx.stats).fail(format!("{path} k={}: {e}: {body}", sent.k));
        }
    };
    if path == "/validate" {
        let v = sent.validate_version();
        let mut st = lock(&ctx.stats);
        st.answered += 1;
        if answer.allowed {
            st.validate_allowed[v] += 1;
        } else {
            st.validate_denied[v] += 1;
        }
        return;
    }
    let Some(patch) = answer
        .patch
        .filter(|_| answer.patch_type.as_deref() == Some("JSONPatch"))
    else {
        return lock(&ctx.stats).fail(format!("/mutate k={}: no JSONPatch", sent.k));
    };
    let verdict = {
        let known = lock(&ctx.stats).patches.get(&patch).cloned();
        known.unwrap_or_else(|| {
            let v = classify_patch(ctx, &patch);
            lock(&ctx.stats).patches.insert(patch.clone(), v.clone());
            v
        })
    };
    let in_force = versions_in_force(ctx, sent.at, done);
    let mut st = lock(&ctx.stats);
    st.answered += 1;
    match verdict {
        Ok(v) => {
            st.mutate_by_version[v] += 1;
            if !in_force.contains(&v) {
                st.stale += 1;
                if st.stale_examples.len() < 5 {
                    st.stale_examples.push(format!(
                        "k={}: version {} while {:?} was in force",
                        sent.k, ctx.versions[v].name, in_force
                    ));
                }
            }
        }
        Err(why) => {
            st.mixed += 1;
            if st.mixed_examples.len() < 5 {
                st.mixed_examples.push(format!("k={}: {why}", sent.k));
            }
        }
    }
}

fn parse_answer(sent: &Sent, status: u16, body: &[u8]) -> Result<AnswerResponse, String> {
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if a.api_version != "admission.k8s.io/v1" || a.kind != "AdmissionReview" {
        return Err(format!("{} {}", a.api_version, a.kind));
    }
    if a.response.uid != sent.uid {
        return Err(format!("uid {} for {}", a.response.uid, sent.uid));
    }
    Ok(a.response)
}

/// The version a `/mutate` patch gives the object: the `config-hash` stamp names it, and every
/// value of the four variables, in every container, must be that version's.
fn classify_patch(ctx: &Ctx, patch_b64: &str) -> Result<usize, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch_b64)
        .map_err(|e| format!("patch not base64: {e}"))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JSON patch: {e}"))?;
    let mut obj = ctx.object.clone();
    json_patch::patch(&mut obj, &patch).map_err(|e| format!("the patch does not apply: {e}"))?;
    let hash = obj
        .pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
        .ok_or("no config-hash stamp")?;
    let v = ctx
        .versions
        .iter()
        .position(|v| v.valid.as_ref().is_some_and(|(h, _)| h == hash))
        .ok_or_else(|| format!("config-hash {hash} is no valid version's"))?;
    let (_, values) = ctx.versions[v].valid.as_ref().expect("valid");
    let containers = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .ok_or("no containers")?;
    for c in containers {
        for key in KEYS {
            let got = c["env"]
                .as_array()
                .and_then(|env| env.iter().find(|e| e["name"] == key))
                .and_then(|e| e["value"].as_str());
            if got != Some(values[key].as_str()) {
                return Err(format!(
                    "config-hash of {} but container {} has {key}={got:?}",
                    ctx.versions[v].name, c["name"]
                ));
            }
        }
    }
    Ok(v)
}

/// The valid versions in force at some time in `[from - poll interval - GRACE, to]`: the last
/// valid one written before that window, and any written during it.
fn versions_in_force(ctx: &Ctx, from: Instant, to: Instant) -> Vec<usize> {
    let from = from.checked_sub(ctx.reload + GRACE).unwrap_or(from);
    let log = lock(&ctx.changes);
    let valid = |v: &usize| ctx.versions[*v].valid.is_some();
    // The first version was in force from the start.
    let before = log
        .iter()
        .rev()
        .filter(|(t, v)| *t <= from && valid(v))
        .map(|(_, v)| *v)
        .next()
        .or_else(|| log.first().map(|(_, v)| *v));
    let during = log
        .iter()
        .filter(|(t, v)| *t > from && *t <= to && valid(v))
        .map(|(_, v)| *v);
    before.into_iter().chain(during).collect()
}

// ---------------------------------------------------------------------------------------------
// Load

/// Closed loop on `clients` connections: the server's maximum, in answers per second.
async fn saturation(ctx: &Arc<Ctx>, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let warmup = Duration::from_secs(1);
    let from = Instant::now() + warmup;
    let end = from + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut k = c as u64 * 1_000_000_000;
            let mut conn = connect(&ctx).await.ok();
            while let Some(c) = conn.take() {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                conn = exchange(&ctx, c, k, t0, false).await;
                if t0 >= from && Instant::now() <= end {
                    n += 1;
                }
                k += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total as f64 / duration.as_secs_f64())
}

/// Releases request k at `start + k/rate` until `end` (to within 0.1 ms, as `loadbench` does).
fn spawn_pacer(
    start: Instant,
    end: Instant,
    rate: f64,
    tx: tokio::sync::mpsc::UnboundedSender<(u64, Instant)>,
) -> std::thread::JoinHandle<()> {
    let period = Duration::from_secs_f64(1.0 / rate);
    std::thread::spawn(move || {
        let mut k = 0u64;
        loop {
            let now = Instant::now();
            let mut due = start + period.mul_f64(k as f64);
            while due <= now && due < end {
                if tx.send((k, due)).is_err() {
                    return;
                }
                k += 1;
                due = start + period.mul_f64(k as f64);
            }
            if due >= end {
                return;
            }
            let wake = due.max(now + Duration::from_micros(100));
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    })
}

/// Take a connection back to the pool: replaced when older than [`RECYCLE`] or broken.
async fn renew(ctx: &Ctx, conn: Option<Conn>) -> Option<Conn> {
    if let Some(c) = conn.filter(|c| c.born.elapsed() < RECYCLE) {
        return Some(c);
    }
    for attempt in 0..5 {
        match connect(ctx).await {
            Ok(c) => return Some(c),
            Err(e) => lock(&ctx.stats).fail(format!("new connection (attempt {attempt}): {e}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Open loop at `rate` from `start` to `end` on a pool of `pool` connections (one request in
/// flight each, as the API server's client). Returns the requests released.
async fn fixed_rate(
    ctx: &Arc<Ctx>,
    rate: f64,
    start: Instant,
    end: Instant,
    pool: usize,
) -> anyhow::Result<u64> {
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel::<Conn>();
    for _ in 0..pool {
        let c = connect(ctx).await.map_err(anyhow::Error::msg)?;
        idle_tx.send(c).ok();
    }
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    let pacer = spawn_pacer(start, end, rate, due_tx);
    let mut running = tokio::task::JoinSet::new();
    let mut released = 0;
    while let Some((k, due)) = due_rx.recv().await {
        let conn = tokio::time::timeout(Duration::from_secs(10), idle_rx.recv())
            .await
            .ok()
            .flatten()
            .context("no connection came back to the pool for 10 s")?;
        let (ctx, idle_tx) = (ctx.clone(), idle_tx.clone());
        running.spawn(async move {
            let conn = exchange(&ctx, conn, k, due, true).await;
            if let Some(c) = renew(&ctx, conn).await {
                let _ = idle_tx.send(c);
            }
        });
        released += 1;
        while running.try_join_next().is_some() {}
    }
    let _ = pacer.join();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let n = running.len();
        lock(&ctx.stats).fail(format!("{n} requests unanswered 10 s after the end"));
        running.abort_all();
    }
    Ok(released)
}

// ---------------------------------------------------------------------------------------------
// Setup and report

struct Args {
    server: PathBuf,
    review: PathBuf,
    out: PathBuf,
    duration: Duration,
    saturation: Duration,
    server_cpus: Option<String>,
    reload: Duration,
    connections: usize,
}

/// The review body split around its uid, and the same review carrying `object` instead.
fn split_review(review: &Value, object: Option<&Value>) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut r = review.clone();
    if let Some(o) = object {
        r["request"]["object"] = o.clone();
    }
    const MARK: &str = "ffffffff-ffff-4fff-8fff-ffffffffffff";
    r["request"]["uid"] = json!(MARK);
    let text = serde_json::to_vec(&r)?;
    let at = text
        .windows(MARK.len())
        .position(|w| w == MARK.as_bytes())
        .context("uid")?;
    Ok((text[..at].to_vec(), text[at + MARK.len()..].to_vec()))
}

fn context(
    a: &Args,
    tls_dir: &Path,
    versions: Vec<Version>,
    addr: SocketAddr,
) -> anyhow::Result<Ctx> {
    let review: Value = serde_json::from_slice(&std::fs::read(&a.review)?)
        .with_context(|| format!("{}: not JSON", a.review.display()))?;
    let object = review["request"]["object"].clone();
    let patched = |v: &Version| {
        let cfg = parse_config(v.yaml.as_bytes(), CONFIG_MAP, &Default::default()).expect("valid");
        common::mutated(&object, &standalone_snapshot(cfg), &Settings::default())
    };
    Ok(Ctx {
        tls: client_tls(&tls_dir.join("ca.crt"))?,
        addr,
        mutate: split_review(&review, None)?,
        validate: [
            split_review(&review, Some(&patched(&versions[0])))?,
            split_review(&review, Some(&patched(&versions[1])))?,
        ],
        object,
        versions,
        reload: a.reload,
        changes: Mutex::new(Vec::new()),
        certs: Mutex::new(CertLog::default()),
        stats: Mutex::new(Stats::default()),
    })
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// The max of a sampled field over `[from, to)` of the soak.
fn window_max(samples: &[Sample], from: Duration, to: Duration, f: fn(&Sample) -> u64) -> u64 {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .map(f)
        .max()
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let need = |name: &str| {
        flag(name)
            .map(PathBuf::from)
            .with_context(|| format!("missing {name}"))
    };
    let secs = |name: &str, default: f64| -> anyhow::Result<Duration> {
        let v = flag(name).map_or(Ok(default), |v| v.parse::<f64>())?;
        Ok(Duration::from_secs_f64(v))
    };
    let a = Args {
        server: need("--server")?,
        review: need("--review")?,
        out: need("--out")?,
        duration: secs("--duration", 300.0)?,
        saturation: secs("--saturation", 5.0)?,
        server_cpus: flag("--server-cpus"),
        reload: Duration::from_millis(flag("--reload-interval").map_or(Ok(200), |v| v.parse())?),
        connections: flag("--connections").map_or(Ok(64), |v| v.parse())?,
    };
    if a.duration < Duration::from_secs(30) {
        bail!("--duration: at least 30 s (the first and last windows are compared)");
    }
    let ok = run(&a)?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn run(a: &Args) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&a.out)?;
    let versions = versions()?;
    let tls_dir = a.out.join("tls");
    let _ = std::fs::remove_dir_all(&tls_dir);
    let mut certs = Certs::create(&tls_dir)?;
    let config = a.out.join("config.yaml");
    replace_file(&config, versions[0].yaml.as_bytes())?;
    let scratch = Mutex::new(CertLog::default());
    certs.rotate(&scratch)?;
    let mut srv = start_server(a, &config, &tls_dir)?;
    let log = drain_log(&mut srv, &a.out.join("server.log"))?;
    let ctx = Arc::new(context(a, &tls_dir, versions, srv.listen)?);
    *lock(&ctx.certs) = std::mem::take(&mut *lock(&scratch));
    lock(&ctx.changes).push((Instant::now(), 0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let max = rt.block_on(saturation(&ctx, 8, a.saturation))?;
    let rate = max / 2.0;
    eprintln!(
        "saturation: {max:.0} req/s; soak at {rate:.0} req/s for {:?}",
        a.duration
    );
    let before = reload_counters(srv.admin)?;
    let answered_before = lock(&ctx.stats).answered;
    let pid = srv.child.id();
    let cpu0 = cpu_time(pid);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + a.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(pid, start, stop.clone());
    let faults = spawn_faults(ctx.clone(), certs, config, start, end);
    let released = rt.block_on(fixed_rate(&ctx, rate, start, end, a.connections))?;
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    stop.store(true, Ordering::Relaxed);
    let changes = faults.join().expect("faults thread")?;
    let samples = sampler.join().expect("sampler thread");
    // The last change is picked up within a poll; a file read while it settles is read again.
    std::thread::sleep(a.reload * 3 + Duration::from_secs(3));
    let after = reload_counters(srv.admin)?;
    let ready = admin_get(srv.admin, "/readyz").map(|(s, _)| s);
    let exited = srv.child.try_wait()?;
    drop(srv);
    let log = log.join().expect("log thread");
    let soak = Soak {
        max,
        rate,
        released,
        answered_before,
        cpu,
        changes,
        before,
        after,
        samples,
        ready,
        exited: exited.map(|s| s.to_string()),
        log,
    };
    report(a, &ctx, &soak)
}

struct Soak {
    max: f64,
    rate: f64,
    released: u64,
    /// Answers before the soak (the sanity and saturation requests).
    answered_before: u64,
    cpu: Duration,
    changes: Changes,
    before: BTreeMap<String, f64>,
    after: BTreeMap<String, f64>,
    samples: Vec<Sample>,
    ready: Option<u16>,
    exited: Option<String>,
    log: LogCounts,
}

impl Soak {
    fn delta(&self, series: &str) -> u64 {
        let get = |m: &BTreeMap<String, f64>| m.get(series).copied().unwrap_or(0.0);
        (get(&self.after) - get(&self.before)) as u64
    }
}

/// A row of the table: what, target, result, verdict (`None`: informative).
type Row = (String, String, String, Option<bool>);

fn report(a: &Args, ctx: &Ctx, s: &Soak) -> anyhow::Result<bool> {
    let mut st = lock(&ctx.stats);
    st.latencies_ns.sort_unstable();
    let mut rows = load_rows(a, &st, s);
    rows.extend(correctness_rows(ctx, &st, s));
    rows.extend(reload_rows(&st, s));
    rows.extend(resource_rows(a, s));
    let mut t = String::from("| check | target | result |  |\n| --- | --- | --- | --- |\n");
    for (what, target, result, ok) in &rows {
        let v = match ok {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "",
        };
        t.push_str(&format!("| {what} | {target} | {result} | {v} |\n"));
    }
    print!("{t}");
    let all_ok = rows.iter().all(|r| r.3 != Some(false));
    let json = json!({
        "saturation_rps": s.max, "rate_rps": s.rate, "released": s.released,
        "answered": st.answered, "failed": st.failed, "failures": st.failures,
        "mixed": st.mixed, "mixed_examples": st.mixed_examples,
        "stale": st.stale, "stale_examples": st.stale_examples,
        "changes": {"valid": s.changes.valid, "invalid": s.changes.invalid, "rotations": s.changes.rotations},
        "counters_before": s.before, "counters_after": s.after,
        "samples": s.samples.iter().map(|x| json!([x.at.as_secs_f64(), x.rss_kib, x.fds, x.threads])).collect::<Vec<_>>(),
        "table": t, "ok": all_ok,
    });
    std::fs::write(a.out.join("soak.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(all_ok)
}

fn load_rows(a: &Args, st: &Stats, s: &Soak) -> Vec<Row> {
    let l = &st.latencies_ns;
    vec![
        (
            "load: own maximum (8 connections, closed loop) → soak rate".into(),
            "50 %".into(),
            format!(
                "{:.0} req/s → {:.0} req/s for {:.0} s on {} connections (each replaced after {} s)",
                s.max,
                s.rate,
                a.duration.as_secs_f64(),
                a.connections,
                RECYCLE.as_secs()
            ),
            None,
        ),
        (
            "soak: requests released / answered".into(),
            "all".into(),
            format!("{} / {}", s.released, st.answered - s.answered_before),
            Some(st.answered - s.answered_before == s.released),
        ),
        (
            "soak latency p50 / p99 / p99.9 / max (from release, open loop)".into(),
            String::new(),
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} µs",
                quantile(l, 0.5),
                quantile(l, 0.99),
                quantile(l, 0.999),
                quantile(l, 1.0)
            ),
            None,
        ),
        (
            "server CPU per request during the soak".into(),
            String::new(),
            format!(
                "{:.1} µs ({:.0} % of a core)",
                s.cpu.as_secs_f64() * 1e6 / s.released.max(1) as f64,
                s.cpu.as_secs_f64() * 100.0 / a.duration.as_secs_f64()
            ),
            None,
        ),
    ]
}

fn correctness_rows(ctx: &Ctx, st: &Stats, s: &Soak) -> Vec<Row> {
    let first = |v: &[String]| {
        v.first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    };
    let [a, b] = st.mutate_by_version;
    vec![
        (
            "failed requests (not 200 + a valid AdmissionReview with the uid sent)".into(),
            "0".into(),
            format!("{}{}", st.failed, first(&st.failures)),
            Some(st.failed == 0),
        ),
        (
            "/mutate answers mixing versions (4 values + config-hash, every container)".into(),
            "0".into(),
            format!(
                "{} of {} (A {a}, B {b}; {} distinct patches decoded){}",
                st.mixed,
                a + b + st.mixed,
                st.patches.len(),
                first(&st.mixed_examples)
            ),
            Some(st.mixed == 0),
        ),
        (
            format!(
                "/mutate answers from a version not in force (invalid kept out; poll {} ms + {} s)",
                ctx.reload.as_millis(),
                GRACE.as_secs()
            ),
            "0".into(),
            format!("{}{}", st.stale, first(&st.stale_examples)),
            Some(st.stale == 0),
        ),
        (
            "/validate answers allowed / denied, object patched for A; for B".into(),
            String::new(),
            format!(
                "{} / {}; {} / {}",
                st.validate_allowed[0],
                st.validate_denied[0],
                st.validate_allowed[1],
                st.validate_denied[1]
            ),
            None,
        ),
        (
            "server alive and ready at the end".into(),
            "yes".into(),
            format!("exited: {:?}, /readyz: {:?}", s.exited, s.ready),
            Some(s.exited.is_none() && s.ready == Some(200)),
        ),
    ]
}

fn reload_rows(st: &Stats, s: &Soak) -> Vec<Row> {
    let c = |r: &str| s.delta(&format!("carto_wi_config_reloads_total{{result=\"{r}\"}}"));
    let t = |r: &str| s.delta(&format!("carto_wi_tls_reloads_total{{result=\"{r}\"}}"));
    let ch = s.changes;
    vec![
        (
            "config changes written valid / invalid → carto_wi_config_reloads_total success / invalid / read_error".into(),
            "equal, 0 read errors".into(),
            format!("{} / {} → {} / {} / {}", ch.valid, ch.invalid, c("success"), c("invalid"), c("read_error")),
            Some(c("success") == ch.valid && c("invalid") == ch.invalid && c("read_error") == 0),
        ),
        (
            "certificate rotations → carto_wi_tls_reloads_total success / invalid / read_error".into(),
            "equal, 0 failures".into(),
            format!("{} → {} / {} / {}", ch.rotations, t("success"), t("invalid"), t("read_error")),
            Some(t("success") == ch.rotations && t("invalid") == 0 && t("read_error") == 0),
        ),
        (
            "new connections: handshakes; certificates seen of those written; stale handshakes".into(),
            "all seen, 0 stale".into(),
            format!(
                "{}; {} of {}; {}",
                st.handshakes,
                st.certs_seen.len(),
                ch.rotations + 1,
                st.stale_handshakes
            ),
            Some(st.certs_seen.len() as u64 == ch.rotations + 1 && st.stale_handshakes == 0),
        ),
        (
            "server log: review lines / answers; WARN; ERROR lines".into(),
            "1 per review; 0 ERROR".into(),
            format!("{} / {}; {}; {}", s.log.reviews, st.answered, s.log.warn, s.log.error),
            Some(
                s.log.reviews >= st.answered
                    && s.log.reviews <= st.answered + st.failed
                    && s.log.error == 0,
            ),
        ),
    ]
}

fn resource_rows(a: &Args, s: &Soak) -> Vec<Row> {
    let w = Duration::from_secs(60).min(a.duration / 3);
    let end = a.duration;
    let rss = |from, to| window_max(&s.samples, from, to, |x| x.rss_kib);
    let fds = |from, to| window_max(&s.samples, from, to, |x| x.fds);
    let thr = |from, to| window_max(&s.samples, from, to, |x| x.threads);
    let (r0, r1) = (rss(Duration::ZERO, w), rss(end - w, end + w));
    let growth = (r1 as f64 / r0.max(1) as f64 - 1.0) * 100.0;
    let (f0, f1) = (fds(Duration::ZERO, w), fds(end - w, end + w));
    let fmin = s.samples.iter().map(|x| x.fds).min().unwrap_or(0);
    let (t0, t1) = (thr(Duration::ZERO, w), thr(end - w, end + w));
    vec![
        (
            format!(
                "VmRSS max, first {} s → last {} s (sampled every second)",
                w.as_secs(),
                w.as_secs()
            ),
            "growth < 10 %".into(),
            format!(
                "{:.1} → {:.1} MiB ({growth:+.1} %)",
                r0 as f64 / 1024.0,
                r1 as f64 / 1024.0
            ),
            Some(growth < 10.0),
        ),
        (
            format!(
                "open file descriptors max, first {} s → last {} s (min over the run)",
                w.as_secs(),
                w.as_secs()
            ),
            format!("flat (≤ +{FD_SLACK})"),
            format!("{f0} → {f1} (min {fmin})"),
            Some(f1 <= f0 + FD_SLACK),
        ),
        (
            "threads max, first → last window".into(),
            "flat".into(),
            format!("{t0} → {t1}"),
            Some(t1 <= t0),
        ),
    ]
}
