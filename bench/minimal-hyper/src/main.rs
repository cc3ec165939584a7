//! The smallest hyper 1.x server, as the hyper and hyper-util examples
//! write it: a tokio multi-thread runtime, one task per connection served by
//! hyper-util's auto builder (HTTP/1.1 and cleartext HTTP/2), one
//! `service_fn` answering `ok`. No timeouts, no drain: what hitless' cost is
//! compared with (bench/instructions).
//!
//!     minimal-hyper [--current-thread] 127.0.0.1:8080
//!
//! `--current-thread` runs tokio's current-thread scheduler instead (for
//! bench/run's HTTP/2 latency tail, which depends on the scheduler).
//!
//! Exits 0 on SIGTERM or SIGINT (so that callgrind writes its counts), 2 on
//! bad usage, 1 when it cannot listen.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

async fn ok(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        };
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // Errors are the client's (it went away); nothing to report.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(ok))
                .await;
        });
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let current_thread = args.first().is_some_and(|a| a == "--current-thread");
    if current_thread {
        args.remove(0);
    }
    let (Some(addr), None) = (args.pop(), args.pop()) else {
        eprintln!("usage: minimal-hyper [--current-thread] HOST:PORT");
        return ExitCode::from(2);
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("minimal-hyper: not HOST:PORT: {addr}");
        return ExitCode::from(2);
    };
    let mut runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let served = runtime
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(serve(addr)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minimal-hyper: cannot serve on {addr}: {e}");
            ExitCode::from(1)
        }
    }
}
