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
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;

use crate::activity::{Activity, InFlight, ServerWork};
use crate::drain::Drain;

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

/// What the responses of every connection of a server need.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Whether the drain has started.
    pub(crate) drain: Drain,
    /// `Keep-Alive` value for HTTP/1 responses on persistent connections.
    pub(crate) keep_alive: HeaderValue,
    /// Requests the service is still working on, on every connection (see
    /// [`Activity::with_server_busy`]).
    pub(crate) server_busy: Arc<std::sync::atomic::AtomicUsize>,
}

/// The user's service as one connection sees it.
pub(crate) struct DrainAware<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
    /// The connection's activity record.
    activity: Arc<Activity>,
}

impl<S> DrainAware<S> {
    pub(crate) fn new(inner: Arc<S>, shared: Arc<Shared>, activity: Arc<Activity>) -> Self {
        DrainAware {
            inner,
            shared,
            activity,
        }
    }
}

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let version = req.version();
        let http1 = version < Version::HTTP_2;
        // Only HTTP/1 lingers for a body (HTTP/2 asks h2, which costs a
        // lock).
        let in_flight = self.activity.request(http1 && !req.body().is_end_stream());
        // HTTP/1 only: Host is an HTTP/1.1 rule (HTTP/2 carries
        // :authority, RFC 9113 §8.3.1), and so are the headers below.
        let head = if http1 {
            Head::of(&req)
        } else {
            Head::default()
        };
        // An absolute-form target (RFC 9112 §3.2.2) names the host in
        // place of Host: the same syntax, and no userinfo (RFC 9110 §4.2.4).
        let bad_target = http1
            && req
                .uri()
                .authority()
                .is_some_and(|a| !valid_host(a.as_str().as_bytes()));
        // Announced once per connection: clients keep the value for the
        // connection (RFC 2068 §19.7.1.1 gives it per connection).
        let keep_alive = http1 && head.persistent(version) && !self.activity.keep_alive_announced();
        if keep_alive {
            self.activity.set_keep_alive_announced();
        }
        let state = if http1 && (head.host_error(version) || bad_target) {
            State::Rejected
        } else {
            State::Calling {
                future: self.inner.call(req),
            }
        };
        ResponseFuture {
            state,
            work: None,
            in_flight: Some(in_flight),
            keep_alive,
            http10: version == Version::HTTP_10,
            // Only HTTP/1 answers need it.
            shared: http1.then(|| self.shared.clone()),
        }
    }
}

/// What the server itself needs from a request head, found in one pass
/// over its header fields (cheaper than a lookup per name).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// `Host` field lines.
    hosts: u8,
    /// A `Host` field value that is not `uri-host [ ":" port ]`.
    bad_host: bool,
    /// A `Connection` field lists `close`.
    close: bool,
    /// A `Connection` field lists `keep-alive`.
    keep_alive: bool,
}

impl Head {
    fn of<T>(req: &Request<T>) -> Head {
        let mut head = Head::default();
        for (name, value) in req.headers() {
            if name == HOST {
                head.hosts = head.hosts.saturating_add(1);
                head.bad_host |= !valid_host(value.as_bytes());
            } else if name == CONNECTION {
                head.close |= lists(value, "close");
                head.keep_alive |= lists(value, "keep-alive");
            }
        }
        head
    }

    /// Whether the connection stays open after this request, as far as the
    /// request says (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    fn persistent(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            version == Version::HTTP_10 && self.keep_alive
        }
    }

    /// Whether the request breaks RFC 9112 §3.2: an HTTP/1.1 request
    /// without `Host`, or any request with more than one `Host` field line
    /// or an invalid `Host` value. Answered 400 by the server, never seen by
    /// the service.
    fn host_error(&self, version: Version) -> bool {
        self.hosts > 1 || self.bad_host || (self.hosts == 0 && version == Version::HTTP_11)
    }
}

