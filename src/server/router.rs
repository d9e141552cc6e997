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
use super::budget::{BUDGET_WAIT, Cut, EVICT_AFTER, Grant, NoRoom, Refused};
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

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    Body(axum::Error),
    Refused(Refused),
    Cut(Cut),
}

impl From<NoRoom> for Unread {
    fn from(e: NoRoom) -> Self {
        match e {
            NoRoom::Refused(r) => Self::Refused(r),
            NoRoom::Evicted => Self::Cut(Cut::Evicted),
        }
    }
}

/// Read a body of at most [`MAX_BODY_BYTES`], holding its bytes in `grant` as they arrive (a
/// body over the cap is read and dropped up to [`DRAIN_LIMIT`], then refused). The frames are
/// kept as they came (no buffer that grows and copies, nothing reserved for what is only
/// declared) and joined once the body is whole; a body that arrives in one frame is not copied.
async fn read_body(
    mut body: Body,
    grant: &mut Grant,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Unread> {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = grant.evicted() => return Err(Unread::Cut(Cut::Evicted)),
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame.map_err(Unread::Body)?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > MAX_BODY_BYTES {
            if total > DRAIN_LIMIT {
                return Err(Unread::TooLarge);
            }
            frames = Vec::new();
            grant.give_back(grant.held());
            continue;
        }
        grant.take(data.len(), deadline).await?;
        frames.push(data);
    }
    if total > MAX_BODY_BYTES {
        return Err(Unread::TooLarge);
    }
    grant.arrived();
    if frames.len() <= 1 {
        return Ok(frames.pop().unwrap_or_default());
    }
    // Each frame is dropped once copied and the copy's pages are touched only as written: the
    // bytes held stay `total`, moving from the frames to the copy.
    let mut joined = Vec::with_capacity(total);
    for f in frames {
        joined.extend_from_slice(&f);
    }
    Ok(Bytes::from(joined))
}

async fn handle(state: &AppState, webhook: Webhook, req: Request) -> Response {
    let start = Instant::now();
    // Held until the answer is written: the parsed request borrows the body.
    let mut grant = state.body_budget.grant();
    let bytes = match read_review_body(state, req, &mut grant).await {
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

/// Check the content type and read the body (capped, within the budget, with a deadline); a
/// refusal is the response to send.
async fn read_review_body(
    state: &AppState,
    req: Request,
    grant: &mut Grant,
) -> Result<Bytes, Response> {
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
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        // Not worth reading: answer now (the connection or stream is then reset).
        return Err(unread(state, Unread::TooLarge, parts.version));
    }
    let timeout = state.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout(timeout, read_body(body, grant, deadline)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(unread(state, e, parts.version)),
        Err(_) => Err(unread(state, Unread::Cut(Cut::Timeout), parts.version)),
    }
}

/// The answer to a body that was not read whole. A refused or cut body is not read further: on
/// HTTP/1.1 its connection is closed after the answer (HTTP/2 resets the stream).
fn unread(state: &AppState, e: Unread, version: axum::http::Version) -> Response {
    let reject = |e: HttpError, status: StatusCode, msg: String| {
        state.metrics.http_error(e);
        text(status, msg)
    };
    let close = matches!(e, Unread::Refused(_) | Unread::Cut(_));
    let mut r = match e {
        Unread::TooLarge => reject(
            HttpError::PayloadTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {MAX_BODY_BYTES} byte limit\n"),
        ),
        Unread::Body(e) => reject(
            HttpError::BodyRead,
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}\n"),
        ),
        Unread::Refused(r) => {
            let mut resp = reject(
                HttpError::BodyBudget,
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the webhook's memory for request bodies is in use by other requests \
                     (--request-body-budget {} bytes, waited {BUDGET_WAIT:?}); retry\n",
                    r.limit
                ),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Unread::Cut(why) => {
            state.body_budget.metrics().cut(why);
            let msg = match why {
                Cut::Timeout => format!(
                    "the body did not arrive within {:?} (--request-timeout)\n",
                    state.request_timeout
                ),
                Cut::Evicted => format!(
                    "the body was still arriving after {EVICT_AFTER:?} while the webhook's memory \
                     for request bodies (--request-body-budget) was needed by other requests\n"
                ),
            };
            reject(HttpError::Timeout, StatusCode::REQUEST_TIMEOUT, msg)
        }
    };
    if close && version <= axum::http::Version::HTTP_11 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
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
