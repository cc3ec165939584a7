//! Peers that stop reading: an HTTP/1 client that pipelines requests and
//! does not read the answers, an HTTP/2 peer whose flow-control window
//! stays at 0. A response the service has produced is in flight until the
//! socket took it, so the drain waits for it; a peer that takes nothing for
//! the send timeout is closed; and a drain cut at its deadline only by such
//! peers is not a failure (exit 0, one warning), unlike one cut while the
//! service was still working (exit 5).
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};

const EXIT: Duration = Duration::from_secs(30);
/// Pipelined requests: their answers (about 400 bytes each) are far more
/// than the socket buffers between the two ends can hold.
const PIPELINED: usize = 20_000;

/// A connection whose receive buffer is as small as the kernel allows, so
/// that the server's writes soon find the socket full.
fn small_window_connect(addr: SocketAddr) -> TcpStream {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    socket::setsockopt(&fd, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected")
    };
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).expect("connect");
    TcpStream::from(fd)
}

/// Pipeline `PIPELINED` requests from another thread (the server stops
/// reading them while its answers wait), returning the stream to read.
fn pipeline(addr: SocketAddr) -> TcpStream {
    let s = small_window_connect(addr);
    let mut writer = s.try_clone().expect("clone");
    thread::spawn(move || {
        let one = b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n";
        let all: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * PIPELINED)
            .collect();
        // Fails once the server closes; that is for the reader to judge.
        let _ = writer.write_all(&all);
    });
    s
}

/// Wait until the server's answers on `s` fill the socket between them:
/// the first byte has come, and then a second for the server to fill its
/// send buffer (a few MB) and stop. Timed from the first answer rather than
/// from the connect, so that a loaded machine slow to run the server does
/// not shorten it.
fn wait_until_stalled(s: &TcpStream) {
    s.set_read_timeout(Some(EXIT)).unwrap();
    let n = s.peek(&mut [0u8; 1]).expect("no answer from the server");
    assert_eq!(n, 1, "the server closed before answering");
    thread::sleep(Duration::from_secs(1));
}

/// Read everything until the server closes; (responses, whether the last
/// one said `Connection: close` and was complete, whether the close was
/// orderly rather than a reset).
fn read_all(mut s: TcpStream) -> (usize, bool, bool) {
    s.set_read_timeout(Some(EXIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let orderly = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got);
    let responses = text.matches("HTTP/1.1 200 OK").count();
    let last_closes = text
        .rfind("HTTP/1.1 200 OK")
        .map(|at| &text[at..])
        .is_some_and(|last| {
            let lower = last.to_ascii_lowercase();
            lower.contains("connection: close") && last.trim_end().ends_with('}')
        });
    (responses, last_closes, orderly)
}

#[test]
fn the_drain_waits_until_a_slow_reader_has_every_answer_written() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_with(&listener, &[]);
    let s = pipeline(addr);
    wait_until_stalled(&s);
    server.sigterm();
    // The answers already produced wait in a full socket: the drain is
    // not over while they do.
    thread::sleep(Duration::from_millis(1500));
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the drain ended with answers still unwritten"
    );
    let (responses, last_closes, orderly) = read_all(s);
    assert!(responses > 0);
    assert!(
        last_closes,
        "the last of {responses} answers is not a whole `Connection: close` one"
    );
    assert!(orderly, "the connection was reset");
    assert_eq!(server.wait_exit(EXIT).code(), Some(0));
}

#[test]
fn control_a_send_timeout_shorter_than_the_reader_cuts_its_answers() {
    // The same slow reader, made to wait longer than a 1 s send timeout:
    // the connection is closed with answers unwritten, which the check
    // above must (and does) tell.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_with(&listener, &["--send-timeout", "1s"]);
    let s = pipeline(addr);
    wait_until_stalled(&s);
    server.sigterm();
    thread::sleep(Duration::from_millis(3000));
    let (_, last_closes, orderly) = read_all(s);
    assert!(!(last_closes && orderly), "a cut connection looked whole");
    assert_eq!(server.wait_exit(EXIT).code(), Some(0));
}

#[test]
fn a_peer_that_stops_reading_is_closed_after_the_send_timeout() {
    // Reading would be progress, so the peer reads only after 5 s: by then
    // a 2 s send timeout has closed the connection with most answers
    // never sent.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--send-timeout", "2s"]);
    let s = pipeline(addr);
    thread::sleep(Duration::from_secs(5));
    let (responses, _, _) = read_all(s);
    assert!(
        responses < PIPELINED,
        "all {responses} answers came: the stalled connection was not closed"
    );

    // Control: with the default 30 s, the same wait loses nothing; every
    // answer comes once the peer reads.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &[]);
    let mut s = pipeline(addr);
    thread::sleep(Duration::from_secs(5));
    s.set_read_timeout(Some(EXIT)).unwrap();
    let (mut seen, mut buf, mut tail) = (0, vec![0u8; 65536], Vec::new());
    while seen < PIPELINED {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {seen} answers");
        tail.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&tail);
        seen += text.matches("HTTP/1.1 200 OK").count();
        let keep = tail.len().saturating_sub(16);
        tail.drain(..keep);
    }
}

#[test]
fn an_http2_peer_with_a_zero_window_is_closed_after_the_send_timeout() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let _server = serve_with(&listener, &["--send-timeout", "2s"]);
    let mut s = TcpStream::connect(addr).unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0: the server may send no DATA.
    let settings = [0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4, 0, 0, 0, 0];
    s.write_all(&[h2_raw::PREFACE, &settings, &h2_raw::get(1, "/version")].concat())
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        h2_raw::read_response_status(&mut s, 1, Duration::from_secs(10)),
        Some(200)
    );
    let t = wait_closed(&mut s, Duration::from_secs(20))
        .expect("zero-window peer still open after 20 s");
    let closed_after = start.elapsed().max(t);
    assert!(
        closed_after + Duration::from_millis(500) >= Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
}

#[test]
fn a_drain_cut_only_by_stalled_peers_exits_0_one_cut_while_serving_exits_5() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_with(
        &listener,
        &["--drain-timeout", "2s", "--send-timeout", "60s"],
    );
    let stalled = pipeline(addr);
    wait_until_stalled(&stalled);
    server.sigterm();
    assert_eq!(server.wait_exit(EXIT).code(), Some(0));
    let log = server.stderr();
    assert!(
        log.contains("waiting for peers that stopped reading"),
        "{log}"
    );

    // Control: the service itself is still working at the deadline.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_with(&listener, &["--drain-timeout", "2s"]);
    let mut c = Http1::connect(addr).unwrap();
    c.send("/slow?ms=20000").unwrap();
    thread::sleep(Duration::from_millis(300));
    server.sigterm();
    assert_eq!(server.wait_exit(EXIT).code(), Some(5));
}
