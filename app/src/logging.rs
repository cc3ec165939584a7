//! Logging: native journald records when stderr is connected to the journal
//! (systemd sets `JOURNAL_STREAM=<dev>:<inode>` of that stream), readable
//! text on stderr otherwise. `RUST_LOG` sets the filter (default `info`):
//! comma-separated levels and `target=level` directives such as
//! `warn,hitless=debug` (see [`parse_filter`]). A value that does not parse
//! is reported on stderr and `info` is used.

use std::ffi::OsStr;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = filter_from_env();
    let registry = tracing_subscriber::registry().with(filter);
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                registry
                    .with(journald.with_syslog_identifier("hitless".into()))
                    .init();
                return;
            }
            Err(e) => {
                // Fall through to text on stderr, which still reaches the journal.
                eprintln!("hitless: cannot connect to journald ({e}), logging to stderr");
            }
        }
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal())
                .with_target(false),
        )
        .init();
}

/// The filter `RUST_LOG` names, `info` when it is unset or empty.
fn filter_from_env() -> Targets {
    match parse_filter(std::env::var_os("RUST_LOG").as_deref()) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("hitless: {e}; logging at info");
            Targets::new().with_default(LevelFilter::INFO)
        }
    }
}

/// `RUST_LOG` as comma-separated directives, each a level (the default for
/// every target; `info` when none is given) or `target=level`; levels are
/// `off`, `error`, `warn`, `info`, `debug`, `trace`. Read into
/// `filter::Targets` rather than `EnvFilter`, which compiles regular
/// expressions at every start (its engine made the binary 660 kB larger),
/// and strictly: a word that is not a level is an error, not a target
/// name, so a typo cannot switch every log line off.
///
/// Errors: a value that is not UTF-8, or a directive that is neither of
/// the two forms (span and field filters, `target[span]=level`, included).
fn parse_filter(value: Option<&OsStr>) -> Result<Targets, String> {
    let Some(raw) = value else {
        return Ok(Targets::new().with_default(LevelFilter::INFO));
    };
    let text = raw
        .to_str()
        .ok_or_else(|| format!("RUST_LOG={raw:?} is not UTF-8"))?;
    let mut default = LevelFilter::INFO;
    let mut filter = Targets::new();
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bad = || {
            format!(
                "RUST_LOG={text:?} is not a log filter: {directive:?} is neither a level \
                 (off, error, warn, info, debug, trace) nor target=level"
            )
        };
        match directive.split_once('=') {
            None => default = directive.parse().map_err(|_| bad())?,
            Some((target, level)) => {
                let target = target.trim();
                let level: LevelFilter = level.trim().parse().map_err(|_| bad())?;
                if target.is_empty()
                    || target.contains(|c: char| c.is_whitespace() || "[]{}\"=".contains(c))
                {
                    return Err(bad());
                }
                filter = filter.with_target(target, level);
            }
        }
    }
    Ok(filter.with_default(default))
}

fn stderr_is_journal() -> bool {
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    journal_stream_matches(&expected, meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `<st_dev>:<st_ino>` in decimal.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    match value.split_once(':') {
        Some((d, i)) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{journal_stream_matches, parse_filter};
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    fn parse(value: &str) -> Result<tracing_subscriber::filter::Targets, String> {
        parse_filter(Some(std::ffi::OsStr::new(value)))
    }

    #[test]
    fn rust_log_levels_and_targets() {
        let info = Some(LevelFilter::INFO);
        assert_eq!(parse_filter(None).unwrap().default_level(), info);
        assert_eq!(parse(" ").unwrap().default_level(), info);
        assert_eq!(
            parse("WARN").unwrap().default_level(),
            Some(LevelFilter::WARN)
        );
        for value in [
            "warn,hitless=debug",
            "warn, hitless = debug ",
            ",hitless=debug,warn,",
        ] {
            let t = parse(value).unwrap();
            assert!(t.would_enable("hitless::server", &Level::DEBUG), "{value}");
            assert!(!t.would_enable("h2::codec", &Level::INFO), "{value}");
            assert!(t.would_enable("h2::codec", &Level::WARN), "{value}");
        }
        // Targets alone leave the default at info: errors stay visible.
        let t = parse("hitless::server=trace").unwrap();
        assert!(t.would_enable("hitless::server", &Level::TRACE));
        assert!(t.would_enable("h2", &Level::INFO));
        assert!(!t.would_enable("h2", &Level::DEBUG));
    }

    #[test]
    fn rust_log_that_does_not_parse() {
        for value in [
            "hitless=loud",
            "wran",
            "loud",
            "hitless[conn]=debug",
            "hitless{x=1}=debug",
            "=debug",
            "a b=info",
        ] {
            let e = parse(value).unwrap_err();
            assert!(
                e.starts_with(&format!("RUST_LOG={value:?} is not a log filter: ")),
                "{e}"
            );
        }
        use std::os::unix::ffi::OsStrExt;
        let e = parse_filter(Some(std::ffi::OsStr::from_bytes(b"\xff"))).unwrap_err();
        assert!(e.ends_with("is not UTF-8"), "{e}");
    }

    #[test]
    fn journal_stream_format() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("x:y", 8, 12345));
    }
}