/// Whether `value` is a `Host` field value: `uri-host [ ":" port ]`
/// (RFC 9110 §7.2), `uri-host` being an IP-literal in brackets or a
/// reg-name/IPv4address (RFC 3986 §3.2.2), `port` digits (§3.2.3). Empty is
/// valid: a target URI without authority (RFC 9112 §3.2). So `a, b` (two
/// hosts folded into one line) is not.
fn valid_host(value: &[u8]) -> bool {
    let rest = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        // IP-literal: IPv6address, or IPvFuture (RFC 3986 §3.2.2).
        if !valid_ip_literal(&value[1..end]) {
            return false;
        }
        &value[end + 1..]
    } else {
        let mut at = 0;
        while let Some(&b) = value.get(at) {
            if REG_NAME[usize::from(b)] {
                at += 1;
            } else if b == b'%'
                && value
                    .get(at + 1..at + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            {
                // pct-encoded (RFC 3986 §2.1).
                at += 3;
            } else {
                break;
            }
        }
        &value[at..]
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// Whether the text between an IP-literal's brackets is an IPv6address
/// (as the standard library parses it) or an IPvFuture: `v` 1*HEXDIG `.`
/// 1*( unreserved / sub-delims / `:` ) (RFC 3986 §3.2.2).
fn valid_ip_literal(inside: &[u8]) -> bool {
    match inside.split_first() {
        Some((b'v' | b'V', rest)) => {
            let Some(dot) = rest.iter().position(|&b| b == b'.') else {
                return false;
            };
            let (version, address) = (&rest[..dot], &rest[dot + 1..]);
            !version.is_empty()
                && version.iter().all(u8::is_ascii_hexdigit)
                && !address.is_empty()
                && address
                    .iter()
                    .all(|&b| b == b':' || REG_NAME[usize::from(b)])
        }
        _ => std::str::from_utf8(inside).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok()),
    }
}

/// The bytes of a reg-name but percent-encoding: unreserved and sub-delims
/// (RFC 3986 §2.2, §2.3, §3.2.2), as a table (one lookup per byte).
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(
            b as u8,
            b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        );
        b += 1;
    }
    table
};

