//! HTTPS: TLS (rustls, with the *ring* crypto provider) in front of the
//! same HTTP serving, timeouts and drain as cleartext connections.
//!
//! - The certificate chain and key are PEM files, given by path or as
//!   systemd credentials ([`PemSource`]); they are loaded, parsed and
//!   checked against each other in [`Tls::load`], before the server says
//!   `READY=1`, so a certificate that cannot be used makes a start fail
//!   (exit code 7) instead of a server that fails every handshake.
//! - ALPN offers `h2` and `http/1.1` (RFC 7301; RFC 9113 §3.2); the
//!   protocol is then detected from the first bytes as on cleartext.
//! - The handshake is bounded by [`Tls::with_handshake_timeout`] and by
//!   [`Settings::header_read_timeout`](crate::Settings::header_read_timeout),
//!   whichever is shorter; the header-read timeout for the first request
//!   counts from accept(), so it covers the handshake too.
//! - A handshake in progress (its ClientHello received) when the drain
//!   starts is part of the drain: it runs to its end (bounded as above); the
//!   connection is then served as an idle one is during the drain (a
//!   request sent within the idle grace is answered, with `Connection:
//!   close`). A connection that has not sent its ClientHello is treated as
//!   a cleartext one that has sent nothing: closed once the drain has
//!   lasted the idle grace.
//! - Every connection that completed the handshake ends with a
//!   `close_notify` alert (RFC 8446 §6.1): sent by the TLS stream's
//!   shutdown when hyper closes the connection, and otherwise (a timeout or
//!   the drain closing it) written without waiting when the connection is
//!   dropped.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::Acceptor;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info};

use crate::connection::Http;
use crate::credentials::{self, CredentialError};
use crate::server::Server;
use crate::settings::Settings;
use crate::BoxError;

/// ALPN protocol names offered, in order of preference (IANA "TLS
/// Application-Layer Protocol Negotiation (ALPN) Protocol IDs").
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where a PEM file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file path.
    File(PathBuf),
    /// A systemd credential of this name (`LoadCredential=NAME:PATH` in the
    /// unit), read from `$CREDENTIALS_DIRECTORY` (systemd.exec(5)).
    Credential(String),
}

impl PemSource {
    fn path(&self) -> Result<PathBuf, TlsError> {
        match self {
            PemSource::File(p) => Ok(p.clone()),
            PemSource::Credential(name) => Ok(credentials::path(name)?),
        }
    }
}

impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => write!(f, "{}", p.display()),
            PemSource::Credential(name) => write!(f, "credential {name}"),
        }
    }
}

/// Why a certificate and key cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A credential named as a source cannot be found.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The file cannot be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What `read(2)` said.
        source: io::Error,
    },
    /// The file is not PEM, or has no section of the kind needed (RFC 7468:
    /// `CERTIFICATE`; `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    #[error("TLS {what} {path}: no usable PEM {what}: {source}")]
    Pem {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls rejected the pair: a key it cannot sign with, or one that
    /// does not belong to the first certificate of the chain.
    #[error("TLS certificate {cert} and key {key} cannot be used together: {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// A certificate and key, loaded and checked, to serve HTTPS with
/// ([`Server::with_tls`]).
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    cert: PathBuf,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The handshake timeout unless [`Tls::with_handshake_timeout`] sets
    /// another: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Load a PEM certificate chain (the server's certificate first, then
    /// the intermediates) and its PEM private key (PKCS#8, PKCS#1 or SEC1),
    /// and check that the key belongs to the certificate. TLS 1.3 and 1.2
    /// with rustls' default cipher suites; no client certificates.
    ///
    /// # Errors
    /// [`TlsError`]: a credential without `$CREDENTIALS_DIRECTORY`, a file
    /// that cannot be read, no certificate or key in it, or a key rustls
    /// cannot use with the certificate.
    pub fn load(cert: &PemSource, key: &PemSource) -> Result<Tls, TlsError> {
        let cert_path = cert.path()?;
        let key_path = key.path()?;
        let read = |what, path: &PathBuf| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.clone(),
                source,
            })
        };
        let pem_error = |what, path: &PathBuf| {
            let path = path.clone();
            move |source| TlsError::Pem { what, path, source }
        };
        let chain = CertificateDer::pem_slice_iter(&read("certificate", &cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|c| match c.is_empty() {
                true => Err(rustls::pki_types::pem::Error::NoItemsFound),
                false => Ok(c),
            })
            .map_err(pem_error("certificate", &cert_path))?;
        let key_der = PrivateKeyDer::from_pem_slice(&read("key", &key_path)?)
            .map_err(pem_error("key", &key_path))?;
        let rejected = |source| TlsError::Rejected {
            cert: cert_path.clone(),
            key: key_path.clone(),
            source,
        };
        // The provider is named, not taken from the process default: that
        // would panic when another crate in the build enables a second one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(rejected)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            config: Arc::new(config),
            handshake_timeout: Tls::DEFAULT_HANDSHAKE_TIMEOUT,
            cert: cert_path,
        })
    }

    /// How long a TLS handshake may take from accept(); the
    /// [header-read timeout](crate::Settings::header_read_timeout) bounds
    /// it too. Zero counts as the default.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Tls {
        if !timeout.is_zero() {
            self.handshake_timeout = timeout;
        }
        self
    }
}

