//! File descriptors: systemd starts services with a soft `RLIMIT_NOFILE` of
//! 1024 (systemd.exec(5), `LimitNOFILE=`); the server raises it to the hard
//! limit, so it can hold more connections than that.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::time::Duration;

use common::*;

/// More connections than a soft limit of 1024 descriptors can hold.
const CONNECTIONS: usize = 1100;

#[test]
fn serves_more_connections_than_a_soft_limit_of_1024() {
    // This process holds the client side of every connection.
    rlimit::increase_nofile_limit(4 * CONNECTIONS as u64).expect("raise own RLIMIT_NOFILE");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        soft > CONNECTIONS as u64 + 64,
        "test needs more fds: {soft}"
    );

    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = Launch::wrapped_with_listener(&["prlimit", "--nofile=1024:4096"], &listener)
        .with_notify()
        .spawn();
    server.wait_ready();
    assert_eq!(open_files_limit(&server), (4096, 4096));

    let mut clients: Vec<Http1> = (0..CONNECTIONS)
        .map(|i| {
            let mut c = Http1::connect(addr).unwrap_or_else(|e| panic!("connect {i}: {e}"));
            c.send("/healthz")
                .unwrap_or_else(|e| panic!("send {i}: {e}"));
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let r = c
            .recv()
            .unwrap_or_else(|e| panic!("connection {i} of {CONNECTIONS} not served: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    // All of them open at once, and still usable.
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c
            .get("/healthz")
            .unwrap_or_else(|e| panic!("connection {i} no longer served: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    server.sigterm();
    drop(clients);
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    let log = server.stderr();
    assert!(!log.contains("accept on"), "accept() failed: {log}");
    assert!(
        log.contains("RLIMIT_NOFILE") && log.contains("4096"),
        "the raised limit is not logged: {log}"
    );
}

/// The soft and hard `Max open files` of a running process (proc(5)).
fn open_files_limit(server: &Hitless) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id()))
        .expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("no Max open files line");
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn the_limit_is_left_alone_when_asked() {
    let listener = tcp_listener();
    let server = Launch::wrapped_with_listener(&["prlimit", "--nofile=1024:4096"], &listener)
        .arg("--keep-nofile-limit")
        .with_notify()
        .spawn();
    server.wait_ready();
    assert_eq!(open_files_limit(&server), (1024, 4096));
}
