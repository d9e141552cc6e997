//! Certificates: rotation under load, mutual TLS, and the errors that name their flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use carto_wi_webhook::pki::{CertificateAuthority, localhost_names};

use super::support::*;

struct Load {
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Clients posting the example review in a loop (bounded: 5000 requests each at most): half on
/// keep-alive connections, half on a new connection per request.
fn start_load(srv: &Running, clients: usize) -> Load {
    let load = Load {
        ok: Arc::default(),
        failures: Arc::default(),
        stop: Arc::default(),
        tasks: Vec::new(),
    };
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut b = client_builder(&srv.ca_pem);
        if i % 2 == 1 {
            b = b.pool_max_idle_per_host(0);
        }
        let client = b.build().unwrap();
        let url = srv.url("/mutate");
        let (ok, failures, stop) = (load.ok.clone(), load.failures.clone(), load.stop.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(DEPLOYMENT_REVIEW)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                        Ok(v) if v["response"]["allowed"] == true => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(v) => failures.lock().unwrap().push(format!("answer {v}")),
                        Err(e) => failures.lock().unwrap().push(format!("body: {e}")),
                    },
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("error: {e:?}")),
                }
            }
        }));
    }
    Load { tasks, ..load }
}

impl Load {
    async fn wait_for_more(&self, n: usize) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        let ok = self.ok.clone();
        eventually("more successful requests", 60, || {
            let ok = ok.clone();
            async move { (ok.load(Ordering::Relaxed) >= target).then_some(()) }
        })
        .await;
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let files = Files::new();
    let ca = CertificateAuthority::new("rotation test CA", 1).unwrap();
    let first = ca.issue_server(&localhost_names(), 1).unwrap();
    let second = ca.issue_server(&localhost_names(), 1).unwrap();
    let (cert, key) = (files.path("tls.crt"), files.path("tls.key"));
    write(&cert, &first.cert_pem);
    write(&key, &first.key_pem);
    let (config, cert_s, key_s) = (
        files.config(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let srv = Running::start(
        serve_args(&[
            "--config",
            &config,
            "--tls-cert",
            &cert_s,
            "--tls-key",
            &key_s,
            "--reload-interval",
            "50ms",
        ]),
        Some(ca.cert_pem().as_bytes().to_vec()),
    )
    .await;
    assert_eq!(
        served_cert(srv.addr, &srv.ca_pem).await,
        der_of(&first.cert_pem)
    );

    let load = start_load(&srv, 4);
    load.wait_for_more(20).await;

    // Half-written: the new key beside the old certificate. Seen, rejected, still serving.
    write(&key, &second.key_pem);
    eventually("the inconsistent pair is rejected", 20, || async {
        let m = srv.metrics().await;
        (sample(&m, "carto_wi_tls_reloads_total{result=\"invalid\"}") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        served_cert(srv.addr, &srv.ca_pem).await,
        der_of(&first.cert_pem)
    );
    load.wait_for_more(10).await;

    // Complete: new connections get the new certificate.
    write(&cert, &second.cert_pem);
    let new_der = der_of(&second.cert_pem);
    eventually("new connections see the new certificate", 20, || async {
        (served_cert(srv.addr, &srv.ca_pem).await == new_der).then_some(())
    })
    .await;
    load.wait_for_more(20).await;

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 50, "{ok} requests");
    let m = srv.metrics().await;
    assert_eq!(
        sample(&m, "carto_wi_tls_reloads_total{result=\"success\"}"),
        1
    );
    assert_eq!(
        sample(&m, "carto_wi_http_errors_total{reason=\"timeout\"}"),
        0
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_signed_clients_and_refuses_others() {
    let files = Files::new();
    let server_ca = CertificateAuthority::new("server CA", 1).unwrap();
    let serving = server_ca.issue_server(&localhost_names(), 1).unwrap();
    let client_ca = CertificateAuthority::new("apiserver client CA", 1).unwrap();
    let good = client_ca.issue_client("kube-apiserver", 1).unwrap();
    let stranger = CertificateAuthority::new("another CA", 1)
        .unwrap()
        .issue_client("kube-apiserver", 1)
        .unwrap();
    for (name, pem) in [
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
        ("client-ca.crt", &client_ca.cert_pem().to_owned()),
    ] {
        write(&files.path(name), pem);
    }
    let (config, cert, key, cca) = (
        files.config(),
        files.path("tls.crt").display().to_string(),
        files.path("tls.key").display().to_string(),
        files.path("client-ca.crt").display().to_string(),
    );
    let srv = Running::start(
        serve_args(&[
            "--config",
            &config,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &cca,
        ]),
        Some(server_ca.cert_pem().as_bytes().to_vec()),
    )
    .await;

    let identity = |p: &carto_wi_webhook::pki::Pair| {
        reqwest::Identity::from_pem(format!("{}{}", p.cert_pem, p.key_pem).as_bytes()).unwrap()
    };
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();

    // Signed by --client-ca: served (HTTP/2 and HTTP/1.1).
    for h1 in [false, true] {
        let mut b = client_builder(&srv.ca_pem).identity(identity(&good));
        if h1 {
            b = b.http1_only();
        }
        let (status, body) = post(&b.build().unwrap(), &srv.url("/mutate"), &example).await;
        assert_eq!(status, 200);
        assert!(patch_of(&body).is_some());
    }

    // No certificate, or one from another CA: refused.
    let none = client_builder(&srv.ca_pem).build().unwrap();
    let other = client_builder(&srv.ca_pem)
        .identity(identity(&stranger))
        .build()
        .unwrap();
    for client in [none, other] {
        let r = client
            .post(srv.url("/mutate"))
            .header("content-type", "application/json")
            .body(DEPLOYMENT_REVIEW)
            .send()
            .await;
        assert!(
            r.is_err(),
            "served without a valid client certificate: {r:?}"
        );
    }
    // The raw handshake fails too (TLS 1.3 reports it on the first read).
    let refused = async {
        let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await?;
        send(&mut tls, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        read_response(&mut tls).await.map(|_| ())
    };
    assert!(refused.await.is_err());
    let mut ok = tls_connect(srv.addr, &srv.ca_pem, Some(&good))
        .await
        .unwrap();
    send(&mut ok, b"GET /mutate HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(read_response(&mut ok).await.unwrap().0, 405);

    let m = eventually("refused handshakes are counted", 10, || async {
        let m = srv.metrics().await;
        (sample(
            &m,
            "carto_wi_tls_handshake_failures_total{reason=\"error\"}",
        ) >= 3)
            .then_some(m)
    })
    .await;
    assert_eq!(
        sample(
            &m,
            "carto_wi_admission_requests_total{webhook=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"patched\"}"
        ),
        2
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_the_flag() {
    let files = Files::new();
    let config = files.config();
    let ca = CertificateAuthority::new("t", 1).unwrap();
    let a = ca.issue_server(&localhost_names(), 1).unwrap();
    let b = ca.issue_server(&localhost_names(), 1).unwrap();
    write(&files.path("a.crt"), &a.cert_pem);
    write(&files.path("b.key"), &b.key_pem);
    write(&files.path("garbage.pem"), "not pem at all");
    let p = |n: &str| files.path(n).display().to_string();

    write(
        &files.path("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: X\n",
    );
    let (a_crt, b_key, garbage) = (p("a.crt"), p("b.key"), p("garbage.pem"));
    let (missing, bad, nope) = (p("missing.yaml"), p("bad.yaml"), p("nope.crt"));
    // (flags, the flag the message starts with, what it must also say)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec![], "", "cluster mode"),
        (vec!["--config", &missing], "--config ", "cannot read"),
        (vec!["--config", &bad], "--config ", "invalid"),
        (
            vec![
                "--config",
                &config,
                "--tls-cert",
                &a_crt,
                "--tls-key",
                &b_key,
            ],
            "--tls-key",
            "does not match",
        ),
        (
            vec![
                "--config",
                &config,
                "--tls-cert",
                &garbage,
                "--tls-key",
                &b_key,
            ],
            "--tls-cert",
            "",
        ),
        (
            vec![
                "--config",
                &config,
                "--tls-cert",
                &a_crt,
                "--tls-key",
                &garbage,
            ],
            "--tls-key",
            "",
        ),
        (
            vec![
                "--config",
                &config,
                "--tls-cert",
                &nope,
                "--tls-key",
                &b_key,
            ],
            "--tls-cert",
            "cannot read",
        ),
        (
            vec!["--config", &config, "--client-ca", &garbage],
            "--client-ca",
            "",
        ),
    ];
    for (flags, prefix, says) in cases {
        let msg = start_error(serve_args(&flags)).await;
        assert!(
            msg.starts_with(prefix) && msg.contains(says),
            "{flags:?}: {msg}"
        );
        if flags.is_empty() {
            assert!(msg.contains("--config"), "{msg}");
        }
    }

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = serve_args(&["--config", &config, "--ephemeral-ca-out", &p("ca.crt")]);
    args.admin.admin_listen = addr.parse().unwrap();
    let msg = start_error(args).await;
    assert!(
        msg.starts_with("--admin-listen") && msg.contains("cannot listen"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_reload_keeps_the_last_good_version() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let billing = |body: &Value| -> String {
        let patch = patch_of(body).unwrap();
        patch
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["value"]["name"] == "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT")
            .map(|op| op["value"]["value"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    assert_eq!(
        billing(&srv.post("/mutate", &example).await.1),
        "acme-gke-prod"
    );

    // A valid new version: used.
    // Replaced whole, as a ConfigMap volume update does (a rename).
    write_atomic(
        &files.path("config.yaml"),
        &CONFIG.replace(
            "BILLING_PROJECT: acme-gke-prod",
            "BILLING_PROJECT: acme-billing-2",
        ),
    );
    eventually("the new config is served", 20, || async {
        (billing(&srv.post("/mutate", &example).await.1) == "acme-billing-2").then_some(())
    })
    .await;

    // An invalid version: rejected, the last good one keeps serving.
    write_atomic(
        &files.path("config.yaml"),
        &CONFIG.replace(
            "BILLING_PROJECT: acme-gke-prod",
            "BILLING_PROJECT: Bad Project",
        ),
    );
    eventually("the invalid config is counted", 20, || async {
        let m = srv.metrics().await;
        (sample(&m, "carto_wi_config_reloads_total{result=\"invalid\"}") == 1).then_some(())
    })
    .await;
    assert_eq!(
        billing(&srv.post("/mutate", &example).await.1),
        "acme-billing-2"
    );
    // Gone: counted as unreadable, still serving.
    std::fs::remove_file(files.path("config.yaml")).unwrap();
    eventually("the missing file is counted", 20, || async {
        let m = srv.metrics().await;
        (sample(&m, "carto_wi_config_reloads_total{result=\"read_error\"}") == 1).then_some(())
    })
    .await;
    assert_eq!(
        billing(&srv.post("/mutate", &example).await.1),
        "acme-billing-2"
    );
    assert_eq!(srv.admin_get("/readyz").await.0, 200);
    let m = srv.metrics().await;
    assert_eq!(
        sample(&m, "carto_wi_config_reloads_total{result=\"success\"}"),
        1
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_certificate_names() {
    // The ephemeral certificate is valid for 127.0.0.1 and localhost.
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let client = client_builder(&srv.ca_pem)
        .resolve("localhost", srv.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/mutate", srv.addr.port());
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    assert_eq!(post(&client, &url, &example).await.0, 200);
    assert_eq!(srv.post("/mutate", &example).await.0, 200);
    tokio::time::timeout(Duration::from_secs(30), srv.stop())
        .await
        .unwrap();
}
