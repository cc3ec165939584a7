//! The three client modes and the classification of what went wrong.
//!
//! A request counts as failed only when it may have reached the server and
//! no 2xx response came back. A request the client library hands back
//! unsent (hyper's `TrySendError::take_message`, i.e. the connection was
//! already known to be closing: HTTP/1 close seen, HTTP/2 GOAWAY received)
//! is sent again on a new connection, as every real client does; it is
//! counted in `unsent_retries`, not as a failure. What is *not* retried: a
//! request written to a keep-alive connection that the server then closes
//! (the idle-close race). Real clients lose those too, which is what a
//! draining server must avoid.
//!
//! With an `https://` URL every mode speaks TLS (rustls), trusting only the
//! CA given with `--ca`, and offers one ALPN protocol: `http/1.1` for the
//! HTTP/1 modes, `h2` for HTTP/2 (RFC 9113 §3.2), which the server must
//! choose.
//!
//! HTTP/2 streams the server refused unprocessed (see `is_unprocessed_h2`)
//! are retried too, counted in `refused_retries`: the protocol guarantees
//! the server did nothing with them.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::ValueEnum;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use crate::stats::{Outcome, Reason};

pub const VERSION_HEADER: &str = "x-hitless-version";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// HTTP/1.1, a new TCP connection for every request (`Connection: close`).
    NewConn,
    /// HTTP/1.1 keep-alive: one connection per worker, reused until the
    /// server says `Connection: close` or closes it.
    KeepAlive,
    /// HTTP/2 over cleartext (prior knowledge), or over TLS (ALPN h2): one
    /// connection shared by the mode's workers, replaced after GOAWAY.
    H2,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::NewConn => "new-conn",
            Mode::KeepAlive => "keep-alive",
            Mode::H2 => "h2",
        }
    }
}

/// Where requests go.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port`, for the Host header and `:authority`.
    pub authority: String,
    /// Origin form (`/slow?ms=100`), for HTTP/1.
    pub path_and_query: String,
    /// Absolute form, for HTTP/2 (`:scheme`, `:authority`, `:path`).
    pub absolute: Uri,
    /// For `https://`: the TLS clients and the name the certificate must have.
    pub tls: Option<Tls>,
}

/// TLS for an `https://` target.
pub struct Tls {
    /// ALPN `http/1.1`.
    h1: TlsConnector,
    /// ALPN `h2`.
    h2: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// Clients that trust only the PEM certificates in `ca`.
    fn new(ca: &Path, host: &str) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        let connector = |alpn: &[u8]| -> Result<TlsConnector, String> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client: {e}"))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        Ok(Tls {
            h1: connector(b"http/1.1")?,
            h2: connector(b"h2")?,
            name,
        })
    }
}

impl Target {
    /// The target of `url` (`http://` or `https://`); `ca` is required for
    /// `https://`.
    pub async fn resolve(url: &str, ca: Option<&Path>) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad --url {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "--url must be http[s]://HOST:PORT/PATH, got {url:?}"
                ))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url has no host: {url:?}"))?
            .clone();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = match (https, ca) {
            (true, Some(ca)) => Some(Tls::new(ca, host)?),
            (true, None) => return Err(format!("--url {url:?} is https: give --ca")),
            (false, _) => None,
        };
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            addr,
            authority: authority.as_str().to_owned(),
            path_and_query,
            absolute: uri,
            tls,
        })
    }
}

type Body = Empty<Bytes>;

fn failed(reason: Reason, detail: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason,
        detail: detail.into(),
    }
}

/// Per-worker client state: the keep-alive connection, if any.
pub struct Client {
    mode: Mode,
    target: Arc<Target>,
    h1: Option<http1::SendRequest<Body>>,
    h2: Option<Arc<H2Conn>>,
    /// Requests handed back unsent and sent again (see module docs).
    pub unsent_retries: u64,
    /// HTTP/2 requests refused unprocessed (GOAWAY) and sent again.
    pub refused_retries: u64,
}

/// How often one request may come back unsent before we call it a failure
/// (a server that closes every new connection at once would loop forever).
const MAX_UNSENT_RETRIES: u32 = 5;

impl Client {
    pub fn new(mode: Mode, target: Arc<Target>, h2: Option<Arc<H2Conn>>) -> Client {
        Client {
            mode,
            target,
            h1: None,
            h2,
            unsent_retries: 0,
            refused_retries: 0,
        }
    }

    /// Drop the connection after a failure or a timeout: its state is unknown.
    pub fn reset(&mut self) {
        self.h1 = None;
    }

    pub async fn request(&mut self) -> Outcome {
        match self.mode {
            Mode::NewConn | Mode::KeepAlive => self.request_h1().await,
            Mode::H2 => self.request_h2().await,
        }
    }

