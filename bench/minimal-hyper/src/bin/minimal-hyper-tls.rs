//! `minimal-hyper` over TLS, as the tokio-rustls and hyper-util examples
//! write it: one task per connection, `TlsAcceptor::accept`, then
//! hyper-util's auto builder on the TLS stream. The rustls configuration is
//! the library's (app/src/tls.rs): the *ring* provider, rustls' safe
//! default protocol versions and cipher suites, ALPN `h2` and `http/1.1`,
//! no client certificates. No timeouts, no drain: what hitless' cost over
//! TLS is compared with (bench/instructions).
//!
//!     minimal-hyper-tls 127.0.0.1:8443 CERT.pem KEY.pem
//!
//! Exits 0 on SIGTERM or SIGINT (so that callgrind writes its counts), 2 on
//! bad usage, 1 when it cannot load the certificate or listen.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;

async fn ok(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

fn config(cert: &str, key: &str) -> Result<ServerConfig, Box<dyn Error>> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(addr: SocketAddr, acceptor: TlsAcceptor) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        };
        stream.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // Errors are the client's (a failed handshake, or it went
            // away); nothing to report.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(ok))
                .await;
        });
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key] = args.as_slice() else {
        eprintln!("usage: minimal-hyper-tls HOST:PORT CERT.pem KEY.pem");
        return ExitCode::from(2);
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("minimal-hyper-tls: not HOST:PORT: {addr}");
        return ExitCode::from(2);
    };
    let acceptor = match config(cert, key) {
        Ok(config) => TlsAcceptor::from(Arc::new(config)),
        Err(e) => {
            eprintln!("minimal-hyper-tls: cannot use {cert} and {key}: {e}");
            return ExitCode::from(1);
        }
    };
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(serve(addr, acceptor)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minimal-hyper-tls: cannot serve on {addr}: {e}");
            ExitCode::from(1)
        }
    }
}
