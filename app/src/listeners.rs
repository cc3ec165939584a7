//! The sockets we serve: inherited from systemd, or bound by ourselves.
//!
//! Sockets are prepared while the process is still single-threaded (taking
//! the fds clears `LISTEN_*`) and registered with tokio once the runtime
//! runs. Inherited sockets are shared with PID 1: we only ever drop our copy,
//! never `shutdown()` it, or systemd would see POLLHUP and fail the socket
//! unit.

use std::net::TcpListener as StdTcpListener;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use serde::Serialize;
use socket2::{Domain, Socket, Type};

use crate::activation::InheritedSocket;
use crate::cli::ListenAddr;
use crate::error::Fatal;

/// Backlog for sockets we bind ourselves (the kernel caps it at somaxconn).
const BACKLOG: i32 = 1024;

/// How a listener shows up in the log and in `/version`.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub kind: &'static str,
    pub address: String,
    pub name: String,
}

#[derive(Debug)]
enum StdSocket {
    Tcp(StdTcpListener),
    Unix(StdUnixListener),
}

/// A listening socket ready to be handed to tokio.
#[derive(Debug)]
pub struct Prepared {
    pub info: ListenerInfo,
    socket: StdSocket,
    /// Socket file we created and remove again at exit.
    unlink: Option<PathBuf>,
}

pub enum TokioSocket {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

pub struct Listener {
    pub info: ListenerInfo,
    pub socket: TokioSocket,
}

/// Wrap sockets systemd passed us.
pub fn inherited(sockets: Vec<(String, InheritedSocket)>) -> Result<Vec<Prepared>, Fatal> {
    sockets
        .into_iter()
        .map(|(name, socket)| {
            let socket = match socket {
                InheritedSocket::Tcp(l) => StdSocket::Tcp(l),
                InheritedSocket::Unix(l) => StdSocket::Unix(l),
            };
            prepare(socket, name, None)
        })
        .collect()
}

/// Bind the `--listen` addresses.
pub fn bind(addrs: &[ListenAddr]) -> Result<Vec<Prepared>, Fatal> {
    addrs
        .iter()
        .map(|addr| {
            let fail = |source| Fatal::Bind {
                addr: addr.clone(),
                source,
            };
            match addr {
                ListenAddr::Tcp(sa) => {
                    let socket =
                        Socket::new(Domain::for_address(*sa), Type::STREAM, None).map_err(fail)?;
                    // Lets a restarted process bind while old connections
                    // sit in TIME_WAIT; it does not allow two listeners.
                    socket.set_reuse_address(true).map_err(fail)?;
                    socket.bind(&(*sa).into()).map_err(fail)?;
                    socket.listen(BACKLOG).map_err(fail)?;
                    prepare(StdSocket::Tcp(socket.into()), "--listen".into(), None)
                }
                ListenAddr::Unix(path) => {
                    let l = StdUnixListener::bind(path).map_err(fail)?;
                    prepare(StdSocket::Unix(l), "--listen".into(), Some(path.clone()))
                }
            }
        })
        .collect()
}

fn prepare(socket: StdSocket, name: String, unlink: Option<PathBuf>) -> Result<Prepared, Fatal> {
    // Inherited sockets are blocking; tokio needs them non-blocking.
    let (kind, address) = match &socket {
        StdSocket::Tcp(l) => {
            l.set_nonblocking(true)
                .map_err(Fatal::runtime("cannot make listener non-blocking"))?;
            let addr = l
                .local_addr()
                .map_err(Fatal::runtime("cannot read listener address"))?;
            ("tcp", addr.to_string())
        }
        StdSocket::Unix(l) => {
            l.set_nonblocking(true)
                .map_err(Fatal::runtime("cannot make listener non-blocking"))?;
            let addr = l
                .local_addr()
                .map_err(Fatal::runtime("cannot read listener address"))?;
            let shown = match addr.as_pathname() {
                Some(p) => p.display().to_string(),
                None => "(unnamed or abstract)".to_owned(),
            };
            ("unix", shown)
        }
    };
    Ok(Prepared {
        info: ListenerInfo {
            kind,
            address,
            name,
        },
        socket,
        unlink,
    })
}

impl Prepared {
    /// Register with the tokio reactor; must run inside the runtime.
    pub fn into_tokio(self) -> Result<(Listener, Option<PathBuf>), Fatal> {
        let socket = match self.socket {
            StdSocket::Tcp(l) => TokioSocket::Tcp(
                tokio::net::TcpListener::from_std(l)
                    .map_err(Fatal::runtime("cannot register listener"))?,
            ),
            StdSocket::Unix(l) => TokioSocket::Unix(
                tokio::net::UnixListener::from_std(l)
                    .map_err(Fatal::runtime("cannot register listener"))?,
            ),
        };
        Ok((
            Listener {
                info: self.info,
                socket,
            },
            self.unlink,
        ))
    }
}
