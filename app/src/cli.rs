//! Command line.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::version::VERSION;

/// Where to listen when not socket-activated and no `--listen` is given.
pub fn default_listen() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)))
}

#[derive(Debug, Parser)]
#[command(
    name = "hitless",
    version = VERSION,
    about = "HTTP service that takes its listening socket from systemd and drains on SIGTERM",
    after_help = "Exit codes: 0 clean exit after drain, 1 runtime error, 2 usage error, \
                  3 bad socket-activation environment, 4 cannot bind a --listen address, \
                  5 drain cut short (deadline passed, or a second signal) with connections open."
)]
pub struct Cli {
    /// Address to bind when NOT socket-activated: HOST:PORT or unix:/PATH.
    /// Repeatable. Ignored (with a warning) when systemd passes sockets.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,

    /// Hard deadline for the whole drain after SIGTERM. Keep it below the
    /// unit's TimeoutStopSec= so systemd never has to SIGKILL us.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// During the drain, how long an idle HTTP/1 keep-alive connection stays
    /// open so that a request the client already sent is still served (and
    /// answered with `Connection: close`). It covers requests on their way
    /// when SIGTERM came (a network round trip is plenty) and clients that
    /// send their next request promptly; since a restart is stop-then-start,
    /// it also delays the new process when idle connections are open.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub idle_grace: Duration,

    /// Time a client has to send a complete request head. hyper starts this
    /// timer as soon as it waits for a request, so it is also how long an
    /// idle HTTP/1 keep-alive connection is kept.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 20s, 500ms, 1m)"))
}

/// Where to listen when binding by ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("unix socket path must be absolute: {path:?}"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
            format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080, [::]:80) or unix:/PATH")
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "127.0.0.1:8080".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            "[::]:80".parse(),
            Ok(ListenAddr::Tcp("[::]:80".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/hitless.sock".parse(),
            Ok(ListenAddr::Unix("/run/hitless.sock".into()))
        );
    }

    #[test]
    fn rejects_bad_listen_addresses() {
        for bad in [
            "",
            "8080",
            "localhost:8080",
            "unix:relative.sock",
            "1.2.3.4",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn defaults_are_consistent() {
        let cli = Cli::try_parse_from(["hitless"]).unwrap();
        assert!(cli.listen.is_empty());
        assert_eq!(cli.drain_timeout, Duration::from_secs(20));
        assert!(cli.idle_grace < cli.drain_timeout);
        assert_eq!(default_listen().to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(Cli::try_parse_from(["hitless", "--drain-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--drain-timeout", "5"]).is_err());
    }
}