    fn h1_request(&self) -> Request<Body> {
        let mut req = Request::new(Body::new());
        // Both parse: path_and_query came from a valid Uri, authority too.
        if let Ok(uri) = self.target.path_and_query.parse() {
            *req.uri_mut() = uri;
        }
        if let Ok(host) = HeaderValue::from_str(&self.target.authority) {
            req.headers_mut().insert(HOST, host);
        }
        if self.mode == Mode::NewConn {
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        req
    }

    async fn request_h1(&mut self) -> Outcome {
        let mut req = self.h1_request();
        let mut retries = 0;
        loop {
            let reusable = match self.h1.take() {
                // ready() fails if the server closed the idle connection and
                // we noticed before sending: nothing lost, connect again.
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let mut sender = match reusable {
                Some(s) => s,
                None => match connect_h1(&self.target).await {
                    Ok(s) => s,
                    Err(o) => return o,
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let close = self.mode == Mode::NewConn || wants_close(&resp);
                    let outcome = read_response(resp).await;
                    if !close && matches!(outcome, Outcome::Ok { .. }) {
                        self.h1 = Some(sender);
                    }
                    return outcome;
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if retries < MAX_UNSENT_RETRIES => {
                        retries += 1;
                        self.unsent_retries += 1;
                        req = unsent;
                    }
                    _ => return classify_hyper(e.error(), "request"),
                },
            }
        }
    }

    async fn request_h2(&mut self) -> Outcome {
        let Some(pool) = self.h2.clone() else {
            return failed(Reason::Other, "h2 mode without a connection slot");
        };
        let mut retries = 0;
        loop {
            let mut req = Request::new(Body::new());
            *req.uri_mut() = self.target.absolute.clone();
            let (generation, mut sender) = match pool.get(&self.target).await {
                Ok(s) => s,
                Err(o) => return o,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return read_response(resp).await,
                Err(mut e) => {
                    pool.invalidate(generation).await;
                    if retries < MAX_UNSENT_RETRIES {
                        if e.take_message().is_some() {
                            retries += 1;
                            self.unsent_retries += 1;
                            continue;
                        }
                        if is_unprocessed_h2(e.error()) {
                            retries += 1;
                            self.refused_retries += 1;
                            continue;
                        }
                    }
                    return classify_hyper(e.error(), "request");
                }
            }
        }
    }
}

/// An HTTP/2 stream the server refused without processing it: above the
/// last stream id of its GOAWAY, or reset with REFUSED_STREAM. RFC 9113
/// §8.7: such requests "have not been processed" and may be retried, which
/// is what HTTP/2 clients do. It happens in a graceful drain when the
/// client's HEADERS for a new stream was still queued while its PING
/// acknowledgement (sent first) let the server send its final GOAWAY.
fn is_unprocessed_h2(err: &hyper::Error) -> bool {
    find_source::<h2::Error>(err).is_some_and(|e| reason_for_h2(e) == Reason::H2Refused)
}

/// One HTTP/2 connection shared by all h2 workers of a probe, replaced when
/// it closes (after the server's GOAWAY).
#[derive(Default)]
pub struct H2Conn {
    slot: Mutex<Option<(u64, http2::SendRequest<Body>)>>,
    generation: AtomicU64,
}

impl H2Conn {
    async fn get(&self, target: &Target) -> Result<(u64, http2::SendRequest<Body>), Outcome> {
        let mut slot = self.slot.lock().await;
        if let Some((g, s)) = slot.as_ref() {
            if !s.is_closed() {
                return Ok((*g, s.clone()));
            }
        }
        // Connect while holding the lock, so the workers share one new
        // connection instead of racing to open one each.
        *slot = None;
        let s = connect_h2(target).await?;
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((g, s.clone()));
        Ok((g, s))
    }

    async fn invalidate(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }
}

async fn connect_tcp(target: &Target) -> Result<TcpStream, Outcome> {
    let stream = TcpStream::connect(target.addr).await.map_err(|e| {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
            _ => Reason::ConnectError,
        };
        failed(reason, format!("connect {}: {e}", target.addr))
    })?;
    // Small requests, latency matters: do not wait for Nagle.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect_h1(target: &Target) -> Result<http1::SendRequest<Body>, Outcome> {
    let stream = connect_tcp(target).await?;
    match &target.tls {
        None => h1_over(stream).await,
        Some(tls) => h1_over(tls_handshake(&tls.h1, tls, stream, None).await?).await,
    }
}

async fn connect_h2(target: &Target) -> Result<http2::SendRequest<Body>, Outcome> {
    let stream = connect_tcp(target).await?;
    match &target.tls {
        None => h2_over(stream).await,
        Some(tls) => h2_over(tls_handshake(&tls.h2, tls, stream, Some(b"h2")).await?).await,
    }
}

/// A TLS handshake on `stream`; `alpn`: the protocol the server must
/// choose.
async fn tls_handshake(
    connector: &TlsConnector,
    tls: &Tls,
    stream: TcpStream,
    alpn: Option<&[u8]>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Outcome> {
    let stream = connector
        .connect(tls.name.clone(), stream)
        .await
        .map_err(|e| failed(reason_for_io(e.kind()), format!("TLS handshake: {e}")))?;
    let chosen = stream.get_ref().1.alpn_protocol();
    if alpn.is_some() && chosen != alpn {
        let chosen = chosen.map(String::from_utf8_lossy);
        return Err(failed(
            Reason::Protocol,
            format!("TLS: the server chose ALPN {chosen:?}"),
        ));
    }
    Ok(stream)
}

async fn h1_over<I>(stream: I) -> Result<http1::SendRequest<Body>, Outcome>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify_hyper(&e, "HTTP/1 handshake"))?;
    // The connection's own errors also surface on the request using it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn h2_over<I>(stream: I) -> Result<http2::SendRequest<Body>, Outcome>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| classify_hyper(&e, "HTTP/2 handshake"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn wants_close(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

async fn read_response(resp: Response<Incoming>) -> Outcome {
    let status = resp.status();
    let version = resp
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return classify_hyper(&e, "reading response body"),
    };
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        return failed(Reason::Non2xx, format!("status {status}: {}", text.trim()));
    }
    match version {
        Some(version) => Outcome::Ok { version },
        None => failed(
            Reason::MissingVersion,
            format!("status {status} without {VERSION_HEADER}"),
        ),
    }
}

fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

pub fn reason_for_io(kind: io::ErrorKind) -> Reason {
    match kind {
        io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Reason::Reset,
        io::ErrorKind::UnexpectedEof => Reason::EofBeforeResponse,
        io::ErrorKind::TimedOut => Reason::Timeout,
        _ => Reason::Other,
    }
}

fn reason_for_h2(e: &h2::Error) -> Reason {
    if let Some(io) = e.get_io() {
        return reason_for_io(io.kind());
    }
    // h2 gives a remote GOAWAY error only to streams above the GOAWAY's last
    // stream id (h2 `recv_go_away`); streams at or below it that the server
    // drops end with an I/O error instead. A GOAWAY with an error code is a
    // failure, not a drain.
    let graceful_go_away =
        e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR);
    if e.reason() == Some(h2::Reason::REFUSED_STREAM) || graceful_go_away {
        return Reason::H2Refused;
    }
    Reason::Protocol
}

fn classify_hyper(err: &hyper::Error, during: &str) -> Outcome {
    let detail = format!("{during}: {}", chain(err));
    let reason = if let Some(h2e) = find_source::<h2::Error>(err) {
        reason_for_h2(h2e)
    } else if let Some(io) = find_source::<io::Error>(err) {
        reason_for_io(io.kind())
    } else if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        Reason::EofBeforeResponse
    } else if err.is_parse() || err.is_parse_status() {
        Reason::Protocol
    } else if err.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Other
    };
    failed(reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_reasons() {
        assert_eq!(reason_for_io(io::ErrorKind::ConnectionReset), Reason::Reset);
        assert_eq!(reason_for_io(io::ErrorKind::BrokenPipe), Reason::Reset);
        assert_eq!(
            reason_for_io(io::ErrorKind::UnexpectedEof),
            Reason::EofBeforeResponse
        );
        assert_eq!(
            reason_for_io(io::ErrorKind::ConnectionRefused),
            Reason::ConnectRefused
        );
        assert_eq!(reason_for_io(io::ErrorKind::TimedOut), Reason::Timeout);
        assert_eq!(reason_for_io(io::ErrorKind::Other), Reason::Other);
    }

    #[test]
    fn h2_reasons() {
        assert_eq!(
            reason_for_h2(&h2::Error::from(h2::Reason::REFUSED_STREAM)),
            Reason::H2Refused
        );
        assert_eq!(
            reason_for_h2(&h2::Error::from(h2::Reason::PROTOCOL_ERROR)),
            Reason::Protocol
        );
    }

    #[tokio::test]
    async fn target_parsing() {
        let t = Target::resolve("http://127.0.0.1:8080/slow?ms=5", None)
            .await
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path_and_query, "/slow?ms=5");
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = Target::resolve("http://[::1]:9/", None).await.unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert!(t.tls.is_none());
        // https needs the CA to trust.
        assert!(Target::resolve("https://127.0.0.1/", None).await.is_err());
        assert!(Target::resolve("ftp://127.0.0.1/", None).await.is_err());
        assert!(Target::resolve("not a url", None).await.is_err());
    }
}
