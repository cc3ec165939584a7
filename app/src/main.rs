//! hitless: an HTTP service that systemd can restart or upgrade without a
//! failed request. See README.md.

mod activation;
mod cli;
mod error;
mod listeners;
mod logging;
mod notify;
mod routes;
mod server;
mod version;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Parser;
use tracing::{error, warn};

use crate::activation::Activation;
use crate::cli::{default_listen, Cli};
use crate::error::Fatal;
use crate::routes::{App, Identity};
use crate::version::VERSION;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            error!("{fatal}");
            ExitCode::from(fatal.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Fatal> {
    // Everything that reads or changes the environment happens here, before
    // the runtime starts any thread (setenv/unsetenv are not thread-safe).
    let var = |name| std::env::var(name).ok();
    let activation = activation::parse(
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    let prepared = match activation {
        Activation::Activated { names } => {
            if !cli.listen.is_empty() {
                warn!("socket-activated: ignoring --listen");
            }
            listeners::inherited(activation::take_sockets(&names)?)?
        }
        Activation::NotForUs(why) => {
            warn!("not socket-activated: {why}; binding --listen addresses");
            bind_cli(&cli)?
        }
        Activation::NotActivated => bind_cli(&cli)?,
    };
    let socket_activated = prepared.iter().any(|p| p.info.name != "--listen");
    for name in activation::LISTEN_VARS {
        std::env::remove_var(name);
    }
    let watchdog = notify::watchdog_interval();

    let identity = Identity {
        version: VERSION,
        pid: std::process::id(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        socket_activated,
        listeners: prepared.iter().map(|p| p.info.clone()).collect(),
    };
    let app = Arc::new(App::new(&identity).map_err(|e| Fatal::Runtime {
        context: "cannot encode /version",
        source: e.into(),
    })?);
    let settings = server::Settings {
        drain_timeout: cli.drain_timeout,
        idle_grace: cli.idle_grace,
        header_read_timeout: cli.header_read_timeout,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Fatal::runtime("cannot start the async runtime"))?;
    let mut unlink = Vec::new();
    let result = runtime.block_on(async {
        let mut listeners = Vec::with_capacity(prepared.len());
        for p in prepared {
            let (listener, path) = p.into_tokio()?;
            listeners.push(listener);
            unlink.extend(path);
        }
        server::run(listeners, app, settings, watchdog).await
    });
    // Connections cut by the deadline are dropped with the runtime here.
    drop(runtime);
    for path in unlink {
        if let Err(e) = std::fs::remove_file(&path) {
            warn!("cannot remove {}: {e}", path.display());
        }
    }
    result
}

fn bind_cli(cli: &Cli) -> Result<Vec<listeners::Prepared>, Fatal> {
    if cli.listen.is_empty() {
        listeners::bind(&[default_listen()])
    } else {
        listeners::bind(&cli.listen)
    }
}
