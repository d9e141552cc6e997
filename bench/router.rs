//! One request through an admission router, in-process: an `http::Request` carrying the
//! workspace-api AdmissionReview (`application/json`) goes through the router with tower's
//! `oneshot` on a current-thread tokio runtime, and the response body is collected and dropped.
//! No socket, TLS or HTTP parsing: what is left is the router's own work, body in, bytes out.
//!
//! `--repeat CASE N` runs one case N times, for instruction counts under
//! `valgrind --tool=callgrind` (`bench/run.sh` takes the difference between two N):
//! - `router_mutate`, `router_validate`: the real router (`carto_wi_webhook::server::router`),
//!   with its metrics and its log line per review, formatted as in production (`logging::init`,
//!   JSON at info, on standard error: the script sends it to /dev/null);
//! - `floor`: the floor server's router (`common/floor.rs`) on the `/mutate` body, in the same
//!   harness;
//! - `router_mutate_unlogged`: `router_mutate` with no subscriber installed, so the difference
//!   is the cost of the review's span and log line.

mod common;
#[path = "common/floor.rs"]
mod floor;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use carto_wi_webhook::config::{ConfigSnapshot, ConfigStore};
use carto_wi_webhook::logging::{LogArgs, LogFormat};
use carto_wi_webhook::server::{AdmissionMetrics, AppState};
use carto_wi_webhook::settings::Settings;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The real admission router over the fixture config, as `serve --config` builds it.
fn webhook_router() -> Router {
    let store = ConfigStore::new(ConfigSnapshot::with_default(common::config_entry()));
    let metrics = AdmissionMetrics::register(&mut carto_wi_webhook::metrics::registry());
    let state = AppState::new(
        store,
        Settings::default(),
        metrics,
        Duration::from_secs(10), // --request-timeout's default
    );
    carto_wi_webhook::server::router(Arc::new(state))
}

fn review_request(path: &str, body: &Bytes) -> Request<Body> {
    Request::post(path)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .body(Body::from(body.clone()))
        .expect("a valid request")
}

/// One request: through the router, then the whole response body read.
async fn one_request(router: &Router, path: &str, body: &Bytes) -> (StatusCode, Bytes) {
    let resp = router
        .clone()
        .oneshot(review_request(path, body))
        .await
        .expect("a router never fails");
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("an in-memory body")
        .to_bytes();
    (status, bytes)
}

/// The answer must be the one being counted: 200, allowed, and a patch from `/mutate`.
fn check(case: &str, status: StatusCode, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("a JSON answer");
    assert_eq!(status, StatusCode::OK, "{case}: {v}");
    assert_eq!(v["response"]["allowed"], true, "{case}: {v}");
    if case.starts_with("router_mutate") {
        assert_eq!(v["response"]["patchType"], "JSONPatch", "{case}: {v}");
    }
}

fn repeat(case: &str, n: usize) {
    // Production logging, except for the case that shows what the log line costs.
    let _log = (case != "router_mutate_unlogged").then(|| {
        carto_wi_webhook::logging::init(&LogArgs {
            log_format: LogFormat::Json,
            log_level: "info".into(),
        })
        .expect("the default filter parses")
    });
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let obj = common::workspace_api();
    let mutate = Bytes::from(common::review_body(&obj, "CREATE"));
    let validate = Bytes::from(common::review_body(
        &common::mutated(&obj, &snap, &settings),
        "CREATE",
    ));
    let (router, path, body) = match case {
        "router_mutate" | "router_mutate_unlogged" => (webhook_router(), "/mutate", mutate),
        "router_validate" => (webhook_router(), "/validate", validate),
        "floor" => (floor::router(), "/mutate", mutate),
        other => panic!(
            "unknown case {other}: router_mutate, router_validate, floor or router_mutate_unlogged"
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (status, answer) = one_request(&router, path, &body).await;
        check(case, status, &answer);
        for _ in 0..n {
            drop(std::hint::black_box(
                one_request(&router, path, &body).await,
            ));
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let case = args.get(i + 1).map_or("", String::as_str);
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1);
        return repeat(case, n);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs with no such flag.
    if args.iter().any(|a| a == "--bench") {
        println!(
            "router: instruction counts only, under callgrind (bench/run.sh): \
             --repeat router_mutate|router_validate|floor|router_mutate_unlogged N"
        );
    }
}
