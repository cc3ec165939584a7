//! Fatal errors and the exit codes they map to (documented in `--help` and
//! the README).

use std::io;

use thiserror::Error;

use crate::activation::ActivationError;
use crate::cli::ListenAddr;

#[derive(Debug, Error)]
pub enum Fatal {
    #[error("bad socket activation environment: {0}")]
    Activation(#[from] ActivationError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: ListenAddr, source: io::Error },
    #[error("{context}: {source}")]
    Runtime {
        context: &'static str,
        source: io::Error,
    },
    #[error("drain ended ({why}) with {open} connection(s) still open; they were cut")]
    DrainCut { why: String, open: usize },
}

impl Fatal {
    pub fn runtime(context: &'static str) -> impl FnOnce(io::Error) -> Fatal {
        move |source| Fatal::Runtime { context, source }
    }

    /// 2 is clap's code for usage errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Runtime { .. } => 1,
            Fatal::Activation(_) => 3,
            Fatal::Bind { .. } => 4,
            Fatal::DrainCut { .. } => 5,
        }
    }
}
