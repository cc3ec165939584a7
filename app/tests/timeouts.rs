//! Connections that stall, whatever protocol they speak: a request head
//! that never comes, an HTTP/2 peer that stops after its preface or never
//! answers a PING, and keep-alive connections left idle. Raw sockets, so the
//! tests control every byte.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;

/// Long enough for any of these closes on a loaded machine; the tests only
/// fail when a connection outlives it, never on speed.
const BOUND: Duration = Duration::from_secs(20);
/// Scheduling slack for "not closed before its timeout": a server's timers
/// start when it sees something happen (accept, a read, the end of a
/// response), which is after (or, for the end of a response, just before)
/// the moment the test starts its clock.
const SLACK: Duration = Duration::from_millis(500);

/// A new connection that has sent `bytes`.
fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    s
}

/// Assert that the server closes `s` no sooner than `not_before` (minus
/// scheduling slack) and within [`BOUND`].
fn assert_closed_after(s: &mut TcpStream, not_before: Duration, what: &str) {
    match wait_closed(s, BOUND) {
        None => panic!("{what}: connection still open after {BOUND:?}"),
        Some(t) => assert!(
            t + SLACK >= not_before,
            "{what}: closed after {t:?}, before its {not_before:?} timeout"
        ),
    }
}

#[test]
fn connections_without_a_request_head_are_closed_whatever_the_protocol() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--header-read-timeout", "1s"]);
    let stalls: [(&str, Vec<u8>); 4] = [
        ("silent", Vec::new()),
        ("half an HTTP/1 head", b"GET / HTTP/1.1\r\nHo".to_vec()),
        ("part of the HTTP/2 preface", b"PRI * HTTP/2.0\r\n".to_vec()),
        (
            "HTTP/2 preface and SETTINGS",
            [h2_raw::PREFACE, h2_raw::SETTINGS].concat(),
        ),
    ];
    let waits: Vec<_> = stalls
        .into_iter()
        .map(|(what, bytes)| {
            let mut s = connect_and_send(addr, &bytes);
            thread::spawn(move || assert_closed_after(&mut s, Duration::from_secs(1), what))
        })
        .collect();
    for w in waits {
        w.join().expect("a stalled connection was not closed");
    }
}

#[test]
fn slow_but_complete_clients_are_served() {
    // Heads sent in pieces over about a second, well inside a 4 s limit.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--header-read-timeout", "4s"]);

    let http1 = thread::spawn(move || {
        let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let mut s = TcpStream::connect(addr).unwrap();
        for piece in head.chunks(6) {
            s.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        s.set_read_timeout(Some(BOUND)).unwrap();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    });
    let http2 = thread::spawn(move || {
        let mut s = connect_and_send(addr, h2_raw::PREFACE);
        thread::sleep(Duration::from_millis(500));
        s.write_all(h2_raw::SETTINGS).unwrap();
        thread::sleep(Duration::from_millis(500));
        s.write_all(&h2_raw::get(1, "/healthz")).unwrap();
        h2_raw::read_response_status(&mut s, 1, BOUND)
    });
    let out = http1.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert_eq!(http2.join().unwrap(), Some(200));
}

#[test]
fn idle_http2_connections_are_closed_after_the_keepalive_timeout() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--keepalive-timeout", "2s"]);
    let mut s = connect_and_send(
        addr,
        &[
            h2_raw::PREFACE,
            h2_raw::SETTINGS,
            &h2_raw::get(1, "/healthz"),
        ]
        .concat(),
    );
    assert_eq!(h2_raw::read_response_status(&mut s, 1, BOUND), Some(200));
    assert_closed_after(&mut s, Duration::from_secs(2), "idle h2");
}

