//! Serving connections, and the drain that makes a restart lose nothing.
//!
//! On SIGTERM (or SIGINT):
//! 1. the accept loops stop and drop their listener (our copy of the fd;
//!    PID 1 keeps its own, so new connections queue in the kernel for the
//!    next process);
//! 2. every HTTP/1 response from now on carries `Connection: close`;
//! 3. HTTP/2 connections get GOAWAY at once (hyper: GOAWAY, PING round trip,
//!    final GOAWAY), so clients move to a new connection;
//! 4. HTTP/1 connections (and fresh ones whose protocol is not known yet)
//!    stay open for `--idle-grace`: a request the client already sent, or
//!    sends meanwhile, is served and closes the connection. Only then is an
//!    idle connection closed. Plain hyper `graceful_shutdown()` would close
//!    it at once and reset a request that is already in the socket buffer;
//!    the auto builder would even fail a connection still being sniffed;
//! 5. everything is bounded by `--drain-timeout`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::Fatal;
use crate::listeners::{Listener, TokioSocket};
use crate::notify;
use crate::routes::{self, App, ConnFacts};

/// Largest request head we accept (hyper answers 431 above it).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 equivalent: the decoded header list.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Back-off after accept() fails for a reason other than the peer (EMFILE…).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the drain updates the `STATUS=` line.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub struct Settings {
    pub drain_timeout: Duration,
    pub idle_grace: Duration,
    pub header_read_timeout: Duration,
}

struct Shared {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    drain: CancellationToken,
    idle_grace: Duration,
}

fn builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    builder
}

/// Signals that start the drain. Installed before `READY=1`, so a stop that
/// comes right after start-up is a drain and not the default-action kill.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, Fatal> {
        let err = Fatal::runtime("cannot install signal handler");
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(term), Ok(int)) => Ok(StopSignals { term, int }),
            (Err(e), _) | (_, Err(e)) => Err(err(e)),
        }
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Serve until a stop signal, then drain. `Ok` means a clean drain.
pub async fn run(
    listeners: Vec<Listener>,
    app: Arc<App>,
    settings: Settings,
    watchdog: Option<Duration>,
) -> Result<(), Fatal> {
    let mut signals = StopSignals::install()?;
    let shared = Arc::new(Shared {
        app: app.clone(),
        builder: builder(settings.header_read_timeout),
        drain: CancellationToken::new(),
        idle_grace: settings.idle_grace,
    });
    let connections = TaskTracker::new();

    let described: Vec<String> = listeners
        .iter()
        .map(|l| format!("{} {} ({})", l.info.kind, l.info.address, l.info.name))
        .collect();
    let acceptors = TaskTracker::new();
    for listener in listeners {
        acceptors.spawn(accept_loop(listener, shared.clone(), connections.clone()));
    }
    acceptors.close();
    if let Some(interval) = watchdog {
        info!("watchdog enabled, pinging every {:?}", interval / 2);
        tokio::spawn(notify::watchdog_loop(interval));
    }
    let status = format!("Serving on {}", described.join(", "));
    info!("{status}");
    notify::ready(&status);

    let sig = signals.next().await;
    // Stop accepting first, and wait until every listener is dropped: from
    // STOPPING=1 on, new connections are left in the queue for the next
    // process.
    app.start_draining();
    shared.drain.cancel();
    acceptors.wait().await;
    connections.close();
    let open = connections.len();
    info!("{sig} received: no longer accepting, draining {open} connection(s)");
    notify::stopping(&format!("Draining {open} connection(s)"));

    let deadline = tokio::time::sleep(settings.drain_timeout);
    tokio::pin!(deadline);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.tick().await;
    let done = connections.wait();
    tokio::pin!(done);
    let why = loop {
        tokio::select! {
            _ = &mut done => {
                info!("drain complete, exiting");
                return Ok(());
            }
            _ = &mut deadline => {
                break format!("deadline of {:?} passed", settings.drain_timeout);
            }
            sig = signals.next() => break format!("{sig} received again"),
            _ = status_tick.tick() => {
                notify::status(&format!("Draining {} connection(s)", connections.len()));
            }
        }
    };
    Err(Fatal::DrainCut {
        why,
        open: connections.len(),
    })
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, connections: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.drain.cancelled() => break,
            accepted = accept(&listener.socket, &shared, &connections) => accepted,
        };
        if let Err(e) = accepted {
            if is_peer_error(&e) {
                debug!("accept on {}: {e}", listener.info.address);
            } else {
                warn!("accept on {} failed: {e}; retrying", listener.info.address);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // Dropping closes our copy of the fd. Never shutdown(): the socket is
    // shared with PID 1, which keeps queueing connections for the next
    // process.
    debug!("stopped accepting on {}", listener.info.address);
}

/// Accept one connection and spawn its task.
async fn accept(
    socket: &TokioSocket,
    shared: &Arc<Shared>,
    connections: &TaskTracker,
) -> io::Result<()> {
    match socket {
        TokioSocket::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            if let Err(e) = stream.set_nodelay(true) {
                debug!("TCP_NODELAY: {e}");
            }
            connections.spawn(serve_connection(stream, shared.clone()));
        }
        TokioSocket::Unix(l) => {
            let (stream, _) = l.accept().await?;
            connections.spawn(serve_connection(stream, shared.clone()));
        }
    }
    Ok(())
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

async fn serve_connection<I>(io: I, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let facts = Arc::new(ConnFacts::default());
    let service = {
        let app = shared.app.clone();
        let facts = facts.clone();
        service_fn(move |req| routes::handle(req, app.clone(), facts.clone()))
    };
    let conn = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);

    if let Some(result) = until_cancelled(conn.as_mut(), &shared.drain).await {
        return log_end(result);
    }
    // Draining. HTTP/2 connections can be told at once (GOAWAY); HTTP/1 ones
    // get the grace described at the top of this file.
    if !facts.http2.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(result) = tokio::time::timeout(shared.idle_grace, conn.as_mut()).await {
            return log_end(result);
        }
    }
    conn.as_mut().graceful_shutdown();
    log_end(conn.await);
}

/// Run `fut` until it finishes (`Some`) or `token` is cancelled (`None`).
async fn until_cancelled<F: Future + Unpin>(
    fut: F,
    token: &CancellationToken,
) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = token.cancelled() => None,
    }
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        // Clients going away mid-request are routine; not worth a warning.
        debug!("connection ended with error: {e}");
    }
}
