//! systemd credentials: files the service manager places in a private
//! directory for the service (`LoadCredential=`, `SetCredential=`,
//! `LoadCredentialEncrypted=`; systemd.exec(5), "Credentials"), named in
//! `$CREDENTIALS_DIRECTORY`.
//!
//! A credential is read like any file; what is special is where it lives:
//! the directory is readable by the service's user only (also a
//! `DynamicUser=`), so a service needs no access to the file it came from.

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

/// The environment variable systemd sets to the service's credentials
/// directory (systemd.exec(5), "Environment variables in spawned
/// processes").
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Why a credential cannot be found.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// `$CREDENTIALS_DIRECTORY` is not set: the unit has no
    /// `LoadCredential=` (or the process was not started by systemd).
    #[error("credential {0:?} asked for but $CREDENTIALS_DIRECTORY is not set (no LoadCredential= in the unit?)")]
    NoDirectory(String),
    /// The name is not a plain file name (systemd allows no `/`, and
    /// neither `.` nor `..`).
    #[error("bad credential name {0:?}: must be a file name without '/'")]
    BadName(String),
}

/// The path of credential `name` in `directory` (the value of
/// `$CREDENTIALS_DIRECTORY`, `None` when unset).
///
/// # Errors
/// [`CredentialError::NoDirectory`] when `directory` is `None` or empty,
/// [`CredentialError::BadName`] when `name` is empty, `.`, `..` or has a `/`.
pub fn path_in(directory: Option<OsString>, name: &str) -> Result<PathBuf, CredentialError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(CredentialError::BadName(name.to_owned()));
    }
    match directory {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join(name)),
        _ => Err(CredentialError::NoDirectory(name.to_owned())),
    }
}

/// The path of credential `name` of this process, from
/// `$CREDENTIALS_DIRECTORY`; see [`path_in`].
///
/// # Errors
/// As [`path_in`].
pub fn path(name: &str) -> Result<PathBuf, CredentialError> {
    path_in(std::env::var_os(CREDENTIALS_DIRECTORY), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_the_directory() {
        let dir = Some(OsString::from("/run/credentials/hitless@blue.service"));
        assert_eq!(
            path_in(dir.clone(), "tls.crt"),
            Ok(PathBuf::from(
                "/run/credentials/hitless@blue.service/tls.crt"
            ))
        );
        for bad in ["", ".", "..", "a/b", "/etc/passwd"] {
            assert_eq!(
                path_in(dir.clone(), bad),
                Err(CredentialError::BadName(bad.into()))
            );
        }
        for unset in [None, Some(OsString::new())] {
            assert_eq!(
                path_in(unset, "tls.crt"),
                Err(CredentialError::NoDirectory("tls.crt".into()))
            );
        }
    }
}
