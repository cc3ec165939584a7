//! A connection's socket as hyper sees it: the bytes read before hyper took
//! over (to tell the protocol, or to wake a parked connection) are handed
//! to hyper first, every read and write is counted in
//! the connection's [`Activity`], and closing it lingers when a reset could
//! destroy the response.
//!
//! Lingering close (RFC 9112 §9.6; what Apache httpd and nginx do): a
//! server that closes a connection while unread bytes of a request are
//! still in its receive buffer, or still on their way, makes the kernel
//! answer with a TCP reset, and a reset can destroy the response the client
//! has not read yet. That happens whenever a response is sent before its
//! request body was read (a 405, 413 or 401 to a large upload). So when
//! hyper closes a connection whose latest request had a body, or with
//! unread bytes waiting, the write side is shut down first (the client sees
//! the end of the response), then whatever the client still sends is read
//! and discarded until it closes its side, within [`LINGERING_TIME`],
//! [`LINGERING_TIMEOUT`] and [`LINGERING_BYTES`]. A connection with neither
//! is closed at once, as nginx does: nothing is left for a reset to hit,
//! and close(2) sends the FIN after the response.
//! While draining, the connection task also ends a lingering close once the
//! client has sent nothing for the idle grace, so that a client that does
//! not close its side delays the next process no longer than that.
//! Connections closed for a timeout, or cut by the drain, are closed at once.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
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

/// Size of the (uninitialised) stack buffer lingering reads discard into.
const DISCARD_BUF: usize = 16 * 1024;

/// `io`, reporting to an [`Activity`].
pub(crate) struct WatchedIo<I> {
    io: I,
    activity: Arc<Activity>,
    /// Bytes read before hyper took over (the first bytes of the
    /// connection or of a parked connection's next request, or what hyper
    /// had read but not used when it was parked), handed to hyper's first
    /// reads.
    leftover: Bytes,
    /// Reads may begin HTTP/1 request heads.
    http1: bool,
    close: Close,
}

/// Where the close stands.
enum Close {
    Open,
    /// Bytes may still come: shut the write side down, then linger.
    ShutdownThenLinger {
        discarded: u64,
    },
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
            leftover: Bytes::new(),
            http1: false,
            close: Close::Open,
        }
    }

    /// Hand `bytes` (already read) to the next reads, and say whether the
    /// connection speaks HTTP/1.
    pub(crate) fn replay(&mut self, bytes: Bytes, http1: bool) {
        self.leftover = bytes;
        self.http1 = http1;
    }
}

impl<I: AsyncRead + Unpin> WatchedIo<I> {
    /// Read from the socket into `buf`, counting it.
    fn poll_read_io(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if room && matches!(result, Poll::Ready(Ok(()))) {
            self.activity
                .on_read(buf.filled().len() - before, self.http1);
        }
        result
    }

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
        let mut scratch = [MaybeUninit::<u8>::uninit(); DISCARD_BUF];
        // tokio's cooperative budget makes a fast sender yield to other
        // tasks now and then (Pending, with a wake-up).
        while *discarded < LINGERING_BYTES {
            let mut buf = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    debug!("lingering close: client closed after {discarded} more bytes");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    *discarded += buf.filled().len() as u64;
                    self.activity.on_io();
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

    /// After the write side is shut down: whether bytes the client sent may
    /// still arrive unread. Reads (and discards) what is already there.
    fn input_pending(&mut self, cx: &mut Context<'_>) -> Option<u64> {
        if self.activity.peer_closed() {
            return None;
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
        let mut buf = ReadBuf::uninit(&mut scratch);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => None,
            Poll::Ready(Ok(())) => Some(buf.filled().len() as u64),
            Poll::Ready(Err(_)) => None,
            Poll::Pending => self.activity.body_expected().then_some(0),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.leftover.is_empty() {
            let n = this.leftover.len().min(buf.remaining());
            buf.put_slice(&this.leftover[..n]);
            this.leftover.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.poll_read_io(cx, buf)
    }
}

impl<I> WatchedIo<I> {
    /// Count a write: bytes taken, or the socket full.
    #[inline]
    fn count_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.on_write(),
            Poll::Pending => self.activity.set_write_blocked(true),
            _ => {}
        }
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
        this.count_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.count_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// hyper flushes once its own buffer is written: nothing of a
    /// response is left on this side then.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            this.activity.set_write_blocked(false);
        }
        result
    }

    /// If the client may still be sending, shut down the write side, then
    /// linger (see the module docs); otherwise nothing: dropping the socket
    /// closes it. Nothing at all while the connection is being parked:
    /// hyper's connection ends, the socket stays open.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parking() {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.close {
                Close::Open => {
                    this.close = match this.input_pending(cx) {
                        None => Close::Closed,
                        Some(discarded) => Close::ShutdownThenLinger { discarded },
                    };
                }
                Close::ShutdownThenLinger { discarded } => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    this.close = Close::Lingering {
                        total: Box::pin(sleep(LINGERING_TIME)),
                        quiet: Box::pin(sleep(LINGERING_TIMEOUT)),
                        discarded,
                    };
                    this.activity.set_lingering(true);
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
    async fn replayed_bytes_come_first_then_the_socket() {
        let (mut server, _activity, mut client) = pair().await;
        client.write_all(b"rest").await.unwrap();
        server.replay(Bytes::from_static(b"abcd"), true);
        let mut buf = [0u8; 3];
        // Into a smaller buffer: the rest of them on the next read.
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        let mut got = buf.to_vec();
        let mut buf = [0u8; 64];
        while got.len() < 8 {
            let n = server.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"abcdrest");
    }

    #[tokio::test]
    async fn parking_leaves_the_socket_open() {
        let (mut server, activity, mut client) = pair().await;
        activity.set_parking(true);
        server.shutdown().await.unwrap();
        activity.set_parking(false);
        server.write_all(b"still open").await.unwrap();
        let mut buf = [0u8; 10];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still open");
    }

    #[tokio::test]
    async fn shutdown_lingers_while_a_body_may_still_come() {
        let (mut server, activity, mut client) = pair().await;
        client.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"POST / HTTP/1.1\r\n");
        assert!(activity.head_started() || !server.http1);
        let _req = activity.request(true);
        server.write_all(b"response").await.unwrap();

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
        assert!(activity.lingering());
        drop(client);
        closing.await.unwrap();
        assert!(!activity.lingering());
    }

    #[tokio::test]
    async fn shutdown_lingers_when_input_is_waiting() {
        let (mut server, activity, mut client) = pair().await;
        client.write_all(b"unread").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let closing = tokio::spawn(async move {
            server.shutdown().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(activity.lingering());
        drop(client);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn no_lingering_once_the_client_closed_or_nothing_may_come() {
        let (mut server, activity, client) = pair().await;
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        assert!(activity.peer_closed());
        server.shutdown().await.unwrap();
        assert!(!activity.lingering());

        let (mut server, activity, _client) = pair().await;
        let _req = activity.request(false);
        tokio::time::timeout(Duration::from_secs(5), server.shutdown())
            .await
            .expect("closed at once")
            .unwrap();
        assert!(!activity.lingering());
    }
}
