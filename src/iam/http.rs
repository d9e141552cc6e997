//! A one-request-per-connection HTTP/1.1 client over hyper's connection API and tokio-rustls:
//! enough for a token fetch and one `getIamPolicy` per account per recheck interval, with a
//! deadline on the whole exchange and a bound on the response body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Errors of one HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL has no host or an unsupported scheme.
    #[error("bad URL {0}: {1}")]
    Url(String, &'static str),
    /// TCP connect failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS with {0} failed: {1}")]
    Tls(String, std::io::Error),
    /// HTTP-level failure.
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, hyper::Error),
    /// The body was larger than allowed or broke off.
    #[error("response from {0} unreadable or over {1} bytes")]
    Body(String, usize),
    /// The deadline passed.
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
}

/// A response: status, `Retry-After` in seconds when given, body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// `Retry-After` as delay-seconds (HTTP-date forms are ignored).
    pub retry_after: Option<Duration>,
    /// The body, at most the caller's limit.
    pub body: Bytes,
}

/// The client: a TLS configuration (ring, webpki roots plus any extra root) and a deadline.
#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Trust the Mozilla roots and `extra_roots` (a private endpoint's or a test CA).
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        for root in extra_roots {
            roots.add(root.clone())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// Send `req` (absolute URI) and read at most `max_body` bytes of the answer.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let target = origin(req.uri());
        match tokio::time::timeout(self.timeout, self.exchange(req, max_body)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(target, self.timeout)),
        }
    }

    async fn exchange(
        &self,
        mut req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let uri = req.uri().clone();
        let target = origin(&uri);
        let (host, port, tls) =
            endpoint(&uri).map_err(|why| HttpError::Url(target.clone(), why))?;
        set_origin_form(&mut req, &uri);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(target.clone(), e))?;
        let resp = if tls {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| HttpError::Url(target.clone(), "host is not a DNS name or IP"))?;
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(target.clone(), e))?;
            round_trip(TokioIo::new(stream), req, &target).await?
        } else {
            round_trip(TokioIo::new(tcp), req, &target).await?
        };
        read_response(resp, max_body, &target).await
    }
}

fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?")
    )
}

fn endpoint(uri: &Uri) -> Result<(String, u16, bool), &'static str> {
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("scheme must be http or https"),
    };
    let host = uri.host().ok_or("no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((host, port, tls))
}

fn set_origin_form(req: &mut Request<Full<Bytes>>, uri: &Uri) {
    if let Some(authority) = uri.authority()
        && let Ok(value) = authority.as_str().parse()
    {
        req.headers_mut().insert(hyper::header::HOST, value);
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Ok(relative) = path.parse() {
        *req.uri_mut() = relative;
    }
}

async fn round_trip<S>(
    io: TokioIo<S>,
    req: Request<Full<Bytes>>,
    target: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http = |e| HttpError::Http(target.to_owned(), e);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    // The connection task ends with the response (one request per connection).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(http)
}

async fn read_response(
    resp: hyper::Response<hyper::body::Incoming>,
    max_body: usize,
    target: &str,
) -> Result<Response, HttpError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|_| HttpError::Body(target.to_owned(), max_body))?
        .to_bytes();
    Ok(Response {
        status,
        retry_after,
        body,
    })
}
