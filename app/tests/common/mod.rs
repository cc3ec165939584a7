//! Test harness: run the real `hitless` binary (or an example built on the
//! library) with a listening socket passed the way systemd passes it (fd 3,
//! `LISTEN_FDS`, `LISTEN_PID`), speak HTTP/1.1 to it over plain sockets, and
//! listen on a real `NOTIFY_SOCKET`.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_hitless");

/// The executable of example `name` (app/examples/NAME.rs). Cargo has no
/// `CARGO_BIN_EXE_` for examples, but builds them for `cargo test` into
/// `examples/` beside the `deps/` directory that holds this test binary,
/// whatever the profile and target directory. `cargo test --test NAME` alone
/// does not build examples: it runs whatever example binary is there, so
/// build it first (`cargo build --example NAME`).
pub fn example_exe(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("current_exe");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary outside <target>/<profile>/deps");
    let exe = profile_dir.join("examples").join(name);
    assert!(
        exe.is_file(),
        "{} not built: run the whole `cargo test` (which builds examples), \
         or `cargo build --example {name}` first",
        exe.display()
    );
    exe
}

/// `sh` sets `LISTEN_PID` (and `WATCHDOG_PID` when a watchdog is asked for)
/// to its own pid and `exec`s hitless, which keeps that pid: exactly what
/// systemd does between fork and exec.
const EXEC_WITH_LISTEN_PID: &str = r#"export LISTEN_PID=$$
if [ -n "$WATCHDOG_USEC" ]; then export WATCHDOG_PID=$$; fi
exec "$0" "$@""#;

/// A fresh listening TCP socket on a free loopback port.
pub fn tcp_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind loopback")
}

/// A loopback address with a port that is free right now (for `--listen`).
pub fn free_addr() -> SocketAddr {
    tcp_listener().local_addr().expect("local addr")
}

/// hitless activated on `listener` (the test keeps it, as PID 1 does),
/// returned once it said `READY=1`.
pub fn serve(listener: &TcpListener) -> Hitless {
    serve_with(listener, &[])
}

/// Like [`serve`], with these command line arguments.
pub fn serve_with(listener: &TcpListener, args: &[&str]) -> Hitless {
    let server = Launch::with_listener(listener)
        .with_notify()
        .args(args)
        .spawn();
    server.wait_ready();
    server
}

/// A `hitless` process under test.
pub struct Hitless {
    pub child: Child,
    pub notify: Option<Notify>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Builder for a `hitless` process.
pub struct Launch {
    cmd: Command,
    fds: Vec<OwnedFd>,
    notify: Option<Notify>,
}

impl Launch {
    /// hitless with `fds` passed as 3, 4, … and `LISTEN_*` set as systemd does.
    pub fn activated(fds: Vec<OwnedFd>, names: Option<&str>) -> Launch {
        Launch::activated_exe(Path::new(BIN), fds, names)
    }

    /// Like [`Launch::activated`], for another executable.
    pub fn activated_exe(exe: &Path, fds: Vec<OwnedFd>, names: Option<&str>) -> Launch {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", EXEC_WITH_LISTEN_PID]).arg(exe);
        cmd.env("LISTEN_FDS", fds.len().to_string());
        if let Some(names) = names {
            cmd.env("LISTEN_FDNAMES", names);
        }
        Launch {
            cmd,
            fds,
            notify: None,
        }
    }

    /// hitless started by hand, no `LISTEN_*`.
    pub fn plain() -> Launch {
        Launch {
            cmd: Command::new(BIN),
            fds: Vec::new(),
            notify: None,
        }
    }

    /// Activated from a TCP listener the test keeps (like PID 1 does).
    pub fn with_listener(listener: &TcpListener) -> Launch {
        Launch::exe_with_listener(Path::new(BIN), listener)
    }

    /// Like [`Launch::with_listener`], for another executable.
    pub fn exe_with_listener(exe: &Path, listener: &TcpListener) -> Launch {
        let fd: OwnedFd = listener.try_clone().expect("dup listener").into();
        Launch::activated_exe(exe, vec![fd], Some("test.socket"))
    }

    /// Like [`Launch::with_listener`], run through `wrapper` (a program that
    /// sets something up and then `exec`s the rest of its command line, as
    /// `prlimit(1)` does), so that the pid is still the one `LISTEN_PID`
    /// names.
    pub fn wrapped_with_listener(wrapper: &[&str], listener: &TcpListener) -> Launch {
        let (program, args) = wrapper.split_first().expect("empty wrapper");
        let fd: OwnedFd = listener.try_clone().expect("dup listener").into();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .args(["sh", "-c", EXEC_WITH_LISTEN_PID])
            .arg(BIN);
        cmd.env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "test.socket");
        Launch {
            cmd,
            fds: vec![fd],
            notify: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Launch {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, A>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.cmd.env(key, value);
        self
    }

    /// Have hitless notify a socket this test reads.
    pub fn with_notify(mut self) -> Launch {
        let notify = Notify::new();
        self.cmd.env("NOTIFY_SOCKET", &notify.path);
        self.notify = Some(notify);
        self
    }

    /// Raw command (for tests that need an odd setup).
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn spawn(mut self) -> Hitless {
        let mappings = self
            .fds
            .into_iter()
            .enumerate()
            .map(|(i, parent_fd)| FdMapping {
                parent_fd,
                child_fd: 3 + i as i32,
            })
            .collect();
        self.cmd
            .fd_mappings(mappings)
            .expect("fd mappings")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Debug logs unless the test chose its own filter.
        if !self.cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            self.cmd.env("RUST_LOG", "debug");
        }
        let mut child = self.cmd.spawn().expect("spawn hitless");
        // Drain stderr continuously so a chatty child never blocks on a full pipe.
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        });
        Hitless {
            child,
            notify: self.notify,
            stderr,
        }
    }

    /// Run to completion; returns the exit status and stderr.
    pub fn run_to_exit(self, timeout: Duration) -> (ExitStatus, String) {
        let mut h = self.spawn();
        let status = h.wait_exit(timeout);
        (status, h.stderr())
    }
}

