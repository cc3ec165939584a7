//! The drain: what happens to requests when hitless gets SIGTERM.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const EXIT: Duration = Duration::from_secs(10);

/// Outcome of one round of the keep-alive race.
struct Race {
    failures: Vec<String>,
    answered_while_draining: usize,
}

/// When the clients of a keep-alive race write their next request.
#[derive(Clone, Copy)]
enum Moment {
    /// Around SIGTERM: from 1 ms before to 2.5 ms after it.
    AroundSigterm,
    /// Once the drain has begun (`STOPPING=1` seen): from 0 to 3.5 ms after.
    WhileDraining,
}

/// `conns` keep-alive connections, each idle after one request; then every
/// client writes its next request at a slightly different moment (0.5 ms
/// apart) around the start of the drain.
fn keep_alive_race(conns: usize, moment: Moment, extra_args: &[&str]) -> Race {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut launch = Launch::with_listener(&listener).with_notify();
    for a in extra_args {
        launch = launch.arg(a);
    }
    let mut server = launch.spawn();
    server.wait_ready();

    let barrier = Arc::new(Barrier::new(conns + 1));
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let mut c = Http1::connect(addr).expect("connect");
            let first = c.get("/").expect("first request");
            assert_eq!(first.status, 200);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                thread::sleep(Duration::from_micros(500 * i as u64));
                c.get("/").map_err(|e| format!("client {i}: {e}"))
            })
        })
        .collect();
    match moment {
        Moment::AroundSigterm => {
            barrier.wait();
            thread::sleep(Duration::from_millis(1));
            server.sigterm();
        }
        Moment::WhileDraining => {
            server.sigterm();
            server.wait_stopping();
            barrier.wait();
        }
    }

    let mut race = Race {
        failures: Vec::new(),
        answered_while_draining: 0,
    };
    for c in clients {
        match c.join().expect("client thread") {
            Ok(r) if r.status == 200 => race.answered_while_draining += r.closes() as usize,
            Ok(r) => race.failures.push(format!("status {}", r.status)),
            Err(e) => race.failures.push(e),
        }
    }
    let status = server.wait_exit(EXIT);
    assert!(status.success(), "{status:?}: {}", server.stderr());
    race
}

#[test]
fn keep_alive_request_sent_at_sigterm_is_answered() {
    for round in 0..25 {
        let race = keep_alive_race(8, Moment::AroundSigterm, &[]);
        assert!(
            race.failures.is_empty(),
            "round {round}: requests lost: {:?}",
            race.failures
        );
    }
}

#[test]
fn keep_alive_request_sent_while_draining_is_answered_with_close() {
    for round in 0..10 {
        let race = keep_alive_race(8, Moment::WhileDraining, &[]);
        assert!(
            race.failures.is_empty(),
            "round {round}: requests lost: {:?}",
            race.failures
        );
        // Every one of them was served by the draining process, and told so.
        assert_eq!(race.answered_while_draining, 8, "round {round}");
    }
}

#[test]
fn control_without_idle_grace_the_race_loses_requests() {
    // --idle-grace 0s is plain hyper graceful_shutdown(): idle connections
    // are closed at once and a request written at that moment is lost. The
    // same rounds as the test above must lose requests, which shows that
    // those tests see the race they guard against.
    let lost: usize = (0..10)
        .map(|_| {
            keep_alive_race(8, Moment::WhileDraining, &["--idle-grace", "0s"])
                .failures
                .len()
        })
        .sum();
    assert!(
        lost > 0,
        "the race never showed; the keep-alive tests prove nothing"
    );
}

#[test]
fn in_flight_slow_requests_complete_then_exit_0() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve(&listener);

    let slow: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Http1::connect(addr).unwrap();
            c.send("/slow?ms=800").unwrap();
            thread::spawn(move || c.recv())
        })
        .collect();
    thread::sleep(Duration::from_millis(150));
    let signalled = Instant::now();
    server.sigterm();
    server.wait_stopping();
    for c in slow {
        let r = c.join().unwrap().expect("slow request lost");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "slept 800 ms\n");
        assert!(
            r.closes(),
            "answered while draining without Connection: close"
        );
    }
    let status = server.wait_exit(EXIT);
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(500),
        "exited before the in-flight requests could finish"
    );
}

#[test]
fn new_connections_wait_in_the_socket_for_the_next_process() {
    // The test holds the listening socket like PID 1 does. A connection made
    // after the old process stopped accepting is not refused: it waits in
    // the kernel queue and the next process answers it.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut old = serve(&listener);
    let mut busy = Http1::connect(addr).unwrap();
    busy.send("/slow?ms=600").unwrap();
    thread::sleep(Duration::from_millis(100));
    old.sigterm();
    old.wait_stopping();

    let waiting = thread::spawn(move || get(addr, "/version"));
    assert_eq!(busy.recv().unwrap().status, 200);
    assert!(old.wait_exit(EXIT).success());

    let new = serve(&listener);
    let r = waiting.join().unwrap().expect("queued connection lost");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&format!("\"pid\": {}", new.child.id())),
        "answered by the wrong process: {}",
        r.text()
    );
}

