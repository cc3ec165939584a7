//! Serving one connection: its protocol, its timeouts, and its part of the
//! drain.
//!
//! The connection's first bytes tell its protocol (the HTTP/2 connection
//! preface, RFC 9113 §3.4, or anything else for HTTP/1.x); they are handed
//! to hyper's HTTP/1 or HTTP/2 connection, which serves the rest.
//!
//! hyper's own HTTP/1 header-read timeout also limits how long an idle
//! keep-alive connection is kept, and HTTP/2 connections have no such limit
//! at all. So the timers live here, above hyper:
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
//! One timer per connection, armed only when a state needs a deadline and
//! never pushed back by traffic: when it fires, the connection's
//! [`Activity`] counters tell whether anything happened since it was armed,
//! and it is armed again from there. Requests therefore pay for counters,
//! not for timer updates; the price is that a deadline that depends on
//! "since the last activity" is met late by up to [`PRECISION`] of its
//! length (the keep-alive timeout) or by up to one idle grace, never early.
//!
//! An HTTP/1 connection found quiet by its timer is parked: hyper's
//! connection is ended without closing the socket (freeing its read and
//! write buffers, 16 KiB), and the socket's next bytes are replayed into a
//! new one. HTTP/2 connections keep their state (and the h2 crate's
//! buffers).
//!
//! A response the service has produced is in flight until the socket took
//! it; a connection whose peer takes no byte of it for the send timeout is
//! closed, during the drain and outside it.
//!
//! When the drain starts, an HTTP/2 connection gets GOAWAY at once (hyper:
//! GOAWAY, PING round trip, final GOAWAY), so its client moves to a new
//! connection. A connection with a request in flight (HTTP/2: a stream
//! open) is served to the end; HTTP/1 answers say `Connection: close`. A
//! connection with nothing in flight is closed once it has been quiet for
//! the idle grace (between one and two graces after its last read or
//! write), whatever its protocol: a request the client already sent, or
//! sends meanwhile, is still served, and an HTTP/2 peer that never answers
//! the PING does not hold the drain. Plain hyper `graceful_shutdown()`
//! would close an idle HTTP/1 connection at once and reset a request
//! already in the socket buffer, and HTTP/2 would wait for the PING until
//! the drain deadline.

use std::fmt;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::BytesMut;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::activity::{Activity, Marks};
use crate::drain::{Drain, DrainWatch};
use crate::service::{keep_alive_header, DrainAware, Shared};
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

/// A deadline measured from the last activity is met within this part of
/// its length after it passed: the timer looks again every
/// `timeout / PRECISION` while the connection is busy.
const PRECISION: u32 = 8;

/// The HTTP/2 client connection preface (RFC 9113 §3.4). A connection that
/// starts with it speaks HTTP/2 (prior knowledge); anything else is HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most bytes the first read of a connection, or of a parked
/// connection's next request, takes before hyper does: nginx's
/// `client_header_buffer_size` default. One read then carries a typical
/// request head (or the HTTP/2 preface and the frames after it) to hyper,
/// which reads any rest itself. Read onto the stack: a connection that
/// sends nothing holds no buffer.
const FIRST_READ: usize = 1024;

/// Read what the peer sent, at most [`FIRST_READ`] bytes, and append it to
/// `got`; `Ready(Ok(0))` at end of file.
fn poll_first_read<I: AsyncRead + Unpin>(
    io: &mut WatchedIo<I>,
    cx: &mut Context<'_>,
    got: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut scratch = [MaybeUninit::<u8>::uninit(); FIRST_READ];
    let mut buf = ReadBuf::uninit(&mut scratch);
    ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    got.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}

/// The timeouts a connection's next step depends on.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    keepalive: Duration,
    idle_grace: Duration,
    send: Duration,
}

impl Timeouts {
    /// How often the timer looks at a busy connection.
    fn busy_look(&self) -> Duration {
        self.keepalive.min(self.send) / PRECISION
    }
}

/// Why a connection is closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    HeaderRead,
    KeepAlive,
    IdleGrace,
    Send,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::HeaderRead => "no complete request head within the header-read timeout",
            Why::KeepAlive => "idle for the keep-alive timeout",
            Why::IdleGrace => "draining, nothing in flight",
            Why::Send => "the peer took no byte of a ready response within the send timeout",
        })
    }
}

