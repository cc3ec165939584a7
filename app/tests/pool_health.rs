//! /healthz for load balancers: 200 while serving, 404 while the host
//! leaves the pool (the flag file exists), 503 while not ready.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Serve `health.wrap(service)` over HTTP/1 on a loopback port, in this
/// process; the service answers 200 "app" to everything.
async fn serve_wrapped(health: hitless::PoolHealth) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let service = health.wrap(hyper::service::service_fn(|_req: Request<_>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
            }));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service),
            );
        }
    });
    addr
}

async fn ask(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "t")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn library_answers_the_health_path_only_when_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("deregistered");
    let health = hitless::PoolHealth::new("/healthz", &flag);
    let addr = serve_wrapped(health.clone()).await;

    assert_eq!(ask(addr, "GET", "/healthz").await, (200, "app".into()));

    health.set_ready(false);
    assert_eq!(ask(addr, "GET", "/healthz").await.0, 503);
    assert_eq!(ask(addr, "HEAD", "/healthz").await.0, 503);
    // Only the health path, and only GET/HEAD, is answered by the wrapper.
    assert_eq!(ask(addr, "GET", "/").await, (200, "app".into()));
    assert_eq!(ask(addr, "GET", "/healthz/x").await, (200, "app".into()));
    assert_eq!(ask(addr, "POST", "/healthz").await, (200, "app".into()));

    // Deregistering wins over not ready: it is what takes the host out gently.
    std::fs::write(&flag, b"").unwrap();
    assert_eq!(
        ask(addr, "GET", "/healthz").await,
        (404, "deregistering\n".into())
    );
    health.set_ready(true);
    assert_eq!(ask(addr, "GET", "/healthz?x=1").await.0, 404);
    assert_eq!(ask(addr, "GET", "/").await, (200, "app".into()));

    std::fs::remove_file(&flag).unwrap();
    assert_eq!(ask(addr, "GET", "/healthz").await, (200, "app".into()));
}

#[cfg(feature = "cli")]
mod binary {
    use super::common::*;

    /// The flag lives outside the process: a process started while it
    /// exists (the new slot of a flip) answers 404 too, on the same socket.
    #[test]
    fn the_deregistration_survives_a_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("deregistered");
        let listener = tcp_listener();
        let addr = listener.local_addr().unwrap();
        let launch = || {
            let server = Launch::with_listener(&listener)
                .arg("--deregistration-flag")
                .arg(&flag)
                .with_notify()
                .spawn();
            server.wait_ready();
            server
        };

        let mut old = launch();
        assert_eq!(get(addr, "/healthz").unwrap().status, 200);
        // A keep-alive connection opened before the flag sees it too.
        let mut kept = Http1::connect(addr).unwrap();
        assert_eq!(kept.get("/healthz").unwrap().status, 200);

        std::fs::write(&flag, b"").unwrap();
        let r = get(addr, "/healthz").unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "deregistering\n"));
        assert!(r.header("x-hitless-version").is_some());
        assert_eq!(kept.get("/healthz").unwrap().status, 404);
        // Everything else is served as before.
        assert_eq!(get(addr, "/").unwrap().status, 200);

        // A flip while deregistering: the new process says 404 from its
        // first answer on; the old one drains.
        let new = launch();
        old.sigterm();
        assert!(old.wait_exit(std::time::Duration::from_secs(10)).success());
        assert_eq!(get(addr, "/healthz").unwrap().status, 404);

        std::fs::remove_file(&flag).unwrap();
        assert_eq!(get(addr, "/healthz").unwrap().status, 200);
        drop(new);
    }
}
