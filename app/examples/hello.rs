//! A complete service on the hitless library: plain HTTP handlers, no drain
//! logic; the library takes the socket from systemd, tells systemd when it
//! is ready, and drains on SIGTERM.
//!
//! ```text
//! cargo build --example hello
//! systemd-socket-activate -l 127.0.0.1:8080 target/debug/examples/hello
//! curl http://127.0.0.1:8080/            # hello from pid N
//! curl http://127.0.0.1:8080/slow        # the same, after 500 ms
//! ```
//!
//! Started without a socket it binds 127.0.0.1:8080 itself. Exit codes are
//! the library's (`hitless::Error::exit_code`).

use std::convert::Infallible;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};

/// How long `/slow` takes to answer.
const SLOW: Duration = Duration::from_millis(500);

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let pid = std::process::id();
    let resp = match req.uri().path() {
        "/" => Response::new(Full::new(Bytes::from(format!("hello from pid {pid}\n")))),
        "/slow" => {
            tokio::time::sleep(SLOW).await;
            Response::new(Full::new(Bytes::from(format!("hello from pid {pid}\n"))))
        }
        _ => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    };
    Ok(resp)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = hitless::Settings {
        drain_timeout: Duration::from_secs(10),
        ..hitless::Settings::default()
    };
    // Before the runtime exists: reading and changing the environment
    // (LISTEN_*, WATCHDOG_*) is only sound while single-threaded.
    let served =
        hitless::Server::from_env(settings).and_then(|server| server.run(service_fn(hello)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
