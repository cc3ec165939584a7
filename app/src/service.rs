//! The wrapper around the user's service that lets the drain speak HTTP.
//!
//! It does two things, so that the service itself needs no drain logic:
//! - while draining, every HTTP/1 response carries `Connection: close`
//!   (RFC 9112 §9.6): hyper closes the connection after that response, and
//!   the client learns it must reconnect (to the next process) instead of
//!   sending its next request into a closing socket. HTTP/2 has no such
//!   header; GOAWAY does that job (RFC 9113 §6.8);
//! - it records that a connection speaks HTTP/2 (on its first request), so
//!   the drain can send GOAWAY at once instead of waiting out the idle grace.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::Service;
use hyper::{Request, Response, Version};
use tokio_util::sync::CancellationToken;

/// The user's service as one connection sees it.
pub(crate) struct DrainAware<S> {
    inner: Arc<S>,
    /// Cancelled when the drain starts.
    drain: CancellationToken,
    /// Set on the connection's first HTTP/2 request.
    http2: Arc<AtomicBool>,
}

impl<S> DrainAware<S> {
    pub(crate) fn new(inner: Arc<S>, drain: CancellationToken, http2: Arc<AtomicBool>) -> Self {
        DrainAware {
            inner,
            drain,
            http2,
        }
    }
}

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let http1 = req.version() < Version::HTTP_2;
        if !http1 {
            self.http2.store(true, Ordering::Relaxed);
        }
        let response = self.inner.call(req);
        let drain = self.drain.clone();
        Box::pin(async move {
            let mut resp = response.await?;
            // Checked when the response is ready, not when the request came:
            // a request in flight at the signal is answered, then closes.
            if http1 && drain.is_cancelled() {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp)
        })
    }
}
