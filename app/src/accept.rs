//! Accepting connections until the drain starts.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::drain::Drain;

/// Back-off after accept() fails for a reason other than the peer (EMFILE…).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A tokio listener of either kind.
pub(crate) trait Acceptor: Send + 'static {
    /// An accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Acceptor for TcpListener {
    type Io = TcpStream;

    async fn accept_one(&self) -> io::Result<TcpStream> {
        // TCP_NODELAY comes from the listening socket (Server::serve).
        let (stream, _) = self.accept().await?;
        Ok(stream)
    }
}

impl Acceptor for UnixListener {
    type Io = UnixStream;

    async fn accept_one(&self) -> io::Result<UnixStream> {
        Ok(self.accept().await?.0)
    }
}

/// Accept on `listener` and spawn `serve` for every connection on
/// `connections`, until the drain starts; then drop the listener.
pub(crate) async fn accept_loop<A, F, Fut>(
    listener: A,
    address: String,
    drain: Drain,
    connections: TaskTracker,
    serve: F,
) where
    A: Acceptor,
    F: Fn(A::Io) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            biased;
            () = drain.started() => break,
            accepted = listener.accept_one() => accepted,
        };
        match accepted {
            Ok(io) => {
                connections.spawn(serve(io));
            }
            Err(e) if is_peer_error(&e) => debug!("accept on {address}: {e}"),
            Err(e) => {
                warn!("accept on {address} failed: {e}; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // Dropping closes our copy of the fd. Never shutdown(): the socket is
    // shared with PID 1, which keeps queueing connections for the next
    // process.
    drop(listener);
    debug!("stopped accepting on {address}");
}

/// Errors caused by the peer going away between SYN and accept().
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
