//! hitless: the demo service built on the `hitless` library, an HTTP
//! service that systemd can restart or upgrade without a failed request.
//!
//! The binary's own modules: `cli` (flags), `logging` (journald or stderr),
//! `routes` (the endpoints) and `version`; everything about sockets,
//! readiness and the drain is the library's.

mod cli;
mod fault;
mod logging;
mod routes;
mod version;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Parser;
use hitless::{PoolHealth, Server, Tls};
use hyper::service::{service_fn, Service};
use tracing::{error, warn};

use crate::cli::Cli;
use crate::routes::{App, Identity};
use crate::version::VERSION;

/// jemalloc, with a background thread and a one-second decay
/// (.cargo/config.toml), gives the memory of a burst of connections back to
/// the operating system within seconds; glibc's malloc keeps most of it
/// (measured in docs/bench.md). The library leaves the choice to the
/// service.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), hitless::Error> {
    // A certificate that cannot be used ends the start here, before READY=1.
    let tls = match cli.tls() {
        Some((cert, key)) => {
            Some(Tls::load(&cert, &key)?.with_handshake_timeout(cli.tls_handshake_timeout))
        }
        None => None,
    };
    // Reads and changes the environment: before any thread exists.
    let mut server = Server::from_env(cli.settings())?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    if server.socket_activated() && !cli.listen.is_empty() {
        warn!("socket-activated: ignoring --listen");
    }
    let identity = Identity {
        version: VERSION,
        pid: std::process::id(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        socket_activated: server.socket_activated(),
        listeners: server.listeners().iter().map(Into::into).collect(),
    };
    if let Some(fault) = cli.simulate_fault {
        fault.arm();
    }
    let answer_500 = cli.simulate_fault == Some(fault::Fault::Answer500);
    let app = Arc::new(
        App::new(&identity, answer_500).map_err(|e| hitless::Error::Runtime {
            context: "cannot encode /version",
            source: e.into(),
        })?,
    );
    // /healthz says 404 while the host leaves its balancer's pool.
    let health = PoolHealth::new(routes::HEALTH_PATH, cli.deregistration_flag);
    let service = health.wrap(service_fn(move |req| routes::handle(req, app.clone())));
    server.run(service_fn(move |req| routes::versioned(service.call(req))))
}
