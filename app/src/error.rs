//! Fatal errors and the process exit codes they map to.

use std::fmt;
use std::io;
use std::time::Duration;

use thiserror::Error;

use crate::activation::ActivationError;
use crate::listen_addr::ListenAddr;
use crate::ready_check::ReadyCheckFailure;
use crate::signals::StopSignal;

/// Why serving failed or ended badly.
///
/// [`Error::exit_code`] maps each kind to a process exit code: 1 runtime, 3
/// bad socket-activation environment, 4 nothing to listen on, 5 drain cut
/// short, 6 not ready, 7 TLS certificate or key unusable. 0 is a clean exit
/// after the drain (complete, or ended at its deadline with only stalled
/// peers left) and 2 is left to the command line parser for usage errors
/// (clap's convention), so a service built on this library can document one
/// table.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// `LISTEN_FDS` and friends are meant for this process but unusable.
    /// Exit code 3.
    #[error("bad socket activation environment: {0}")]
    Activation(#[from] ActivationError),
    /// A fallback address could not be bound. Exit code 4.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: ListenAddr,
        /// What `socket(2)`, `bind(2)` or `listen(2)` said.
        source: io::Error,
    },
    /// Not socket-activated and no fallback address given. Exit code 4.
    #[error("not socket-activated and no address to bind")]
    NoListeners,
    /// The operating system refused something the server needs (the async
    /// runtime, a signal handler, registering a socket). Exit code 1.
    #[error("{context}: {source}")]
    Runtime {
        /// What was being done.
        context: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// The drain did not finish while the service was still working, or a
    /// second signal ended it: connections that were still open were cut.
    /// Exit code 5.
    #[error("drain ended ({cause}) with {open} connection(s) still open; they were cut")]
    DrainCut {
        /// What ended it.
        cause: DrainCut,
        /// Connections open at that moment.
        open: usize,
    },
    /// The check before `READY=1`
    /// ([`Settings::ready_check`](crate::Settings::ready_check)) failed:
    /// nothing was accepted and systemd was not told `READY=1`. Exit code 6.
    #[error("not ready: the ready check GET {path} {cause}; exiting without READY=1")]
    NotReady {
        /// The path and query that was asked for.
        path: String,
        /// What went wrong.
        cause: ReadyCheckFailure,
    },
    /// The TLS certificate or key cannot be loaded or used. Exit code 7.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What cut a drain short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCut {
    /// [`Settings::drain_timeout`](crate::Settings::drain_timeout) passed.
    Deadline(Duration),
    /// A second stop signal arrived during the drain.
    SignalAgain(StopSignal),
}

impl fmt::Display for DrainCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainCut::Deadline(d) => write!(f, "deadline of {d:?} passed"),
            DrainCut::SignalAgain(sig) => write!(f, "{sig} received again"),
        }
    }
}

impl Error {
    pub(crate) fn runtime(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Runtime { context, source }
    }

    /// The process exit code for this error: 1 runtime, 3 activation
    /// environment, 4 bind, 5 drain cut, 6 not ready, 7 TLS certificate or
    /// key.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Runtime { .. } => 1,
            Error::Activation(_) => 3,
            Error::Bind { .. } | Error::NoListeners => 4,
            Error::DrainCut { .. } => 5,
            Error::NotReady { .. } => 6,
            #[cfg(feature = "tls")]
            Error::Tls(_) => 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_cut_messages() {
        let deadline = Error::DrainCut {
            cause: DrainCut::Deadline(Duration::from_millis(300)),
            open: 2,
        };
        assert_eq!(
            deadline.to_string(),
            "drain ended (deadline of 300ms passed) with 2 connection(s) still open; they were cut"
        );
        assert_eq!(deadline.exit_code(), 5);
        let again = DrainCut::SignalAgain(StopSignal::Interrupt);
        assert_eq!(again.to_string(), "SIGINT received again");
    }
}
