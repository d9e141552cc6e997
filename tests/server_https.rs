//! The HTTPS admission server over real sockets on 127.0.0.1: reviews, errors, admin endpoints,
//! certificates (rotation, mutual TLS), reloads, graceful shutdown, the binary and `certs`;
//! hardening (idle timeouts, connection caps, floods, hostile log fields, the request-body budget).

#[path = "server_https/admin.rs"]
mod admin;
#[path = "server_https/budget.rs"]
mod budget;
#[path = "server_https/errors.rs"]
mod errors;
#[path = "server_https/hardening.rs"]
mod hardening;
#[path = "server_https/lifecycle.rs"]
mod lifecycle;
#[path = "server_https/reviews.rs"]
mod reviews;
#[path = "server_https/support.rs"]
mod support;
#[path = "server_https/tls.rs"]
mod tls;
