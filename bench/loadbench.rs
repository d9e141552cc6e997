//! Over-the-wire load benchmark of `carto-wi-webhook serve`, next to the floor server
//! (`bench/floor_server.rs`), plus start-up time, memory and the report `bench/run.sh` prints.
//!
//! The load generator is this small Rust client (hyper 1 low-level client connections over
//! tokio-rustls, on a single-threaded tokio runtime so it takes at most one of the two cores):
//! - HTTP/1.1 keep-alive (one request in flight per connection, as the API server does) or h2
//!   (several streams multiplexed on a few connections), negotiated by ALPN;
//! - the bodies are realistic AdmissionReviews of CARTO's `carto-workspace-api` Deployment,
//!   alternately `POST /mutate` (the chart's Deployment) and `POST /validate` (the same after the
//!   patch), the pair the API server sends for one write;
//! - **saturation**: every virtual client sends back to back (closed loop);
//! - **fixed rate**: open loop, at 2,000 req/s (`--rate`, the latency target's rate) and at half
//!   of the server's own maximum. A pacer thread releases request k at `start + k/R` (to within
//!   0.1 ms), whatever the server does; the request takes an idle connection from a pool (h1: one
//!   request in flight per connection, as the API server's client) or a stream (h2), waiting if
//!   none is free, and its latency is counted from its release, so a slow server cannot hide its
//!   queue by slowing the client (no coordinated omission, as wrk2 does).
//!
//! Why not `wrk` or `oha`: wrk has no h2 and no fixed rate (wrk2 is not packaged), oha would be
//! one more tool to install from source in every run; this client is ~500 lines, uses the same
//! crates as the server and measures exactly what is reported. Its own cost is the same for the
//! floor and the webhook, and the server's CPU time per request is reported separately
//! (from /proc), which isolates the server's cost from the client's on a 2-core machine.
//!
//! Subcommands:
//! - `wire --server BIN --floor BIN --config FILE --out DIR [--runs N] [--duration S]
//!   [--rate R] [--server-cpus LIST]`: with `--server-cpus 1` the servers run under
//!   `taskset -c 1` (one core, so tokio starts one worker: a pod with a 1-CPU limit) and
//!   `bench/run.sh` pins this client to core 0, so that neither steals the other's CPU and the
//!   pacer keeps time.
//! - `report --out DIR --criterion DIR --binary BIN` (prints the markdown table)
//! - `drive --addr ADDR --ca FILE [--proto h1|h2] [--duration S] [--rate R]`: load a server
//!   started by hand (e.g. under `perf record`), print the phase summary.
//! - `certs --out DIR`: write the CA, certificate and key that `wire` uses, for such a server.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::Settings;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Processes

