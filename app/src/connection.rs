//! Serving one connection: its timeouts, and its part of the drain.
//!
//! hyper's own HTTP/1 header-read timeout only starts once hyper-util has
//! seen that a connection speaks HTTP/1, and it also limits how long an idle
//! keep-alive connection is kept; HTTP/2 connections have no such limit at
//! all. So the timers live here, above hyper, fed by the connection's
//! [`Activity`]:
//! - a connection must deliver a complete request head within the
//!   header-read timeout from accept(), whatever protocol it turns out to
//!   speak (silent, a part of the HTTP/2 preface, the preface and SETTINGS
//!   without a request: all closed);
//! - on an HTTP/1 connection, the next head must be complete within the
//!   header-read timeout from its first byte; between requests, the
//!   connection is kept for the keep-alive timeout;
//! - an HTTP/2 connection with no stream open is closed (GOAWAY, RFC 9113
//!   §6.8) after the keep-alive timeout; with streams open, hyper's
//!   keep-alive PINGs find a peer that has gone.
//!
//! When the drain starts, an HTTP/2 connection gets GOAWAY at once (hyper:
//! GOAWAY, PING round trip, final GOAWAY), so its client moves to a new
//! connection. A connection with a request in flight (HTTP/2: a stream
//! open) is served to the end; HTTP/1 answers say `Connection: close`. A
//! connection with nothing in flight is closed once it has been quiet for
//! the idle grace, whatever its protocol: a request the client already sent,
//! or sends meanwhile, is still served, and an HTTP/2 peer that never
//! answers the PING does not hold the drain. Plain hyper
//! `graceful_shutdown()` would close an idle HTTP/1 connection at once and
//! reset a request already in the socket buffer, the auto builder would
//! fail a connection still being sniffed, and HTTP/2 would wait for the
//! PING until the drain deadline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::activity::{Activity, Protocol, State};
use crate::service::{keep_alive_header, DrainAware};
use crate::settings::Settings;
use crate::watched_io::WatchedIo;
use crate::BoxError;

/// Largest HTTP/1 request head accepted (hyper answers 431 above it).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 equivalent: the decoded header list (`SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Longer timeouts count as this long, so that deadlines never overflow
/// an `Instant`.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The timeouts a connection's next step depends on.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    keepalive: Duration,
    idle_grace: Duration,
}

/// What to do with a connection when its deadline comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Close it now.
    Cut(Why),
    /// HTTP/2 idle: send GOAWAY and close it as the drain does.
    GoAway,
}

/// Why a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    HeaderRead,
    KeepAlive,
    IdleGrace,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::HeaderRead => "no complete request head within the header-read timeout",
            Why::KeepAlive => "idle for the keep-alive timeout",
            Why::IdleGrace => "draining, nothing in flight",
        })
    }
}

/// When a connection in `state` is due, and for what; `None` while a
/// request is in flight, or while the lingering close runs outside a drain
/// (both end by themselves). `closing` is when the drain (or an HTTP/2 idle
/// GOAWAY) began.
fn next_step(state: &State, closing: Option<Instant>, t: &Timeouts) -> Option<(Instant, Step)> {
    if state.in_flight > 0 {
        return None;
    }
    // The head of a request being received: the first request's from
    // accept(), a later HTTP/1 request's from its first byte.
    let head = if state.requests == 0 {
        Some(state.accepted)
    } else {
        state.head_started
    };
    let Some(since) = closing else {
        if state.lingering {
            return None;
        }
        return match (state.protocol, head) {
            (_, Some(start)) => Some((start + t.header_read, Step::Cut(Why::HeaderRead))),
            (Protocol::Http2, _) => Some((state.idle_since + t.keepalive, Step::GoAway)),
            _ => Some((state.idle_since + t.keepalive, Step::Cut(Why::KeepAlive))),
        };
    };
    // Closing: nothing in flight, so the connection goes once it has been
    // quiet for the idle grace. A request (or the rest of a body, in the
    // lingering close) still arriving keeps it, an HTTP/1 head no longer
    // than its header-read timeout.
    let quiet = since
        .max(state.idle_since)
        .max(state.last_write)
        .max(state.last_read);
    let grace = (quiet + t.idle_grace, Step::Cut(Why::IdleGrace));
    match (state.protocol, state.head_started.and(head)) {
        (Protocol::Http1, Some(start)) if !state.lingering && start + t.header_read < grace.0 => {
            Some((start + t.header_read, Step::Cut(Why::HeaderRead)))
        }
        _ => Some(grace),
    }
}

/// What every connection of a server shares.
pub(crate) struct Http<S> {
    service: Arc<S>,
    builder: auto::Builder<TokioExecutor>,
    drain: CancellationToken,
    timeouts: Timeouts,
    keep_alive: HeaderValue,
}

impl<S> Http<S> {
    pub(crate) fn new(service: S, settings: &Settings, drain: CancellationToken) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Ours, above hyper (see the module docs).
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES);
        let ping_interval =
            Some(settings.http2_keepalive_interval.min(LONGEST_TIMEOUT)).filter(|d| !d.is_zero());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .keep_alive_interval(ping_interval)
            .keep_alive_timeout(settings.http2_keepalive_timeout.min(LONGEST_TIMEOUT));
        let timeouts = Timeouts {
            header_read: settings.header_read_timeout.min(LONGEST_TIMEOUT),
            keepalive: settings.keepalive_timeout.min(LONGEST_TIMEOUT),
            idle_grace: settings.idle_grace.min(LONGEST_TIMEOUT),
        };
        Http {
            service: Arc::new(service),
            builder,
            drain,
            timeouts,
            keep_alive: keep_alive_header(timeouts.keepalive),
        }
    }
}

