//! How a [`Server`](crate::Server) listens and drains.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

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
    /// During the drain, how long an idle HTTP/1 keep-alive connection stays
    /// open so that a request the client already sent, or sends meanwhile,
    /// is still served (and answered with `Connection: close`, RFC 9112
    /// §9.6). It covers requests on their way when the signal came (a
    /// network round trip is plenty); since a restart is stop-then-start, it
    /// also delays the next process when idle connections are open. Zero
    /// means plain hyper `graceful_shutdown()`, which closes idle
    /// connections at once and can lose such a request. Default: 100 ms.
    pub idle_grace: Duration,
    /// Time a client has to send a complete HTTP/1 request head. hyper
    /// starts this timer as soon as it waits for a request, so it is also
    /// how long an idle HTTP/1 keep-alive connection is kept. Default: 10 s.
    pub header_read_timeout: Duration,
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
        assert_eq!(s.fallback.len(), 1);
        assert_eq!(s.fallback[0].to_string(), "127.0.0.1:8080");
    }
}
