//! The process's file descriptor limit (`RLIMIT_NOFILE`, getrlimit(2)).

use tracing::{info, warn};

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and log the result.
/// Failing to is not fatal: the server runs with the limit it has, and
/// says so.
pub(crate) fn raise_to_hard_limit() {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            warn!("cannot read RLIMIT_NOFILE: {e}");
            return;
        }
    };
    match rlimit::increase_nofile_limit(rlimit::INFINITY) {
        Ok(soft) if soft > before => {
            info!("RLIMIT_NOFILE: soft limit raised from {before} to {soft} (the hard limit)");
        }
        Ok(soft) => info!("RLIMIT_NOFILE: soft limit {soft}, already the hard limit"),
        Err(e) => warn!("cannot raise RLIMIT_NOFILE above {before}: {e}"),
    }
}
