//! Hardening over real sockets: idle timeouts, connection caps, the admin listener under an
//! admission flood, accept errors under a low file-descriptor limit, handshake floods and hostile
//! request fields in the log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_carto-wi-webhook");

/// A TLS client trusting `ca_pem`, offering `alpn`.
pub(super) fn client_config(ca_pem: &[u8], alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

pub(super) async fn connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config.clone())
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Read until the peer closes (EOF or reset), failing after `secs` seconds.
pub(super) async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, secs: u64, what: &str) {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), read_to_end)
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {secs} s"));
}

fn h1_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes()
}

fn h1_post_review(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let files = Files::new();
    let flags = ["--idle-timeout", "1s", "--admin-idle-timeout", "1s"];
    let srv = Running::standalone(&files, &flags).await;
    let review = serde_json::to_vec(&review("idle-1", "CREATE", Some(deployment()), None)).unwrap();

    // HTTP/1.1 keep-alive: one request, then nothing.
    let mut h1 = connect(srv.addr, &client_config(&srv.ca_pem, b"http/1.1"))
        .await
        .unwrap();
    send(&mut h1, &h1_post_review(&review)).await;
    assert_eq!(read_response(&mut h1).await.unwrap().0, 200);
    closed_within(&mut h1, 30, "idle HTTP/1.1 connection").await;

    // HTTP/2: one request, then nothing; the server says GOAWAY and closes.
    let h2 = connect(srv.addr, &client_config(&srv.ca_pem, b"h2"))
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = hyper::Request::post("https://127.0.0.1/mutate")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(review)))
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(30), conn)
        .await
        .expect("idle HTTP/2 connection: still open after 30 s")
        .unwrap()
        .ok();

    // The admin listener: one probe, then nothing.
    let mut admin = TcpStream::connect(srv.admin).await.unwrap();
    send(&mut admin, &h1_get("/livez")).await;
    assert_eq!(read_response(&mut admin).await.unwrap().0, 200);
    closed_within(&mut admin, 30, "idle admin connection").await;

    let metrics = srv.metrics().await;
    let idle = |l: &str| {
        sample(
            &metrics,
            &format!("carto_wi_idle_connections_closed_total{{listener=\"{l}\"}}"),
        )
    };
    assert!(idle("admission") >= 2, "{metrics}");
    assert!(idle("admin") >= 1, "{metrics}");
    srv.stop().await;
}

