//! Readiness protocol over a real NOTIFY_SOCKET.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn ready_only_when_serving_then_stopping_on_sigterm() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = Launch::with_listener(&listener).with_notify().spawn();
    let ready = server.wait_ready();
    let status = ready
        .iter()
        .find(|l| l.starts_with("STATUS="))
        .expect("READY=1 without STATUS=");
    assert!(status.contains(&addr.to_string()), "{status}");
    // Serving the moment READY=1 arrives, no retry needed.
    assert_eq!(get(addr, "/healthz").unwrap().status, 200);

    server.sigterm();
    let stopping = server.wait_stopping();
    assert!(stopping.iter().any(|l| l.starts_with("STATUS=Draining")));
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn pings_the_watchdog_at_half_the_interval() {
    let listener = tcp_listener();
    let server = Launch::with_listener(&listener)
        .env("WATCHDOG_USEC", "200000")
        .with_notify()
        .spawn();
    server.wait_ready();
    let notify = server.notify.as_ref().unwrap();
    let start = Instant::now();
    for _ in 0..4 {
        notify.wait_for("WATCHDOG=1", Duration::from_secs(2));
    }
    // Four pings at 100 ms intervals: well under the 200 ms deadline each.
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "pings too slow: {took:?}"
    );
}

#[test]
fn no_watchdog_pings_without_watchdog_usec() {
    let listener = tcp_listener();
    let server = serve(&listener);
    let notify = server.notify.as_ref().unwrap();
    assert!(notify.recv(Duration::from_millis(300)).is_none());
}

#[test]
fn started_by_hand_without_notify_socket_is_fine() {
    let addr = free_addr();
    let mut server = Launch::plain()
        .arg("--listen")
        .arg(addr.to_string())
        .spawn();
    wait_serving(addr, Duration::from_secs(10));
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = server.stderr();
    assert!(!log.contains("sd_notify failed"), "{log}");
}

/// Starts, serves one request and stops on SIGTERM with `RUST_LOG` set to
/// `rust_log`; returns what it wrote to stderr.
fn stderr_with_rust_log(rust_log: &str) -> String {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = Launch::with_listener(&listener)
        .env("RUST_LOG", rust_log)
        .with_notify()
        .spawn();
    server.wait_ready();
    assert_eq!(get(addr, "/healthz").unwrap().status, 200);
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    server.stderr()
}

#[test]
fn rust_log_sets_the_level_per_target() {
    // The drain's last line is at info: shown by default, not at warn.
    let info = stderr_with_rust_log("info");
    assert!(info.contains("drain complete, exiting"), "{info}");
    let warn = stderr_with_rust_log("warn");
    assert!(!warn.contains("drain complete"), "{warn}");
    let per_target = stderr_with_rust_log("warn,hitless=info");
    assert!(
        per_target.contains("drain complete, exiting"),
        "{per_target}"
    );
}

#[test]
fn a_rust_log_that_does_not_parse_is_reported_and_info_is_used() {
    // A level's typo, and EnvFilter's span syntax.
    for value in ["wran", "hitless[conn]=debug"] {
        let stderr = stderr_with_rust_log(value);
        let line = "hitless: RUST_LOG is not a log filter: \"";
        assert!(stderr.contains(line), "{stderr}");
        assert!(stderr.contains("drain complete, exiting"), "{stderr}");
    }
}
