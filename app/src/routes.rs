//! The HTTP endpoints.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use serde::Serialize;

use crate::listeners::ListenerInfo;
use crate::version::VERSION;

/// Upper bound for `/slow?ms=`; longer than the default drain deadline on
/// purpose, so the deadline itself can be tested.
pub const MAX_SLOW_MS: u64 = 60_000;

/// Header on every response, so load probes can tell which build answered.
pub const VERSION_HEADER: &str = "x-hitless-version";

#[derive(Debug, Serialize)]
pub struct Identity {
    pub version: &'static str,
    pub pid: u32,
    pub started_at: String,
    pub socket_activated: bool,
    pub listeners: Vec<ListenerInfo>,
}

/// State shared by all connections.
pub struct App {
    greeting: Bytes,
    identity_json: Bytes,
    draining: AtomicBool,
}

impl App {
    pub fn new(identity: &Identity) -> Result<App, serde_json::Error> {
        let mut json = serde_json::to_vec_pretty(identity)?;
        json.push(b'\n');
        Ok(App {
            greeting: Bytes::from(format!(
                "hello from hitless {} (pid {})\n",
                identity.version, identity.pid
            )),
            identity_json: Bytes::from(json),
            draining: AtomicBool::new(false),
        })
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Per-connection facts the drain needs.
#[derive(Default)]
pub struct ConnFacts {
    /// Set on the first HTTP/2 request: such a connection can be sent GOAWAY
    /// at once when the drain starts.
    pub http2: AtomicBool,
}

type Resp = Response<Full<Bytes>>;

pub async fn handle(
    req: Request<Incoming>,
    app: Arc<App>,
    conn: Arc<ConnFacts>,
) -> Result<Resp, Infallible> {
    let http1 = req.version() < Version::HTTP_2;
    if !http1 {
        conn.http2.store(true, Ordering::Relaxed);
    }
    let mut resp = route(&req, &app).await;
    let headers = resp.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
    // Draining: answer, then close. hyper honours this header and closes the
    // connection after the response, so the client learns it must reconnect
    // instead of sending its next request into a closing socket. HTTP/2 has
    // no such header (GOAWAY does that job).
    if http1 && app.is_draining() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

async fn route(req: &Request<Incoming>, app: &App) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/" => text_bytes(StatusCode::OK, app.greeting.clone()),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/version" => {
            let mut resp = Response::new(Full::new(app.identity_json.clone()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/slow" => match slow_ms(req.uri().query()) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text_bytes(StatusCode::OK, Bytes::from(format!("slept {ms} ms\n")))
            }
            Err(why) => text_bytes(StatusCode::BAD_REQUEST, Bytes::from(why + "\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `ms=N` from the query string, `0..=MAX_SLOW_MS`.
fn slow_ms(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms="))
        .ok_or_else(|| "missing ?ms=N".to_owned())?;
    match value.parse::<u64>() {
        Ok(ms) if ms <= MAX_SLOW_MS => Ok(ms),
        _ => Err(format!("ms must be a whole number from 0 to {MAX_SLOW_MS}")),
    }
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    text_bytes(status, Bytes::from_static(body.as_bytes()))
}

fn text_bytes(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::slow_ms;

    #[test]
    fn slow_query() {
        assert_eq!(slow_ms(Some("ms=250")), Ok(250));
        assert_eq!(slow_ms(Some("x=1&ms=0")), Ok(0));
        assert_eq!(slow_ms(Some("ms=60000")), Ok(60_000));
        assert!(slow_ms(Some("ms=60001")).is_err());
        assert!(slow_ms(Some("ms=-1")).is_err());
        assert!(slow_ms(Some("ms=")).is_err());
        assert!(slow_ms(Some("ms=1e3")).is_err());
        assert!(slow_ms(None).is_err());
    }
}
