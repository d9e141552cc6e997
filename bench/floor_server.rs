//! The physical floor for the load benchmark: the same stack as `carto-wi-webhook serve`
//! (tokio multi-thread runtime, tokio-rustls 0.26 / rustls 0.23 with ring, hyper-util's auto
//! HTTP/1.1 + h2 connection builder, an axum 0.8 router) answering `POST /mutate` and
//! `POST /validate` with one constant allowed AdmissionReview. The body is read to the end but
//! never parsed: whatever the real server costs beyond this is the webhook's own work.
//!
//! The routes are in `bench/common/floor.rs`, which the router instruction count
//! (`bench/router.rs`) shares.
//!
//! `cargo run --release --example floor_server -- --listen 127.0.0.1:9443 --tls-cert C --tls-key K`

#[path = "common/floor.rs"]
mod floor;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = flag(&args, "--listen")?.parse()?;
    let certs = CertificateDer::pem_file_iter(flag(&args, "--tls-cert")?)?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(flag(&args, "--tls-key")?)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let app = floor::router();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(listen).await?;
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        })
}
