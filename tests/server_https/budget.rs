//! The request-body budget over real sockets: stalled bodies on 100 connections (and on HTTP/2
//! streams) leave the real process's memory bounded and honest reviews answered; a stalled body
//! is cut after --request-timeout, its connection closed and its bytes given back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::hardening::{Bin, client_config, closed_within, connect};
use super::support::*;

const MIB: u64 = 1024 * 1024;
/// What each attacker declares: the largest body accepted.
const DECLARED: usize = 3 * 1024 * 1024;
/// The memory the process may reach under the attack.
const RSS_LIMIT: u64 = 64 * MIB;

/// VmRSS and VmHWM (peak) of process `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// A review of the example Deployment carrying an annotation of `pad` bytes.
fn padded_review(uid: &str, pad: usize) -> Value {
    let mut object = deployment();
    object["metadata"]["annotations"] = json!({"example.com/pad": "x".repeat(pad)});
    review(uid, "CREATE", Some(object), None)
}

/// One HTTP/1.1 attacker until `stop`: declare [`DECLARED`] bytes, send all but the last, then
/// hold the connection; when the server cuts it, connect again.
async fn h1_staller(
    addr: SocketAddr,
    ca: Arc<Vec<u8>>,
    body: Bytes,
    mut stop: watch::Receiver<bool>,
) {
    let config = client_config(&ca, b"http/1.1");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {DECLARED}\r\n\r\n"
    );
    while !*stop.borrow() {
        let attempt = async {
            let mut tls = connect(addr, &config).await?;
            tls.write_all(head.as_bytes()).await?;
            tls.write_all(&body[..DECLARED - 1]).await?;
            tls.flush().await?;
            // Stalled one byte short: wait for the server to answer and close.
            let mut buf = [0u8; 4096];
            while tls.read(&mut buf).await? > 0 {}
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            _ = attempt => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = stop.changed() => return,
        }
    }
}

/// A body that sends `sent` bytes of `body` in 16 KiB frames, then never ends.
fn stalled_body(
    body: Bytes,
    sent: usize,
) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let chunks: Vec<Bytes> = (0..sent)
        .step_by(16 * 1024)
        .map(|at| body.slice(at..(at + 16 * 1024).min(sent)))
        .collect();
    let frames = futures::stream::iter(chunks)
        .map(|c| Ok(Frame::data(c)))
        .chain(futures::stream::pending());
    StreamBody::new(frames)
}

/// One HTTP/2 connection with `streams` attackers on it until `stop`: each declares
/// [`DECLARED`] bytes, sends all but the last and stalls; a stream the server cuts is sent again.
async fn h2_stallers(
    addr: SocketAddr,
    ca: Arc<Vec<u8>>,
    body: Bytes,
    streams: usize,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(tls) = connect(addr, &client_config(&ca, b"h2")).await else {
        return;
    };
    let Ok((sender, conn)) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    else {
        return;
    };
    let conn = tokio::spawn(conn);
    let stream = |mut sender: hyper::client::conn::http2::SendRequest<_>, body: Bytes| async move {
        loop {
            let request = hyper::Request::post("https://127.0.0.1/mutate")
                .header("content-type", "application/json")
                .header("content-length", DECLARED)
                .body(stalled_body(body.clone(), DECLARED - 1))
                .unwrap();
            match sender.send_request(request).await {
                Ok(r) => drop(r.into_body().collect().await),
                Err(_) => return,
            }
        }
    };
    let tasks: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(stream(sender.clone(), body.clone())))
        .collect();
    let _ = stop.changed().await;
    for t in tasks {
        t.abort();
    }
    conn.abort();
}

