//! The library under services of its own: examples/hello.rs (plain hyper
//! handlers) and examples/axum.rs (an axum `Router`), neither with drain
//! logic, socket-activated as systemd does it and stopped with SIGTERM, then
//! replaced by a new process on the same socket. Nothing sent to them may be
//! lost: requests in flight at the signal, keep-alive requests written at
//! the moment of the signal, new connections made during the drain;
//! HTTP/1.1 and h2c. A control runs the axum example without the idle grace
//! and must lose requests in the same rounds.

mod common;

use std::error::Error as StdError;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};

const EXIT: Duration = Duration::from_secs(15);
/// Idle keep-alive connections whose next request is written around SIGTERM.
const KEEP_ALIVE: usize = 8;

/// The example, activated on `listener`, once it said `READY=1`.
fn start(exe: &Path, listener: &TcpListener) -> Hitless {
    start_with(exe, listener, &[])
}

/// Like [`start`], with environment variables for the example.
fn start_with(exe: &Path, listener: &TcpListener, env: &[(&str, &str)]) -> Hitless {
    let mut launch = Launch::exe_with_listener(exe, listener).with_notify();
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    let server = launch.spawn();
    server.wait_ready();
    server
}

fn from_pid(pid: u32) -> String {
    format!("hello from pid {pid}\n")
}

/// `KEEP_ALIVE` connections, each idle after one request, whose next request
/// is written at 0.5 ms intervals once `barrier` is passed.
fn idle_keep_alive(
    addr: SocketAddr,
    barrier: &Arc<Barrier>,
) -> Vec<thread::JoinHandle<std::io::Result<Response>>> {
    (0..KEEP_ALIVE)
        .map(|i| {
            let mut c = Http1::connect(addr).unwrap();
            let first = c.get("/").unwrap();
            assert_eq!(first.status, 200);
            assert!(!first.closes(), "Connection: close before any signal");
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                thread::sleep(Duration::from_micros(500 * i as u64));
                c.get("/")
            })
        })
        .collect()
}

#[test]
fn hello_http1_requests_in_flight_and_sent_at_sigterm_are_answered() {
    http1_rounds(&example_exe("hello"), 8);
}

#[cfg(feature = "tower")]
#[test]
fn axum_http1_requests_in_flight_and_sent_at_sigterm_are_answered() {
    http1_rounds(&example_exe("axum"), 8);
}

#[cfg(feature = "tower")]
#[test]
fn control_axum_without_idle_grace_loses_keep_alive_requests() {
    // IDLE_GRACE_MS=0 is plain hyper graceful_shutdown(): an idle
    // keep-alive connection is closed at once, and the request its client
    // writes just then is lost. Rounds like the test above must show it.
    let exe = example_exe("axum");
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut lost = 0;
    for _ in 0..10 {
        let mut server = start_with(&exe, &listener, &[("IDLE_GRACE_MS", "0")]);
        // As the `draining` clients of the rounds above: idle before the
        // signal, their next request written once the drain has begun.
        let after_stopping = Arc::new(Barrier::new(KEEP_ALIVE + 1));
        let draining = idle_keep_alive(addr, &after_stopping);
        server.sigterm();
        server.wait_stopping();
        after_stopping.wait();
        lost += draining
            .into_iter()
            .map(|c| c.join())
            .filter(|r| matches!(r, Ok(Err(_))))
            .count();
        let status = server.wait_exit(EXIT);
        assert!(status.success(), "{status:?}: {}", server.stderr());
    }
    assert!(
        lost > 0,
        "the race never showed; the example tests prove nothing"
    );
}

/// `rounds` drains of the example at `exe` with HTTP/1.1 requests in
/// flight, racing the signal and sent during the drain; each followed by a
/// new process on the same socket.
fn http1_rounds(exe: &Path, rounds: usize) {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = start(exe, &listener);
    for round in 0..rounds {
        let old = server.child.id();
        let slow: Vec<_> = (0..2)
            .map(|_| {
                let mut c = Http1::connect(addr).unwrap();
                c.send("/slow").unwrap();
                thread::spawn(move || c.recv())
            })
            .collect();
        let at_sigterm = Arc::new(Barrier::new(KEEP_ALIVE + 1));
        let racing = idle_keep_alive(addr, &at_sigterm);
        let after_stopping = Arc::new(Barrier::new(KEEP_ALIVE + 1));
        let draining = idle_keep_alive(addr, &after_stopping);
        // The slow requests are in their handler now (it sleeps 500 ms).
        thread::sleep(Duration::from_millis(100));
        at_sigterm.wait();
        thread::sleep(Duration::from_millis(1));
        server.sigterm();
        server.wait_stopping();
        after_stopping.wait();
        // Not accepted by the draining process: waits in the socket's queue.
        let queued = thread::spawn(move || get(addr, "/"));

        for c in slow {
            let r = c.join().unwrap().expect("in-flight request lost");
            assert_eq!((r.status, r.text()), (200, from_pid(old)), "round {round}");
            assert!(
                r.closes(),
                "round {round}: in flight, answered without Connection: close"
            );
        }
        for (i, c) in racing.into_iter().chain(draining).enumerate() {
            let r = c
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: keep-alive request {i} lost: {e}"));
            assert_eq!((r.status, r.text()), (200, from_pid(old)), "round {round}");
            // Written after STOPPING=1 and answered at once, within the idle
            // grace: the example sets no such header, the library added it.
            if i >= KEEP_ALIVE {
                assert!(
                    r.closes(),
                    "round {round}: answered while draining without Connection: close"
                );
            }
        }
        let status = server.wait_exit(EXIT);
        assert!(status.success(), "{status:?}: {}", server.stderr());

        server = start(exe, &listener);
        let r = queued.join().unwrap().expect("queued connection lost");
        assert_eq!(r.text(), from_pid(server.child.id()), "round {round}");
    }
}

