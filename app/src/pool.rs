//! Health answers for a load balancer: whether this host is in the pool.
//!
//! A balancer's active health check (HAProxy `option httpchk` with
//! `http-check disable-on-404`, nginx's and Envoy's active checks) asks one
//! path. [`PoolHealth::wrap`] answers that path ahead of the wrapped service
//! while the host is being taken out of the pool, and leaves every other
//! request, and that path at any other time, to the service:
//!
//! | state | answer |
//! |---|---|
//! | the deregistration flag file exists | `404 Not Found` (HAProxy: soft stop, "NOLB": no new requests, persistent ones stay) |
//! | [`PoolHealth::set_ready`]`(false)` was called | `503 Service Unavailable` (the check fails: down after its fall count) |
//! | otherwise | the wrapped service's own answer |
//!
//! The state is not held in memory but in a file beside the processes, so
//! that it survives the process: a new version started during the
//! deregistration (a flip, a crashed process restarted) answers 404 too.
//! `hitless-slots leave` creates the file in `hitless.service`'s
//! `RuntimeDirectory=` (`/run/hitless-pool`), which systemd removes when that
//! unit stops: the next start is in the pool again. The hardened slots can
//! read it although they write nothing: `ProtectSystem=strict` leaves `/run`
//! readable, and `RuntimeDirectoryMode=0755` lets their dynamic user look
//! into the directory (systemd.exec(5)). The file is looked up (stat(2)) on
//! each health request only, which a balancer sends about once a second.

use std::future::{Future, Ready};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{Either, Full};
use hyper::body::Buf;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;

/// Where `hitless-slots leave` puts the deregistration flag for the shipped
/// units: in `hitless.service`'s `RuntimeDirectory=hitless-pool`.
pub const DEREGISTRATION_FLAG: &str = "/run/hitless-pool/deregistered";

/// The health path answered for the balancer, and the state behind it.
///
/// Cheap to clone: clones share the readiness flag, so a handle kept by the
/// application controls the answers of the service it wrapped.
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{body::Incoming, service::service_fn, Request, Response};
///
/// fn main() -> Result<(), hitless::Error> {
///     let health = hitless::PoolHealth::new("/healthz", hitless::DEREGISTRATION_FLAG);
///     let service = health.wrap(service_fn(|_req: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok\n"))))
///     }));
///     health.set_ready(false); // e.g. while a cache warms up: /healthz answers 503
///     hitless::Server::from_env(hitless::Settings::default())?.run(service)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PoolHealth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: String,
    flag: PathBuf,
    ready: AtomicBool,
}

impl PoolHealth {
    /// Answer `GET`/`HEAD` requests for `path` (matched exactly, without
    /// the query) with 404 while the file `flag` exists. Ready until
    /// [`set_ready`](PoolHealth::set_ready) says otherwise.
    pub fn new(path: impl Into<String>, flag: impl Into<PathBuf>) -> PoolHealth {
        PoolHealth {
            inner: Arc::new(Inner {
                path: path.into(),
                flag: flag.into(),
                ready: AtomicBool::new(true),
            }),
        }
    }

    /// The health path.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The deregistration flag file.
    pub fn flag(&self) -> &Path {
        &self.inner.flag
    }

    /// Whether the host is being taken out of the pool: the flag file
    /// exists. A file that cannot be looked up (no permission to search its
    /// directory) counts as absent, so that a misconfigured path never takes
    /// a host out of the pool.
    pub fn deregistering(&self) -> bool {
        self.inner.flag.symlink_metadata().is_ok()
    }

    /// Say whether this process can serve: while not ready, the health
    /// path answers 503 (unless the host is deregistering: 404 wins, since
    /// it is what takes the host out gently).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether [`set_ready`](PoolHealth::set_ready) last said ready.
    pub fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// `service`, with the health path answered as the module describes.
    /// The response body becomes [`Either`] the service's body or the
    /// short text of a 404/503; the body's data type must be buildable from
    /// a static byte string (as `bytes::Bytes` is).
    pub fn wrap<S>(&self, service: S) -> WithPoolHealth<S> {
        WithPoolHealth {
            health: self.clone(),
            service,
        }
    }

    /// The answer the wrapper gives itself for `req`, if any.
    fn own_answer(&self, req: &Request<Incoming>) -> Option<(StatusCode, &'static str)> {
        if req.uri().path() != self.inner.path
            || !matches!(*req.method(), Method::GET | Method::HEAD)
        {
            return None;
        }
        if self.deregistering() {
            Some((StatusCode::NOT_FOUND, "deregistering\n"))
        } else if !self.ready() {
            Some((StatusCode::SERVICE_UNAVAILABLE, "not ready\n"))
        } else {
            None
        }
    }
}

/// A service with its health path answered by [`PoolHealth`]; made by
/// [`PoolHealth::wrap`].
#[derive(Debug, Clone)]
pub struct WithPoolHealth<S> {
    health: PoolHealth,
    service: S,
}

impl<S, B> Service<Request<Incoming>> for WithPoolHealth<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Response = Response<Either<B, Full<B::Data>>>;
    type Error = S::Error;
    type Future = PoolHealthFuture<S::Future, B>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        match self.health.own_answer(&req) {
            Some((status, text)) => PoolHealthFuture::Own {
                response: std::future::ready(own_response(status, text)),
            },
            None => PoolHealthFuture::Service {
                future: self.service.call(req),
            },
        }
    }
}

fn own_response<D: Buf + From<&'static [u8]>>(
    status: StatusCode,
    text: &'static str,
) -> Response<Full<D>> {
    let mut resp = Response::new(Full::new(D::from(text.as_bytes())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A cached "in the pool" would defeat the point (RFC 9111 §5.2.2.5).
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pin_project! {
    /// The future of [`WithPoolHealth`]: the wrapped service's, or an
    /// answer that is ready at once.
    #[project = PoolHealthProj]
    #[allow(missing_docs)]
    pub enum PoolHealthFuture<F, B: Body> {
        /// The wrapped service answers.
        Service { #[pin] future: F },
        /// The health path, answered here.
        Own { response: Ready<Response<Full<B::Data>>> },
    }
}

impl<F, B, E> Future for PoolHealthFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<Either<B, Full<B::Data>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PoolHealthProj::Service { future } => future
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(Either::Left))),
            PoolHealthProj::Own { response } => Pin::new(response)
                .poll(cx)
                .map(|resp| Ok(resp.map(Either::Right))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_file_is_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("deregistered");
        let health = PoolHealth::new("/healthz", &flag);
        assert!(!health.deregistering());
        std::fs::write(&flag, b"").unwrap();
        assert!(health.deregistering());
        // Another handle (another process, in life) sees the same state.
        assert!(PoolHealth::new("/healthz", &flag).deregistering());
        std::fs::remove_file(&flag).unwrap();
        assert!(!health.deregistering());
    }

    #[test]
    fn an_unreadable_directory_is_no_deregistration() {
        let health = PoolHealth::new("/healthz", "/proc/self/fdinfo/nonexistent/deregistered");
        assert!(!health.deregistering());
    }

    #[test]
    fn readiness_is_shared_by_clones() {
        let health = PoolHealth::new("/healthz", "/nonexistent");
        let handle = health.clone();
        assert!(health.ready());
        handle.set_ready(false);
        assert!(!health.ready());
    }
}
