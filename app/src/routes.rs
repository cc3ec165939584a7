//! The HTTP endpoints.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::version::VERSION;

/// Upper bound for `/slow?ms=`; longer than the default drain deadline on
/// purpose, so the deadline itself can be tested.
pub const MAX_SLOW_MS: u64 = 60_000;

/// What load balancers ask: 200 here, 404 while the host leaves the pool
/// (answered by `hitless::PoolHealth` ahead of these routes).
pub const HEALTH_PATH: &str = "/healthz";

/// Header on every response, so load probes can tell which build answered.
pub const VERSION_HEADER: &str = "x-hitless-version";

/// What `/version` reports.
#[derive(Debug, Serialize)]
pub struct Identity {
    pub version: &'static str,
    pub pid: u32,
    pub started_at: String,
    pub socket_activated: bool,
    pub listeners: Vec<ListenerInfo>,
}

/// One listener in `/version`.
#[derive(Debug, Serialize)]
pub struct ListenerInfo {
    /// `tcp` or `unix`.
    pub kind: &'static str,
    pub address: String,
    /// The fd name systemd passed (`FileDescriptorName=`), or `fallback`
    /// for an address bound by the service itself.
    pub name: String,
}

impl From<&hitless::Listener> for ListenerInfo {
    fn from(l: &hitless::Listener) -> ListenerInfo {
        ListenerInfo {
            kind: l.socket().kind(),
            address: l.address().to_owned(),
            name: match l.origin() {
                hitless::Origin::Systemd { name } => name.clone(),
                hitless::Origin::Bound(_) => "fallback".to_owned(),
            },
        }
    }
}

/// State shared by all connections.
pub struct App {
    greeting: Bytes,
    identity_json: Bytes,
    /// `--simulate-fault answer-500`: every response is a 500.
    answer_500: bool,
}

impl App {
    pub fn new(identity: &Identity, answer_500: bool) -> Result<App, serde_json::Error> {
        let mut json = serde_json::to_vec_pretty(identity)?;
        json.push(b'\n');
        Ok(App {
            greeting: Bytes::from(format!(
                "hello from hitless {} (pid {})\n",
                identity.version, identity.pid
            )),
            identity_json: Bytes::from(json),
            answer_500,
        })
    }
}

type Resp = Response<Full<Bytes>>;

pub async fn handle(req: Request<Incoming>, app: Arc<App>) -> Result<Resp, Infallible> {
    Ok(route(&req, &app).await)
}

/// `answer` with [`VERSION_HEADER`], whoever made it (the routes, or the
/// library's health answer ahead of them).
pub async fn versioned<B, E>(
    answer: impl Future<Output = Result<Response<B>, E>>,
) -> Result<Response<B>, E> {
    let mut resp = answer.await?;
    resp.headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
    Ok(resp)
}

async fn route(req: &Request<Incoming>, app: &App) -> Resp {
    if app.answer_500 {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "simulated fault\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/" => text_bytes(StatusCode::OK, app.greeting.clone()),
        HEALTH_PATH => text(StatusCode::OK, "ok\n"),
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