impl Hitless {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal hitless");
    }

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Wait for exit; kills the process and panics on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "hitless did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process wrote to stderr (call after it exited).
    pub fn stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(handle) => handle.join().unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Wait for `READY=1` on the notify socket.
    pub fn wait_ready(&self) -> Vec<String> {
        let notify = self
            .notify
            .as_ref()
            .expect("launched without with_notify()");
        notify.wait_for("READY=1", Duration::from_secs(10))
    }
}

impl Hitless {
    /// Wait for `STOPPING=1` (the drain has begun); returns that message.
    pub fn wait_stopping(&self) -> Vec<String> {
        let notify = self
            .notify
            .as_ref()
            .expect("launched without with_notify()");
        notify.wait_for("STOPPING=1", Duration::from_secs(5))
    }
}

impl Drop for Hitless {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `NOTIFY_SOCKET` the test listens on.
pub struct Notify {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl Notify {
    pub fn new() -> Notify {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Notify {
            _dir: dir,
            path,
            socket,
        }
    }

    /// Next datagram, split into its `KEY=VALUE` lines.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<String>> {
        self.socket.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Wait for a message containing `line`; returns that message.
    pub fn wait_for(&self, line: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.max(Duration::from_millis(1))) {
                Some(msg) if msg.iter().any(|l| l == line) => return msg,
                Some(_) => continue,
                None => panic!("no {line} on the notify socket within {timeout:?}"),
            }
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 keep-alive client over one TCP connection: the tests
/// need to control exactly when each request is written.
pub struct Http1 {
    reader: BufReader<TcpStream>,
}

impl Http1 {
    pub fn connect(addr: SocketAddr) -> io::Result<Http1> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Http1 {
            reader: BufReader::new(stream),
        })
    }

    /// The connection, for writing raw bytes or waiting for its end.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, path: &str) -> io::Result<()> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())
    }

    pub fn recv(&mut self) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| io::Error::other("response without content-length"))?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(path)?;
        self.recv()
    }
}

/// One request on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    Http1::connect(addr)?.get(path)
}

/// Poll until a request to `addr` succeeds (for servers started without a
/// notify socket).
pub fn wait_serving(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while get(addr, "/healthz").map(|r| r.status).ok() != Some(200) {
        assert!(
            start.elapsed() < timeout,
            "{addr} not serving after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Read and discard what the server sends on `s` until it closes the
/// connection (EOF or reset). Returns how long that took, or `None` when the
/// connection is still open after `bound`.
pub fn wait_closed(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = bound.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Reset or aborted: closed as well.
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// Raw HTTP/2 frames, for peers that hyper's client would not imitate (one
/// that never answers a PING, or stops halfway through its preface).
pub mod h2_raw {
    /// The client connection preface (RFC 9113 §3.4).
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// An empty SETTINGS frame (RFC 9113 §6.5): the rest of the preface.
    pub const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

    /// A HEADERS frame opening stream `id` with `GET path` and no body
    /// (END_STREAM | END_HEADERS), HPACK-coded without Huffman or indexing
    /// (RFC 7541 §6.1, §6.2.2). `path` must be shorter than 127 bytes.
    pub fn get(id: u32, path: &str) -> Vec<u8> {
        assert!(path.len() < 127);
        // :method GET, :scheme http (static table 2 and 6).
        let mut block = vec![0x82, 0x86];
        // :path (static name 4) and :authority (static name 1), literal.
        block.extend([0x04, path.len() as u8]);
        block.extend(path.as_bytes());
        block.extend([0x01, 4]);
        block.extend(b"test");
        let len = block.len();
        let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x1, 0x5];
        frame.extend((id & 0x7fff_ffff).to_be_bytes());
        frame.extend(block);
        frame
    }

    /// Read frames from `s` until the response HEADERS on stream `id`
    /// arrives; its `:status` when the server coded it from the static
    /// table (RFC 7541 Appendix A: 200, 204, 206, 304, 400, 404, 500), or
    /// `None` when the connection ends or `bound` passes first. Never
    /// answers anything (no SETTINGS ACK, no PING ACK).
    pub fn read_response_status(
        s: &mut std::net::TcpStream,
        id: u32,
        bound: std::time::Duration,
    ) -> Option<u16> {
        use std::io::Read;
        s.set_read_timeout(Some(bound)).ok()?;
        loop {
            let mut head = [0u8; 9];
            s.read_exact(&mut head).ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            s.read_exact(&mut payload).ok()?;
            if head[3] == 0x1 && stream == id {
                let first = *payload.first()?;
                let status = match first {
                    0x88 => 200,
                    0x89 => 204,
                    0x8a => 206,
                    0x8b => 304,
                    0x8c => 400,
                    0x8d => 404,
                    0x8e => 500,
                    _ => return None,
                };
                return Some(status);
            }
        }
    }
}
