//! The server: listeners taken from the environment, served until a stop
//! signal, then drained.
//!
//! The drain, on SIGTERM or SIGINT:
//! 1. the accept loops stop and drop their listener (our copy of the fd;
//!    PID 1 keeps its own, so new connections queue in the kernel for the
//!    next process);
//! 2. only then `STOPPING=1` (sd_notify(3));
//! 3. every HTTP/1 response from now on carries `Connection: close`, HTTP/2
//!    connections get GOAWAY, requests in flight are served to the end, and
//!    connections with nothing in flight are closed once quiet for the idle
//!    grace, whatever their protocol (see the `connection` module);
//! 4. everything is bounded by the drain timeout; a second signal also ends
//!    it.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::accept::accept_loop;
use crate::activation::{self, Activation};
use crate::connection::Http;
use crate::drain::Drain;
use crate::error::{DrainCut, Error};
use crate::listener::{Listener, Origin, Socket};
use crate::nofile;
use crate::notify;
use crate::ready_check;
use crate::settings::Settings;
use crate::signals::StopSignals;

/// How often the drain updates the `STATUS=` line.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Listeners taken from systemd (or bound), ready to serve a hyper service.
///
/// Made in two steps because the environment must be read and changed
/// before any thread exists: [`Server::from_env`] is a plain function for
/// `main` before the tokio runtime is built, and [`Server::serve`] runs on
/// that runtime.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener>,
    watchdog: Option<Duration>,
    settings: Settings,
    /// Set by [`Server::with_tls`].
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl Server {
    /// Take the listening sockets systemd passed (sd_listen_fds(3)), or bind
    /// [`Settings::fallback`] when the process is not socket-activated, and
    /// read the watchdog interval (sd_watchdog_enabled(3)). With
    /// [`Settings::raise_nofile_limit`] (the default), first raise the soft
    /// `RLIMIT_NOFILE` to the hard limit and log the limit; failing to
    /// raise it is logged, not an error.
    ///
    /// Socket activation follows sd_listen_fds(3): fds from 3 on,
    /// `LISTEN_FDS` of them, only if `LISTEN_PID` is this process (otherwise
    /// a warning is logged and the fallback is bound), named by
    /// `LISTEN_FDNAMES`. Each fd must be a listening TCP or unix stream
    /// socket; it is made close-on-exec and non-blocking. `LISTEN_*`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID` are then removed from the
    /// environment so that child processes do not inherit them.
    ///
    /// Call this before starting any thread, in particular before building
    /// the tokio runtime: changing the environment while other threads may
    /// read it is undefined behaviour in libc. That is why it is not async.
    ///
    /// # Errors
    /// [`Error::Activation`] when the `LISTEN_*` variables are meant for this
    /// process but wrong; [`Error::Bind`] or [`Error::NoListeners`] when the
    /// fallback addresses cannot be bound; [`Error::Runtime`] when a socket
    /// cannot be set up.
    pub fn from_env(settings: Settings) -> Result<Server, Error> {
        if settings.raise_nofile_limit {
            nofile::raise_to_hard_limit();
        }
        let var = |name| std::env::var(name).ok();
        let activation = activation::parse(
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?;
        let listeners = match activation {
            Activation::Activated { names } => {
                Listener::inherited(activation::take_sockets(&names)?)?
            }
            Activation::NotForUs(why) => {
                warn!("not socket-activated: {why}; binding the fallback addresses");
                Listener::bind(&settings.fallback)?
            }
            Activation::NotActivated => Listener::bind(&settings.fallback)?,
        };
        for name in activation::LISTEN_VARS {
            std::env::remove_var(name);
        }
        let watchdog = notify::watchdog_interval();
        Ok(Server {
            listeners,
            watchdog,
            settings,
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// The listeners, in `LISTEN_FDS` order or in the order of the fallback
    /// addresses.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Whether the listeners came from systemd.
    pub fn socket_activated(&self) -> bool {
        self.listeners
            .iter()
            .any(|l| matches!(l.origin(), Origin::Systemd { .. }))
    }

    /// Build a multi-threaded tokio runtime, [`serve`](Server::serve)
    /// `service` on it, and drop the runtime, which closes any connection a
    /// cut drain left open. For services that need no runtime of their own
    /// before serving.
    ///
    /// # Errors
    /// As [`serve`](Server::serve); also [`Error::Runtime`] when the runtime
    /// cannot be built.
    pub fn run<S, B>(self, service: S) -> Result<(), Error>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::runtime("cannot start the async runtime"))?;
        runtime.block_on(self.serve(service))
    }

    /// Serve `service` over HTTP/1.1 and cleartext HTTP/2 (prior knowledge)
    /// on every listener until SIGTERM or SIGINT, then drain; `Ok` means
    /// every connection finished within the drain.
    ///
    /// First, with [`Settings::ready_check`] (the default), the service
    /// must answer `GET /healthz` (or the path given) without a server
    /// error, before anything is accepted or notified.
    ///
    /// `service` is shared by all connections (hyper calls it through
    /// `&self`). It needs no drain logic: while draining, the server adds
    /// `Connection: close` to HTTP/1 responses (RFC 9112 §9.6) and sends
    /// GOAWAY on HTTP/2 connections (RFC 9113 §6.8). `READY=1` is sent once
    /// every listener is being served, `STOPPING=1` once none is accepting
    /// any more, and `WATCHDOG=1` at half the watchdog interval when systemd
    /// asks for it (sd_notify(3)). Sockets taken from systemd are only
    /// closed, never shut down: PID 1 keeps queueing connections on them for
    /// the next process. Unix socket files bound from the fallback addresses
    /// are removed.
    ///
    /// While serving, a connection is closed when it delivers no complete
    /// request head within [`Settings::header_read_timeout`], or stays idle
    /// for [`Settings::keepalive_timeout`], or its peer takes no byte of a
    /// ready response for [`Settings::send_timeout`]; TCP keep-alive
    /// ([`Settings::tcp_keepalive`]) finds peers whose host has gone, and
    /// HTTP/2 PINGs, when turned on, peers that stop answering
    /// ([`Settings::http2_keepalive_interval`]). When
    /// hyper closes a connection, unread request bytes are read and
    /// discarded for a bounded time first (a lingering close, RFC 9112
    /// §9.6), so a response sent before its request body was read reaches
    /// the client instead of being destroyed by a TCP reset.
    ///
    /// Must run on a tokio runtime with I/O and time enabled, built after
    /// [`Server::from_env`].
    ///
    /// # Errors
    /// [`Error::NotReady`] when the ready check fails; [`Error::DrainCut`]
    /// when [`Settings::drain_timeout`] passed with the service still
    /// working on a request, or a second signal came with connections still
    /// open (they are closed when the runtime is dropped). A deadline that
    /// passes when only peers are left (they stopped reading, or never sent
    /// a whole request: see [`Settings::send_timeout`]) cuts them with one
    /// warning and returns `Ok`; [`Error::Runtime`] when a signal handler
    /// cannot be installed or a socket cannot be registered with tokio.
    pub async fn serve<S, B>(self, service: S) -> Result<(), Error>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Server {
            listeners,
            watchdog,
            settings,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        let _socket_files = SocketFiles(
            listeners
                .iter()
                .filter_map(|l| l.created_file().map(PathBuf::from))
                .collect(),
        );
        let mut signals = StopSignals::install()?;
        let drain = Drain::new();
        #[cfg(feature = "tls")]
        let tls = tls.map(|t| Arc::new(crate::tls::Handshake::new(t, &settings, drain.clone())));
        let http = Arc::new(Http::new(service, &settings, drain.clone()));
        let connections = TaskTracker::new();
        let acceptors = TaskTracker::new();
        // Before the first accept() and before READY=1: a build that cannot
        // answer leaves the socket's queue to the process already serving.
        if let Some(path) = &settings.ready_check {
            let status = ready_check::run(&http, path, settings.ready_check_timeout)
                .await
                .map_err(|cause| Error::NotReady {
                    path: path.to_string(),
                    cause,
                })?;
            info!("ready check: GET {path} answered {status}");
        }

        let status = format!(
            "Serving on {}",
            listeners
                .iter()
                .map(Listener::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        for listener in listeners {
            // Linux copies TCP_NODELAY from a listening socket to the
            // connections it accepts (as systemd.socket's NoDelay= relies
            // on): one setsockopt(2) here instead of one per connection.
            // Responses are written whole; Nagle would only delay them.
            if let Socket::Tcp(l) = listener.socket() {
                if let Err(e) = socket2::SockRef::from(l).set_tcp_nodelay(true) {
                    warn!("cannot set TCP_NODELAY on {listener}: {e}");
                }
            }
            if let (Some(idle), Socket::Tcp(l)) = (settings.tcp_keepalive, listener.socket()) {
                if let Err(e) = set_tcp_keepalive(l, idle) {
                    warn!("cannot set TCP keep-alive on {listener}: {e}");
                }
            }
            let address = listener.address().to_owned();
            let (drain, connections, http) = (drain.clone(), connections.clone(), http.clone());
            let register = Error::runtime("cannot register listener");
            match listener.into_socket() {
                Socket::Tcp(l) => {
                    let l = tokio::net::TcpListener::from_std(l).map_err(register)?;
                    #[cfg(feature = "tls")]
                    if let Some(tls) = tls.clone() {
                        let serve = move |io| tls.clone().serve(http.clone(), io);
                        acceptors.spawn(accept_loop(l, address, drain, connections, serve));
                        continue;
                    }
                    let serve = move |io| http.clone().serve(io);
                    acceptors.spawn(accept_loop(l, address, drain, connections, serve));
                }
                Socket::Unix(l) => {
                    let l = tokio::net::UnixListener::from_std(l).map_err(register)?;
                    #[cfg(feature = "tls")]
                    if let Some(tls) = tls.clone() {
                        let serve = move |io| tls.clone().serve(http.clone(), io);
                        acceptors.spawn(accept_loop(l, address, drain, connections, serve));
                        continue;
                    }
                    let serve = move |io| http.clone().serve(io);
                    acceptors.spawn(accept_loop(l, address, drain, connections, serve));
                }
            }
        }
        acceptors.close();
        if let Some(interval) = watchdog {
            info!("watchdog enabled, pinging every {:?}", interval / 2);
            tokio::spawn(notify::watchdog_loop(interval));
        }
        info!("{status}");
        notify::ready(&status);

        let sig = signals.next().await;
        // Stop accepting first, and wait until every listener is dropped:
        // from STOPPING=1 on, new connections are left in the queue for the
        // next process.
        drain.start();
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
        let cause = loop {
            tokio::select! {
                // A drain that is over wins over a signal or the deadline
                // that came at the same time.
                biased;
                _ = &mut done => {
                    info!("drain complete, exiting");
                    return Ok(());
                }
                _ = &mut deadline => {
                    if connections.is_empty() {
                        info!("drain complete, exiting");
                        return Ok(());
                    }
                    if http.server_busy() == 0 {
                        // Only peers are left: every request the service
                        // was given is answered, and what remains waits
                        // for clients that stopped reading (or never sent
                        // a whole request). Not a failure of this process.
                        warn!(
                            "drain deadline of {:?} passed: cutting {} connection(s) waiting for peers that stopped reading",
                            settings.drain_timeout,
                            connections.len()
                        );
                        return Ok(());
                    }
                    break DrainCut::Deadline(settings.drain_timeout);
                }
                sig = signals.next() => {
                    if connections.is_empty() {
                        info!("drain complete, exiting");
                        return Ok(());
                    }
                    break DrainCut::SignalAgain(sig);
                }
                _ = status_tick.tick() => {
                    notify::status(&format!("Draining {} connection(s)", connections.len()));
                }
            }
        };
        Err(Error::DrainCut {
            cause,
            open: connections.len(),
        })
    }
}

/// Turn on TCP keep-alive on a listening socket, for the connections it
/// accepts (see [`Settings::tcp_keepalive`]).
fn set_tcp_keepalive(listener: &std::net::TcpListener, idle: Duration) -> std::io::Result<()> {
    let interval = (idle / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle.max(Duration::from_secs(1)))
        .with_interval(interval)
        .with_retries(3);
    socket2::SockRef::from(listener).set_tcp_keepalive(&keepalive)
}

/// Unix socket files this process created; removed when serving ends,
/// however it ends.
struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = fs::remove_file(path) {
                warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
}