/// The open-connection gauge of `listener`, read over `admin` (an HTTP/1.1 keep-alive
/// connection to the admin listener, so that reading it needs no new connection).
async fn open_connections(admin: &mut TcpStream, listener: &str) -> u64 {
    send(admin, &h1_get("/metrics")).await;
    let (status, _, body) = read_response(admin).await.unwrap();
    assert_eq!(status, 200);
    sample(
        &String::from_utf8(body).unwrap(),
        &format!("carto_wi_connections{{listener=\"{listener}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_are_capped() {
    let files = Files::new();
    let flags = [
        "--admin-max-connections",
        "4",
        "--admin-header-read-timeout",
        "60s",
    ];
    let srv = Running::standalone(&files, &flags).await;
    let mut metrics = TcpStream::connect(srv.admin).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(srv.admin).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_connections(&mut metrics, "admin").await != 4 {
        assert!(Instant::now() < deadline, "never 4 open admin connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A fifth waits in the backlog: no answer while the four stay open...
    let mut fifth = TcpStream::connect(srv.admin).await.unwrap();
    send(&mut fifth, &h1_get("/livez")).await;
    let early = tokio::time::timeout(Duration::from_millis(300), read_response(&mut fifth)).await;
    assert!(early.is_err(), "a connection over the cap was served");
    assert_eq!(open_connections(&mut metrics, "admin").await, 4);
    // ...and is served once one of them leaves.
    drop(idle.pop());
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(30), read_response(&mut fifth))
            .await
            .expect("served once a slot is free")
            .unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_headers_must_arrive_within_the_header_timeout() {
    let files = Files::new();
    let srv = Running::standalone(&files, &["--admin-header-read-timeout", "1s"]).await;
    let mut slow = TcpStream::connect(srv.admin).await.unwrap();
    send(&mut slow, b"GET /livez HTTP/1.1\r\nhost: localhost\r\n").await;
    closed_within(&mut slow, 30, "admin connection with unfinished headers").await;
    let mut silent = TcpStream::connect(srv.admin).await.unwrap();
    closed_within(&mut silent, 30, "admin connection that sends nothing").await;
    let metrics = srv.metrics().await;
    assert!(
        sample(
            &metrics,
            "carto_wi_connection_errors_total{listener=\"admin\"}"
        ) >= 1,
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_cap_holds_and_health_answers_under_a_flood() {
    let files = Files::new();
    const CAP: usize = 8;
    let cap = CAP.to_string();
    let flags = ["--max-connections", &cap, "--tls-handshake-timeout", "60s"];
    let srv = Running::standalone(&files, &flags).await;
    let config = client_config(&srv.ca_pem, b"http/1.1");

    // The cap's worth of idle TLS connections...
    let mut open = Vec::new();
    for _ in 0..CAP {
        open.push(connect(srv.addr, &config).await.unwrap());
    }
    // ...then as many more TLS clients, which wait, and twice the cap of raw TCP connections
    // that never say a word.
    let mut waiting = Vec::new();
    for _ in 0..CAP {
        // Connected (queued in the backlog) before the raw ones below.
        let tcp = TcpStream::connect(srv.addr).await.unwrap();
        let connector = TlsConnector::from(config.clone());
        waiting.push(tokio::spawn(async move {
            connector
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await
        }));
    }
    let mut raw = Vec::new();
    for _ in 0..2 * CAP {
        raw.push(TcpStream::connect(srv.addr).await.unwrap());
    }

    let mut admin = TcpStream::connect(srv.admin).await.unwrap();
    for _ in 0..20 {
        assert_eq!(srv.admin_get("/livez").await.0, 200);
        assert_eq!(srv.admin_get("/readyz").await.0, 200);
        assert_eq!(open_connections(&mut admin, "admission").await, CAP as u64);
    }
    assert!(waiting.iter().all(|t| !t.is_finished()));

    // Slots freed: the waiting clients are served, in order, before the raw connections.
    drop(open);
    for t in waiting {
        let tls = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a waiting client is served once slots are free")
            .unwrap();
        assert!(tls.is_ok(), "{:?}", tls.err());
    }
    assert!(open_connections(&mut admin, "admission").await <= CAP as u64);
    drop(raw);
    srv.stop().await;
}

/// The binary, its standard error going to a file.
pub(super) struct Bin {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
    pub(super) ca: PathBuf,
}

impl Bin {
    /// Run `serve` standalone on ephemeral ports; `wrapper` runs before the binary (e.g.
    /// `prlimit`).
    pub(super) fn start(wrapper: &[&str], extra: &[&str]) -> Self {
        let files = Files::new();
        let stderr = files.path("stderr.log");
        let ca = files.path("ca.crt");
        let (program, pre) = match wrapper.split_first() {
            Some((p, rest)) => (*p, rest.iter().map(|s| s.to_string()).collect()),
            None => (BIN, Vec::new()),
        };
        let mut args: Vec<String> = pre;
        if !wrapper.is_empty() {
            args.push(BIN.into());
        }
        for a in [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
            &files.config(),
            "--ephemeral-ca-out",
            ca.to_str().unwrap(),
        ] {
            args.push(a.into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            stderr,
            _dir: files.dir,
            ca,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap()).into_owned()
    }

    fn log_bytes(&self) -> usize {
        std::fs::metadata(&self.stderr).unwrap().len() as usize
    }

    /// (admission, admin) addresses, from the startup lines (JSON or text).
    pub(super) async fn addrs(&self) -> (SocketAddr, SocketAddr) {
        let find = |log: &str, prefix: &str| {
            log.lines().filter(|l| l.contains(prefix)).find_map(|l| {
                let at = l.find("addr")? + "addr".len();
                let rest = l[at..].trim_start_matches(['"', ':', '=']);
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .unwrap_or(rest.len());
                rest[..end].parse().ok()
            })
        };
        eventually("the server's addresses in its log", 30, || async {
            let log = self.log();
            Some((
                find(&log, "admission listener (HTTPS)")?,
                find(&log, "admin listener (plain HTTP)")?,
            ))
        })
        .await
    }

    pub(super) async fn metric(&self, admin: SocketAddr, series: &str) -> u64 {
        let body = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&body, series)
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_under_a_low_fd_limit_are_logged_at_most_once_a_second() {
    let bin = Bin::start(
        &["prlimit", "--nofile=64:64"],
        &[
            "--max-connections",
            "1000",
            "--tls-handshake-timeout",
            "60s",
        ],
    );
    let (addr, admin) = bin.addrs().await;
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    // Out of descriptors for a while: every accept fails, every 50 ms.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(flood);
    // The admin port answers again once descriptors are back.
    eventually("/metrics once descriptors are back", 30, || async {
        reqwest::get(format!("http://{admin}/metrics")).await.ok()
    })
    .await;
    let log = bin.log();
    let secs = started.elapsed().as_secs();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot accept connections"))
        .collect();
    let suppressed: u64 = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["suppressed"]
                .as_u64()
                .unwrap()
        })
        .sum();
    // Sampled after the log was read: every error a line counts was counted before it was
    // written, so the counter read now covers them all.
    let errors = eventually("/metrics once descriptors are back", 30, || async {
        let r = reqwest::get(format!("http://{admin}/metrics")).await.ok()?;
        let body = r.text().await.ok()?;
        Some(sample(
            &body,
            "carto_wi_accept_errors_total{listener=\"admission\"}",
        ))
    })
    .await;
    assert!(!lines.is_empty(), "no accept error logged:\n{log}");
    assert!(
        lines.len() as u64 <= secs + 1,
        "{} lines in {secs} s:\n{log}",
        lines.len()
    );
    assert!(
        errors >= lines.len() as u64 + suppressed && errors > lines.len() as u64,
        "{errors} errors, {} lines, {suppressed} suppressed",
        lines.len()
    );
    // The cap given is over what the limit leaves room for: said once at startup.
    assert!(log.contains("--max-connections is over what the open-file limit"));
    assert_eq!(
        bin.metric(admin, "carto_wi_build_info{version=\"0.1.0\"}")
            .await,
        1
    );
}

/// A ClientHello (TLS 1.2 record) naming `sni`, which need not be a valid host name.
fn client_hello(sni: &[u8]) -> Vec<u8> {
    let mut name = vec![0u8];
    name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    name.extend_from_slice(sni);
    let mut list = (name.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&name);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Send `bytes` and wait for the server to close (bounded).
async fn one_bad_handshake(addr: SocketAddr, bytes: Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(&bytes).await;
    closed_within(&mut tcp, 30, "a failed handshake").await;
}

/// 2,200 failed handshakes, 50 at a time: illegal SNI, IP-literal SNI, plain-text garbage,
/// and clients that do not trust the certificate.
async fn handshake_flood(addr: SocketAddr) {
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let untrusted = client_config(stranger.cert.pem().as_bytes(), b"http/1.1");
    for batch in 0..44 {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let untrusted = untrusted.clone();
                tokio::spawn(async move {
                    match (batch * 50 + i) % 4 {
                        0 => {
                            one_bad_handshake(addr, client_hello(b"bad_name!\x1b[31m.example"))
                                .await
                        }
                        1 => one_bad_handshake(addr, client_hello(b"10.0.0.1")).await,
                        2 => one_bad_handshake(addr, b"GET / HTTP/1.1\r\n\r\n".to_vec()).await,
                        _ => assert!(connect(addr, &untrusted).await.is_err()),
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_leaves_the_log_small_and_is_counted() {
    let bin = Bin::start(&[], &[]);
    let (addr, admin) = bin.addrs().await;
    let before = bin.log_bytes();
    handshake_flood(addr).await;
    let failures = eventually("every failure counted", 30, || async {
        let n = bin
            .metric(
                admin,
                "carto_wi_tls_handshake_failures_total{reason=\"error\"}",
            )
            .await;
        (n >= 2200).then_some(n)
    })
    .await;
    assert!(failures >= 2200);
    let grown = bin.log_bytes() - before;
    assert!(
        grown < 2048,
        "the flood logged {grown} bytes:\n{}",
        bin.log()
    );

    // Not vacuous: with rustls' warnings let through, the same flood logs a line per bad SNI.
    let loud = Bin::start(&[], &["--log-level", "info,rustls=warn"]);
    let (addr, _) = loud.addrs().await;
    let before = loud.log_bytes();
    handshake_flood(addr).await;
    assert!(
        loud.log_bytes() - before > 100_000,
        "{} bytes",
        loud.log_bytes() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_fields_make_one_escaped_capped_text_line() {
    let bin = Bin::start(&[], &["--log-format", "text"]);
    let (addr, _) = bin.addrs().await;
    let ca = eventually("the CA file", 30, || async { std::fs::read(&bin.ca).ok() }).await;
    let name = "evil\nINFO forged line\u{1b}[31mred";
    let long = "n".repeat(400);
    let mut object = deployment();
    object["metadata"]["name"] = json!(name);
    let mut r = review("uid\r\nx", "CREATE", Some(object), None);
    r["request"]["name"] = json!(name);
    r["request"]["namespace"] = json!(long);
    let client = client_builder(&ca).build().unwrap();
    let url = format!("https://127.0.0.1:{}/mutate", addr.port());
    let (status, _) = post(&client, &url, &r).await;
    assert_eq!(status, 200);

    let line = eventually("the review line", 30, || async {
        bin.log()
            .lines()
            .find(|l| l.contains("review webhook="))
            .map(str::to_owned)
    })
    .await;
    let log = bin.log();
    assert!(!log.contains('\u{1b}'), "a raw ESC in the log:\n{log}");
    assert!(!log.contains("\nINFO forged line"), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("forged line")).count(),
        1,
        "{log}"
    );
    assert!(
        line.contains(r"evil\nINFO forged line\u{1b}[31mred"),
        "{line}"
    );
    assert!(line.contains(r"uid\r\nx"), "{line}");
    assert!(line.contains(&format!("{}…", "n".repeat(253))), "{line}");
    assert!(!line.contains(&"n".repeat(254)), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_while_every_worker_is_busy() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    // Both workers of the runtime serving admission requests are taken, as CPU-bound reviews
    // would take them.
    let released = Arc::new(AtomicBool::new(false));
    let (started, busy) = std::sync::mpsc::channel();
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let (released, started) = (released.clone(), started.clone());
            tokio::spawn(async move {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_secs(10));
                released.store(true, Ordering::SeqCst);
            })
        })
        .collect();
    for _ in 0..2 {
        busy.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    // This thread is not a worker: a blocking client.
    let mut probe = std::net::TcpStream::connect(srv.admin).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    probe
        .write_all(b"GET /livez HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !released.load(Ordering::SeqCst),
        "answered only once the workers were free"
    );
    for b in blockers {
        b.await.unwrap();
    }
    srv.stop().await;
}
