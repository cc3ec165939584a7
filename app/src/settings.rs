//! How a [`Server`](crate::Server) listens and drains.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::http::uri::PathAndQuery;

use crate::listen_addr::ListenAddr;

/// Settings for [`Server::from_env`](crate::Server::from_env).
///
/// Build with struct update syntax from the defaults:
///
/// ```
/// use std::time::Duration;
/// let settings = hitless::Settings {
///     drain_timeout: Duration::from_secs(30),
///     ..hitless::Settings::default()
/// };
/// # assert_eq!(settings.idle_grace, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Addresses to bind when the process is NOT socket-activated (started
    /// by hand, or by a service unit without `Sockets=`). Ignored when
    /// systemd passes sockets. Default: `127.0.0.1:8080`.
    pub fallback: Vec<ListenAddr>,
    /// Hard deadline for the whole drain after the stop signal. Keep it
    /// below the unit's `TimeoutStopSec=` (systemd.service(5)) so systemd
    /// never has to SIGKILL the process. Default: 20 s.
    pub drain_timeout: Duration,
    /// During the drain, how long a connection with nothing in flight stays
    /// open after it was last active: an idle HTTP/1 keep-alive connection,
    /// so that a request the client already sent, or sends meanwhile, is
    /// still served (and answered with `Connection: close`, RFC 9112 §9.6);
    /// an HTTP/2 connection with no stream open, after its GOAWAY (RFC 9113
    /// §6.8), so that a peer that never answers the GOAWAY's PING does not
    /// hold the drain; a connection that has sent no request. It covers
    /// requests on their way when the signal came (a network round trip is
    /// plenty). When the next process starts only after this one has
    /// exited (a stop-then-start restart), it also delays that start while
    /// idle connections are open. Requests in flight (HTTP/2:
    /// open streams) are not cut by it, only by
    /// [`drain_timeout`](Settings::drain_timeout). Zero closes idle
    /// connections at once, like plain hyper `graceful_shutdown()`, and can
    /// lose such a request. Default: 100 ms.
    pub idle_grace: Duration,
    /// Time a client has to send a complete request head: from accept()
    /// for the first request of a connection, whatever protocol it speaks
    /// (an HTTP/2 connection must have sent its preface, SETTINGS and a
    /// HEADERS frame by then); from its first byte for a later HTTP/1
    /// request. A connection that misses it is closed without a response
    /// (like nginx's `client_header_timeout`). Default: 10 s.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open
    /// between requests (an HTTP/1 keep-alive connection, RFC 9112 §9.3;
    /// an HTTP/2 connection with no stream open, closed with GOAWAY, RFC
    /// 9113 §6.8). HTTP/1 responses on persistent connections announce it
    /// in whole seconds as `Keep-Alive: timeout=N` (the de-facto header of
    /// RFC 2068 §19.7.1.1; HTTP/1.1 itself does not define it). A client
    /// that reuses a connection just as the server closes it sees that
    /// request fail (clients retry idempotent ones, RFC 9110 §9.2.2); a
    /// value above the idle timeouts of the clients' connection pools (Go:
    /// 90 s, aiohttp: 15 s) avoids that. Default: 75 s (nginx's
    /// `keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// How often an HTTP/2 connection with a stream open is checked with a
    /// PING frame (RFC 9113 §6.7) when nothing was received for that long,
    /// so that a peer that no longer answers is found and its connection,
    /// streams included, closed. Zero sends no PINGs. Off by default, as
    /// in nginx and Go's net/http: hyper's PING bookkeeping runs on every
    /// poll of every HTTP/2 connection (about 3 % more instructions per
    /// request), and [`tcp_keepalive`](Settings::tcp_keepalive) already
    /// finds peers whose host has gone. Default: 0 (no PINGs).
    pub http2_keepalive_interval: Duration,
    /// How long to wait for the answer to such a PING before closing the
    /// connection; keep it well above the clients' round-trip time.
    /// Default: 20 s.
    pub http2_keepalive_timeout: Duration,
    /// How long a connection may take no byte of a response the service
    /// has produced (the peer stopped reading: an HTTP/1 client that
    /// pipelines and never reads, an HTTP/2 peer that keeps its flow-control
    /// window at 0) before it is closed, during the drain and outside it.
    /// A service that is slow to produce its response or body is not
    /// affected; its requests are bounded by the drain only. Met late by up
    /// to an eighth of the smaller of this and the keep-alive timeout (or
    /// one idle grace while draining), never early. Default: 30 s.
    pub send_timeout: Duration,
    /// TCP keep-alive for accepted connections (tcp(7): `SO_KEEPALIVE`,
    /// `TCP_KEEPIDLE` this long, then `TCP_KEEPINTVL` of a third of it,
    /// at most 10 s, and `TCP_KEEPCNT` 3), so that a connection whose peer's
    /// host went down or whose NAT entry expired is found by the kernel
    /// and closed, whatever the protocol. Set on the listening sockets in
    /// [`Server::serve`](crate::Server::serve), which accepted connections
    /// inherit: the same as `KeepAlive=` in systemd.socket(5), which is
    /// left alone when `None`. A socket passed by systemd is shared with
    /// PID 1, so the option stays on it for the next process too.
    /// Default: 30 s.
    pub tcp_keepalive: Option<Duration>,
    /// Raise the soft `RLIMIT_NOFILE` (the most open file descriptors,
    /// getrlimit(2)) to the hard limit in [`Server::from_env`]. systemd
    /// starts services with a soft limit of 1024 and a hard limit of
    /// 524288 (systemd.exec(5), `LimitNOFILE=`) and expects programs that
    /// need more to raise it themselves, as Go's runtime does; each
    /// connection takes one descriptor. Turn it off if the process uses
    /// select(2), which cannot watch descriptors above 1023. Default: on.
    ///
    /// [`Server::from_env`]: crate::Server::from_env
    pub raise_nofile_limit: bool,
    /// The check before `READY=1`: [`Server::serve`] first sends
    /// `GET <path>` (with `Host: localhost` and `User-Agent:
    /// hitless-ready-check`) through the service itself, over an in-memory
    /// connection served like any accepted one, before it accepts on a
    /// listener or notifies systemd. A server error (5xx, RFC 9110 §15.6),
    /// no response head within
    /// [`ready_check_timeout`](Settings::ready_check_timeout), or a failed
    /// exchange ends serving with [`Error::NotReady`] (exit code 6) and no
    /// `READY=1`; under systemd the start job fails, so an upgrade to such
    /// a build leaves the old version serving. Any other status counts as
    /// ready (a service without the path answers 404). `None`: no check.
    /// Default: `/healthz`.
    ///
    /// [`Server::serve`]: crate::Server::serve
    /// [`Error::NotReady`]: crate::Error::NotReady
    pub ready_check: Option<PathAndQuery>,
    /// How long the check may take, up to the response head; keep it well
    /// below the unit's `TimeoutStartSec=` (systemd.service(5)). Default:
    /// 5 s.
    pub ready_check_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            fallback: vec![ListenAddr::Tcp(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                8080,
            )))],
            drain_timeout: Duration::from_secs(20),
            idle_grace: Duration::from_millis(100),
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            http2_keepalive_interval: Duration::ZERO,
            http2_keepalive_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(30),
            tcp_keepalive: Some(Duration::from_secs(30)),
            raise_nofile_limit: true,
            ready_check: Some(PathAndQuery::from_static("/healthz")),
            ready_check_timeout: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        let s = Settings::default();
        assert!(s.idle_grace < s.drain_timeout);
        assert!(s.header_read_timeout < s.keepalive_timeout);
        assert_eq!(s.fallback.len(), 1);
        assert_eq!(s.fallback[0].to_string(), "127.0.0.1:8080");
    }
}
