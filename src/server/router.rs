//! The admission routes: `POST /mutate` and `POST /validate`.
//!
//! A handler reads the body (capped, with a deadline), parses the AdmissionReview, runs the pure
//! core against the current config snapshot and writes the response. Every rejection is a clear
//! message with the right status; nothing here panics on input.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;

use super::MAX_BODY_BYTES;
use super::decode::parse;
use super::metrics::{HttpError, operation_str};
use super::state::AppState;
use crate::admission::view::ReviewRequest;
use crate::admission::wire::{ReviewResponse, response_body};
use crate::admission::{self, Webhook};
use crate::config::ConfigSnapshot;
use crate::logging::{MAX_FIELD_CHARS, clip};
use crate::settings::{Enforcement, Settings};

/// The router of the admission listener.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(mutate).fallback(|s: State<Arc<AppState>>| method_not_allowed(s, "/mutate")),
        )
        .route(
            "/validate",
            post(validate).fallback(|s: State<Arc<AppState>>| method_not_allowed(s, "/validate")),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn mutate(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, Webhook::Mutate, req).await
}

async fn validate(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, Webhook::Validate, req).await
}

async fn method_not_allowed(State(state): State<Arc<AppState>>, path: &'static str) -> Response {
    state.metrics.http_error(HttpError::MethodNotAllowed);
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} accepts only POST with an AdmissionReview (admission.k8s.io/v1)\n"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.metrics.http_error(HttpError::NotFound);
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}: the webhook serves POST /mutate and POST /validate\n",
            req.uri().path()
        ),
    )
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        msg,
    )
        .into_response()
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A 400 carrying an AdmissionReview whose response explains the problem.
fn bad_review(uid: String, msg: String) -> Response {
    json(StatusCode::BAD_REQUEST, invalid_body(uid, msg))
}

fn invalid_body(uid: String, msg: String) -> Vec<u8> {
    serde_json::to_vec(&ReviewResponse::invalid(uid, msg))
        .expect("a review response always serializes")
}

/// Is the content type `application/json` (parameters such as `charset` allowed)?
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A body over the cap is still read (and dropped) up to this size, so that the client gets the
/// 413 cleanly instead of a reset stream; past it the request is cut short.
const DRAIN_LIMIT: usize = 2 * MAX_BODY_BYTES;

/// Read a body of at most [`MAX_BODY_BYTES`]; `None` when it is larger (what follows the cap is
/// read and dropped, up to [`DRAIN_LIMIT`]). A body that arrives in one frame is not copied.
async fn read_body(mut body: Body, capacity: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > MAX_BODY_BYTES {
            if total > DRAIN_LIMIT {
                return Ok(None);
            }
            first = None;
            buf = Vec::new();
            continue;
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.reserve(capacity.max(f.len() + data.len()));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Ok(None);
    }
    Ok(Some(first.unwrap_or_else(|| Bytes::from(buf))))
}

async fn handle(state: &AppState, webhook: Webhook, req: Request) -> Response {
    let start = Instant::now();
    let bytes = match read_review_body(state, req).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let req = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => {
            state.metrics.http_error(r.reason);
            tracing::debug!(
                webhook = webhook.as_str(),
                uid = %clip(&r.uid, MAX_FIELD_CHARS),
                reason = r.reason.as_str(),
                error = %clip(&r.message, MAX_LOGGED_REASONS_CHARS),
                "bad admission request"
            );
            return bad_review(r.uid, r.message);
        }
    };
    let span = tracing::info_span!(
        "admission",
        webhook = webhook.as_str(),
        uid = %clip(&req.uid, MAX_FIELD_CHARS),
        kind = %clip(&req.kind.kind, MAX_FIELD_CHARS),
        namespace = %clip(req.namespace.as_deref().unwrap_or(""), MAX_FIELD_CHARS),
        name = %clip(&req.name, MAX_FIELD_CHARS),
    );
    span.in_scope(|| answer(state, webhook, &req, start))
}

