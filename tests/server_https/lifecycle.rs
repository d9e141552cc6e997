//! Graceful shutdown, the binary as an operator runs it, and the `certs` command.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use tokio::net::TcpStream;

use carto_wi_webhook::admission::Webhook;

use super::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_carto-wi-webhook");

fn request_head(len: usize) -> Vec<u8> {
    format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {len}\r\nexpect: 100-continue\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_requests() {
    let files = Files::new();
    let mut srv = Running::standalone(&files, &["--shutdown-timeout", "20s"]).await;
    let body = DEPLOYMENT_REVIEW.as_bytes();
    let (first, rest) = body.split_at(body.len() / 2);

    // A request in flight: its handler is reading the body (hyper sent 100 Continue because
    // the handler asked for the body), half of which has been sent.
    let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await.unwrap();
    send(&mut tls, &request_head(body.len())).await;
    let (status, _, _) = read_response(&mut tls).await.unwrap();
    assert_eq!(status, 100);
    send(&mut tls, first).await;

    srv.signal();
    // Readiness turns false at once, and the listener closes.
    let (status, text) = srv.admin_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(text.contains("shutting down"), "{text}");
    let addr = srv.addr;
    eventually("the listener is closed", 20, || async move {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;

    // The in-flight request completes normally.
    send(&mut tls, rest).await;
    let (status, head, body) = read_response(&mut tls).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("connection: close"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["uid"], "6f1c2a52-0d3e-4c8e-9d7e-5b1c9c1d0a01");
    assert!(patch_of(&v).is_some());
    let state = srv.state.clone();
    srv.join().await;
    assert_eq!(state.metrics.reviews(Webhook::Mutate), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_bounded_by_the_shutdown_timeout() {
    let files = Files::new();
    let mut srv = Running::standalone(
        &files,
        &["--shutdown-timeout", "200ms", "--request-timeout", "60s"],
    )
    .await;
    // A request that will never finish.
    let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await.unwrap();
    send(&mut tls, &request_head(1000)).await;
    assert_eq!(read_response(&mut tls).await.unwrap().0, 100);
    srv.signal();
    // `join` fails the test if the server is still waiting after 30 s.
    srv.join().await;
}

/// Read the child's stderr lines on a thread (so it never blocks on a full pipe).
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_standalone_and_exits_cleanly_on_sigterm() {
    let files = Files::new();
    let ca_out = files.path("ca.crt");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", "examples/workload-identity.yaml"])
        .env("CARTO_WI_LISTEN", "127.0.0.1:0")
        .env("CARTO_WI_ADMIN_LISTEN", "127.0.0.1:0")
        .env("CARTO_WI_EPHEMERAL_CA_OUT", &ca_out)
        .env("CARTO_WI_LOG_FORMAT", "json")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = lines(&mut child);
    // The listeners' addresses, from the JSON log lines.
    let (mut addr, mut admin) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while addr.is_none() || admin.is_none() {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs its listeners");
        let v: Value = serde_json::from_str(&line).expect("log lines are JSON");
        let msg = v["message"].as_str().unwrap_or("");
        if msg.starts_with("admission listener") {
            addr = v["addr"].as_str().map(str::to_owned);
        } else if msg.starts_with("admin listener") {
            admin = v["addr"].as_str().map(str::to_owned);
        }
    }
    let (addr, admin) = (addr.unwrap(), admin.unwrap());
    let ca_pem = std::fs::read(&ca_out).expect("the ephemeral CA is written");

    let client = client_builder(&ca_pem).build().unwrap();
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    let (status, body) = post(&client, &format!("https://{addr}/mutate"), &example).await;
    assert_eq!(status, 200);
    assert!(patch_of(&body).is_some());
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The review's log line.
    let review = loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the review is logged");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "review" {
            break v;
        }
    };
    assert_eq!(review["uid"], example["request"]["uid"]);
    assert_eq!(review["kind"], "Deployment");
    assert_eq!(review["namespace"], "carto");
    assert_eq!(review["name"], "carto-workspace-api");
    assert_eq!(review["operation"], "CREATE");
    assert_eq!(review["decision"], "patched");
    assert!(review["duration_us"].is_u64());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, 30);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains(&ca_out.display().to_string()),
        "stdout says where the CA is: {stdout}"
    );
    let rest: Vec<String> = log.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}

#[test]
fn the_binary_refuses_to_start_without_config_or_with_a_bad_one() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--admin-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster mode") && err.contains("--config"),
        "{err}"
    );

    let files = Files::new();
    write(&files.path("bad.yaml"), "kind: Secret\n");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(files.path("bad.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--config") && err.contains("no ConfigMap"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_command_writes_a_usable_certificate() {
    let files = Files::new();
    let out_dir = files.path("certs");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "certs",
                "--service",
                "carto-wi-webhook",
                "--namespace",
                "carto",
                "--out",
            ])
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--localhost", "--days", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = std::fs::read(out_dir.join("ca.crt")).unwrap();
    let bundle = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(bundle.trim())
            .unwrap(),
        ca,
        "stdout is the base64 caBundle"
    );
    for (name, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
    ] {
        let m = std::fs::metadata(out_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{name}");
    }
    // No overwrite without --force.
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // Serve with them; the names of the Service and localhost verify.
    let (config, cert, key) = (
        files.config(),
        out_dir.join("tls.crt").display().to_string(),
        out_dir.join("tls.key").display().to_string(),
    );
    let srv = Running::start(
        serve_args(&["--config", &config, "--tls-cert", &cert, "--tls-key", &key]),
        Some(ca.clone()),
    )
    .await;
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    for host in [
        "carto-wi-webhook.carto.svc",
        "carto-wi-webhook.carto.svc.cluster.local",
        "localhost",
    ] {
        let client = client_builder(&ca).resolve(host, srv.addr).build().unwrap();
        let url = format!("https://{host}:{}/mutate", srv.addr.port());
        assert_eq!(post(&client, &url, &example).await.0, 200, "{host}");
    }
    // A name not in the certificate is refused by the client.
    let client = client_builder(&ca)
        .resolve("other.example", srv.addr)
        .build()
        .unwrap();
    let r = client
        .post(format!("https://other.example:{}/mutate", srv.addr.port()))
        .send()
        .await;
    assert!(r.is_err());
    srv.stop().await;
}
