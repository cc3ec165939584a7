//! A connection's socket as hyper sees it: every read and write is reported
//! to the connection's [`Activity`], and closing it is a lingering close.
//!
//! Lingering close (RFC 9112 §9.6; what Apache httpd and nginx do): a
//! server that closes a connection while unread bytes of a request are
//! still in its receive buffer, or still on their way, makes the kernel
//! answer with a TCP reset, and a reset can destroy the response the client
//! has not read yet. That happens whenever a response is sent before its
//! request body was read (a 405, 413 or 401 to a large upload). So when
//! hyper closes a connection, the write side is shut down first (the client
//! sees the end of the response), then whatever the client still sends is
//! read and discarded until it closes its side, within
//! [`LINGERING_TIME`], [`LINGERING_TIMEOUT`] and [`LINGERING_BYTES`].
//! While draining, the connection task also ends a lingering close once the
//! client has sent nothing for the idle grace, so that a client that does
//! not close its side delays the next process no longer than that.
//! Connections closed for a timeout, or cut by the drain, are closed at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Instant, Sleep};
use tracing::debug;

use crate::activity::Activity;

/// Longest lingering close (nginx's `lingering_time` is 30 s).
pub(crate) const LINGERING_TIME: Duration = Duration::from_secs(10);
/// A lingering close ends when the client sent nothing for this long
/// (nginx's `lingering_timeout` is 5 s, Apache httpd's 2 s).
pub(crate) const LINGERING_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes read and discarded in a lingering close.
pub(crate) const LINGERING_BYTES: u64 = 64 * 1024 * 1024;

/// Size of the buffer lingering reads discard into.
const DISCARD_BUF: usize = 16 * 1024;

/// `io`, reporting to an [`Activity`].
pub(crate) struct WatchedIo<I> {
    io: I,
    activity: Arc<Activity>,
    close: Close,
}

/// Where the close stands.
enum Close {
    Open,
    Lingering {
        /// Ends the lingering at [`LINGERING_TIME`].
        total: Pin<Box<Sleep>>,
        /// Ends it after [`LINGERING_TIMEOUT`] without data.
        quiet: Pin<Box<Sleep>>,
        discarded: u64,
    },
    Closed,
}

impl<I> WatchedIo<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        WatchedIo {
            io,
            activity,
            close: Close::Open,
        }
    }
}

impl<I: AsyncRead + Unpin> WatchedIo<I> {
    /// Read and discard until end of file, an error, or a lingering bound.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Close::Lingering {
            total,
            quiet,
            discarded,
        } = &mut self.close
        else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; DISCARD_BUF];
        // tokio's cooperative budget makes a fast sender yield to other
        // tasks now and then (Pending, with a wake-up).
        while *discarded < LINGERING_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    debug!("lingering close: client closed after {discarded} more bytes");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    *discarded += buf.filled().len() as u64;
                    self.activity.on_discard();
                    quiet.as_mut().reset(Instant::now() + LINGERING_TIMEOUT);
                }
                Poll::Ready(Err(e)) => {
                    debug!("lingering close: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if total.as_mut().poll(cx).is_ready() || quiet.as_mut().poll(cx).is_ready() {
                        debug!("lingering close: gave up after {discarded} bytes");
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
            }
        }
        debug!("lingering close: gave up after {discarded} bytes");
        Poll::Ready(())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if room && matches!(result, Poll::Ready(Ok(()))) {
            this.activity.on_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shut down the write side, then linger (see the module docs) unless
    /// the client has closed its side already.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    if this.activity.snapshot().peer_closed {
                        this.close = Close::Closed;
                    } else {
                        this.close = Close::Lingering {
                            total: Box::pin(sleep(LINGERING_TIME)),
                            quiet: Box::pin(sleep(LINGERING_TIMEOUT)),
                            discarded: 0,
                        };
                        this.activity.set_lingering(true);
                    }
                }
                Close::Lingering { .. } => {
                    ready!(this.poll_linger(cx));
                    this.close = Close::Closed;
                    this.activity.set_lingering(false);
                }
                Close::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair: (server side wrapped, client side).
    async fn pair() -> (WatchedIo<TcpStream>, Arc<Activity>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let activity = Arc::new(Activity::new());
        (WatchedIo::new(server, activity.clone()), activity, client)
    }

    #[tokio::test]
    async fn shutdown_lingers_until_the_client_closes() {
        let (mut server, activity, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        server.write_all(b"response").await.unwrap();
        assert!(activity.snapshot().head_started.is_some());

        let closing = tokio::spawn(async move {
            server.shutdown().await.unwrap();
        });
        // The client keeps sending after the server's FIN; none of it is
        // refused, and it still reads the whole response.
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
        for _ in 0..64 {
            client.write_all(&[b'x'; 16 * 1024]).await.unwrap();
        }
        assert!(activity.snapshot().lingering);
        drop(client);
        closing.await.unwrap();
        assert!(!activity.snapshot().lingering);
    }

    #[tokio::test]
    async fn no_lingering_once_the_client_closed() {
        let (mut server, activity, client) = pair().await;
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        assert!(activity.snapshot().peer_closed);
        server.shutdown().await.unwrap();
        assert!(!activity.snapshot().lingering);
    }
}
