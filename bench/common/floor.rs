//! The floor's router: `POST /mutate` and `POST /validate` answer one constant allowed
//! AdmissionReview after reading the body to the end, without parsing it; `GET /readyz` says ok.
//!
//! Shared with `#[path]` by the floor server (`bench/floor_server.rs`) and the router
//! instruction count (`bench/router.rs`), so both measure the very same handlers.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::routing::{get, post};

/// The constant answer: allowed, no patch.
pub const ALLOWED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

async fn answer(body: Bytes) -> ([(HeaderName, &'static str); 1], &'static str) {
    // Received in full (like the real server), then ignored.
    std::hint::black_box(body.len());
    ([(CONTENT_TYPE, "application/json")], ALLOWED)
}

/// The floor server's routes.
pub fn router() -> Router {
    Router::new()
        .route("/mutate", post(answer))
        .route("/validate", post(answer))
        .route("/readyz", get(|| async { "ok" }))
}
