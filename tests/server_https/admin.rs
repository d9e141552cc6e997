//! The admin listener (readiness, liveness, metrics) and the routers through `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use carto_wi_webhook::app::App;
use carto_wi_webhook::config::{ConfigEntry, ConfigSnapshot, ConfigStore, load_config_map};
use carto_wi_webhook::metrics;
use carto_wi_webhook::readiness::Readiness;
use carto_wi_webhook::server::{AdminState, AdmissionMetrics, AppState, admin, router};
use carto_wi_webhook::settings::Settings;
use carto_wi_webhook::shutdown::Shutdown;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_once_serving() {
    let files = Files::new();
    let (config, ca_out) = (files.config(), files.ca_out());
    let server = App::start(
        serve_args(&["--config", &config, "--ephemeral-ca-out", &ca_out]),
        Shutdown::new(),
    )
    .await
    .unwrap();
    // Loaded and bound, not yet accepting: the admin listener answers, not ready.
    let admin = server.admin_addr();
    let r = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("waiting for admission listener accepting"),
        "{text}"
    );
    assert!(!text.contains("TLS"), "TLS is loaded: {text}");
    assert!(!text.contains("configuration"), "config is loaded: {text}");
    let r = reqwest::get(format!("http://{admin}/livez")).await.unwrap();
    assert_eq!(r.status(), 200);

    let srv = Running::run(server, None);
    eventually("/readyz is 200", 10, || async {
        (srv.admin_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = srv.admin_get("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    for _ in 0..3 {
        assert_eq!(srv.post("/mutate", &example).await.0, 200);
    }
    let (_, body) = srv
        .post(
            "/validate",
            &review("v", "CREATE", Some(service_account(json!({}))), None),
        )
        .await;
    assert_eq!(body["response"]["allowed"], false);
    srv.post(
        "/mutate",
        &review("d", "DELETE", None, Some(config_map(config_data()))),
    )
    .await;

    let r = reqwest::get(srv.admin_url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let m = r.text().await.unwrap();
    let req = |w: &str, k: &str, op: &str, o: &str| {
        sample(
            &m,
            &format!(
                "carto_wi_admission_requests_total{{webhook=\"{w}\",kind=\"{k}\",operation=\"{op}\",outcome=\"{o}\"}}"
            ),
        )
    };
    assert_eq!(req("mutate", "Deployment", "CREATE", "patched"), 3);
    assert_eq!(req("validate", "ServiceAccount", "CREATE", "denied"), 1);
    assert_eq!(req("mutate", "ConfigMap", "DELETE", "allowed"), 1);
    assert_eq!(
        sample(
            &m,
            "carto_wi_admission_duration_seconds_count{webhook=\"mutate\"}"
        ),
        4
    );
    assert_eq!(
        sample(
            &m,
            "carto_wi_admission_duration_seconds_bucket{le=\"+Inf\",webhook=\"validate\"}"
        ),
        1
    );
    assert!(
        m.contains("carto_wi_admission_duration_seconds_bucket{le=\"0.00005\",webhook=\"mutate\"}"),
        "sub-millisecond buckets"
    );
    assert_eq!(
        sample(
            &m,
            "carto_wi_admission_violations_total{webhook=\"validate\",kind=\"ServiceAccount\",enforcement=\"deny\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                "carto_wi_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1
    );
    for family in [
        "carto_wi_config_reloads_total{result=\"success\"} 0",
        "carto_wi_tls_reloads_total{result=\"invalid\"} 0",
        "carto_wi_http_errors_total{reason=\"invalid_json\"} 0",
        "# EOF",
    ] {
        assert!(m.contains(family), "{family} missing in\n{m}");
    }
    srv.stop().await;
}

fn state() -> Arc<AppState> {
    let loaded = load_config_map(CONFIG, "carto-workload-identity", &Default::default()).unwrap();
    let snapshot = ConfigSnapshot::with_default(ConfigEntry::from_result(loaded.config));
    let mut registry = metrics::registry();
    Arc::new(AppState::new(
        ConfigStore::new(snapshot),
        Settings::default(),
        AdmissionMetrics::register(&mut registry),
        Duration::from_secs(5),
    ))
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let r = app.oneshot(req).await.unwrap();
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn router_oneshot() {
    let st = state();
    let app = router(st.clone());

    let (status, body) = call(
        app.clone(),
        post("/mutate", "application/json", DEPLOYMENT_REVIEW),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["uid"], "6f1c2a52-0d3e-4c8e-9d7e-5b1c9c1d0a01");
    assert!(patch_of(&v).is_some());

    let sa = review("o-1", "CREATE", Some(service_account(json!({}))), None);
    let (status, body) = call(
        app.clone(),
        post(
            "/validate",
            "application/json",
            serde_json::to_vec(&sa).unwrap(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);

    let (status, _) = call(app.clone(), post("/mutate", "text/yaml", "{}")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = call(app.clone(), post("/mutate", "application/json", "nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a valid AdmissionReview"));
    let (status, _) = call(
        app.clone(),
        Request::delete("/validate").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(app.clone(), Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        st.metrics
            .reviews(carto_wi_webhook::admission::Webhook::Mutate),
        1
    );
    assert_eq!(
        st.metrics
            .reviews(carto_wi_webhook::admission::Webhook::Validate),
        1
    );
}

#[tokio::test]
async fn admin_router_readiness_conditions() {
    let shutdown = Shutdown::new();
    let readiness = Readiness::new(shutdown.clone());
    let app = admin::router(AdminState {
        readiness: readiness.clone(),
        registry: Arc::new(metrics::registry()),
    });
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();

    let tls = readiness.add("TLS certificate");
    let config = readiness.add("configuration");
    let listening = readiness.add("admission listener accepting");
    let (status, body) = call(app.clone(), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for reason in ["TLS", "configuration", "accepting"] {
        assert!(body.contains(reason), "{reason} in {body}");
    }
    config.release();
    tls.release();
    let (status, body) = call(app.clone(), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.contains("TLS") && body.contains("accepting"),
        "{body}"
    );
    listening.release();
    assert_eq!(call(app.clone(), get("/readyz")).await.0, StatusCode::OK);
    shutdown.request();
    let (status, body) = call(app.clone(), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("shutting down"), "{body}");
    // Liveness does not depend on readiness.
    assert_eq!(call(app.clone(), get("/livez")).await.0, StatusCode::OK);
    let (status, body) = call(app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("carto_wi_build_info"));
}