/// What the timer found when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Look again at this time.
    Wait(Instant),
    /// Close the connection now.
    Cut(Why),
    /// HTTP/2, idle for the keep-alive timeout: GOAWAY, then close it as
    /// the drain does.
    GoAway,
    /// HTTP/1, quiet since the timer last looked: release hyper's buffers
    /// (park the connection), then look again at this time.
    Park(Instant),
}

/// What serves the connection now, as the timer needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Still telling its protocol, or HTTP/1 parked: nothing to release.
    Bare,
    Http1,
    Http2,
}

/// The timer's view of a connection: what it saw when it last looked.
#[derive(Debug, Clone)]
struct Watch {
    accepted: Instant,
    /// The counters when the timer last looked.
    seen: Marks,
    /// When the timer last saw something happen (or the connection began,
    /// or the drain).
    active_at: Instant,
    /// HTTP/1: when the head being received began (as first seen), and the
    /// request count then.
    head: Option<(Instant, u64)>,
    /// When the drain (or an HTTP/2 idle GOAWAY) began.
    closing: Option<Instant>,
    /// Writes when the timer last looked.
    written: u64,
    /// Since when (as first seen) a response the service has produced
    /// waits for the peer without a byte taken.
    stalled: Option<Instant>,
    /// The last look found the connection idle and armed the timer for
    /// its keep-alive timeout: a request that comes before has the timer
    /// brought forward, so that its response is watched (send timeout).
    idle: bool,
}

impl Watch {
    fn new(now: Instant, seen: Marks) -> Watch {
        Watch {
            accepted: now,
            seen,
            active_at: now,
            head: None,
            closing: None,
            written: 0,
            stalled: None,
            idle: false,
        }
    }

    /// Note a request head that began (HTTP/1), first seen `now`.
    fn head_started(&mut self, now: Instant, requests: u64) -> bool {
        match self.head {
            Some((_, n)) if n == requests => false,
            _ => {
                self.head = Some((now, requests));
                true
            }
        }
    }

    /// When the head being received must be complete, if one is.
    fn head_deadline(&self, a: &Activity, t: &Timeouts) -> Option<Instant> {
        let requests = a.requests();
        if requests == 0 {
            return Some(self.accepted + t.header_read);
        }
        match self.head {
            Some((since, n)) if n == requests && a.head_started() => Some(since + t.header_read),
            _ => None,
        }
    }

    /// The timer fired at `now`: what to do.
    fn step(&mut self, a: &Activity, kind: Kind, now: Instant, t: &Timeouts) -> Step {
        self.idle = false;
        let marks = a.marks();
        let moved = marks != self.seen;
        self.seen = marks;
        // A response on its way: in flight, or written by hyper into a
        // full socket and not flushed yet.
        let sending = marks.in_flight > 0 || a.write_blocked();
        if moved || sending {
            self.active_at = now;
        }
        // Waiting for the peer alone: the service has produced everything
        // asked of it so far, and the peer took no byte since the last look.
        let writes = a.writes();
        if sending && a.server_waits() == 0 && writes == self.written {
            self.stalled.get_or_insert(now);
        } else {
            self.stalled = None;
        }
        self.written = writes;
        if self.stalled.is_some_and(|since| since + t.send <= now) {
            return Step::Cut(Why::Send);
        }
        if a.head_started() {
            // Begun since the timer last looked, if the connection did not
            // see it at once: counted from now, late rather than early.
            self.head_started(now, marks.requests);
        }
        // A lingering close has bounds of its own.
        let head = if a.lingering() {
            None
        } else {
            self.head_deadline(a, t)
        };
        if let Some(since) = self.closing {
            // Closing: nothing in flight, so the connection goes once it
            // has been quiet for the idle grace. A request (or the rest of
            // a body, in the lingering close) still arriving keeps it, an
            // HTTP/1 head no longer than its header-read timeout.
            if head.is_some_and(|at| at <= now) {
                return Step::Cut(Why::HeaderRead);
            }
            if sending {
                return Step::Wait(now + t.idle_grace);
            }
            let quiet = since.max(self.active_at);
            let at = quiet + t.idle_grace;
            return if at <= now {
                Step::Cut(Why::IdleGrace)
            } else {
                Step::Wait(head.map_or(at, |h| h.min(at)))
            };
        }
        if a.lingering() {
            // Ends by itself, within the lingering bounds.
            return Step::Wait(now + t.keepalive);
        }
        if let Some(at) = head {
            return if at <= now {
                Step::Cut(Why::HeaderRead)
            } else {
                Step::Wait(at)
            };
        }
        let check = now + t.busy_look();
        if sending || moved {
            return Step::Wait(check);
        }
        let at = self.active_at + t.keepalive;
        if at <= now {
            return if kind == Kind::Http2 {
                Step::GoAway
            } else {
                Step::Cut(Why::KeepAlive)
            };
        }
        self.idle = true;
        if kind == Kind::Http1 && marks.requests > 0 {
            // Quiet for a whole look: its buffers can go until the next
            // request.
            return Step::Park(at);
        }
        Step::Wait(at)
    }
}