/// 100 HTTP/1.1 stallers and two HTTP/2 connections with 50 stalled streams each, until the
/// sender says stop.
fn flood(
    addr: SocketAddr,
    ca: &Arc<Vec<u8>>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let body = Bytes::from(vec![b' '; DECLARED]);
    let (stop_tx, stop) = watch::channel(false);
    let mut attackers = Vec::new();
    for _ in 0..100 {
        let (ca, body, stop) = (ca.clone(), body.clone(), stop.clone());
        attackers.push(tokio::spawn(h1_staller(addr, ca, body, stop)));
    }
    for _ in 0..2 {
        let (ca, body, stop) = (ca.clone(), body.clone(), stop.clone());
        attackers.push(tokio::spawn(h2_stallers(addr, ca, body, 50, stop)));
    }
    (stop_tx, attackers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_on_100_connections_keep_memory_bounded_and_reviews_answered() {
    let bin = Bin::start(&[], &[]);
    let (addr, admin) = bin.addrs().await;
    let ca = Arc::new(std::fs::read(&bin.ca).unwrap());
    let client = client_builder(&ca).build().unwrap();
    let url = format!("https://{addr}/mutate");
    let honest = review("honest-0", "CREATE", Some(deployment()), None);
    assert_eq!(post(&client, &url, &honest).await.0, 200);
    let (before, _) = memory(bin.pid());

    let (stop_tx, attackers) = flood(addr, &ca);
    // The budget fills up...
    let budget = bin
        .metric(admin, "carto_wi_request_body_budget_bytes")
        .await;
    assert_eq!(budget, 8 * MIB);
    eventually("the budget to be mostly in use", 60, || async {
        let used = bin
            .metric(admin, "carto_wi_request_body_in_use_bytes")
            .await;
        (used >= budget / 2).then_some(())
    })
    .await;
    // ...and honest reviews are still answered, while the stalled bodies are cut for them.
    for i in 1..=10 {
        let r = review(&format!("honest-{i}"), "CREATE", Some(deployment()), None);
        let (status, answer) = post(&client, &url, &r).await;
        assert_eq!(status, 200, "review {i} under the attack: {answer}");
        assert_eq!(answer["response"]["allowed"], true);
    }
    // Held for a few more seconds: the memory under a sustained flood, not only its start.
    let mut during = 0;
    for _ in 0..12 {
        during = during.max(memory(bin.pid()).0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let evicted = eventually("stalled bodies cut for newer ones", 60, || async {
        let n = bin
            .metric(
                admin,
                "carto_wi_request_bodies_cut_total{reason=\"evicted\"}",
            )
            .await;
        (n > 0).then_some(n)
    })
    .await;

    stop_tx.send_replace(true);
    for a in attackers {
        tokio::time::timeout(Duration::from_secs(30), a)
            .await
            .expect("attackers stop")
            .unwrap();
    }
    // Every byte given back once the attackers are gone (the last are cut by --request-timeout).
    eventually("the budget to be given back", 60, || async {
        let used = bin
            .metric(admin, "carto_wi_request_body_in_use_bytes")
            .await;
        (used == 0).then_some(())
    })
    .await;
    // A large but valid review fits again.
    let large = padded_review("large", 2 * 1024 * 1024 + 512 * 1024);
    let (status, answer) = post(&client, &url, &large).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true);

    let (after, peak) = memory(bin.pid());
    // VmHWM is updated lazily: never below a sample taken.
    let peak = peak.max(during).max(after);
    eprintln!(
        "request-body flood: RSS before {}, during (highest sample) {}, after {}, peak {}; \
         {evicted} bodies evicted",
        mib(before),
        mib(during),
        mib(after),
        mib(peak)
    );
    assert!(
        peak <= RSS_LIMIT,
        "peak RSS {} over {} (before {}, during {})",
        mib(peak),
        mib(RSS_LIMIT),
        mib(before),
        mib(during)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_after_the_request_timeout_and_its_bytes_given_back() {
    let files = Files::new();
    let srv = Running::standalone(&files, &["--request-timeout", "1s"]).await;

    // HTTP/1.1: 64 KiB of a declared 1 MiB, then nothing.
    let mut h1 = connect(srv.addr, &client_config(&srv.ca_pem, b"http/1.1"))
        .await
        .unwrap();
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                content-length: 1048576\r\n\r\n";
    send(&mut h1, head.as_bytes()).await;
    send(&mut h1, &vec![b' '; 64 * 1024]).await;
    let (status, head, body) =
        tokio::time::timeout(Duration::from_secs(30), read_response(&mut h1))
            .await
            .expect("an answer within 30 s")
            .unwrap();
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 408, "{body}");
    assert!(
        body.contains("did not arrive within 1s (--request-timeout)"),
        "{body}"
    );
    assert!(head.contains("connection: close"), "{head}");
    closed_within(&mut h1, 30, "the connection of a cut body").await;

    // HTTP/2: the stalled stream is cut; the connection serves the next one.
    let tls = connect(srv.addr, &client_config(&srv.ca_pem, b"h2"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let stalled = hyper::Request::post("https://127.0.0.1/mutate")
        .header("content-type", "application/json")
        .body(BodyExt::boxed(stalled_body(
            Bytes::from(vec![b' '; 64 * 1024]),
            32 * 1024,
        )))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), sender.send_request(stalled))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    assert_eq!(r.status(), 408);
    let text = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("--request-timeout"));
    let next = serde_json::to_vec(&review("h2-next", "CREATE", Some(deployment()), None)).unwrap();
    let next = hyper::Request::post("https://127.0.0.1/mutate")
        .header("content-type", "application/json")
        .body(
            http_body_util::Full::new(Bytes::from(next))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap();
    let r = sender.send_request(next).await.unwrap();
    assert_eq!(r.status(), 200);
    conn.abort();

    let metrics = srv.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "carto_wi_request_bodies_cut_total{reason=\"timeout\"}"
        ),
        2,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "carto_wi_http_errors_total{reason=\"timeout\"}"),
        2
    );
    assert_eq!(
        sample(&metrics, "carto_wi_request_body_in_use_bytes"),
        0,
        "{metrics}"
    );

    // The bytes are back: a large valid review is answered.
    let (status, answer) = srv
        .post("/mutate", &padded_review("large", 2_900_000))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_that_finds_no_room_gets_503_then_is_answered_once_there_is() {
    let files = Files::new();
    let srv = Running::standalone(&files, &["--request-body-budget", "4MiB"]).await;
    // The whole budget held by a body that has all arrived (being reviewed): it cannot be cut.
    let mut hog = srv.state.body_budget.grant();
    hog.arrived();
    let far = tokio::time::Instant::now() + Duration::from_secs(30);
    hog.take(4 * 1024 * 1024, far).await.unwrap();

    let r = srv
        .client()
        .post(srv.url("/validate"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review("no-room", "CREATE", Some(deployment()), None)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("memory for request bodies is in use by other requests")
            && text.contains("--request-body-budget 4194304 bytes"),
        "{text}"
    );
    let metrics = srv.metrics().await;
    assert_eq!(
        sample(&metrics, "carto_wi_request_body_budget_refused_total"),
        1
    );
    assert_eq!(
        sample(
            &metrics,
            "carto_wi_http_errors_total{reason=\"body_budget\"}"
        ),
        1
    );

    drop(hog);
    let (status, answer) = srv
        .post(
            "/validate",
            &review("room", "CREATE", Some(deployment()), None),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    srv.stop().await;
}
