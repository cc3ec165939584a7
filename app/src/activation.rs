//! Socket activation: read what systemd passed us in `LISTEN_*` and take the
//! file descriptors (sd_listen_fds(3)).
//!
//! The protocol (sd_listen_fds(3)): fds start at 3, `LISTEN_FDS` says how
//! many, `LISTEN_PID` must be our pid (otherwise the variables were meant for
//! some other process, e.g. a `sh -c` wrapper that did not `exec`), and
//! `LISTEN_FDNAMES` optionally names them (`FileDescriptorName=`).
//!
//! Validation is a pure function over the variables' values so that every bad
//! case is unit-tested; taking the fds is left to `listenfd`, which checks the
//! socket family and type and sets `FD_CLOEXEC`. On top of that we insist that
//! each fd is a *listening* stream socket: a connected or datagram socket
//! would otherwise fail much later, in `accept()`.

use listenfd::ListenFd;
use socket2::SockRef;
use thiserror::Error;

use crate::listener::Socket;

/// First fd passed by systemd (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: u32 = 3;

/// More than this many fds is certainly a garbled environment.
const MAX_LISTEN_FDS: u32 = 1024;

/// Variables of the protocol; cleared before any thread exists so that
/// children cannot inherit them.
pub(crate) const LISTEN_VARS: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_FDS_FIRST_FD",
];

/// What the environment says about socket activation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// No `LISTEN_FDS`: started by hand (or by a unit without a socket).
    NotActivated,
    /// `LISTEN_FDS` is set but `LISTEN_PID` is missing or another pid: the
    /// fds are not ours. Carries the reason, for a warning in the log.
    NotForUs(String),
    /// The fds 3..3+n are ours, with their names (`"unknown"` when unnamed,
    /// as sd_listen_fds_with_names(3) does).
    Activated { names: Vec<String> },
}

/// A socket-activation environment that is meant for this process but
/// unusable (sd_listen_fds(3)). `fd` is the file descriptor number (3 is the
/// first), `name` its `LISTEN_FDNAMES` entry.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a decimal number.
    #[error("LISTEN_FDS={0:?} is not a number of file descriptors")]
    BadCount(String),
    /// `LISTEN_FDS` is 0 or implausibly large (over 1024).
    #[error("LISTEN_FDS={0} is out of range (1..={MAX_LISTEN_FDS})")]
    CountOutOfRange(u32),
    /// `LISTEN_FDNAMES` has a different number of `:`-separated names.
    #[error("LISTEN_FDNAMES names {names} fds but LISTEN_FDS={count}")]
    NameCountMismatch {
        /// Names in `LISTEN_FDNAMES`.
        names: usize,
        /// `LISTEN_FDS`.
        count: u32,
    },
    /// The fd is a file, a datagram socket or another non-stream socket.
    #[error("fd {fd} ({name}) is not a TCP or unix stream socket")]
    NotStreamSocket {
        /// The fd number.
        fd: u32,
        /// Its name.
        name: String,
    },
    /// The fd is a stream socket that is not in `listen(2)` state (for
    /// example a connected one, as `Accept=yes` units pass).
    #[error("fd {fd} ({name}) is a socket that is not listening")]
    NotListening {
        /// The fd number.
        fd: u32,
        /// Its name.
        name: String,
    },
    /// `getsockopt(SO_ACCEPTCONN)` on the fd failed.
    #[error("fd {fd} ({name}): {reason}")]
    Inspect {
        /// The fd number.
        fd: u32,
        /// Its name.
        name: String,
        /// The system error.
        reason: String,
    },
    /// Fewer fds are open than `LISTEN_FDS` announces.
    #[error("LISTEN_FDS={count} but only {got} fds could be taken")]
    Missing {
        /// `LISTEN_FDS`.
        count: u32,
        /// How many fds, from fd 3 on, were taken.
        got: usize,
    },
}

/// Decide from the variables' values whether we were socket-activated.
pub(crate) fn parse(
    listen_fds: Option<&str>,
    listen_pid: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
) -> Result<Activation, ActivationError> {
    let Some(fds) = listen_fds else {
        return Ok(Activation::NotActivated);
    };
    // LISTEN_PID first, as sd_listen_fds(3) does: variables meant for
    // another process are not ours to judge, however garbled.
    match listen_pid.map(str::trim) {
        None | Some("") => {
            return Ok(Activation::NotForUs(
                "LISTEN_FDS is set but LISTEN_PID is not".into(),
            ))
        }
        Some(pid) => match pid.parse::<u32>() {
            Ok(pid) if pid == our_pid => {}
            Ok(pid) => {
                return Ok(Activation::NotForUs(format!(
                    "LISTEN_PID={pid} is not our pid {our_pid} (a wrapper that does not exec?)"
                )))
            }
            Err(_) => {
                return Ok(Activation::NotForUs(format!(
                    "LISTEN_PID={pid:?} is not a pid"
                )))
            }
        },
    }
    let count: u32 = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(fds.to_owned()))?;
    if count == 0 || count > MAX_LISTEN_FDS {
        return Err(ActivationError::CountOutOfRange(count));
    }
    let names = match listen_fdnames {
        None | Some("") => vec!["unknown".to_owned(); count as usize],
        Some(names) => {
            let names: Vec<String> = names.split(':').map(str::to_owned).collect();
            if names.len() != count as usize {
                return Err(ActivationError::NameCountMismatch {
                    names: names.len(),
                    count,
                });
            }
            names
        }
    };
    Ok(Activation::Activated { names })
}