/// What every connection of a server shares.
pub(crate) struct Http<S> {
    service: Arc<S>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    drain: Drain,
    timeouts: Timeouts,
    shared: Arc<Shared>,
}

impl<S> Http<S> {
    /// Requests the service is still working on, on every connection.
    pub(crate) fn server_busy(&self) -> usize {
        self.shared
            .server_busy
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn new(service: S, settings: &Settings, drain: Drain) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Ours, above hyper (see the module docs).
            .header_read_timeout(None)
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES)
            // A client may shut down its sending side once its request is
            // out (a TCP half-close, as `nc -N` does): answer it, then
            // close. hyper's default drops the request at that EOF and the
            // client gets nothing.
            .half_close(true)
            // Copy each response into one buffer and write it with one
            // write(2), instead of a writev(2) of the head and the body's
            // chunks: for the small responses most services send, about
            // 450 instructions a response fewer (bench/instructions); a large
            // body costs a copy at memory speed, 64 KiB at a time. What
            // hyper picks anyway for transports without vectored writes
            // (TLS).
            .writev(false);
        let ping_interval =
            Some(settings.http2_keepalive_interval.min(LONGEST_TIMEOUT)).filter(|d| !d.is_zero());
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .keep_alive_interval(ping_interval)
            .keep_alive_timeout(settings.http2_keepalive_timeout.min(LONGEST_TIMEOUT));
        let timeouts = Timeouts {
            header_read: settings.header_read_timeout.min(LONGEST_TIMEOUT),
            keepalive: settings.keepalive_timeout.min(LONGEST_TIMEOUT),
            idle_grace: settings.idle_grace.min(LONGEST_TIMEOUT),
            send: settings.send_timeout.min(LONGEST_TIMEOUT),
        };
        Http {
            service: Arc::new(service),
            http1,
            http2,
            shared: Arc::new(Shared {
                drain: drain.clone(),
                keep_alive: keep_alive_header(timeouts.keepalive),
                server_busy: Arc::default(),
            }),
            drain,
            timeouts,
        }
    }
}

type Io<I> = TokioIo<WatchedIo<I>>;

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
    pub(crate) fn serve<I>(self: Arc<Self>, io: I) -> Served<I, S>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_accepted(io, Instant::now())
    }

    /// [`serve`](Http::serve) a connection accepted at `accepted` (before a
    /// TLS handshake, which the first request's header-read timeout then
    /// covers).
    pub(crate) fn serve_accepted<I>(self: Arc<Self>, io: I, accepted: Instant) -> Served<I, S>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::with_server_busy(self.shared.server_busy.clone()));
        let now = accepted;
        Connection {
            watch: Watch::new(now, activity.marks()),
            drain: self.drain.watch(),
            timer: tokio::time::sleep_until(now + self.timeouts.header_read),
            armed: false,
            goaway_sent: false,
            proto: Proto::Sniffing {
                io: Some(WatchedIo::new(io, activity.clone())),
                got: BytesMut::new(),
            },
            activity,
            http: self,
        }
    }
}