#[test]
fn http2_pings_find_a_dead_peer_with_a_stream_open() {
    // The peer opens a stream for a minute-long request, then never reads
    // nor answers anything: only the keep-alive PING can tell it is gone.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(
        &listener,
        &[
            "--http2-keepalive-interval",
            "1s",
            "--http2-keepalive-timeout",
            "1s",
        ],
    );
    let mut s = connect_and_send(
        addr,
        &[
            h2_raw::PREFACE,
            h2_raw::SETTINGS,
            &h2_raw::get(1, "/slow?ms=60000"),
        ]
        .concat(),
    );
    // A PING after 1 s without frames, and 1 s for its answer.
    assert_closed_after(&mut s, Duration::from_secs(2), "unanswered PING");
}

#[test]
fn idle_keep_alive_outlives_the_header_read_timeout() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--header-read-timeout", "1s"]);
    let mut c = Http1::connect(addr).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    thread::sleep(Duration::from_millis(2500));
    let second = c.get("/").expect("idle keep-alive connection closed early");
    assert_eq!(second.status, 200);
}

#[test]
fn idle_keep_alive_is_closed_after_the_keepalive_timeout() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(
        &listener,
        &["--header-read-timeout", "1s", "--keepalive-timeout", "3s"],
    );
    let mut c = Http1::connect(addr).unwrap();
    let r = c.get("/").unwrap();
    assert_eq!(r.header("keep-alive"), Some("timeout=3"));
    assert_closed_after(c.stream(), Duration::from_secs(3), "idle keep-alive");
}

#[test]
fn a_started_head_on_a_keep_alive_connection_has_the_header_read_timeout() {
    // Idle past the header-read timeout (fine: the keep-alive timeout
    // applies), then the next head starts and stalls: from its first byte,
    // the header-read timeout applies.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--header-read-timeout", "1s"]);
    let mut c = Http1::connect(addr).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    thread::sleep(Duration::from_millis(2000));
    c.stream()
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .expect("idle keep-alive connection closed early");
    assert_closed_after(c.stream(), Duration::from_secs(1), "stalled head");
}

#[test]
fn keep_alive_responses_announce_the_timeout() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &[]);
    let r = get(addr, "/healthz").unwrap();
    assert!(!r.closes());
    // RFC 2068 §19.7.1.1; whole seconds, the default 75 s.
    assert_eq!(r.header("keep-alive"), Some("timeout=75"));

    // Not on a response that closes the connection.
    let mut s = connect_and_send(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let mut out = String::new();
    s.set_read_timeout(Some(BOUND)).unwrap();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(!out.to_ascii_lowercase().contains("keep-alive"), "{out}");
}

#[test]
fn an_idle_keep_alive_connection_released_to_save_memory_serves_its_next_requests() {
    // With these timeouts the server looks at a quiet connection about
    // every second and releases hyper's buffers for it after about two
    // (the connection is parked); the socket stays open and the next
    // request, whole or arriving in pieces, builds a new hyper connection.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_with(
        &listener,
        &["--header-read-timeout", "1s", "--keepalive-timeout", "8s"],
    );
    let mut c = Http1::connect(addr).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    thread::sleep(Duration::from_millis(3500));
    let r = c.get("/version").expect("parked connection answers");
    assert_eq!(r.status, 200);
    assert!(!r.closes());
    thread::sleep(Duration::from_millis(3500));
    // Parked again: a head in three pieces, and a second request
    // pipelined right behind it.
    for piece in [
        &b"GET /healthz HT"[..],
        b"TP/1.1\r\nHost:",
        b" t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        c.stream().write_all(piece).unwrap();
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.recv().unwrap().status, 200);
    assert_eq!(c.recv().unwrap().status, 200);
    // And still closed for the keep-alive timeout in the end.
    assert_closed_after(c.stream(), Duration::from_secs(8), "parked keep-alive");
    // The buffers were released in between, both times (the debug log the
    // harness turns on says so), so the requests above were served by
    // connections rebuilt from a parked socket.
    server.sigterm();
    server.wait_exit(BOUND);
    let log = server.stderr();
    let parked = log.matches("hyper's connection released").count();
    assert!(parked >= 2, "parked {parked} time(s), not twice:\n{log}");
}