pin_project! {
    /// The response of [`DrainAware`]: the service's, with the headers the
    /// drain and the keep-alive timeout need.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // While the service's future is pending.
        work: Option<ServerWork>,
        in_flight: Option<InFlight>,
        // Add `Keep-Alive`, on a persistent HTTP/1 connection.
        keep_alive: bool,
        // The request was HTTP/1.0.
        http10: bool,
        // HTTP/1: what its answers need.
        shared: Option<Arc<Shared>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Rejected,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.state.project() {
            StateProj::Calling { future } => {
                let Poll::Ready(result) = future.poll(cx) else {
                    if this.work.is_none() {
                        *this.work = this.in_flight.as_ref().map(InFlight::server_work);
                    }
                    return Poll::Pending;
                };
                if this.work.is_some() {
                    *this.work = None;
                }
                let in_flight = this.in_flight.take();
                result?.map(|body| Tracked {
                    body: Some(body),
                    work: None,
                    in_flight,
                })
            }
            StateProj::Rejected => {
                let mut response = Response::new(Tracked {
                    body: None,
                    work: None,
                    in_flight: this.in_flight.take(),
                });
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                response
            }
        };
        if let Some(shared) = this.shared.as_ref() {
            // Checked when the response is ready, not when the request
            // came: a request in flight at the signal is answered, then
            // closes.
            let headers = response.headers_mut();
            if shared.drain.is_started() {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            } else if *this.keep_alive && !has_token(headers, "close") {
                headers.insert(KEEP_ALIVE, shared.keep_alive.clone());
            }
            // An HTTP/1.0 client that asked for keep-alive: hyper adds
            // `keep-alive` to an HTTP/1.1 response's `Connection` even when
            // it says `close`. Given as HTTP/1.0 (hyper writes HTTP/1.0 to
            // such a client anyway), the response closes the connection
            // with `Connection: close` alone (RFC 9112 §9.3).
            if *this.http10 && has_token(headers, "close") {
                *response.version_mut() = Version::HTTP_10;
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// Whether a `Connection` header lists `token` (RFC 9110 §7.6.1).
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| lists(v, token))
}

/// Whether a `Connection` field value lists `token` (RFC 9110 §7.6.1).
fn lists(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

pin_project! {
    /// A response body that keeps its request in flight until hyper is done
    /// with it (written, or dropped with the connection). No body (`None`)
    /// for the answers the server gives itself.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: Option<B>,
        // While the body has no frame ready.
        work: Option<ServerWork>,
        in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(body) = this.body.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = body.poll_frame(cx);
        if frame.is_pending() {
            if this.work.is_none() {
                *this.work = this.in_flight.as_ref().map(InFlight::server_work);
            }
        } else if this.work.is_some() {
            *this.work = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
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

    fn persistent(version: Version, h: HeaderMap) -> bool {
        let mut req = Request::new(());
        *req.headers_mut() = h;
        Head::of(&req).persistent(version)
    }

    #[test]
    fn persistence_as_the_request_asks() {
        assert!(persistent(Version::HTTP_11, headers(&[])));
        assert!(!persistent(Version::HTTP_11, headers(&["close"])));
        assert!(!persistent(Version::HTTP_11, headers(&["TE", " Close"])));
        assert!(!persistent(Version::HTTP_11, headers(&["te,close "])));
        assert!(persistent(Version::HTTP_11, headers(&["upgrade, te"])));
        assert!(!persistent(Version::HTTP_10, headers(&[])));
        assert!(persistent(Version::HTTP_10, headers(&["Keep-Alive"])));
        assert!(!persistent(Version::HTTP_09, headers(&[])));
        assert!(has_token(&headers(&["a", "b, Close"]), "close"));
        assert!(!has_token(&headers(&["closed"]), "close"));
    }

    fn request(version: Version, hosts: &[&str]) -> Request<()> {
        let mut req = Request::builder().version(version).body(()).unwrap();
        for h in hosts {
            req.headers_mut()
                .append(HOST, HeaderValue::from_str(h).unwrap());
        }
        req
    }

    fn host_error(version: Version, hosts: &[&str]) -> bool {
        Head::of(&request(version, hosts)).host_error(version)
    }

    #[test]
    fn host_as_rfc_9112_section_3_2_says() {
        assert!(!host_error(Version::HTTP_11, &["a"]));
        assert!(host_error(Version::HTTP_11, &[]));
        assert!(host_error(Version::HTTP_11, &["a", "a"]));
        assert!(!host_error(Version::HTTP_10, &[]));
        assert!(host_error(Version::HTTP_10, &["a", "b"]));
        // HTTP/2 carries the authority in :authority (RFC 9113 §8.3.1).
        assert!(!host_error(Version::HTTP_2, &[]));
        // One line, two hosts: not a Host value (RFC 9110 §7.2).
        assert!(host_error(Version::HTTP_11, &["a, b"]));
    }

    #[test]
    fn host_values_as_rfc_3986_section_3_2_2_says() {
        for ok in [
            "",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "caf%C3%A9.example",
            "a,b",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a, b",
            "a b",
            "user@example.com",
            "example.com:80x",
            "example.com:80:81",
            "[::1",
            "[]",
            "[::1]x",
            "a%2",
            "a%zz",
            "a/b",
            "a\tb",
            "[zz!]",
            "[::g]",
            "[1.2.3.4]",
            "[v.x]",
            "[v1.]",
            "[vz.x]",
            "[fe80::1%25en1]",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn keep_alive_in_whole_seconds() {
        assert_eq!(keep_alive_header(Duration::from_secs(75)), "timeout=75");
        assert_eq!(keep_alive_header(Duration::from_millis(2900)), "timeout=2");
        assert_eq!(keep_alive_header(Duration::from_millis(500)), "timeout=0");
    }
}
