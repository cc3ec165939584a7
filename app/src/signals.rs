//! The signals that start the drain: SIGTERM (what systemd sends,
//! `KillSignal=` in systemd.kill(5)) and SIGINT (Ctrl-C).

use std::fmt;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::Error;

/// A signal that stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM.
    Terminate,
    /// SIGINT.
    Interrupt,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        })
    }
}

/// Handlers for both stop signals. Installed before `READY=1`, so a stop
/// that comes right after start-up is a drain and not the default-action
/// kill.
pub(crate) struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Must run inside the tokio runtime.
    pub(crate) fn install() -> Result<StopSignals, Error> {
        const CONTEXT: &str = "cannot install signal handler";
        let term = signal(SignalKind::terminate()).map_err(Error::runtime(CONTEXT))?;
        let int = signal(SignalKind::interrupt()).map_err(Error::runtime(CONTEXT))?;
        Ok(StopSignals { term, int })
    }

    /// The next stop signal.
    pub(crate) async fn next(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Terminate,
            _ = self.int.recv() => StopSignal::Interrupt,
        }
    }
}
