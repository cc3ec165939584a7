//! The listening sockets a [`Server`](crate::Server) accepts on: taken from
//! systemd, or bound from fallback addresses.
//!
//! Sockets are prepared while the process is still single-threaded and
//! registered with tokio once serving starts. A socket taken from systemd is
//! shared with PID 1: the library only ever drops its copy, never calls
//! `shutdown()` on it, or systemd would see POLLHUP and fail the socket unit.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;

use socket2::{Domain, Type};

use crate::error::Error;
use crate::listen_addr::ListenAddr;

/// Backlog for sockets bound by ourselves (the kernel caps it at
/// `net.core.somaxconn`); systemd.socket(5) `Backlog=` has the same default
/// cap.
const BACKLOG: i32 = 1024;

/// A listening stream socket, TCP or unix. Held by a [`Listener`], it is
/// close-on-exec and non-blocking.
#[derive(Debug)]
pub enum Socket {
    /// `AF_INET` or `AF_INET6`, `SOCK_STREAM`.
    Tcp(TcpListener),
    /// `AF_UNIX`, `SOCK_STREAM`.
    Unix(UnixListener),
}

impl Socket {
    /// `"tcp"` or `"unix"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Socket::Tcp(_) => "tcp",
            Socket::Unix(_) => "unix",
        }
    }

    /// The local address as text: `127.0.0.1:8080`, `[::]:80`, a socket
    /// path, or `(unnamed or abstract)` for a unix socket without a path.
    ///
    /// # Errors
    /// `getsockname(2)` failing.
    fn address(&self) -> io::Result<String> {
        Ok(match self {
            Socket::Tcp(l) => l.local_addr()?.to_string(),
            Socket::Unix(l) => match l.local_addr()?.as_pathname() {
                Some(p) => p.display().to_string(),
                None => "(unnamed or abstract)".to_owned(),
            },
        })
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(l) => l.set_nonblocking(true),
            Socket::Unix(l) => l.set_nonblocking(true),
        }
    }
}

/// Where a listener came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Passed by systemd (sd_listen_fds(3)).
    Systemd {
        /// The fd's name from `LISTEN_FDNAMES`: `FileDescriptorName=` of the
        /// socket unit, which defaults to the unit's name (`example.socket`,
        /// systemd.socket(5)); `unknown` when the manager passed no names.
        name: String,
    },
    /// Bound by this process from one of the fallback addresses.
    Bound(ListenAddr),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Systemd { name } => f.write_str(name),
            Origin::Bound(_) => f.write_str("fallback address"),
        }
    }
}

/// A listening socket with where it came from and its address.
///
/// Shown as `tcp 127.0.0.1:8080 (example.socket)`.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    origin: Origin,
    address: String,
}

impl Listener {
    /// Wrap `socket` and make it non-blocking, which tokio requires: sockets
    /// passed by systemd are blocking.
    fn new(socket: Socket, origin: Origin) -> Result<Listener, Error> {
        socket
            .set_nonblocking()
            .map_err(Error::runtime("cannot make listener non-blocking"))?;
        let address = socket
            .address()
            .map_err(Error::runtime("cannot read listener address"))?;
        Ok(Listener {
            socket,
            origin,
            address,
        })
    }

    /// Wrap sockets passed by systemd, with their `LISTEN_FDNAMES` names.
    pub(crate) fn inherited(sockets: Vec<(String, Socket)>) -> Result<Vec<Listener>, Error> {
        sockets
            .into_iter()
            .map(|(name, socket)| Listener::new(socket, Origin::Systemd { name }))
            .collect()
    }

    /// Bind each of `addrs`: TCP with `SO_REUSEADDR` (so a restarted process
    /// can bind while old connections sit in `TIME_WAIT`; it does not allow
    /// two listeners), unix by creating the socket file.
    pub(crate) fn bind(addrs: &[ListenAddr]) -> Result<Vec<Listener>, Error> {
        if addrs.is_empty() {
            return Err(Error::NoListeners);
        }
        addrs
            .iter()
            .map(|addr| {
                let socket = bind_one(addr).map_err(|source| Error::Bind {
                    addr: addr.clone(),
                    source,
                })?;
                Listener::new(socket, Origin::Bound(addr.clone()))
            })
            .collect()
    }

    /// The socket, for reading its options or address; serving takes it
    /// over, so nothing else should accept on it.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Where the socket came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The local address as text (see [`Socket`]): `127.0.0.1:8080`,
    /// `/run/example.sock`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket file this process created and removes after serving.
    pub(crate) fn created_file(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Bound(ListenAddr::Unix(path)) => Some(path),
            _ => None,
        }
    }

    pub(crate) fn into_socket(self) -> Socket {
        self.socket
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.socket.kind(),
            self.address,
            self.origin
        )
    }
}

fn bind_one(addr: &ListenAddr) -> io::Result<Socket> {
    match addr {
        ListenAddr::Tcp(sa) => {
            let socket = socket2::Socket::new(Domain::for_address(*sa), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&(*sa).into())?;
            socket.listen(BACKLOG)?;
            Ok(Socket::Tcp(socket.into()))
        }
        ListenAddr::Unix(path) => Ok(Socket::Unix(UnixListener::bind(path)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_bind_is_exit_4() {
        let err = Listener::bind(&[]).unwrap_err();
        assert!(matches!(err, Error::NoListeners), "{err}");
        assert_eq!(err.exit_code(), 4);
    }

    #[test]
    fn bound_listeners_say_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bound.sock");
        let addrs = [
            ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
            ListenAddr::Unix(path.clone()),
        ];
        let listeners = Listener::bind(&addrs).unwrap();
        let [tcp, unix] = &listeners[..] else {
            panic!("{listeners:?}")
        };
        assert_eq!(tcp.origin(), &Origin::Bound(addrs[0].clone()));
        assert_eq!(tcp.created_file(), None);
        assert!(tcp.to_string().starts_with("tcp 127.0.0.1:"), "{tcp}");
        assert_eq!(unix.created_file(), Some(path.as_path()));
        assert_eq!(
            unix.to_string(),
            format!("unix {} (fallback address)", path.display())
        );
    }
}