impl<S, B> Http<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Serve HTTP/1.1 or h2c on `io` until the client closes it, a timeout
    /// closes it, or the drain does.
    pub(crate) async fn serve<I>(self: Arc<Self>, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let service = DrainAware::new(
            self.service.clone(),
            self.drain.clone(),
            activity.clone(),
            self.keep_alive.clone(),
        );
        let io = TokioIo::new(WatchedIo::new(io, activity.clone()));
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);

        let mut closing: Option<Instant> = None;
        let mut goaway_sent = false;
        loop {
            let state = activity.snapshot();
            // Only once the connection is known to speak HTTP/2: during
            // protocol detection, hyper-util turns this into an error.
            if closing.is_some() && state.protocol == Protocol::Http2 && !goaway_sent {
                conn.as_mut().graceful_shutdown();
                goaway_sent = true;
            }
            let next = next_step(&state, closing, &self.timeouts);
            let at = next.map_or_else(|| Instant::now() + Duration::from_secs(86_400), |n| n.0);
            tokio::select! {
                biased;
                result = conn.as_mut() => return log_end(result),
                () = self.drain.cancelled(), if closing.is_none() => {
                    closing = Some(Instant::now());
                }
                () = tokio::time::sleep_until(at), if next.is_some() => {
                    // Due unless the state moved on since the snapshot.
                    let now = Instant::now();
                    match next_step(&activity.snapshot(), closing, &self.timeouts) {
                        Some((at, Step::GoAway)) if at <= now => closing = Some(now),
                        Some((at, Step::Cut(why))) if at <= now => {
                            debug!("closing connection: {why}");
                            return;
                        }
                        _ => {}
                    }
                }
                () = activity.changed() => {}
            }
        }
    }
}

fn log_end(result: Result<(), BoxError>) {
    if let Err(e) = result {
        // Clients going away mid-request are routine; not worth a warning.
        debug!("connection ended with error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keepalive: Duration::from_secs(75),
        idle_grace: Duration::from_millis(100),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_new_connection_has_the_header_read_timeout_whatever_it_sent() {
        for first in [&b""[..], b"PRI * HTTP/2.0\r\n", b"GET / HTTP/1.1\r\n"] {
            let a = Activity::new();
            a.on_read(first);
            let s = a.snapshot();
            let due = next_step(&s, None, &T);
            assert_eq!(
                due,
                Some((s.accepted + secs(10), Step::Cut(Why::HeaderRead)))
            );
        }
    }

    #[test]
    fn http1_idle_then_a_new_head() {
        let a = Arc::new(Activity::new());
        a.on_read(b"GET / HTTP/1.1\r\n\r\n");
        let req = a.request(false);
        assert_eq!(next_step(&a.snapshot(), None, &T), None);
        drop(req);
        let s = a.snapshot();
        assert_eq!(
            next_step(&s, None, &T),
            Some((s.idle_since + secs(75), Step::Cut(Why::KeepAlive)))
        );
        a.on_read(b"G");
        let s = a.snapshot();
        let started = s.head_started.unwrap();
        assert_eq!(
            next_step(&s, None, &T),
            Some((started + secs(10), Step::Cut(Why::HeaderRead)))
        );
        // While draining, the request on its way is waited for while bytes
        // keep coming, never beyond its header-read timeout.
        let drain = Instant::now();
        let quiet = drain.max(s.last_read).max(s.last_write).max(s.idle_since);
        assert_eq!(
            next_step(&s, Some(drain), &T),
            Some((quiet + T.idle_grace, Step::Cut(Why::IdleGrace)))
        );
        let long_grace = Timeouts {
            idle_grace: secs(60),
            ..T
        };
        assert_eq!(
            next_step(&s, Some(drain), &long_grace),
            Some((started + secs(10), Step::Cut(Why::HeaderRead)))
        );
    }

    #[test]
    fn http2_idle_and_draining() {
        let a = Arc::new(Activity::new());
        a.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        a.on_read(b"\0\0\0\x04\0\0\0\0\0");
        let stream = a.request(true);
        let drain = Instant::now();
        // Streams open: nothing is due, drain or not.
        assert_eq!(next_step(&a.snapshot(), None, &T), None);
        assert_eq!(next_step(&a.snapshot(), Some(drain), &T), None);
        drop(stream);
        // More frames (SETTINGS, PING) do not count as a request head.
        a.on_read(b"\0\0\0\x04\0\0\0\0\0");
        let s = a.snapshot();
        assert_eq!(
            next_step(&s, None, &T),
            Some((s.idle_since + secs(75), Step::GoAway))
        );
        let quiet = drain.max(s.idle_since).max(s.last_write).max(s.last_read);
        assert_eq!(
            next_step(&s, Some(drain), &T),
            Some((quiet + T.idle_grace, Step::Cut(Why::IdleGrace)))
        );
    }

    #[test]
    fn draining_a_connection_that_sent_no_request() {
        for first in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
            let a = Activity::new();
            a.on_read(first);
            let s = a.snapshot();
            let drain = Instant::now();
            let quiet = drain.max(s.last_write).max(s.last_read);
            assert_eq!(
                next_step(&s, Some(drain), &T),
                Some((quiet + T.idle_grace, Step::Cut(Why::IdleGrace)))
            );
        }
    }

    #[test]
    fn lingering_has_its_own_bounds_but_not_in_a_drain() {
        let a = Activity::new();
        a.set_lingering(true);
        assert_eq!(next_step(&a.snapshot(), None, &T), None);
        let drain = Instant::now();
        a.on_discard();
        let s = a.snapshot();
        assert_eq!(
            next_step(&s, Some(drain), &T),
            Some((
                drain.max(s.last_read) + T.idle_grace,
                Step::Cut(Why::IdleGrace)
            ))
        );
    }
}