type Sender = http2::SendRequest<Empty<Bytes>>;

async fn h2_connect(addr: SocketAddr) -> (Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(conn))
}

fn h2_request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://test{path}"))
        .body(Empty::new())
        .expect("request")
}

/// A stream the server did not process: above the last stream id of its
/// GOAWAY, or refused (RFC 9113 §8.7). Clients retry these on a new
/// connection, and so does this test.
fn unprocessed(err: &hyper::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = e.source();
    }
    false
}

/// GET `path` the way an HTTP/2 client does: on `sender`, and again on a new
/// connection if the request was not sent or not processed. Any other error
/// is a lost request.
async fn h2_get(mut sender: Sender, addr: SocketAddr, path: &str) -> Result<String, String> {
    for _ in 0..3 {
        match sender.try_send_request(h2_request(path)).await {
            Ok(resp) => {
                assert_eq!(resp.version(), Version::HTTP_2);
                assert!(resp.headers().get("connection").is_none());
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned());
            }
            Err(mut e) => {
                if e.take_message().is_none() && !unprocessed(e.error()) {
                    return Err(format!("{:?}", e.error()));
                }
                sender = h2_connect(addr).await.0;
            }
        }
    }
    Err("still not sent after 3 tries".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_h2c_streams_in_flight_and_sent_at_sigterm_are_answered() {
    h2c_rounds(example_exe("hello"), 5).await;
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_h2c_streams_in_flight_and_sent_at_sigterm_are_answered() {
    h2c_rounds(example_exe("axum"), 5).await;
}

/// `rounds` drains of the example at `exe` with h2c streams in flight and
/// sent at the signal; each followed by a new process on the same socket.
async fn h2c_rounds(exe: PathBuf, rounds: usize) {
    let listener = Arc::new(tcp_listener());
    let addr = listener.local_addr().unwrap();
    let start_on = |exe: PathBuf, listener: Arc<TcpListener>| {
        tokio::task::spawn_blocking(move || start(&exe, &listener))
    };
    let mut server = start_on(exe.clone(), listener.clone()).await.unwrap();
    for round in 0..rounds {
        let old = server.child.id();
        let (sender, conn) = h2_connect(addr).await;
        assert_eq!(h2_get(sender.clone(), addr, "/").await, Ok(from_pid(old)));

        let slow: Vec<_> = (0..2)
            .map(|_| tokio::spawn(h2_get(sender.clone(), addr, "/slow")))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at_sigterm: Vec<_> = (0..KEEP_ALIVE)
            .map(|i| {
                let sender = sender.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(500 * i as u64)).await;
                    h2_get(sender, addr, "/").await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        server.sigterm();

        for s in slow {
            let body = s.await.unwrap();
            assert_eq!(body, Ok(from_pid(old)), "round {round}: in-flight stream");
        }
        // GOAWAY ends the connection without an error.
        let ended = tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("connection not closed after GOAWAY")
            .unwrap();
        assert!(
            ended.is_ok(),
            "round {round}: connection ended with {ended:?}"
        );
        let (status, log) = tokio::task::spawn_blocking(move || {
            let status = server.wait_exit(EXIT);
            (status, server.stderr())
        })
        .await
        .unwrap();
        assert!(status.success(), "{status:?}: {log}");

        // Requests the old process did not take are retried on a new
        // connection, which waits in the socket's queue for this one.
        server = start_on(exe.clone(), listener.clone()).await.unwrap();
        let new = server.child.id();
        for (i, r) in at_sigterm.into_iter().enumerate() {
            let body = r.await.unwrap();
            assert!(
                body == Ok(from_pid(old)) || body == Ok(from_pid(new)),
                "round {round}: request {i} sent at SIGTERM: {body:?}"
            );
        }
    }
}

#[cfg(feature = "tower")]
#[test]
fn axum_routes_share_state_and_extract() {
    let exe = example_exe("axum");
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = start(&exe, &listener);
    let pid = server.child.id();
    let mut c = Http1::connect(addr).unwrap();
    assert_eq!(c.get("/").unwrap().text(), from_pid(pid));
    let greeted = c.get("/greet/ada").unwrap();
    assert_eq!(
        (greeted.status, greeted.text()),
        (200, format!("hello, ada (request 2 of pid {pid})\n"))
    );
    assert_eq!(c.get("/slow?ms=1").unwrap().text(), from_pid(pid));
    assert_eq!(c.get("/slow?ms=soon").unwrap().status, 400);
    assert_eq!(c.get("/nowhere").unwrap().status, 404);
    server.sigterm();
    let status = server.wait_exit(EXIT);
    assert!(status.success(), "{status:?}: {}", server.stderr());
}