#[test]
fn drain_deadline_cuts_connections_and_exits_5() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = Launch::with_listener(&listener)
        .arg("--drain-timeout")
        .arg("300ms")
        .with_notify()
        .spawn();
    server.wait_ready();
    let mut c = Http1::connect(addr).unwrap();
    c.send("/slow?ms=20000").unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    server.sigterm();
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(5));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "deadline not enforced"
    );
    assert!(c.recv().is_err(), "cut connection still answered");
    let log = server.stderr();
    assert!(
        log.contains("drain ended (deadline of 300ms passed)"),
        "{log}"
    );
}

#[test]
fn second_signal_ends_the_drain() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve(&listener);
    let mut c = Http1::connect(addr).unwrap();
    c.send("/slow?ms=20000").unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    server.wait_stopping();
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit(EXIT).code(), Some(5));
    assert!(start.elapsed() < Duration::from_secs(5));
    let log = server.stderr();
    assert!(log.contains("drain ended (SIGINT received again)"), "{log}");
}

/// A client loop for the restart test: keep-alive (reconnecting when told
/// `Connection: close`) or a new connection per request.
fn client_loop(
    addr: SocketAddr,
    keep_alive: bool,
    until: Instant,
) -> (usize, Vec<String>, Vec<u32>) {
    let (mut ok, mut errors, mut pids) = (0, Vec::new(), Vec::new());
    let mut conn: Option<Http1> = None;
    while Instant::now() < until {
        let c = match conn.take() {
            Some(c) if keep_alive => c,
            _ => match Http1::connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let mut c = c;
        match c.get("/version") {
            Ok(r) if r.status == 200 => {
                ok += 1;
                let text = r.text();
                if let Some(pid) = text
                    .split("\"pid\": ")
                    .nth(1)
                    .and_then(|s| s.split(',').next())
                    .and_then(|s| s.trim().parse().ok())
                {
                    if pids.last() != Some(&pid) {
                        pids.push(pid);
                    }
                }
                if !r.closes() {
                    conn = Some(c);
                }
            }
            Ok(r) => errors.push(format!("status {}", r.status)),
            Err(e) => errors.push(format!("request: {e}")),
        }
    }
    (ok, errors, pids)
}

#[test]
fn restarts_under_load_lose_nothing() {
    // Stop-then-start, five times, while eight clients hammer the socket.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve(&listener);
    let mut started = vec![server.child.id()];

    let until = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..8)
        .map(|i| thread::spawn(move || client_loop(addr, i % 2 == 0, until)))
        .collect();
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(500));
        server.sigterm();
        let status = server.wait_exit(EXIT);
        assert!(status.success(), "{status:?}: {}", server.stderr());
        server = serve(&listener);
        started.push(server.child.id());
    }
    let mut total = 0;
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (ok, errors, pids) = c.join().unwrap();
        assert!(errors.is_empty(), "failed requests: {errors:?}");
        total += ok;
        seen.extend(pids);
    }
    assert!(total > 100, "only {total} requests made");
    // Every process served someone: the load really spanned the restarts.
    for pid in &started {
        assert!(seen.contains(pid), "pid {pid} never answered; saw {seen:?}");
    }
}

#[test]
fn silent_http2_peers_do_not_hold_the_drain() {
    // Two HTTP/2 peers that stop reading and writing: one after its
    // preface, one after a complete request. Neither will answer the PING
    // of hyper's graceful shutdown; with no stream open, neither is work in
    // flight, so the drain closes them after the idle grace and exits 0
    // instead of waiting for the deadline (exit 5).
    use std::io::Write;
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = Launch::with_listener(&listener)
        .arg("--drain-timeout")
        .arg("5s")
        .with_notify()
        .spawn();
    server.wait_ready();
    let mut preface_only = std::net::TcpStream::connect(addr).unwrap();
    preface_only
        .write_all(&[h2_raw::PREFACE, h2_raw::SETTINGS].concat())
        .unwrap();
    let mut served = std::net::TcpStream::connect(addr).unwrap();
    served
        .write_all(
            &[
                h2_raw::PREFACE,
                h2_raw::SETTINGS,
                &h2_raw::get(1, "/healthz"),
            ]
            .concat(),
        )
        .unwrap();
    assert_eq!(
        h2_raw::read_response_status(&mut served, 1, Duration::from_secs(10)),
        Some(200)
    );
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", server.stderr());
    drop((preface_only, served));
}
