//! Addresses to bind when the process is not socket-activated.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use thiserror::Error;

/// An address to bind by ourselves: a TCP `HOST:PORT` or a unix socket path.
///
/// The text form (parsed by [`FromStr`], shown by [`Display`](fmt::Display))
/// is `127.0.0.1:8080`, `[::]:80` or `unix:/run/example.sock`, the same
/// spelling as `ListenStream=` in systemd.socket(5) except that a unix path
/// carries the `unix:` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; the host must be a literal IP address.
    Tcp(SocketAddr),
    /// An absolute path for a unix stream socket. The socket file is created
    /// by binding and removed again when serving ends.
    Unix(PathBuf),
}

/// Why a text is not a [`ListenAddr`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseListenAddrError {
    /// `unix:` was followed by a relative path.
    #[error("unix socket path must be absolute: {0:?}")]
    RelativeUnixPath(String),
    /// Neither `HOST:PORT` with a literal IP nor `unix:/PATH`.
    #[error("{0:?} is not HOST:PORT (e.g. 127.0.0.1:8080, [::]:80) or unix:/PATH")]
    Malformed(String),
}

impl FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(ParseListenAddrError::RelativeUnixPath(path.to_owned()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| ParseListenAddrError::Malformed(s.to_owned()))
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
    fn text_form_round_trips() {
        for text in ["127.0.0.1:8080", "[::1]:80", "unix:/run/x.sock"] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
    }
}
