//! Flags of `serve`, grouped by concern. Every flag is also read from a `CARTO_WI_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::PolicyArgs;

/// Largest AdmissionReview body accepted (8 MiB); larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the HTTPS admission listener.
    #[arg(
        long,
        env = "CARTO_WI_LISTEN",
        default_value = "0.0.0.0:8443",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Standalone mode: this ConfigMap YAML file is the configuration of every namespace. It is
    /// re-read when its content changes; an invalid new version is rejected and the last good one
    /// keeps serving. Without it the server would run in cluster mode (not in this build).
    #[arg(long, env = "CARTO_WI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How often --config, --tls-cert and --tls-key are checked for changes (e.g. 1s, 500ms).
    #[arg(long, env = "CARTO_WI_RELOAD_INTERVAL", default_value = "1s", value_name = "DURATION", value_parser = parse_interval)]
    pub reload_interval: Duration,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: HttpArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub admin: AdminArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

/// Certificates of the HTTPS listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serving certificate chain (PEM, leaf first). Re-read when it changes, e.g. when cert-manager
    /// renews it. Without --tls-cert/--tls-key an ephemeral CA and certificate are generated for
    /// localhost.
    #[arg(
        long,
        env = "CARTO_WI_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "CARTO_WI_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CAs (PEM): mutual TLS. Clients without a valid
    /// certificate fail the handshake.
    #[arg(long, env = "CARTO_WI_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Where to write the ephemeral CA certificate (PEM) when no --tls-cert is given
    /// [default: carto-wi-webhook-ca.crt in the temporary directory].
    #[arg(
        long,
        env = "CARTO_WI_EPHEMERAL_CA_OUT",
        value_name = "FILE",
        conflicts_with = "tls_cert"
    )]
    pub ephemeral_ca_out: Option<PathBuf>,

    /// Time allowed for a client to complete the TLS handshake.
    #[arg(long, env = "CARTO_WI_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
}

/// HTTP behaviour of the admission listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Time allowed for a client to send a request's headers (HTTP/1.1).
    #[arg(long, env = "CARTO_WI_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time allowed for a request's body to arrive; a slower request gets 408.
    #[arg(long, env = "CARTO_WI_REQUEST_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On SIGTERM/SIGINT, keep accepting connections this long after readiness turns false, so
    /// endpoints are updated before the listener closes.
    #[arg(long, env = "CARTO_WI_SHUTDOWN_DELAY", default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "CARTO_WI_SHUTDOWN_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// The plain-HTTP admin listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin")]
pub struct AdminArgs {
    /// Address of the plain-HTTP admin listener: /livez, /readyz, /metrics.
    #[arg(
        long,
        env = "CARTO_WI_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
}

/// Logging.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log line format (on standard error).
    #[arg(
        long,
        env = "CARTO_WI_LOG_FORMAT",
        default_value = "json",
        value_name = "json|text"
    )]
    pub log_format: LogFormat,

    /// Log filter, RUST_LOG syntax: a level (error, warn, info, debug, trace) or directives such
    /// as `info,carto_wi_webhook=debug`.
    #[arg(
        long,
        env = "CARTO_WI_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,
}

/// Log line format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Parse a duration: a number followed by `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 1m)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)"));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// Parse a non-zero duration.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: the interval must be more than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_interval("100ms"), Ok(Duration::from_millis(100)));
    }
}