/// Take the fds described by `names` (fd 3 onwards) from the environment.
///
/// Must run while the process is single-threaded: `ListenFd::from_env`
/// removes `LISTEN_PID` and `LISTEN_FDS` from the environment.
pub(crate) fn take_sockets(names: &[String]) -> Result<Vec<(String, Socket)>, ActivationError> {
    let mut fds = ListenFd::from_env();
    let count = names.len() as u32;
    if fds.len() != names.len() {
        return Err(ActivationError::Missing {
            count,
            got: fds.len(),
        });
    }
    let mut taken = Vec::with_capacity(names.len());
    for (idx, name) in names.iter().enumerate() {
        let fd = LISTEN_FDS_START + idx as u32;
        let inspect = |e: std::io::Error| ActivationError::Inspect {
            fd,
            name: name.clone(),
            reason: e.to_string(),
        };
        // listenfd leaves the fd in place when the type does not match, so
        // trying TCP then unix is safe.
        let socket = match fds.take_tcp_listener(idx) {
            Ok(Some(l)) => Socket::Tcp(l),
            Ok(None) => return Err(ActivationError::Missing { count, got: idx }),
            Err(_) => match fds.take_unix_listener(idx) {
                Ok(Some(l)) => Socket::Unix(l),
                Ok(None) => return Err(ActivationError::Missing { count, got: idx }),
                Err(_) => {
                    return Err(ActivationError::NotStreamSocket {
                        fd,
                        name: name.clone(),
                    })
                }
            },
        };
        let listening = match &socket {
            Socket::Tcp(l) => SockRef::from(l).is_listener(),
            Socket::Unix(l) => SockRef::from(l).is_listener(),
        }
        .map_err(inspect)?;
        if !listening {
            return Err(ActivationError::NotListening {
                fd,
                name: name.clone(),
            });
        }
        taken.push((name.clone(), socket));
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: u32 = 4242;

    fn names(n: &[&str]) -> Activation {
        Activation::Activated {
            names: n.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn absent_means_not_activated() {
        assert_eq!(parse(None, None, None, PID), Ok(Activation::NotActivated));
        // LISTEN_PID alone is not activation either.
        assert_eq!(
            parse(None, Some("4242"), None, PID),
            Ok(Activation::NotActivated)
        );
    }

    #[test]
    fn one_unnamed_fd() {
        assert_eq!(
            parse(Some("1"), Some("4242"), None, PID),
            Ok(names(&["unknown"]))
        );
        assert_eq!(
            parse(Some("1"), Some("4242"), Some(""), PID),
            Ok(names(&["unknown"]))
        );
    }

    #[test]
    fn named_fds() {
        assert_eq!(
            parse(Some("2"), Some("4242"), Some("hitless.socket:admin"), PID),
            Ok(names(&["hitless.socket", "admin"]))
        );
    }

    #[test]
    fn garbage_count_is_an_error() {
        for bad in ["", "abc", "-1", "1.5", "0x3", "99999999999999999999"] {
            assert_eq!(
                parse(Some(bad), Some("4242"), None, PID),
                Err(ActivationError::BadCount(bad.to_owned())),
                "LISTEN_FDS={bad:?}"
            );
        }
    }

    #[test]
    fn count_out_of_range_is_an_error() {
        assert_eq!(
            parse(Some("0"), Some("4242"), None, PID),
            Err(ActivationError::CountOutOfRange(0))
        );
        assert_eq!(
            parse(Some("5000"), Some("4242"), None, PID),
            Err(ActivationError::CountOutOfRange(5000))
        );
    }

    #[test]
    fn other_pid_is_not_for_us() {
        let got = parse(Some("1"), Some("1"), None, PID);
        assert!(
            matches!(&got, Ok(Activation::NotForUs(why)) if why.contains("LISTEN_PID=1")),
            "{got:?}"
        );
    }

    #[test]
    fn missing_or_garbage_pid_is_not_for_us() {
        for pid in [None, Some(""), Some("me")] {
            let got = parse(Some("1"), pid, None, PID);
            assert!(
                matches!(got, Ok(Activation::NotForUs(_))),
                "{pid:?}: {got:?}"
            );
        }
    }

    #[test]
    fn names_must_match_count() {
        assert_eq!(
            parse(Some("2"), Some("4242"), Some("only-one"), PID),
            Err(ActivationError::NameCountMismatch { names: 1, count: 2 })
        );
        assert_eq!(
            parse(Some("1"), Some("4242"), Some("a:b"), PID),
            Err(ActivationError::NameCountMismatch { names: 2, count: 1 })
        );
    }

    #[test]
    fn foreign_pid_wins_over_garbage_count() {
        // Variables meant for another process are not ours to judge
        // (sd_listen_fds(3) checks LISTEN_PID first).
        for bad in ["x", "0", "5000"] {
            let got = parse(Some(bad), Some("1"), None, PID);
            assert!(
                matches!(&got, Ok(Activation::NotForUs(why)) if why.contains("LISTEN_PID=1")),
                "LISTEN_FDS={bad:?}: {got:?}"
            );
        }
        // Ours and garbled is an error.
        assert_eq!(
            parse(Some("x"), Some("4242"), None, PID),
            Err(ActivationError::BadCount("x".into()))
        );
    }
}
