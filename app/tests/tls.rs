//! HTTPS: the `hitless` binary with `--tls-cert`/`--tls-key` (or the
//! credential forms), socket-activated, against rustls and hyper clients
//! that trust a CA this test makes. ALPN picks the protocol; a certificate
//! that cannot be used means no `READY=1` and exit code 7; a handshake in
//! flight when the drain starts is served; every connection ends with
//! `close_notify`.
#![cfg(feature = "cli")]

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const EXIT: Duration = Duration::from_secs(10);

/// A CA, a certificate it signed for `localhost` and its key, a second
/// key, as PEM files in a temporary directory.
struct TestPki {
    dir: tempfile::TempDir,
    roots: RootCertStore,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("leaf");
        let other_key = KeyPair::generate().expect("other key");
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", leaf.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).expect("add CA");
        TestPki { dir, roots }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// hitless serving HTTPS with `pki`'s certificate on `listener`, once it
/// said `READY=1`.
fn serve_tls(listener: &TcpListener, pki: &TestPki, args: &[&str]) -> Hitless {
    let mut launch = Launch::with_listener(listener)
        .with_notify()
        .arg("--tls-cert")
        .arg(pki.path("cert.pem"))
        .arg("--tls-key")
        .arg(pki.path("key.pem"));
    for a in args {
        launch = launch.arg(a);
    }
    let server = launch.spawn();
    server.wait_ready();
    server
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` whose handshake is done.
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Tls> {
    let mut tls = tls_start(addr, config)?;
    tls.conn.complete_io(&mut tls.sock)?;
    Ok(tls)
}

/// A TCP connection to `addr` on which the ClientHello has been sent, and
/// nothing else.
fn tls_start(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Tls> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// GET `path` over HTTP/1.1 on `tls`.
fn get_on(tls: &mut Tls, path: &str) -> io::Result<Response> {
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    tls.flush()?;
    read_response(&mut BufReader::new(tls))
}

fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        match line.trim_end().split_once(':') {
            Some((k, v)) => headers.push((k.trim().to_owned(), v.trim().to_owned())),
            None => break,
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| io::Error::other("no content-length"))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// How the server ended the TLS connection: `Ok` for a `close_notify`
/// alert, the read error (`UnexpectedEof`: closed without one) otherwise.
fn read_to_close(tls: &mut Tls) -> io::Result<()> {
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_chooses_http2_or_http1_over_tls() {
    let pki = TestPki::new();
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_tls(&listener, &pki, &[]);
    let name = ServerName::try_from("localhost").unwrap();

    for (alpn, want) in [
        (&[&b"h2"[..], b"http/1.1"][..], Version::HTTP_2),
        (&[&b"http/1.1"[..]][..], Version::HTTP_11),
        (&[][..], Version::HTTP_11),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(pki.client(alpn))
            .connect(name.clone(), tcp)
            .await
            .expect("TLS handshake");
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let req = || {
            Request::get("https://localhost/version")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let resp = if want == Version::HTTP_2 {
            assert_eq!(chosen.as_deref(), Some(&b"h2"[..]));
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req()).await.unwrap()
        } else {
            assert_eq!(chosen.as_deref(), alpn.first().copied());
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let mut r = req();
            r.headers_mut().insert("host", "localhost".parse().unwrap());
            *r.uri_mut() = "/version".parse().unwrap();
            sender.send_request(r).await.unwrap()
        };
        assert_eq!((resp.status().as_u16(), resp.version()), (200, want));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("\"pid\""),
            "{body:?}"
        );
    }
    // A client that trusts another CA does not get through.
    let other = TestPki::new();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(other.client(&[]))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err(), "handshake with an untrusted certificate");

    server.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(EXIT);
        (status, server.stderr())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{status:?}");
}

/// Start hitless with `args` on a fresh socket and wait for its exit: its
/// exit code, whether it said `READY=1`, and its stderr.
fn start_to_exit(args: &[&std::ffi::OsStr], env: &[(&str, &Path)]) -> (Option<i32>, bool, String) {
    let listener = tcp_listener();
    let mut launch = Launch::with_listener(&listener).with_notify();
    for a in args {
        launch = launch.arg(a);
    }
    for (k, v) in env {
        launch.command().env(k, v);
    }
    let mut server = launch.spawn();
    let ready = thread::scope(|s| {
        let notify = server.notify.as_ref().unwrap();
        let watcher = s.spawn(|| {
            let mut ready = false;
            while let Some(msg) = notify.recv(Duration::from_secs(3)) {
                ready |= msg.iter().any(|l| l == "READY=1");
                if ready {
                    break;
                }
            }
            ready
        });
        watcher.join().unwrap()
    });
    if ready {
        server.sigterm();
    }
    let status = server.wait_exit(EXIT);
    (status.code(), ready, server.stderr())
}

#[test]
fn a_certificate_that_cannot_be_used_means_no_ready_and_exit_7() {
    let pki = TestPki::new();
    let p = |n: &str| pki.path(n).into_os_string();
    let (cert, key, other_key, missing) = (
        p("cert.pem"),
        p("key.pem"),
        p("other-key.pem"),
        p("missing.pem"),
    );
    let f = |s: &'static str| std::ffi::OsString::from(s);
    let (c, k) = (f("--tls-cert"), f("--tls-key"));
    let bad: [(&str, Vec<&std::ffi::OsStr>, &str); 4] = [
        (
            "key of another certificate",
            vec![&c, &cert, &k, &other_key],
            "cannot be used together",
        ),
        (
            "missing file",
            vec![&c, &missing, &k, &key],
            "cannot read TLS certificate",
        ),
        (
            "key given as the certificate",
            vec![&c, &key, &k, &key],
            "no usable PEM certificate",
        ),
        (
            "certificate given as the key",
            vec![&c, &cert, &k, &cert],
            "no usable PEM key",
        ),
    ];
    for (what, args, says) in bad {
        let (code, ready, log) = start_to_exit(&args, &[]);
        assert_eq!(code, Some(7), "{what}: {log}");
        assert!(!ready, "{what}: READY=1 sent");
        let errors: Vec<_> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{what}: {log}");
        assert!(errors[0].contains(says), "{what}: {}", errors[0]);
    }
    // Control: the right pair starts (and drains) as usual.
    let (code, ready, log) = start_to_exit(&[&c, &cert, &k, &key], &[]);
    assert!(ready && code == Some(0), "good pair: {code:?}: {log}");
}

#[test]
fn certificate_and_key_from_systemd_credentials() {
    let pki = TestPki::new();
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(pki.path("cert.pem"), creds.path().join("tls.crt")).unwrap();
    std::fs::copy(pki.path("key.pem"), creds.path().join("tls.key")).unwrap();
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut launch = Launch::with_listener(&listener)
        .with_notify()
        .arg("--tls-cert-credential")
        .arg("tls.crt")
        .arg("--tls-key-credential")
        .arg("tls.key");
    launch.command().env("CREDENTIALS_DIRECTORY", creds.path());
    let mut server = launch.spawn();
    server.wait_ready();
    let mut tls = tls_connect(addr, pki.client(&[])).expect("handshake");
    assert_eq!(get_on(&mut tls, "/").unwrap().status, 200);
    server.sigterm();
    assert!(server.wait_exit(EXIT).success(), "{}", server.stderr());

    // Without $CREDENTIALS_DIRECTORY (no LoadCredential=): exit 7.
    let args = [
        "--tls-cert-credential",
        "tls.crt",
        "--tls-key-credential",
        "tls.key",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (code, ready, log) = start_to_exit(&args, &[]);
    assert!(!ready && code == Some(7), "{code:?}: {log}");
    assert!(log.contains("CREDENTIALS_DIRECTORY is not set"), "{log}");
}

/// Open a connection, send its ClientHello, let the server accept it, then
/// SIGTERM and wait for `STOPPING=1`, and only then finish the handshake
/// after `pause` and send a request.
fn handshake_across_the_drain(
    args: &[&str],
    pause: Duration,
) -> (io::Result<(Response, io::Result<()>)>, bool) {
    let pki = TestPki::new();
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_tls(&listener, &pki, args);
    let mut tls = tls_start(addr, pki.client(&[])).expect("connect");
    // accept() takes microseconds; the ClientHello is in the server's buffer.
    thread::sleep(Duration::from_millis(200));
    server.sigterm();
    server.wait_stopping();
    thread::sleep(pause);
    let served = (|| {
        tls.conn.complete_io(&mut tls.sock)?;
        let r = get_on(&mut tls, "/")?;
        Ok((r, read_to_close(&mut tls)))
    })();
    let status = server.wait_exit(EXIT);
    (served, status.success())
}

#[test]
fn a_handshake_in_flight_when_the_drain_starts_is_served() {
    for round in 0..5 {
        let (served, clean_exit) = handshake_across_the_drain(&[], Duration::ZERO);
        let (r, end) = served.unwrap_or_else(|e| panic!("round {round}: lost: {e}"));
        assert_eq!(r.status, 200, "round {round}");
        assert!(
            r.closes(),
            "round {round}: no Connection: close while draining"
        );
        assert!(end.is_ok(), "round {round}: no close_notify: {end:?}");
        assert!(clean_exit, "round {round}");
    }
}

#[test]
fn control_a_handshake_past_its_timeout_is_cut_and_does_not_hold_the_drain() {
    let args = ["--tls-handshake-timeout", "300ms"];
    let (served, clean_exit) = handshake_across_the_drain(&args, Duration::from_secs(1));
    assert!(
        served.is_err(),
        "served after the handshake timeout: {served:?}"
    );
    assert!(clean_exit);
}

#[test]
fn every_connection_ends_with_close_notify() {
    let pki = TestPki::new();
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let mut server = serve_tls(&listener, &pki, &["--header-read-timeout", "1s"]);

    // The client asked to close: hyper shuts the TLS stream down.
    let mut asked = tls_connect(addr, pki.client(&[])).unwrap();
    write!(
        asked,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut BufReader::new(&mut asked)).unwrap();
    assert!(r.closes());
    assert!(read_to_close(&mut asked).is_ok(), "client-asked close");

    // No request within the header-read timeout: closed by the timer.
    let mut silent = tls_connect(addr, pki.client(&[])).unwrap();
    let end = read_to_close(&mut silent);
    assert!(end.is_ok(), "header-read timeout: {end:?}");

    // Idle keep-alive connection, closed by the drain after its grace.
    let mut idle = tls_connect(addr, pki.client(&[])).unwrap();
    assert_eq!(get_on(&mut idle, "/").unwrap().status, 200);
    server.sigterm();
    let end = read_to_close(&mut idle);
    assert!(end.is_ok(), "drain: {end:?}");
    assert!(server.wait_exit(EXIT).success(), "{}", server.stderr());
}

#[test]
fn control_a_tls_close_without_close_notify_is_seen() {
    // A server that drops the TLS connection without the alert: the check
    // used above must report it, or it proves nothing.
    let pki = TestPki::new();
    let listener = tcp_listener();
    let addr = listener.local_addr().unwrap();
    let cert = std::fs::read(pki.path("cert.pem")).unwrap();
    let key = std::fs::read(pki.path("key.pem")).unwrap();
    let server = thread::spawn(move || {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        conn.complete_io(&mut sock).unwrap();
        // Dropped: TCP FIN, no close_notify.
    });
    let mut tls = tls_connect(addr, pki.client(&[])).unwrap();
    server.join().unwrap();
    let end = read_to_close(&mut tls);
    assert_eq!(end.map_err(|e| e.kind()), Err(io::ErrorKind::UnexpectedEof));
}

#[test]
fn the_header_read_timeout_bounds_the_handshake() {
    let pki = TestPki::new();
    for (header_read, closes) in [("1s", true), ("30s", false)] {
        let listener = tcp_listener();
        let addr = listener.local_addr().unwrap();
        let args = [
            "--header-read-timeout",
            header_read,
            "--tls-handshake-timeout",
            "30s",
        ];
        let mut server = serve_tls(&listener, &pki, &args);
        // Connected, no ClientHello.
        let mut s = TcpStream::connect(addr).unwrap();
        let closed = wait_closed(&mut s, Duration::from_secs(4));
        assert_eq!(
            closed.is_some(),
            closes,
            "header-read {header_read}: {closed:?}"
        );
        server.sigterm();
        assert!(server.wait_exit(EXIT).success(), "{}", server.stderr());
    }
}
