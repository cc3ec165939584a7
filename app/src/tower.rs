//! Serving a [tower] service, such as an [axum] `Router`, through the
//! [`Server`].
//!
//! hyper calls a service through `&self` and hands it the request with
//! hyper's [`Incoming`] body; tower calls `poll_ready` and then `call`
//! through `&mut self`. hyper-util's [`TowerToHyperService`] bridges the
//! two: for each request it clones the tower service (an axum `Router` is an
//! `Arc` inside, so a clone is cheap), waits until it is ready, and calls
//! it. These methods wrap the service in it and serve it as
//! [`Server::run`] and [`Server::serve`] do; the drain, the timeouts and
//! the readiness notifications are the same.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;

use crate::error::Error;
use crate::server::Server;
use crate::BoxError;

impl Server {
    /// [`run`](Server::run) a tower service (an axum `Router`, or anything
    /// implementing `tower::Service<Request<Incoming>>` that is `Clone`).
    /// The service is cloned for each request, as axum's own `serve` does.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hitless::Error> {
    /// use axum::{routing::get, Router};
    ///
    /// let app = Router::new().route("/", get(|| async { "hello\n" }));
    /// hitless::Server::from_env(hitless::Settings::default())?.run_tower(app)
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Server::run`].
    pub fn run_tower<S, B>(self, service: S) -> Result<(), Error>
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.run(TowerToHyperService::new(service))
    }

    /// [`serve`](Server::serve) a tower service on the current tokio
    /// runtime; see [`run_tower`](Server::run_tower).
    ///
    /// # Errors
    /// As [`Server::serve`].
    pub async fn serve_tower<S, B>(self, service: S) -> Result<(), Error>
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve(TowerToHyperService::new(service)).await
    }
}