/// Check the content type and read the body (capped, with a deadline); a refusal is the
/// response to send.
async fn read_review_body(state: &AppState, req: Request) -> Result<Bytes, Response> {
    let (parts, body) = req.into_parts();
    let reject = |e: HttpError, status: StatusCode, msg: String| {
        state.metrics.http_error(e);
        text(status, msg)
    };
    if !is_json(&parts.headers) {
        let got = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map_or("none".into(), |v| format!("{v:?}"));
        return Err(reject(
            HttpError::UnsupportedMediaType,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type must be application/json, got {got}\n"),
        ));
    }
    let too_large = || {
        reject(
            HttpError::PayloadTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {MAX_BODY_BYTES} byte limit\n"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        // Not worth reading: answer now (the connection or stream is then reset).
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| n.min(MAX_BODY_BYTES as u64) as usize);
    match tokio::time::timeout(state.request_timeout, read_body(body, capacity)).await {
        Ok(Ok(Some(b))) => Ok(b),
        Ok(Ok(None)) => Err(too_large()),
        Ok(Err(e)) => Err(reject(
            HttpError::BodyRead,
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}\n"),
        )),
        Err(_) => Err(reject(
            HttpError::Timeout,
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {:?} (--request-timeout)\n",
                state.request_timeout
            ),
        )),
    }
}

/// The answer the admission routes give to an AdmissionReview `body`, without HTTP, metrics or
/// logs: the status (200 for a decided review, 400 for a body that is not one) and the response
/// body. The routes run the same steps; the fuzz targets (fuzz/) call this.
pub fn answer_body(
    webhook: Webhook,
    body: &[u8],
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> (StatusCode, Vec<u8>) {
    match parse(body) {
        Ok(req) => (StatusCode::OK, respond(webhook, &req, snapshot, settings).1),
        Err(r) => (StatusCode::BAD_REQUEST, invalid_body(r.uid, r.message)),
    }
}

/// Decide a review and write its AdmissionReview response body.
fn respond(
    webhook: Webhook,
    req: &ReviewRequest<'_>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> (admission::Decision, Vec<u8>) {
    let decision = admission::review(webhook, req, snapshot, settings);
    let body = response_body(&req.uid, &decision);
    (decision, body)
}

/// Decide against the snapshot in force, count, log, and write the AdmissionReview answer.
fn answer(state: &AppState, webhook: Webhook, req: &ReviewRequest<'_>, start: Instant) -> Response {
    let (decision, body) = respond(webhook, req, &state.config.load(), &state.settings);
    let elapsed = start.elapsed();
    let enforcement = state.settings.enforcement;
    state.metrics.review(
        webhook,
        req.target_kind(),
        &req.operation,
        &decision,
        enforcement,
        elapsed,
    );
    log_review(webhook, req, &decision, enforcement, elapsed);
    json(StatusCode::OK, body)
}

/// Longest denial or violation list in a log line, in chars (the answer itself is bounded by
/// the core).
const MAX_LOGGED_REASONS_CHARS: usize = 4096;

/// The one structured line per review. Every request field is cut to [`MAX_FIELD_CHARS`]; the
/// violations appear once (as `violations`, and `denial` only when it says something else).
fn log_review(
    webhook: Webhook,
    req: &ReviewRequest<'_>,
    decision: &admission::Decision,
    enforcement: Enforcement,
    elapsed: std::time::Duration,
) {
    macro_rules! review_line {
        ($level:expr, $violations:expr, $denial:expr) => {
            tracing::event!(
                target: "carto_wi_webhook::review",
                $level,
                webhook = webhook.as_str(),
                uid = %clip(&req.uid, MAX_FIELD_CHARS),
                kind = %clip(&req.kind.kind, MAX_FIELD_CHARS),
                namespace = %clip(req.namespace.as_deref().unwrap_or(""), MAX_FIELD_CHARS),
                name = %clip(&req.name, MAX_FIELD_CHARS),
                operation = operation_str(&req.operation),
                dry_run = req.dry_run,
                decision = decision.outcome(),
                allowed = decision.allowed(),
                patch_ops = decision.patch.as_ref().map_or(0, |p| p.0.len()),
                warnings = decision.warnings.len(),
                violations = $violations,
                denial = $denial,
                duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "review"
            )
        };
    }
    if decision.violations.is_empty() {
        let denial = decision
            .denial
            .as_ref()
            .map(|d| clip(&d.to_string(), MAX_LOGGED_REASONS_CHARS).into_owned());
        review_line!(tracing::Level::INFO, None::<String>, denial);
    } else {
        let list = decision
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let list = Some(clip(&list, MAX_LOGGED_REASONS_CHARS).into_owned());
        // The denial of a review with violations lists them: not repeated.
        if enforcement == Enforcement::Audit {
            review_line!(tracing::Level::WARN, list, None::<String>);
        } else {
            review_line!(tracing::Level::INFO, list, None::<String>);
        }
    }
}