/// hyper's connection for each protocol.
type Http1Conn<I, S> = http1::Connection<Io<I>, DrainAware<S>>;
type Http2Conn<I, S> = http2::Connection<Io<I>, DrainAware<S>, TokioExecutor>;

/// One connection being served (see [`Connection`]).
pub(crate) type Served<I, S> = Connection<I, S, Http1Conn<I, S>, Http2Conn<I, S>>;

pin_project! {
    /// One connection being served: a future that ends when it closes.
    /// `H1` and `H2` are hyper's connections ([`Served`]).
    pub(crate) struct Connection<I, S, H1, H2> {
        #[pin]
        proto: Proto<I, DrainAware<S>, H1, H2>,
        #[pin]
        timer: Sleep,
        #[pin]
        drain: DrainWatch,
        // The timer is registered (at `timer.deadline()`).
        armed: bool,
        goaway_sent: bool,
        watch: Watch,
        activity: Arc<Activity>,
        http: Arc<Http<S>>,
    }
}

pin_project! {
    #[project = ProtoProj]
    enum Proto<I, S, H1, H2> {
        // Reading the first bytes, to tell the protocol.
        Sniffing {
            io: Option<WatchedIo<I>>,
            got: BytesMut,
        },
        // `None` only while being parked.
        Http1 { conn: Option<H1> },
        Http2 { #[pin] conn: H2 },
        // HTTP/1 between requests, with hyper's connection (and its
        // buffers) released; waiting for the next request's first bytes.
        Parked {
            io: Option<WatchedIo<I>>,
            service: Option<S>,
            got: BytesMut,
        },
    }
}

/// What the protocol's part of a poll came to.
enum Progress {
    Pending,
    Done(Result<(), BoxError>),
}

impl<I, S, B> Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Poll the protocol: sniff, then hand the connection to hyper.
    fn poll_proto(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Progress {
        loop {
            let this = self.as_mut().project();
            match this.proto.project() {
                ProtoProj::Http1 { conn } => {
                    let Some(live) = conn.as_mut() else {
                        return Progress::Done(Ok(()));
                    };
                    let done = match Pin::new(live).poll(cx) {
                        Poll::Pending => return Progress::Pending,
                        Poll::Ready(r) => r,
                    };
                    if !this.activity.parking() {
                        return Progress::Done(done.map_err(Into::into));
                    }
                    // hyper's connection ended without closing the socket.
                    this.activity.set_parking(false);
                    let Some(ended) = conn.take() else {
                        return Progress::Done(Ok(()));
                    };
                    if let Err(e) = done {
                        return Progress::Done(Err(e.into()));
                    }
                    let parts = ended.into_parts();
                    debug!("idle: hyper's connection released until the next request");
                    let mut io = parts.io.into_inner();
                    let next = if parts.read_buf.is_empty() {
                        Proto::Parked {
                            io: Some(io),
                            service: Some(parts.service),
                            got: BytesMut::new(),
                        }
                    } else {
                        io.replay(parts.read_buf, true);
                        Proto::Http1 {
                            conn: Some(
                                this.http
                                    .http1
                                    .serve_connection(TokioIo::new(io), parts.service),
                            ),
                        }
                    };
                    self.as_mut().project().proto.set(next);
                }
                ProtoProj::Parked { io, service, got } => {
                    let Some(watched) = io.as_mut() else {
                        return Progress::Done(Ok(()));
                    };
                    let n = match poll_first_read(watched, cx, got) {
                        Poll::Pending => return Progress::Pending,
                        Poll::Ready(Err(e)) => return Progress::Done(Err(e.into())),
                        Poll::Ready(Ok(n)) => n,
                    };
                    let (Some(mut watched), Some(service), true) =
                        (io.take(), service.take(), n > 0)
                    else {
                        // The client closed the idle connection.
                        return Progress::Done(Ok(()));
                    };
                    watched.replay(got.split().freeze(), true);
                    let conn = this
                        .http
                        .http1
                        .serve_connection(TokioIo::new(watched), service);
                    self.as_mut()
                        .project()
                        .proto
                        .set(Proto::Http1 { conn: Some(conn) });
                }
                ProtoProj::Http2 { conn } => {
                    return match conn.poll(cx) {
                        Poll::Ready(r) => Progress::Done(r.map_err(Into::into)),
                        Poll::Pending => Progress::Pending,
                    };
                }
                ProtoProj::Sniffing { io, got } => {
                    let Some(watched) = io.as_mut() else {
                        return Progress::Done(Ok(()));
                    };
                    match poll_first_read(watched, cx, got) {
                        Poll::Pending => return Progress::Pending,
                        Poll::Ready(Err(e)) => return Progress::Done(Err(e.into())),
                        // Closed before saying anything.
                        Poll::Ready(Ok(0)) => return Progress::Done(Ok(())),
                        Poll::Ready(Ok(_)) => {}
                    }
                    let http2 = got.starts_with(H2_PREFACE);
                    if !http2 && got.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(got) {
                        // Maybe the preface, not all of it yet.
                        continue;
                    }
                    let Some(mut watched) = io.take() else {
                        return Progress::Done(Ok(()));
                    };
                    watched.replay(got.split().freeze(), !http2);
                    let http = &**this.http;
                    let service = DrainAware::new(
                        http.service.clone(),
                        http.shared.clone(),
                        this.activity.clone(),
                    );
                    let io = TokioIo::new(watched);
                    let next = if http2 {
                        Proto::Http2 {
                            conn: http.http2.serve_connection(io, service),
                        }
                    } else {
                        Proto::Http1 {
                            conn: Some(http.http1.serve_connection(io, service)),
                        }
                    };
                    self.as_mut().project().proto.set(next);
                }
            }
        }
    }

    /// Arm the timer for `at` and register it.
    fn arm(self: Pin<&mut Self>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let mut timer = this.timer;
        if !*this.armed || timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        *this.armed = true;
        timer.poll(cx)
    }

    /// Begin closing: GOAWAY for HTTP/2 (once the protocol is known), and
    /// the idle grace from now.
    fn start_closing(mut self: Pin<&mut Self>, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.as_mut().project();
        this.watch.closing = Some(now);
        let at = now + this.http.timeouts.idle_grace;
        self.as_mut().send_goaway();
        self.arm(at, cx)
    }

    fn send_goaway(self: Pin<&mut Self>) {
        let this = self.project();
        if *this.goaway_sent {
            return;
        }
        if let ProtoProj::Http2 { conn } = this.proto.project() {
            conn.graceful_shutdown();
            *this.goaway_sent = true;
        }
    }
}

impl<I, S, B> Future for Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.watch.closing.is_none() && self.as_mut().project().drain.poll_started(cx) {
            // The drain started: the grace from now, GOAWAY for HTTP/2.
            // Polled below, so a grace already over is seen at once.
            let _ = self.as_mut().start_closing(Instant::now(), cx);
        }
        loop {
            if let Progress::Done(result) = self.as_mut().poll_proto(cx) {
                if let Err(e) = result {
                    // Clients going away mid-request are routine; not
                    // worth a warning.
                    debug!("connection ended with error: {e}");
                }
                return Poll::Ready(());
            }
            let this = self.as_mut().project();
            if this.watch.closing.is_some() {
                // The protocol may have become known since the drain began.
                self.as_mut().send_goaway();
            } else if this.watch.idle && this.activity.requests() != this.watch.seen.requests {
                // A request after an idle look: watch it from now.
                this.watch.idle = false;
                let at = Instant::now() + this.http.timeouts.busy_look();
                if self.as_mut().arm(at, cx).is_ready() {
                    continue;
                }
            } else if matches!(*this.proto, Proto::Http1 { .. } | Proto::Parked { .. })
                && this.activity.head_started()
                && this
                    .watch
                    .head_started(Instant::now(), this.activity.requests())
            {
                // The next head began and is not complete: its header-read
                // timeout, from now.
                let at = this
                    .watch
                    .head
                    .map(|(since, _)| since)
                    .unwrap_or_else(Instant::now)
                    + this.http.timeouts.header_read;
                let earlier = !*this.armed || this.timer.deadline() > at;
                if earlier && self.as_mut().arm(at, cx).is_ready() {
                    continue;
                }
            }
            let this = self.as_mut().project();
            if !*this.armed {
                // The first time the connection waits: the header-read
                // timeout from accept().
                let t = &this.http.timeouts;
                let at = this.watch.accepted + t.header_read.min(t.busy_look());
                if self.as_mut().arm(at, cx).is_pending() {
                    return Poll::Pending;
                }
            } else if !this.timer.is_elapsed() {
                // Registered with this task's waker when it was armed.
                return Poll::Pending;
            }
            // The timer fired: look at the connection.
            let this = self.as_mut().project();
            let now = Instant::now();
            let kind = match *this.proto {
                Proto::Http1 { .. } => Kind::Http1,
                Proto::Http2 { .. } => Kind::Http2,
                _ => Kind::Bare,
            };
            let step = this
                .watch
                .step(this.activity, kind, now, &this.http.timeouts);
            match step {
                Step::Cut(why) => {
                    debug!("closing connection: {why}");
                    return Poll::Ready(());
                }
                Step::GoAway => {
                    let _ = self.as_mut().start_closing(now, cx);
                }
                Step::Wait(at) => {
                    let _ = self.as_mut().arm(at, cx);
                }
                Step::Park(at) => {
                    let _ = self.as_mut().arm(at, cx);
                    let this = self.as_mut().project();
                    if let ProtoProj::Http1 { conn: Some(live) } = this.proto.project() {
                        // Ends hyper's idle connection at once; the next
                        // poll takes the socket back (see poll_proto).
                        this.activity.set_parking(true);
                        Pin::new(live).graceful_shutdown();
                    }
                }
            }
            // Polled again: the protocol may have work after a GOAWAY, and
            // a timer already due is seen on the next round.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keepalive: Duration::from_secs(80),
        idle_grace: Duration::from_millis(100),
        send: Duration::from_secs(80),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn kind(http2: bool) -> Kind {
        if http2 {
            Kind::Http2
        } else {
            Kind::Http1
        }
    }

    fn fresh() -> (Arc<Activity>, Watch, Instant) {
        let a = Arc::new(Activity::new());
        let t0 = Instant::now();
        let w = Watch::new(t0, a.marks());
        (a, w, t0)
    }

    #[test]
    fn a_new_connection_has_the_header_read_timeout_whatever_it_sent() {
        for (n, http2) in [(0, false), (16, false), (24, true)] {
            let (a, mut w, t0) = fresh();
            a.on_read(n, !http2);
            assert_eq!(
                w.step(&a, kind(http2), t0 + secs(3), &T),
                Step::Wait(t0 + secs(10))
            );
            assert_eq!(
                w.step(&a, kind(http2), t0 + secs(10), &T),
                Step::Cut(Why::HeaderRead)
            );
        }
    }

    #[test]
    fn http1_idle_then_a_new_head() {
        let (a, mut w, t0) = fresh();
        let req = a.request(false);
        // The service works on it: never cut.
        let work = req.server_work();
        // In flight: only looked at again now and then, never cut.
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(1), &T),
            Step::Wait(t0 + secs(11))
        );
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(500), &T),
            Step::Wait(t0 + secs(510))
        );
        drop(work);
        drop(req);
        // It ended since the last look: busy until then.
        let t1 = t0 + secs(510);
        assert_eq!(w.step(&a, Kind::Http1, t1, &T), Step::Wait(t1 + secs(10)));
        // Quiet: parked, and the keep-alive timeout from the last time it
        // was busy; parked, it is only looked at then.
        assert_eq!(
            w.step(&a, Kind::Http1, t1 + secs(10), &T),
            Step::Park(t1 + secs(80))
        );
        assert_eq!(
            w.step(&a, Kind::Bare, t1 + secs(75), &T),
            Step::Wait(t1 + secs(80))
        );
        // A head begins, first seen at t2: the header-read timeout from t2.
        let t2 = t1 + secs(76);
        a.on_read(1, true);
        assert_eq!(w.step(&a, Kind::Bare, t2, &T), Step::Wait(t2 + secs(10)));
        assert_eq!(
            w.step(&a, Kind::Http1, t2 + secs(10), &T),
            Step::Cut(Why::HeaderRead)
        );
    }

    #[test]
    fn http1_idle_for_the_keep_alive_timeout() {
        let (a, mut w, t0) = fresh();
        drop(a.request(false));
        let t1 = t0 + secs(1);
        assert_eq!(w.step(&a, Kind::Http1, t1, &T), Step::Wait(t1 + secs(10)));
        assert_eq!(
            w.step(&a, Kind::Http1, t1 + secs(80), &T),
            Step::Cut(Why::KeepAlive)
        );
        // HTTP/2: GOAWAY instead.
        let (a, mut w, t0) = fresh();
        drop(a.request(false));
        let t1 = t0 + secs(1);
        assert_eq!(w.step(&a, Kind::Http2, t1, &T), Step::Wait(t1 + secs(10)));
        assert_eq!(w.step(&a, Kind::Http2, t1 + secs(80), &T), Step::GoAway);
    }

    #[test]
    fn draining_waits_for_requests_and_quiet() {
        let (a, mut w, t0) = fresh();
        let req = a.request(false);
        w.closing = Some(t0);
        let grace = T.idle_grace;
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + grace, &T),
            Step::Wait(t0 + 2 * grace)
        );
        drop(req);
        // Ended since: busy until this look.
        let t1 = t0 + 2 * grace;
        assert_eq!(w.step(&a, Kind::Http1, t1, &T), Step::Wait(t1 + grace));
        a.on_io();
        assert_eq!(
            w.step(&a, Kind::Http1, t1 + grace, &T),
            Step::Wait(t1 + 2 * grace)
        );
        assert_eq!(
            w.step(&a, Kind::Http1, t1 + 2 * grace, &T),
            Step::Cut(Why::IdleGrace)
        );
    }

    #[test]
    fn draining_a_connection_that_sent_no_request() {
        for http2 in [false, true] {
            let (a, mut w, t0) = fresh();
            w.closing = Some(t0);
            assert_eq!(
                w.step(&a, kind(http2), t0 + T.idle_grace, &T),
                Step::Cut(Why::IdleGrace)
            );
        }
    }

    #[test]
    fn a_slow_head_while_draining_is_bounded_by_its_header_read_timeout() {
        let (a, mut w, t0) = fresh();
        drop(a.request(false));
        a.on_read(1, true);
        assert!(w.head_started(t0, a.requests()));
        w.closing = Some(t0);
        let mut now = t0;
        loop {
            now += T.idle_grace;
            a.on_io();
            match w.step(&a, Kind::Http1, now, &T) {
                Step::Wait(_) => assert!(now < t0 + secs(10)),
                step => {
                    assert_eq!(step, Step::Cut(Why::HeaderRead));
                    assert!(now >= t0 + secs(10));
                    break;
                }
            }
        }
    }

    #[test]
    fn a_response_the_peer_does_not_take_is_cut_after_the_send_timeout() {
        let (a, mut w, t0) = fresh();
        let _req = a.request(false);
        a.on_write();
        // Busy, writing: looked at every eighth of the send timeout (80 s
        // here).
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(1), &T),
            Step::Wait(t0 + secs(11))
        );
        // No byte taken since: stalled from this look on.
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(11), &T),
            Step::Wait(t0 + secs(21))
        );
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(91), &T),
            Step::Cut(Why::Send)
        );
        // The service still working on it is not the peer's fault.
        let (a, mut w, t0) = fresh();
        let req = a.request(false);
        let _work = req.server_work();
        for n in 1..20 {
            assert!(matches!(
                w.step(&a, Kind::Http1, t0 + secs(10 * n), &T),
                Step::Wait(_)
            ));
        }
    }

    #[test]
    fn lingering_has_its_own_bounds_but_not_in_a_drain() {
        let (a, mut w, t0) = fresh();
        drop(a.request(false));
        a.set_lingering(true);
        assert_eq!(
            w.step(&a, Kind::Http1, t0 + secs(100), &T),
            Step::Wait(t0 + secs(180))
        );
        let t1 = t0 + secs(180);
        w.closing = Some(t1);
        a.on_io();
        assert_eq!(
            w.step(&a, Kind::Http1, t1, &T),
            Step::Wait(t1 + T.idle_grace)
        );
        assert_eq!(
            w.step(&a, Kind::Http1, t1 + T.idle_grace, &T),
            Step::Cut(Why::IdleGrace)
        );
    }
}