impl Server {
    /// Serve HTTPS instead of cleartext on every listener, with `tls`. Load
    /// it (and so find a bad certificate) before calling
    /// [`serve`](Server::serve): `READY=1` is sent only after this.
    pub fn with_tls(mut self, tls: Tls) -> Server {
        info!("TLS on every listener, certificate {}", tls.cert.display());
        self.tls = Some(tls);
        self
    }
}

/// What each connection of a TLS listener shares.
pub(crate) struct Handshake {
    config: Arc<ServerConfig>,
    limit: Duration,
    drain: crate::drain::Drain,
    idle_grace: Duration,
}

impl Handshake {
    /// Handshakes with `tls`, bounded by its timeout and the header-read
    /// timeout of `settings`; a connection that has not sent its
    /// ClientHello when `drain` is cancelled gets the idle grace.
    pub(crate) fn new(tls: Tls, settings: &Settings, drain: crate::drain::Drain) -> Handshake {
        Handshake {
            config: tls.config,
            limit: tls.handshake_timeout.min(settings.header_read_timeout),
            drain,
            idle_grace: settings.idle_grace,
        }
    }

    /// Complete the TLS handshake on `io`, then serve HTTP on the TLS
    /// stream as on cleartext.
    ///
    /// Until the ClientHello is in, the connection is like a cleartext one
    /// that has sent nothing: once the drain starts, it has the idle grace
    /// to send it. From the ClientHello on, the handshake is in progress
    /// and is finished during a drain, within the handshake limit.
    pub(crate) async fn serve<S, B, I>(self: Arc<Self>, http: Arc<Http<S>>, io: I)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        I: AsyncRead + AsyncWrite + TryWrite + Unpin + Send + 'static,
    {
        let accepted = Instant::now();
        let deadline = accepted + self.limit;
        let drained = async {
            self.drain.started().await;
            tokio::time::sleep(self.idle_grace).await;
        };
        let hello = tokio::select! {
            hello = LazyConfigAcceptor::new(Acceptor::default(), io) => hello,
            () = tokio::time::sleep_until(deadline) => {
                debug!("closing connection: no ClientHello within {:?}", self.limit);
                return;
            }
            () = drained => {
                debug!("closing connection: draining, no ClientHello");
                return;
            }
        };
        let handshake = match hello {
            Ok(start) => start.into_stream(self.config.clone()),
            Err(e) => return debug!("TLS handshake failed: {e}"),
        };
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(stream)) => http.serve_accepted(CloseNotify(stream), accepted).await,
            Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
            Err(_) => debug!(
                "closing connection: no TLS handshake within {:?}",
                self.limit
            ),
        }
    }
}

/// A socket that can be written to without waiting (for the last bytes of
/// a connection being dropped).
pub(crate) trait TryWrite {
    fn try_write_now(&self, buf: &[u8]) -> io::Result<usize>;
}

impl TryWrite for TcpStream {
    fn try_write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

impl TryWrite for UnixStream {
    fn try_write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

/// `io::Write` over [`TryWrite`]: `WouldBlock` when the socket buffer is
/// full.
struct NowWriter<'a, I>(&'a I);

impl<I: TryWrite> Write for NowWriter<'_, I> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write_now(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS stream that sends `close_notify` when dropped, if its shutdown did
/// not already.
struct CloseNotify<I: TryWrite>(TlsStream<I>);

impl<I: TryWrite> Drop for CloseNotify<I> {
    fn drop(&mut self) {
        let (io, conn) = self.0.get_mut();
        // Does nothing once sent (or after a fatal alert).
        conn.send_close_notify();
        let mut out = NowWriter(&*io);
        // Best effort: what does not fit in the socket buffer now is lost
        // with the connection anyway.
        while conn.wants_write() {
            match conn.write_tls(&mut out) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + TryWrite + Unpin> AsyncRead for CloseNotify<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + TryWrite + Unpin> AsyncWrite for CloseNotify<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
