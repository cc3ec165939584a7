//! HTTP/2 cleartext (prior knowledge): requests, and GOAWAY on SIGTERM.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

type Sender = http2::SendRequest<Empty<Bytes>>;

async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(conn))
}

async fn h2_get(sender: &mut Sender, path: &str) -> hyper::Result<(u16, String, String)> {
    let req = Request::get(format!("http://test{path}"))
        .body(Empty::new())
        .expect("request");
    let resp = sender.send_request(req).await?;
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get("x-hitless-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(resp.headers().get("connection").is_none());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, version, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let server = serve(&listener);
    let (mut sender, _conn) = h2_connect(addr).await;
    let (status, version, body) = h2_get(&mut sender, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(!version.is_empty());
    assert!(body.contains(&format!("pid {}", server.child.id())));
    // Many streams on the one connection.
    for _ in 0..20 {
        assert_eq!(h2_get(&mut sender, "/healthz").await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn sigterm_sends_goaway_and_finishes_open_streams() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve(&listener);
    let (mut sender, conn) = h2_connect(addr).await;
    assert_eq!(h2_get(&mut sender, "/").await.unwrap().0, 200);

    let mut in_flight = sender.clone();
    let slow = tokio::spawn(async move { h2_get(&mut in_flight, "/slow?ms=700").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.sigterm();

    let (status, _, body) = slow.await.unwrap().expect("in-flight stream lost");
    assert_eq!((status, body.as_str()), (200, "slept 700 ms\n"));
    // GOAWAY ends the connection cleanly (no error) once the stream is done.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("connection not closed after GOAWAY")
        .unwrap();
    assert!(ended.is_ok(), "connection ended with an error: {ended:?}");
    assert!(sender.is_closed() || h2_get(&mut sender, "/").await.is_err());
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success());
}

#[test]
fn curl_speaks_h2c_to_it() {
    // A real client beside hyper's.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve(&listener); // killed on drop
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ])
        .arg(format!("http://{addr}/healthz"))
        .output()
        .expect("run curl");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");
}
