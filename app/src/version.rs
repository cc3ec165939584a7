//! The version this build reports.
//!
//! `CARGO_PKG_VERSION` unless `HITLESS_VERSION` is set when compiling: the
//! upgrade tests build v1 and v2 from the same source this way
//! (`HITLESS_VERSION=2.0.0 cargo build --release -p hitless`). Cargo records
//! the variable in the crate's dep-info, so changing it rebuilds this crate.

pub const VERSION: &str = match option_env!("HITLESS_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

// An empty override would make every version check in the tests meaningless.
const _: () = assert!(!VERSION.is_empty(), "HITLESS_VERSION must not be empty");
