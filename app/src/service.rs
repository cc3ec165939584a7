//! The wrapper around the user's service that lets the server speak HTTP
//! for it, so that the service itself needs no connection or drain logic:
//! - while draining, every HTTP/1 response carries `Connection: close`
//!   (RFC 9112 §9.6): hyper closes the connection after that response, and
//!   the client learns it must reconnect (to the next process) instead of
//!   sending its next request into a closing socket. HTTP/2 has no such
//!   header; GOAWAY does that job (RFC 9113 §6.8);
//! - otherwise, HTTP/1 responses on a persistent connection carry
//!   `Keep-Alive: timeout=N` (see [`keep_alive_header`]);
//! - it records each request in the connection's [`Activity`] from its
//!   complete head until its response body is done, which tells the
//!   connection's timers and the drain whether work is in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use hyper::service::Service;
use hyper::{Request, Response, Version};
use pin_project_lite::pin_project;
use tokio_util::sync::CancellationToken;

use crate::activity::{Activity, InFlight};

/// The `Keep-Alive` header announcing `keepalive_timeout` in whole seconds,
/// rounded down so that a client that honours it closes an idle connection
/// before the server does.
///
/// `Keep-Alive` is not part of HTTP/1.1 (RFC 9112 leaves persistence to the
/// `Connection` header); it is the de-facto header from RFC 2068 §19.7.1.1,
/// still sent by Apache httpd and nginx. Clients with idle timeouts of their
/// own (Go, aiohttp) do not need it; some (urllib3, .NET, browsers) read it
/// to avoid reusing a connection the server is about to close.
pub(crate) fn keep_alive_header(keepalive_timeout: Duration) -> HeaderValue {
    // Digits and ASCII: always a valid header value.
    HeaderValue::try_from(format!("timeout={}", keepalive_timeout.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("timeout=0"))
}

/// `Keep-Alive` (RFC 2068 §19.7.1.1); the `http` crate has no constant.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The user's service as one connection sees it.
pub(crate) struct DrainAware<S> {
    inner: Arc<S>,
    /// Cancelled when the drain starts.
    drain: CancellationToken,
    /// The connection's activity record.
    activity: Arc<Activity>,
    /// `Keep-Alive` value for HTTP/1 responses on persistent connections.
    keep_alive: HeaderValue,
}

impl<S> DrainAware<S> {
    pub(crate) fn new(
        inner: Arc<S>,
        drain: CancellationToken,
        activity: Arc<Activity>,
        keep_alive: HeaderValue,
    ) -> Self {
        DrainAware {
            inner,
            drain,
            activity,
            keep_alive,
        }
    }
}

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked<B>>, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let http1 = req.version() < Version::HTTP_2;
        let in_flight = self.activity.request(!http1);
        let persistent = http1 && persistent(req.version(), req.headers());
        let response = self.inner.call(req);
        let drain = self.drain.clone();
        let keep_alive = self.keep_alive.clone();
        Box::pin(async move {
            let resp = response.await?;
            let (mut parts, body) = resp.into_parts();
            if http1 {
                // Checked when the response is ready, not when the request
                // came: a request in flight at the signal is answered, then
                // closes.
                if drain.is_cancelled() {
                    parts
                        .headers
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                } else if persistent && !has_token(&parts.headers, "close") {
                    parts.headers.insert(KEEP_ALIVE, keep_alive);
                }
            }
            Ok(Response::from_parts(
                parts,
                Tracked {
                    body,
                    _in_flight: in_flight,
                },
            ))
        })
    }
}

/// Whether the connection stays open after this request, as far as the
/// request says (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`.
fn persistent(version: Version, headers: &HeaderMap) -> bool {
    if version == Version::HTTP_11 {
        !has_token(headers, "close")
    } else {
        version == Version::HTTP_10 && has_token(headers, "keep-alive")
    }
}

/// Whether a `Connection` header lists `token` (RFC 9110 §7.6.1).
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pin_project! {
    /// A response body that keeps its request in flight until hyper is done
    /// with it (written, or dropped with the connection).
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        _in_flight: InFlight,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(connection: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in connection {
            h.append(CONNECTION, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn persistence_as_the_request_asks() {
        assert!(persistent(Version::HTTP_11, &headers(&[])));
        assert!(!persistent(Version::HTTP_11, &headers(&["close"])));
        assert!(!persistent(Version::HTTP_11, &headers(&["TE", " Close"])));
        assert!(persistent(Version::HTTP_11, &headers(&["upgrade, te"])));
        assert!(!persistent(Version::HTTP_10, &headers(&[])));
        assert!(persistent(Version::HTTP_10, &headers(&["Keep-Alive"])));
        assert!(!persistent(Version::HTTP_09, &headers(&[])));
    }

    #[test]
    fn keep_alive_in_whole_seconds() {
        assert_eq!(keep_alive_header(Duration::from_secs(75)), "timeout=75");
        assert_eq!(keep_alive_header(Duration::from_millis(2900)), "timeout=2");
        assert_eq!(keep_alive_header(Duration::from_millis(500)), "timeout=0");
    }
}
