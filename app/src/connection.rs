//! Serving one connection, and its part of the drain.
//!
//! When the drain starts, an HTTP/2 connection gets GOAWAY at once (hyper:
//! GOAWAY, PING round trip, final GOAWAY; RFC 9113 §6.8), so its client moves
//! to a new connection. An HTTP/1 connection, or a fresh one whose protocol
//! is not known yet, stays open for the idle grace: a request the client
//! already sent, or sends meanwhile, is served and answered with
//! `Connection: close`. Only then is an idle connection closed. Plain hyper
//! `graceful_shutdown()` would close it at once and reset a request already
//! in the socket buffer; the auto builder would even fail a connection still
//! being sniffed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::service::DrainAware;
use crate::settings::Settings;
use crate::BoxError;

/// Largest HTTP/1 request head accepted (hyper answers 431 above it).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 equivalent: the decoded header list (`SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// What every connection of a server shares.
pub(crate) struct Http<S> {
    service: Arc<S>,
    builder: auto::Builder<TokioExecutor>,
    drain: CancellationToken,
    idle_grace: Duration,
}

impl<S> Http<S> {
    pub(crate) fn new(service: S, settings: &Settings, drain: CancellationToken) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_BYTES);
        Http {
            service: Arc::new(service),
            builder,
            drain,
            idle_grace: settings.idle_grace,
        }
    }
}

impl<S, B> Http<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Serve HTTP/1.1 or h2c on `io` until the client closes it, or until
    /// the drain closes it.
    pub(crate) async fn serve<I>(self: Arc<Self>, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http2 = Arc::new(AtomicBool::new(false));
        let service = DrainAware::new(self.service.clone(), self.drain.clone(), http2.clone());
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);

        tokio::select! {
            result = conn.as_mut() => return log_end(result),
            _ = self.drain.cancelled() => {}
        }
        if !http2.load(Ordering::Relaxed) {
            if let Ok(result) = tokio::time::timeout(self.idle_grace, conn.as_mut()).await {
                return log_end(result);
            }
        }
        conn.as_mut().graceful_shutdown();
        log_end(conn.await);
    }
}

fn log_end(result: Result<(), BoxError>) {
    if let Err(e) = result {
        // Clients going away mid-request are routine; not worth a warning.
        debug!("connection ended with error: {e}");
    }
}
