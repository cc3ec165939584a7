#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations)]

mod accept;
mod activation;
mod activity;
mod connection;
#[cfg(feature = "tls")]
pub mod credentials;
mod drain;
mod error;
mod listen_addr;
mod listener;
mod nofile;
mod notify;
mod pool;
mod ready_check;
mod server;
mod service;
mod settings;
mod signals;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tower")]
mod tower;
mod watched_io;

pub use activation::ActivationError;
pub use error::{DrainCut, Error};
pub use listen_addr::{ListenAddr, ParseListenAddrError};
pub use listener::{Listener, Origin, Socket};
pub use pool::{PoolHealth, PoolHealthFuture, WithPoolHealth, DEREGISTRATION_FLAG};
pub use ready_check::ReadyCheckFailure;
pub use server::Server;
pub use settings::Settings;
pub use signals::StopSignal;
#[cfg(feature = "tls")]
pub use tls::{PemSource, Tls, TlsError};

/// The error type hyper accepts from services and bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
