//! The service of `minimal-hyper` (one `service_fn` answering `ok`) served
//! by the hitless library with its default settings, so that the
//! instruction-count benchmark (bench/instructions) compares what the
//! library adds and nothing else. Socket-activated (fd 3) or, by default,
//! bound to the address given (`hitless-ok 127.0.0.1:8080`). Exit codes as
//! the library's (`hitless::Error::exit_code`), 2 on bad usage.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};

async fn ok(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

fn serve(
    settings: hitless::Settings,
    tls: Option<(&String, &String)>,
) -> Result<(), hitless::Error> {
    let file = |path: &String| hitless::PemSource::File(path.into());
    let tls = match tls {
        Some((cert, key)) => Some(hitless::Tls::load(&file(cert), &file(key))?),
        None => None,
    };
    let mut server = hitless::Server::from_env(settings)?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    server.run(service_fn(ok))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, tls) = match args.as_slice() {
        [addr] => (addr, None),
        [addr, cert, key] => (addr, Some((cert, key))),
        _ => {
            eprintln!("usage: hitless-ok HOST:PORT [CERT.pem KEY.pem]");
            return ExitCode::from(2);
        }
    };
    let Ok(addr) = addr.parse::<hitless::ListenAddr>() else {
        eprintln!("hitless-ok: not HOST:PORT or unix:/PATH: {addr}");
        return ExitCode::from(2);
    };
    let settings = hitless::Settings {
        fallback: vec![addr],
        ..hitless::Settings::default()
    };
    match serve(settings, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hitless-ok: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
