//! The check before READY=1: a build that answers 5xx (or not at all)
//! accepts nothing, never says READY=1 and exits 6.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// A client connected (and its request sent) before hitless starts: it
/// waits in the listener's queue, like a connection PID 1 holds for the
/// next process.
fn queued_request(listener: &std::net::TcpListener) -> TcpStream {
    let mut s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

fn assert_not_ready(status: std::process::ExitStatus, log: &str, server: &Hitless, why: &str) {
    assert_eq!(status.code(), Some(6), "{log}");
    let line: Vec<&str> = log.lines().filter(|l| l.contains("not ready")).collect();
    assert_eq!(line.len(), 1, "one log line says why: {log}");
    assert!(line[0].contains(why), "{log}");
    let notify = server.notify.as_ref().unwrap();
    while let Some(msg) = notify.recv(Duration::from_millis(50)) {
        assert!(!msg.iter().any(|l| l == "READY=1"), "READY=1 sent: {msg:?}");
    }
}

#[test]
fn a_500_from_the_ready_check_means_no_ready_no_accept_exit_6() {
    let listener = tcp_listener();
    let _client = queued_request(&listener);
    let mut server = Launch::with_listener(&listener)
        .arg("--simulate-fault")
        .arg("answer-500")
        .with_notify()
        .spawn();
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.stderr();
    assert_not_ready(
        status,
        &log,
        &server,
        "GET /healthz answered 500 Internal Server Error",
    );
    // Still in the queue: hitless never accepted it.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "the queued connection was taken");
}

#[test]
fn no_answer_within_the_timeout_means_not_ready() {
    let listener = tcp_listener();
    let mut server = Launch::with_listener(&listener)
        .args([
            "--ready-check",
            "/slow?ms=5000",
            "--ready-check-timeout",
            "200ms",
        ])
        .with_notify()
        .spawn();
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.stderr();
    assert_not_ready(status, &log, &server, "got no answer within 200ms");
}

#[test]
fn a_passing_check_is_logged_and_a_404_passes() {
    let listener = tcp_listener();
    let mut server = Launch::with_listener(&listener)
        .args(["--ready-check", "/no-such-path"])
        .with_notify()
        .spawn();
    server.wait_ready();
    assert_eq!(
        get(listener.local_addr().unwrap(), "/").unwrap().status,
        200
    );
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = server.stderr();
    assert!(
        log.contains("ready check: GET /no-such-path answered 404 Not Found"),
        "{log}"
    );
}

/// Negative control: the same broken build without the check says READY=1
/// and serves its 500s, so the check is what kept it out above.
#[test]
fn control_without_the_check_the_broken_build_serves_500s() {
    let listener = tcp_listener();
    let mut client = queued_request(&listener);
    let mut server = Launch::with_listener(&listener)
        .args(["--simulate-fault", "answer-500", "--no-ready-check"])
        .with_notify()
        .spawn();
    server.wait_ready();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 500");
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}