/// A server process, killed (SIGKILL) and reaped when dropped.
struct Server {
    child: Child,
    name: &'static str,
    listen: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `VmRSS`/`VmHWM`-style field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time used so far (clock ticks of 10 ms, the Linux default USER_HZ).
    fn cpu(&self) -> Duration {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = s.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn server_log() -> Stdio {
    // Logs stay on (their cost is part of the webhook's work) but go nowhere by default.
    match std::env::var_os("BENCH_SERVER_LOG") {
        Some(p) => std::fs::File::create(p).map_or_else(|_| Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

/// `GET /readyz` over plain HTTP: true on a 200.
fn ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_millis(50)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("{what}: not ready after {timeout:?} (set BENCH_SERVER_LOG=FILE to see its log)");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

struct Setup {
    /// CPUs the servers run on (`taskset -c`), e.g. `1`; the client is pinned by the caller.
    server_cpus: Option<String>,
    server_bin: PathBuf,
    floor_bin: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// `bin`, under `taskset -c CPUS` when the servers are pinned.
fn command(s: &Setup, bin: &Path) -> Command {
    match &s.server_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn start_webhook(s: &Setup) -> anyhow::Result<Server> {
    let (listen, admin) = (free_port()?, free_port()?);
    let child = command(s, &s.server_bin)
        .arg("serve")
        .arg("--config")
        .arg(&s.config)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--tls-cert")
        .arg(&s.cert)
        .arg("--tls-key")
        .arg(&s.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(server_log())
        .spawn()
        .with_context(|| format!("cannot start {}", s.server_bin.display()))?;
    let srv = Server {
        child,
        name: "webhook",
        listen,
    };
    wait_until("carto-wi-webhook serve", Duration::from_secs(10), || {
        ready(admin)
    })?;
    Ok(srv)
}

fn start_floor(s: &Setup) -> anyhow::Result<Server> {
    let listen = free_port()?;
    let child = command(s, &s.floor_bin)
        .args(["--listen", &listen.to_string()])
        .arg("--tls-cert")
        .arg(&s.cert)
        .arg("--tls-key")
        .arg(&s.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(server_log())
        .spawn()
        .with_context(|| format!("cannot start {}", s.floor_bin.display()))?;
    let srv = Server {
        child,
        name: "floor",
        listen,
    };
    wait_until("floor_server", Duration::from_secs(10), || {
        TcpStream::connect(listen).is_ok()
    })?;
    Ok(srv)
}

/// Time from spawning `serve` in standalone mode (ephemeral certificate: the CA and serving
/// key are generated at start) to its first `200` on `/readyz`.
fn start_to_ready(s: &Setup) -> anyhow::Result<Duration> {
    let (listen, admin) = (free_port()?, free_port()?);
    let ca_out = s.dir.join("ephemeral-ca.crt");
    let t0 = Instant::now();
    let child = command(s, &s.server_bin)
        .arg("serve")
        .arg("--config")
        .arg(&s.config)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--ephemeral-ca-out")
        .arg(&ca_out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(server_log())
        .spawn()?;
    let _srv = Server {
        child,
        name: "webhook",
        listen,
    };
    let deadline = t0 + Duration::from_secs(10);
    loop {
        if ready(admin) {
            return Ok(t0.elapsed());
        }
        if Instant::now() > deadline {
            bail!("serve (ephemeral certificate) not ready after 10s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A CA and a `localhost` serving certificate (ECDSA P-256, as `serve` makes), for both servers.
fn write_certs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
    let paths = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, leaf.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "http1.1",
            Self::H2 => "h2",
        }
    }
}

#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

struct Load {
    tls: Arc<rustls::ClientConfig>,
    mutate: Bytes,
    validate: Bytes,
}

impl Load {
    async fn connect(&self, addr: SocketAddr, proto: Proto) -> anyhow::Result<Sender> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut cfg = (*self.tls).clone();
        cfg.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        Ok(match proto {
            Proto::H1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(Arc::new(tokio::sync::Mutex::new(send)))
            }
            Proto::H2 => {
                if alpn.as_deref() != Some(b"h2") {
                    bail!("the server did not negotiate h2 (ALPN {alpn:?})");
                }
                let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::H2(send)
            }
        })
    }

    /// One request (`/mutate` when `i` is even, `/validate` when odd); the answer body is read in
    /// full. Returns the answer body when `keep` is set.
    async fn send(&self, sender: &Sender, i: u64, keep: bool) -> anyhow::Result<Option<Bytes>> {
        let (path, body) = if i.is_multiple_of(2) {
            ("/mutate", self.mutate.clone())
        } else {
            ("/validate", self.validate.clone())
        };
        let build = |uri: &str| {
            Request::post(uri)
                .header(hyper::header::HOST, "localhost")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
        };
        let resp = match sender {
            Sender::H1(s) => {
                let mut s = s.lock().await;
                s.ready().await?;
                s.send_request(build(path)?).await?
            }
            Sender::H2(s) => {
                let mut s = s.clone();
                s.ready().await?;
                s.send_request(build(&format!("https://localhost{path}"))?)
                    .await?
            }
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(keep.then_some(bytes))
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latencies_ns: Vec<u64>,
    server_cpu: Duration,
}

impl Phase {
    fn summary(&mut self, offered: Option<f64>) -> Value {
        self.latencies_ns.sort_unstable();
        let q = |p: f64| -> f64 {
            let n = self.latencies_ns.len();
            if n == 0 {
                return f64::NAN;
            }
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.latencies_ns[i] as f64 / 1000.0
        };
        let rps = self.requests as f64 / self.seconds;
        json!({
            "offered_rps": offered,
            "rps": rps,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "p50_us": q(0.50),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": q(1.0),
            "server_cpu_us_per_req": self.server_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64,
            "server_cpu_cores": self.server_cpu.as_secs_f64() / self.seconds,
        })
    }
}

/// Per-virtual-client tallies, merged into a [`Phase`].
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_ns: Vec<u64>,
}

struct Shape {
    proto: Proto,
    /// Saturation: virtual clients, each with one request in flight. Fixed rate: the most
    /// requests in flight (h1: the connection pool; h2: streams per connection × connections).
    clients: usize,
    /// Connections (h1: one per client).
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

async fn connect_all(
    load: &Load,
    srv: &Server,
    n: usize,
    proto: Proto,
) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        senders.push(load.connect(srv.listen, proto).await?);
    }
    Ok(senders)
}

fn record(t: &mut Tally, result: anyhow::Result<Option<Bytes>>, latency: Duration) {
    match result {
        Ok(_) => {
            t.requests += 1;
            t.latencies_ns.push(latency.as_nanos() as u64);
        }
        Err(e) => {
            t.errors += 1;
            t.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
}

/// Saturation: every virtual client sends its next request as soon as it has the answer.
async fn saturation(load: &Arc<Load>, srv: &Server, shape: &Shape) -> anyhow::Result<Phase> {
    let connections = match shape.proto {
        Proto::H1 => shape.clients,
        Proto::H2 => shape.connections,
    };
    let senders = connect_all(load, srv, connections, shape.proto).await?;
    let measure_from = tokio::time::Instant::now() + shape.warmup;
    let end = measure_from + shape.duration;
    let mut tasks = Vec::new();
    for c in 0..shape.clients {
        let sender = senders[c % connections].clone();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut i = c as u64;
            loop {
                let from = tokio::time::Instant::now();
                if from >= end {
                    break;
                }
                let result = load.send(&sender, i, false).await;
                let done = tokio::time::Instant::now();
                if from >= measure_from && done <= end {
                    record(&mut t, result, done - from);
                }
                i += 1;
            }
            t
        }));
    }
    tokio::time::sleep_until(measure_from).await;
    let cpu0 = srv.cpu();
    tokio::time::sleep_until(end).await;
    let cpu1 = srv.cpu();
    let mut ph = Phase {
        seconds: shape.duration.as_secs_f64(),
        server_cpu: cpu1.saturating_sub(cpu0),
        ..Phase::default()
    };
    for task in tasks {
        let t = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .context("a client did not finish")??;
        ph.merge(t);
    }
    Ok(ph)
}

/// How often, at most, the fixed-rate pacer wakes.
const PACER_TICK: Duration = Duration::from_micros(100);

/// Fixed rate, open loop. A pacer thread releases request k at `start + k/R` (to within
/// [`PACER_TICK`]; tokio's timer has 1 ms resolution, which would send in bursts); each request
/// then takes an idle connection (h1: a pool, one request in flight per connection, as the API
/// server's client does) or a stream (h2), waiting for one if none is free. Its latency is
/// counted from its release, which never waits for the server, so a slow server cannot hide
/// its queue by slowing the client down (no coordinated omission).
async fn fixed_rate(
    load: &Arc<Load>,
    srv: &Server,
    shape: &Shape,
    rate: f64,
) -> anyhow::Result<Phase> {
    let senders = connect_all(load, srv, shape.connections, shape.proto).await?;
    // Idle connections (h1) or stream permits (h2).
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel::<Sender>();
    match shape.proto {
        Proto::H1 => senders.iter().cloned().for_each(|s| {
            let _ = idle_tx.send(s);
        }),
        Proto::H2 => (0..shape.clients).for_each(|k| {
            let _ = idle_tx.send(senders[k % senders.len()].clone());
        }),
    }
    let (due_tx, mut due_rx) =
        tokio::sync::mpsc::unbounded_channel::<(u64, std::time::Instant, std::time::Instant)>();
    let start = std::time::Instant::now() + Duration::from_millis(20);
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let period = Duration::from_secs_f64(1.0 / rate);
    // Wakes at most every PACER_TICK and releases every request due by then: a wake per request
    // at tens of thousands per second would cost the client core more than the requests.
    let pacer = std::thread::spawn(move || {
        let mut k = 0u64;
        loop {
            let now = std::time::Instant::now();
            let mut due = start + period.mul_f64(k as f64);
            while due <= now && due < end {
                if due_tx.send((k, due, now)).is_err() {
                    return;
                }
                k += 1;
                due = start + period.mul_f64(k as f64);
            }
            if due >= end {
                return;
            }
            let wake = due.max(now + PACER_TICK);
            std::thread::sleep(wake.saturating_duration_since(std::time::Instant::now()));
        }
    });
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut running = tokio::task::JoinSet::new();
    let cpu_at =
        |t: std::time::Instant| tokio::time::sleep_until(tokio::time::Instant::from_std(t));
    let mut cpu0 = None;
    while let Some((k, due, released)) = due_rx.recv().await {
        if cpu0.is_none() && due >= measure_from {
            cpu0 = Some(srv.cpu());
        }
        let Some(sender) = idle_rx.recv().await else {
            break;
        };
        let (load, tally, idle_tx) = (load.clone(), tally.clone(), idle_tx.clone());
        running.spawn(async move {
            let result = load.send(&sender, k, false).await;
            let latency = released.elapsed();
            let _ = idle_tx.send(sender);
            if due >= measure_from {
                record(&mut tally.lock().expect("tally"), result, latency);
            }
        });
        while running.try_join_next().is_some() {}
    }
    cpu_at(end).await;
    let cpu1 = srv.cpu();
    let _ = pacer.join();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while running.join_next().await.is_some() {}
    })
    .await;
    let mut ph = Phase {
        seconds: shape.duration.as_secs_f64(),
        server_cpu: cpu1.saturating_sub(cpu0.unwrap_or(cpu1)),
        ..Phase::default()
    };
    if drained.is_err() {
        ph.errors += running.len() as u64;
        ph.first_error = Some(format!(
            "{} requests unanswered 5 s after the end",
            running.len()
        ));
        running.abort_all();
    }
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    ph.merge(t);
    Ok(ph)
}

impl Phase {
    fn merge(&mut self, t: Tally) {
        self.requests += t.requests;
        self.errors += t.errors;
        if self.first_error.is_none() {
            self.first_error = t.first_error;
        }
        self.latencies_ns.extend(t.latencies_ns);
    }
}

fn client_tls(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------------
// `wire`

struct WireArgs {
    setup: Setup,
    runs: usize,
    duration: Duration,
    warmup: Duration,
    h1_clients: usize,
    h2_connections: usize,
    h2_streams: usize,
    rate_h1_connections: usize,
    rate_h2_streams: usize,
    /// Requests per second of the `fixed_rate` phases.
    fixed_rate: f64,
    out: PathBuf,
}

/// Check once that each server answers as expected before loading it.
async fn sanity(load: &Load, srv: &Server) -> anyhow::Result<()> {
    for proto in [Proto::H1, Proto::H2] {
        let s = load.connect(srv.listen, proto).await?;
        for i in 0..2u64 {
            let body = load.send(&s, i, true).await?.unwrap_or_default();
            let v: Value = serde_json::from_slice(&body)
                .with_context(|| format!("{}: the answer is not JSON", srv.name))?;
            let resp = &v["response"];
            if resp["allowed"] != true {
                bail!("{}: request {i} not allowed: {v}", srv.name);
            }
            if srv.name == "webhook" && i == 0 && resp["patchType"] != "JSONPatch" {
                bail!("webhook: /mutate of carto-workspace-api returned no patch: {v}");
            }
        }
    }
    Ok(())
}

/// One fixed-rate phase: open loop at `rate`, reported as `out[proto][key]`.
async fn rate_phase(
    load: &Arc<Load>,
    srv: &Server,
    a: &WireArgs,
    proto: Proto,
    rate: f64,
) -> anyhow::Result<(Value, usize, usize)> {
    let (clients, connections) = match proto {
        Proto::H1 => (a.rate_h1_connections, a.rate_h1_connections),
        Proto::H2 => (a.h2_connections * a.rate_h2_streams, a.h2_connections),
    };
    let fixed = Shape {
        proto,
        clients,
        connections,
        warmup: a.warmup,
        duration: a.duration,
    };
    let mut p = fixed_rate(load, srv, &fixed, rate).await?;
    let s = p.summary(Some(rate));
    eprintln!(
        "  {:7} {:7} at {:>6.0}/s:   {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  p99.9 {:>7.0} µs  server CPU {:.1} µs/req  errors {}",
        srv.name,
        proto.as_str(),
        rate,
        s["rps"].as_f64().unwrap_or(0.0),
        s["p50_us"].as_f64().unwrap_or(0.0),
        s["p99_us"].as_f64().unwrap_or(0.0),
        s["p999_us"].as_f64().unwrap_or(0.0),
        s["server_cpu_us_per_req"].as_f64().unwrap_or(0.0),
        p.errors,
    );
    Ok((s, clients, connections))
}

/// Every phase on one server: saturation (h1, h2), then open loop at the fixed rate
/// (`fixed_rate`, the 2,000 req/s) and at half of its own maximum (`fixed_rate_own_half`).
async fn one_server(load: &Arc<Load>, srv: &Server, a: &WireArgs) -> anyhow::Result<Value> {
    sanity(load, srv).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = srv.status_kib("VmRSS");
    let mut out = json!({"idle_rss_kib": idle_rss});
    let mut max = BTreeMap::new();
    for proto in [Proto::H1, Proto::H2] {
        let (clients, connections) = match proto {
            Proto::H1 => (a.h1_clients, a.h1_clients),
            Proto::H2 => (a.h2_connections * a.h2_streams, a.h2_connections),
        };
        let sat = Shape {
            proto,
            clients,
            connections,
            warmup: a.warmup,
            duration: a.duration,
        };
        let mut p = saturation(load, srv, &sat).await?;
        let s = p.summary(None);
        eprintln!(
            "  {:7} {:7} saturation: {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  server CPU {:.1} µs/req  errors {}",
            srv.name,
            proto.as_str(),
            s["rps"].as_f64().unwrap_or(0.0),
            s["p50_us"].as_f64().unwrap_or(0.0),
            s["p99_us"].as_f64().unwrap_or(0.0),
            s["server_cpu_us_per_req"].as_f64().unwrap_or(0.0),
            p.errors,
        );
        max.insert(proto.as_str(), s["rps"].as_f64().unwrap_or(0.0));
        out[proto.as_str()] = json!({"saturation": s, "saturation_clients": clients, "saturation_connections": connections});
    }
    for proto in [Proto::H1, Proto::H2] {
        for (key, rate) in [
            ("fixed_rate", a.fixed_rate),
            ("fixed_rate_own_half", max[proto.as_str()] * 0.5),
        ] {
            let (s, clients, connections) = rate_phase(load, srv, a, proto, rate).await?;
            out[proto.as_str()][key] = s;
            out[proto.as_str()]["fixed_rate_in_flight_max"] = json!(clients);
            out[proto.as_str()]["fixed_rate_connections"] = json!(connections);
        }
    }
    out["peak_rss_kib"] = json!(srv.status_kib("VmHWM"));
    Ok(out)
}

fn wire(a: WireArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out)?;
    // Bodies: the chart's workspace-api Deployment, and the same after the webhook's patch.
    let obj = common::workspace_api();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let mutated = common::mutated(&obj, &snap, &Settings::default());
    let load = Arc::new(Load {
        tls: client_tls(&a.setup.dir.join("ca.crt"))?,
        mutate: common::review_body(&obj, "CREATE").into(),
        validate: common::review_body(&mutated, "CREATE").into(),
    });
    eprintln!(
        "bodies: /mutate {} B, /validate {} B",
        load.mutate.len(),
        load.validate.len()
    );
    let mut startup = Vec::new();
    for _ in 0..5 {
        startup.push(start_to_ready(&a.setup)?.as_secs_f64() * 1000.0);
    }
    eprintln!("start to /readyz (ms): {startup:.1?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for run in 0..a.runs {
        eprintln!("run {}/{}", run + 1, a.runs);
        let result = rt.block_on(async {
            let floor = start_floor(&a.setup)?;
            let f = one_server(&load, &floor, &a).await?;
            drop(floor);
            let hook = start_webhook(&a.setup)?;
            let w = one_server(&load, &hook, &a).await?;
            drop(hook);
            anyhow::Ok(json!({"floor": f, "webhook": w}))
        })?;
        runs.push(result);
    }
    let out = json!({
        "startup_ms": startup,
        "runs": runs,
        "duration_s": a.duration.as_secs_f64(),
        "fixed_rate": a.fixed_rate,
        "warmup_s": a.warmup.as_secs_f64(),
        "body_bytes": {"mutate": load.mutate.len(), "validate": load.validate.len()},
    });
    std::fs::write(a.out.join("wire.json"), serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `report`

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median over runs of the number at `pointer` in each run's result.
fn run_median(wire: &Value, pointer: &str) -> f64 {
    median(
        wire["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r.pointer(pointer)?.as_f64())
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Criterion's median point estimate (ns) of one benchmark.
fn crit(dir: &Path, id: &str) -> f64 {
    std::fs::read(dir.join(id).join("new/estimates.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.pointer("/median/point_estimate")?.as_f64())
        .unwrap_or(f64::NAN)
}

fn us(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "✅" } else { "❌" }
}

// The targets of issue 11 (and of the memory rows before it), as the table checks them.
const FULL_REVIEW_MAX_NS: f64 = 8_000.0;
const SATURATION_MIN_RATIO: f64 = 0.70;
const CPU_MAX_RATIO: f64 = 1.5;
const P99_MAX_US: f64 = 1_000.0;
const IDLE_RSS_MAX_BYTES: f64 = 10e6;
const PEAK_RSS_MAX_BYTES: f64 = 40e6;
/// Cost linear in object size: the cost of an added container varies by less than this
/// (largest ÷ smallest − 1).
const LINEAR_MAX_SPREAD: f64 = 0.30;

/// The markdown table, one row at a time.
#[derive(Default)]
struct Table(String);

impl Table {
    fn row(&mut self, what: &str, target: &str, result: &str, verdict: &str) {
        self.0
            .push_str(&format!("| {what} | {target} | {result} | {verdict} |\n"));
    }
}

/// KiB as MiB, with the decimal MB the targets are written in.
fn mib_mb(kib: f64) -> String {
    format!("{:.1} MiB ({:.1} MB)", kib / 1024.0, kib * 1024.0 / 1e6)
}

fn in_process_rows(t: &mut Table, criterion: &Path) {
    for (label, id) in [
        (
            "in-process: mutate workspace-api (parse + decide + respond)",
            "carto_workspace-api/mutate_full",
        ),
        (
            "in-process: validate workspace-api (parse + decide + respond)",
            "carto_workspace-api/validate_full",
        ),
    ] {
        let v = crit(criterion, id);
        t.row(label, "≤ 8 µs", &us(v), verdict(v <= FULL_REVIEW_MAX_NS));
    }
    for (label, id) in [
        (
            "in-process: parse the workspace-api review (pruned, the server's)",
            "carto_workspace-api/mutate_parse",
        ),
        (
            "in-process: parse the workspace-api review, derived (before the fix)",
            "parse_workspace-api/derived_envelope",
        ),
        (
            "in-process: mutate workspace-api, decision only",
            "carto_workspace-api/mutate_decision",
        ),
        (
            "in-process: validate workspace-api, decision only",
            "carto_workspace-api/validate_decision",
        ),
        (
            "in-process: mutate ServiceAccount (full)",
            "carto_service-account/mutate_full",
        ),
        (
            "in-process: validate ServiceAccount (full)",
            "carto_service-account/validate_full",
        ),
        (
            "in-process: validate ConfigMap (full)",
            "carto_configmap/validate_full",
        ),
    ] {
        t.row(label, "", &us(crit(criterion, id)), "");
    }
    size_row(t, criterion);
    let nss: Vec<String> = [1, 1000, 10000]
        .iter()
        .map(|n| {
            format!(
                "{n}: {}",
                us(crit(criterion, &format!("namespaces/mutate_decision/{n}")))
            )
        })
        .collect();
    t.row(
        "in-process: mutate decision, N namespace ConfigMaps",
        "flat",
        &nss.join("; "),
        "",
    );
}

/// The object sizes of the linearity rows: containers × 50 env.
const SIZES: [u32; 4] = [1, 8, 32, 128];

/// The cost of one container more between consecutive [`SIZES`], and how much it varies
/// (largest ÷ smallest − 1). The total divided by N would not do: it carries the review's fixed
/// cost at small N.
fn per_added_container(cost: &[f64]) -> (Vec<f64>, f64) {
    let added: Vec<f64> = (1..SIZES.len())
        .map(|i| (cost[i] - cost[i - 1]) / f64::from(SIZES[i] - SIZES[i - 1]))
        .collect();
    let (lo, hi) = added
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
            (lo.min(c), hi.max(c))
        });
    (added, hi / lo - 1.0)
}

/// Linear in object size, in time (criterion; the verdict is on the instruction row, which the
/// machine's noise and cache effects do not move).
fn size_row(t: &mut Table, criterion: &Path) {
    let cost: Vec<f64> = SIZES
        .iter()
        .map(|n| crit(criterion, &format!("size/mutate_full/{n}")))
        .collect();
    let (added, spread) = per_added_container(&cost);
    let totals: Vec<String> = SIZES
        .iter()
        .zip(&cost)
        .map(|(n, v)| format!("{n}: {}", us(*v)))
        .collect();
    let steps: Vec<String> = added.iter().map(|c| us(*c)).collect();
    t.row(
        "in-process: mutate full, N containers × 50 env",
        "",
        &format!(
            "{}; per added container {} (varies by {:.0} %)",
            totals.join("; "),
            steps.join(" / "),
            spread * 100.0
        ),
        "",
    );
}

/// Linear in object size, in instructions (callgrind, exact): each added container costs the
/// same within [`LINEAR_MAX_SPREAD`].
fn size_instruction_row(t: &mut Table, ir: &Value) {
    let cost: Vec<f64> = SIZES
        .iter()
        .map(|n| ir[format!("size_{n}")].as_f64().unwrap_or(f64::NAN))
        .collect();
    let (added, spread) = per_added_container(&cost);
    let totals: Vec<String> = SIZES
        .iter()
        .zip(&cost)
        .map(|(n, v)| format!("{n}: {:.0}k", v / 1000.0))
        .collect();
    let steps: Vec<String> = added
        .iter()
        .map(|c| format!("{:.1}k", c / 1000.0))
        .collect();
    t.row(
        "in-process, instructions (callgrind): mutate full, N containers × 50 env",
        "linear: each added container costs the same, within 30 %",
        &format!(
            "{}; per added container {} (varies by {:.0} %)",
            totals.join("; "),
            steps.join(" / "),
            spread * 100.0
        ),
        verdict(spread < LINEAR_MAX_SPREAD),
    );
}

fn instruction_rows(t: &mut Table, out: &Path) {
    let Some(ir) = std::fs::read(out.join("instructions.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return;
    };
    let n = |c: &str| ir[c].as_f64().unwrap_or(f64::NAN);
    let k = |c: &str| format!("{:.1}k", n(c) / 1000.0);
    t.row(
        "one request through the router, instructions (callgrind): mutate / validate / floor",
        "",
        &format!(
            "{} / {} / {}",
            k("router_mutate"),
            k("router_validate"),
            k("floor")
        ),
        "",
    );
    t.row(
        "one request through the router, instructions: webhook ÷ floor",
        "",
        &format!(
            "mutate {:.1}×, validate {:.1}×",
            n("router_mutate") / n("floor"),
            n("router_validate") / n("floor")
        ),
        "",
    );
    t.row(
        "one request through the router, instructions: mutate without logging (span + log line)",
        "",
        &format!(
            "{} ({:.1}k)",
            k("router_mutate_unlogged"),
            (n("router_mutate") - n("router_mutate_unlogged")) / 1000.0
        ),
        "",
    );
    t.row(
        "in-process, instructions (callgrind): mutate / validate workspace-api (full)",
        "",
        &format!("{} / {}", k("mutate_full"), k("validate_full")),
        "",
    );
    t.row(
        "in-process, instructions (callgrind): parse, pruned (the server's) / derived",
        "",
        &format!("{} / {}", k("parse"), k("parse_derived")),
        "",
    );
    size_instruction_row(t, &ir);
}

fn wire_rows(t: &mut Table, wire: &Value, proto: &str) {
    let m = |who: &str, rest: &str| run_median(wire, &format!("/{who}/{proto}/{rest}"));
    let lat = |who: &str, phase: &str| {
        format!(
            "{:.0} / {:.0} / {:.0} µs",
            m(who, &format!("{phase}/p50_us")),
            m(who, &format!("{phase}/p99_us")),
            m(who, &format!("{phase}/p999_us"))
        )
    };
    // The saturation target is HTTP/1.1's (h2 is shown for comparison).
    let (w, f) = (m("webhook", "saturation/rps"), m("floor", "saturation/rps"));
    let h1 = proto == "http1.1";
    t.row(
        &format!("wire {proto}, saturation: webhook / floor"),
        if h1 { "≥ 70 %" } else { "" },
        &format!("{w:.0} / {f:.0} req/s = {:.0} %", w / f * 100.0),
        if h1 {
            verdict(w / f >= SATURATION_MIN_RATIO)
        } else {
            ""
        },
    );
    let cpu = |who: &str, phase: &str| m(who, &format!("{phase}/server_cpu_us_per_req"));
    let (wc, fc) = (cpu("webhook", "saturation"), cpu("floor", "saturation"));
    t.row(
        &format!("wire {proto}, server CPU per request at saturation: webhook / floor"),
        "≤ 1.5× floor",
        &format!("{wc:.1} / {fc:.1} µs = {:.2}×", wc / fc),
        verdict(wc / fc <= CPU_MAX_RATIO),
    );
    let rate = m("webhook", "fixed_rate/offered_rps");
    let p99 = m("webhook", "fixed_rate/p99_us");
    t.row(
        &format!("wire {proto}, at {rate:.0} req/s: webhook p50 / p99 / p99.9"),
        "p99 ≤ 1 ms",
        &lat("webhook", "fixed_rate"),
        verdict(p99 <= P99_MAX_US),
    );
    t.row(
        &format!("wire {proto}, at {rate:.0} req/s: floor p50 / p99 / p99.9"),
        "",
        &lat("floor", "fixed_rate"),
        "",
    );
    t.row(
        &format!("wire {proto}, server CPU per request at {rate:.0} req/s: webhook / floor"),
        "",
        &format!(
            "{:.1} / {:.1} µs",
            cpu("webhook", "fixed_rate"),
            cpu("floor", "fixed_rate")
        ),
        "",
    );
    for who in ["webhook", "floor"] {
        let own = m(who, "fixed_rate_own_half/offered_rps");
        t.row(
            &format!(
                "wire {proto}, at 50 % of its own max ({own:.0} req/s): {who} p50 / p99 / p99.9"
            ),
            "",
            &lat(who, "fixed_rate_own_half"),
            "",
        );
    }
    t.row(
        &format!("wire {proto}, saturation: webhook p50 / p99 / p99.9"),
        "",
        &lat("webhook", "saturation"),
        "",
    );
}

/// RSS: the webhook idle and at its peak, the floor, the 10,000-ConfigMap cache estimate.
fn memory_rows(t: &mut Table, wire: &Value, mem: &Value) {
    let idle = run_median(wire, "/webhook/idle_rss_kib");
    let peak = run_median(wire, "/webhook/peak_rss_kib");
    t.row(
        "idle RSS (webhook)",
        "≤ 10 MB (10⁷ bytes = 9.54 MiB)",
        &mib_mb(idle),
        verdict(idle * 1024.0 <= IDLE_RSS_MAX_BYTES),
    );
    t.row(
        "peak RSS under the load above (webhook)",
        "≤ 40 MB",
        &mib_mb(peak),
        verdict(peak * 1024.0 <= PEAK_RSS_MAX_BYTES),
    );
    t.row(
        "idle / peak RSS (floor)",
        "",
        &format!(
            "{} / {}",
            mib_mb(run_median(wire, "/floor/idle_rss_kib")),
            mib_mb(run_median(wire, "/floor/peak_rss_kib"))
        ),
        "",
    );
    let cache = mem["snapshots"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["namespaces"] == 10_000))
        .cloned()
        .unwrap_or_default();
    let heap_kib = cache["heap_bytes"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    t.row(
        "config cache with 10,000 namespace ConfigMaps (heap, in-process)",
        "≤ 40 MB",
        &format!(
            "{} ({} B each); est. RSS ≈ idle + this = {}",
            mib_mb(heap_kib),
            cache["heap_per_configmap"],
            mib_mb(idle + heap_kib)
        ),
        verdict((idle + heap_kib) * 1024.0 <= PEAK_RSS_MAX_BYTES),
    );
}

fn report(out: &Path, criterion: &Path, binary: &Path) -> anyhow::Result<()> {
    let wire: Value = serde_json::from_slice(&std::fs::read(out.join("wire.json"))?)?;
    let mem: Value = serde_json::from_slice(&std::fs::read(out.join("memory.json"))?)?;
    let mut t = Table::default();
    t.row("what", "target", "result", "");
    t.0.push_str("| --- | --- | ---: | --- |\n");
    in_process_rows(&mut t, criterion);
    instruction_rows(&mut t, out);
    for proto in ["http1.1", "h2"] {
        wire_rows(&mut t, &wire, proto);
    }
    memory_rows(&mut t, &wire, &mem);
    let start = median(
        wire["startup_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
    );
    t.row(
        "start to /readyz (standalone, ephemeral cert)",
        "≤ 100 ms",
        &format!("{start:.1} ms"),
        verdict(start <= 100.0),
    );
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    t.row(
        "binary size (release, stripped)",
        "",
        &format!("{size:.1} MiB"),
        "",
    );
    print!("{}", t.0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Load a server that runs already (for profiling it).
fn drive(args: &[String]) -> anyhow::Result<()> {
    let addr: SocketAddr = flag(args, "--addr").context("missing --addr")?.parse()?;
    let proto = match flag(args, "--proto").as_deref() {
        None | Some("h1") => Proto::H1,
        Some("h2") => Proto::H2,
        Some(p) => bail!("--proto {p}: h1 or h2"),
    };
    let obj = common::workspace_api();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let mutated = common::mutated(&obj, &snap, &Settings::default());
    let load = Arc::new(Load {
        tls: client_tls(&need(args, "--ca")?)?,
        mutate: common::review_body(&obj, "CREATE").into(),
        validate: common::review_body(&mutated, "CREATE").into(),
    });
    // Not ours to kill: the `Server` only names the address (its `child` is a no-op `true`).
    let srv = Server {
        child: Command::new("true").spawn()?,
        name: "external",
        listen: addr,
    };
    let duration = Duration::from_secs_f64(num(args, "--duration", 5.0)?);
    let rate: Option<f64> = flag(args, "--rate").map(|r| r.parse()).transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut p = rt.block_on(async {
        let (clients, connections) = match (proto, rate) {
            (Proto::H1, None) => (8, 8),
            (Proto::H2, None) => (8, 2),
            (Proto::H1, Some(_)) => (64, 64),
            (Proto::H2, Some(_)) => (128, 2),
        };
        let shape = Shape {
            proto,
            clients,
            connections,
            warmup: Duration::from_millis(500),
            duration,
        };
        match rate {
            None => saturation(&load, &srv, &shape).await,
            Some(r) => fixed_rate(&load, &srv, &shape, r).await,
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&p.summary(rate))?);
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn need(args: &[String], name: &str) -> anyhow::Result<PathBuf> {
    flag(args, name)
        .map(PathBuf::from)
        .with_context(|| format!("missing {name}"))
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .with_context(|| format!("{name}: not a number: {v}")),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("wire") => {
            let out = need(&args, "--out")?;
            let dir = out.join("tls");
            std::fs::create_dir_all(&dir)?;
            let (_, cert, key) = write_certs(&dir)?;
            wire(WireArgs {
                setup: Setup {
                    server_cpus: flag(&args, "--server-cpus"),
                    server_bin: need(&args, "--server")?,
                    floor_bin: need(&args, "--floor")?,
                    config: need(&args, "--config")?,
                    dir,
                    cert,
                    key,
                },
                runs: num(&args, "--runs", 3)?,
                duration: Duration::from_secs_f64(num(&args, "--duration", 4.0)?),
                warmup: Duration::from_secs_f64(num(&args, "--warmup", 1.0)?),
                h1_clients: num(&args, "--h1-connections", 8)?,
                h2_connections: num(&args, "--h2-connections", 2)?,
                h2_streams: num(&args, "--h2-streams", 4)?,
                rate_h1_connections: num(&args, "--rate-h1-connections", 64)?,
                rate_h2_streams: num(&args, "--rate-h2-streams", 64)?,
                fixed_rate: num(&args, "--rate", 2000.0)?,
                out,
            })
        }
        Some("drive") => drive(&args),
        Some("certs") => {
            let out = need(&args, "--out")?;
            std::fs::create_dir_all(&out)?;
            write_certs(&out)?;
            Ok(())
        }
        Some("report") => report(
            &need(&args, "--out")?,
            &need(&args, "--criterion")?,
            &need(&args, "--binary")?,
        ),
        _ => bail!(
            "usage: loadbench wire --server BIN --floor BIN --config FILE --out DIR [--runs N] [--duration S]\n       loadbench report --out DIR --criterion DIR --binary BIN"
        ),
    }
}
