//! Every bad request gets a clear answer with the right status, and is counted.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::support::*;
use carto_wi_webhook::server::MAX_BODY_BYTES;

async fn raw_post(
    srv: &Running,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut req = srv.client().post(srv.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// The message of a 400 AdmissionReview answer.
fn bad_review_message(ct: &str, body: &str) -> (Value, String) {
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);
    let msg = v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    (v, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_answers() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let json_ct = Some("application/json");

    // Malformed JSON: 400 with serde's explanation.
    let (status, ct, body) =
        raw_post(&srv, "/mutate", json_ct, b"{\"apiVersion\": ".to_vec()).await;
    assert_eq!(status, 400);
    let (_, msg) = bad_review_message(&ct, &body);
    assert!(msg.contains("not a valid AdmissionReview"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");

    // Valid JSON, not a review.
    let (status, ct, body) = raw_post(&srv, "/validate", json_ct, b"[1,2,3]".to_vec()).await;
    assert_eq!(status, 400);
    bad_review_message(&ct, &body);

    // A request that lacks required fields.
    let broken = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x"}});
    let (status, ct, body) = raw_post(
        &srv,
        "/mutate",
        json_ct,
        serde_json::to_vec(&broken).unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (_, msg) = bad_review_message(&ct, &body);
    assert!(msg.contains("missing field"), "{msg}");

    // No request.
    let empty = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let (status, ct, body) = raw_post(
        &srv,
        "/mutate",
        json_ct,
        serde_json::to_vec(&empty).unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (_, msg) = bad_review_message(&ct, &body);
    assert!(msg.contains("no request"), "{msg}");

    // v1beta1, with a request that would parse and one that would not.
    let mut beta = review("b-1", "CREATE", Some(service_account(json!({}))), None);
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    for body in [
        beta,
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "b-2"}}),
    ] {
        let (status, ct, text) = raw_post(
            &srv,
            "/validate",
            json_ct,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        let (v, msg) = bad_review_message(&ct, &text);
        assert!(msg.contains("unsupported AdmissionReview version"), "{msg}");
        assert!(msg.contains("v1beta1"), "{msg}");
        if body["request"]["uid"] == "b-1" {
            assert_eq!(
                v["response"]["uid"], "b-1",
                "the uid is echoed when readable"
            );
        }
    }

    // Another kind.
    let mut other = review("k-1", "CREATE", Some(service_account(json!({}))), None);
    other["kind"] = json!("ConversionReview");
    let (status, ct, body) = raw_post(
        &srv,
        "/mutate",
        json_ct,
        serde_json::to_vec(&other).unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (_, msg) = bad_review_message(&ct, &body);
    assert!(msg.contains("ConversionReview"), "{msg}");

    // Content type: wrong, absent, and accepted with a charset.
    let ok_body = DEPLOYMENT_REVIEW.as_bytes().to_vec();
    let (status, _, body) = raw_post(&srv, "/mutate", Some("text/plain"), ok_body.clone()).await;
    assert_eq!(status, 415);
    assert!(body.contains("application/json"), "{body}");
    let (status, _, body) = raw_post(&srv, "/mutate", None, ok_body.clone()).await;
    assert_eq!(status, 415, "{body}");
    let (status, _, _) = raw_post(
        &srv,
        "/mutate",
        Some("application/json; charset=utf-8"),
        ok_body,
    )
    .await;
    assert_eq!(status, 200);

    // Over the cap (HTTP/2 with a length, then HTTP/1.1).
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, _, body) = raw_post(&srv, "/mutate", json_ct, huge.clone()).await;
    assert_eq!(status, 413);
    assert!(body.contains("limit"), "{body}");
    let h1 = client_builder(&srv.ca_pem).http1_only().build().unwrap();
    let r = h1
        .post(srv.url("/validate"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Exactly at the cap is read (and is not a review).
    let mut at_cap = vec![b' '; MAX_BODY_BYTES];
    at_cap[0] = b'{';
    let (status, _, _) = raw_post(&srv, "/mutate", json_ct, at_cap).await;
    assert_eq!(status, 400);

    // Wrong method, unknown path.
    let r = srv.client().get(srv.url("/mutate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert!(r.text().await.unwrap().contains("POST"));
    let r = srv.client().put(srv.url("/validate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = srv.client().post(srv.url("/admit")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("/mutate"));

    // Every rejection is counted by reason.
    let m = srv.metrics().await;
    for (reason, n) in [
        ("invalid_json", 5),
        ("missing_request", 1),
        ("unsupported_version", 2),
        ("unsupported_media_type", 2),
        ("payload_too_large", 2),
        ("method_not_allowed", 2),
        ("not_found", 1),
    ] {
        assert_eq!(
            sample(
                &m,
                &format!("carto_wi_http_errors_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_cap_is_refused() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await.unwrap();
    send(
        &mut tls,
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await;
    let chunk = vec![b' '; 1024 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    // Over the cap, under what is still read and dropped (twice the cap): a clean 413.
    for _ in 0..MAX_BODY_BYTES / chunk.len() + 1 {
        send(&mut tls, &framed).await;
    }
    send(&mut tls, b"0\r\n\r\n").await;
    let (status, _, body) = read_response(&mut tls).await.unwrap();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out() {
    let files = Files::new();
    let srv = Running::standalone(
        &files,
        &[
            "--request-timeout",
            "300ms",
            "--header-read-timeout",
            "300ms",
            "--tls-handshake-timeout",
            "300ms",
        ],
    )
    .await;

    // A body that never completes: 408.
    let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await.unwrap();
    send(
        &mut tls,
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"apiVersion\"",
    )
    .await;
    let (status, _, body) = read_response(&mut tls).await.unwrap();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("--request-timeout"));

    // Headers that never complete: the connection is closed.
    let mut tls = tls_connect(srv.addr, &srv.ca_pem, None).await.unwrap();
    send(&mut tls, b"POST /mutate HTTP/1.1\r\nhost: loc").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection whose headers stall"
    );

    // A TCP connection that never starts TLS: closed, and counted.
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
        .await
        .expect("the server closes a connection that never handshakes");
    assert_eq!(n.unwrap_or(0), 0);
    let m = eventually("the handshake timeout is counted", 10, || async {
        let m = srv.metrics().await;
        (sample(
            &m,
            "carto_wi_tls_handshake_failures_total{reason=\"timeout\"}",
        ) == 1)
            .then_some(m)
    })
    .await;
    assert_eq!(
        sample(&m, "carto_wi_http_errors_total{reason=\"timeout\"}"),
        1
    );
    srv.stop().await;
}
