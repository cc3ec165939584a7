//! The check before `READY=1`: one `GET` through the user's own service,
//! over an in-memory connection served exactly like an accepted one, before
//! the server accepts on its listeners and notifies systemd.
//!
//! A process that answers the check with a server error (5xx, RFC 9110
//! §15.6), or not at all within the timeout, never says `READY=1`: under
//! systemd its start job fails, and an upgrade leaves the old version
//! serving. Any other status (2xx, 3xx, 4xx: a service without the path
//! answers 404) counts as ready.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::http::uri::PathAndQuery;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connection::Http;
use crate::BoxError;

/// Bytes buffered each way on the in-memory connection; a response head
/// and a small body fit, a larger body only waits for the reader.
const PIPE_BYTES: usize = 64 * 1024;

/// The `User-Agent` of the check, so that a service (or its access log) can
/// tell the check from a client.
const USER_AGENT_VALUE: &str = "hitless-ready-check";

/// Why the check before `READY=1` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadyCheckFailure {
    /// The service answered with a server error (5xx).
    Status(StatusCode),
    /// No response head within
    /// [`Settings::ready_check_timeout`](crate::Settings::ready_check_timeout).
    Timeout(Duration),
    /// The exchange failed before a response head (the service returned an
    /// error, the connection closed); what hyper said.
    Failed(String),
}

impl fmt::Display for ReadyCheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyCheckFailure::Status(s) => write!(f, "answered {s}"),
            ReadyCheckFailure::Timeout(d) => write!(f, "got no answer within {d:?}"),
            ReadyCheckFailure::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Send `GET path` through `http` (the service with every connection
/// setting of the server) and return the response status, or why that
/// status means "not ready". The response body is not read.
pub(crate) async fn run<S, B>(
    http: &Arc<Http<S>>,
    path: &PathAndQuery,
    timeout: Duration,
) -> Result<StatusCode, ReadyCheckFailure>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    let served = tokio::spawn(http.clone().serve(server));
    let outcome = tokio::time::timeout(timeout, exchange(client, path)).await;
    // Whatever is left of the connection (an unread body) goes with it.
    served.abort();
    match outcome {
        Err(_) => Err(ReadyCheckFailure::Timeout(timeout)),
        Ok(Err(e)) => Err(ReadyCheckFailure::Failed(e.to_string())),
        Ok(Ok(status)) if status.is_server_error() => Err(ReadyCheckFailure::Status(status)),
        Ok(Ok(status)) => Ok(status),
    }
}

/// Longest response head the check reads.
const MAX_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 request on `io`, up to the response head (parsed with
/// httparse, as hyper does; a client connection of hyper's own would cost
/// every server response a check of its own, its `client` feature).
async fn exchange(
    mut io: tokio::io::DuplexStream,
    path: &PathAndQuery,
) -> Result<StatusCode, BoxError> {
    // Origin form with a Host (RFC 9112 §3.2); the connection closes after
    // the answer.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {USER_AGENT_VALUE}\r\nConnection: close\r\n\r\n",
        path.as_str()
    );
    io.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err("the connection closed before a whole response head".into());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(_) = response.parse(&head)? {
            let code = response.code.ok_or("a response head without a status")?;
            return Ok(StatusCode::from_u16(code)?);
        }
        if head.len() > MAX_HEAD {
            return Err("a response head longer than 64 KiB".into());
        }
    }
}
