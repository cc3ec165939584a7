//! Socket activation with the real binary: fds passed as systemd passes them,
//! by `systemd-socket-activate`, and every bad environment.
// These run the `hitless` binary, which needs the default feature "cli".
#![cfg(feature = "cli")]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const EXIT: Duration = Duration::from_secs(10);

fn version_json(addr: SocketAddr) -> String {
    let r = get(addr, "/version").expect("GET /version");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn serves_a_tcp_socket_passed_as_fd3() {
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let server = serve(&listener);

    let r = get(addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("hitless"), "{}", r.text());
    assert!(r.text().contains(&format!("pid {}", server.child.id())));
    assert!(r.header("x-hitless-version").is_some());

    let v = version_json(addr);
    assert!(v.contains(r#""socket_activated": true"#), "{v}");
    assert!(v.contains(r#""name": "test.socket""#), "{v}");
    assert!(v.contains(&addr.to_string()), "{v}");
}

#[test]
fn serves_every_passed_socket_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hitless.sock");
    let unix = UnixListener::bind(&path).unwrap();
    let tcp = tcp_listener();
    let addr = tcp.local_addr().unwrap();
    let fds: Vec<OwnedFd> = vec![tcp.into(), unix.into()];
    let server = Launch::activated(fds, Some("web:local"))
        .with_notify()
        .spawn();
    let ready = server.wait_ready();
    let status = ready.iter().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(
        status.contains("web") && status.contains("local"),
        "{status}"
    );

    assert_eq!(get(addr, "/healthz").unwrap().status, 200);
    let out = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&path)
        .arg("http://localhost/healthz")
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl over the unix socket failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn works_under_systemd_socket_activate() {
    // Debian's systemd package: passes the socket exactly as PID 1 does.
    let addr = free_addr();
    let mut launch = Launch::plain();
    let cmd = launch.command();
    *cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &addr.to_string(), "--fdname=activated", BIN]);
    let mut server = launch.with_notify().spawn();
    // systemd-socket-activate binds first, and only execs hitless on the
    // first connection, which then waits in the backlog: a real activation.
    std::thread::sleep(Duration::from_millis(200));
    let v = version_json(addr);
    assert!(v.contains(r#""socket_activated": true"#), "{v}");
    assert!(v.contains(r#""name": "activated""#), "{v}");
    server.sigterm();
    let status = server.wait_exit(EXIT);
    assert!(status.success(), "{status:?}: {}", server.stderr());
}

#[test]
fn foreign_listen_pid_means_not_activated() {
    // `sh -c` without exec: LISTEN_PID is the shell's, not ours.
    let listener = tcp_listener();
    let free = free_addr();
    let mut launch = Launch::with_listener(&listener);
    // Replace the exec wrapper with one that does not exec.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"LISTEN_PID=$$ "$0" "$@"; exit $?"#,
        BIN,
        "--listen",
        &free.to_string(),
    ]);
    cmd.env("LISTEN_FDS", "1");
    *launch.command() = cmd;
    let mut server = launch.spawn();
    wait_serving(free, Duration::from_secs(10));
    let v = version_json(free);
    assert!(v.contains(r#""socket_activated": false"#), "{v}");
    // Signal hitless, the shell's child; the shell then exits with its code.
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &server.child.id().to_string()])
        .status();
    server.wait_exit(EXIT);
    let log = server.stderr();
    assert!(log.contains("not socket-activated"), "{log}");
    assert!(log.contains("not our pid"), "{log}");
}

fn expect_exit(launch: Launch, code: i32, message: &str) {
    let (status, stderr) = launch.run_to_exit(EXIT);
    assert_eq!(status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in: {stderr}"
    );
    let error_lines = stderr.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(error_lines, 1, "one error line expected: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn garbage_listen_fds_is_exit_3() {
    for bad in ["abc", "-1", "", "0"] {
        let listener = tcp_listener();
        let launch = Launch::with_listener(&listener).env("LISTEN_FDS", bad);
        expect_exit(launch, 3, "LISTEN_FDS");
    }
}

#[test]
fn names_not_matching_count_is_exit_3() {
    let listener = tcp_listener();
    let launch = Launch::with_listener(&listener).env("LISTEN_FDNAMES", "a:b:c");
    expect_exit(launch, 3, "LISTEN_FDNAMES");
}

#[test]
fn regular_file_as_fd3_is_exit_3() {
    let file = tempfile::tempfile().unwrap();
    let launch = Launch::activated(vec![file.into()], None);
    expect_exit(
        launch,
        3,
        "fd 3 (unknown) is not a TCP or unix stream socket",
    );
}

#[test]
fn udp_socket_as_fd3_is_exit_3() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let launch = Launch::activated(vec![udp.into()], Some("dgram"));
    expect_exit(launch, 3, "fd 3 (dgram) is not a TCP or unix stream socket");
}

#[test]
fn connected_socket_as_fd3_is_exit_3() {
    let listener = tcp_listener();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let launch = Launch::activated(vec![stream.into()], Some("conn"));
    expect_exit(launch, 3, "fd 3 (conn) is a socket that is not listening");
}

#[test]
fn fewer_fds_than_announced_is_exit_3() {
    // LISTEN_FDS=2 but only fd 3 is open.
    let listener = tcp_listener();
    let launch = Launch::with_listener(&listener)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "a:b");
    expect_exit(launch, 3, "fd 4 (b)");
}

#[test]
fn address_in_use_is_exit_4() {
    let busy: TcpListener = tcp_listener();
    let addr = busy.local_addr().unwrap().to_string();
    let launch = Launch::plain().arg("--listen").arg(&addr);
    expect_exit(launch, 4, &format!("cannot listen on {addr}"));
}

#[test]
fn bad_arguments_are_exit_2() {
    for args in [
        &["--listen", "nope"][..],
        &["--drain-timeout", "soon"],
        &["--no-such-flag"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn version_flag() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("hitless "), "{text}");
}

#[test]
fn binds_listen_addresses_when_started_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-hand.sock");
    let addr = free_addr();
    let mut server = Launch::plain()
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--listen")
        .arg(format!("unix:{}", path.display()))
        .spawn();
    wait_serving(addr, Duration::from_secs(10));
    assert!(exists(&path));
    let v = version_json(addr);
    assert!(v.contains(r#""socket_activated": false"#), "{v}");
    server.sigterm();
    assert!(server.wait_exit(EXIT).success());
    assert!(!exists(&path), "socket file left behind");
}

#[test]
fn inherited_fd_is_cloexec_and_nonblocking() {
    // Close-on-exec keeps the socket out of any child; non-blocking is what
    // tokio needs. Read the flags the kernel reports.
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let server = serve(&listener);
    assert_eq!(get(addr, "/healthz").unwrap().status, 200);
    let pid = server.child.id();
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/3")).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    const O_CLOEXEC: u32 = 0o2000000;
    const O_NONBLOCK: u32 = 0o4000;
    assert_ne!(flags & O_CLOEXEC, 0, "fd 3 not close-on-exec: {flags:o}");
    assert_ne!(flags & O_NONBLOCK, 0, "fd 3 not non-blocking: {flags:o}");
}

#[test]
fn connections_get_tcp_nodelay_from_the_listening_socket() {
    // The socket systemd passes is shared with this test: what the server
    // sets on it is visible here. Linux copies it to accepted connections.
    let listener = tcp_listener();
    let nodelay = || socket2::SockRef::from(&listener).tcp_nodelay().unwrap();
    assert!(!nodelay(), "a new socket has Nagle's algorithm on");
    let _server = serve(&listener);
    assert!(
        nodelay(),
        "TCP_NODELAY is set on the listening socket by READY=1"
    );
}
