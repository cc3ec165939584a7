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
            info()
        }
    }
}

fn info() -> Targets {
    Targets::new().with_default(LevelFilter::INFO)
}

/// `RUST_LOG` as comma-separated directives, each a level (the default for
/// every target; `info` when none is given) or `target=level`, where a
/// target is a module path (`hitless`, `hitless::server`, `h2`) and a level
/// one of `off`, `error`, `warn`, `info`, `debug`, `trace` (any case).
/// Read into `filter::Targets` rather than `EnvFilter`, which compiles
/// regular expressions at every start (its engine made the binary 660 kB
/// larger), and strictly, so that a typo cannot switch log lines off.
///
/// Errors: a value that is not UTF-8, or a directive that is neither of
/// the two forms (span and field filters, `target[span]=level`, included);
/// the message quotes the directive, cut at 64 characters.
fn parse_filter(value: Option<&OsStr>) -> Result<Targets, String> {
    let Some(raw) = value else {
        return Ok(info());
    };
    let text = raw
        .to_str()
        .ok_or_else(|| "RUST_LOG is not UTF-8".to_string())?;
    let mut default = LevelFilter::INFO;
    let mut filter = Targets::new();
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bad = || {
            let shown: String = directive.chars().take(64).collect();
            let cut = if shown.len() < directive.len() {
                "..."
            } else {
                ""
            };
            format!(
                "RUST_LOG is not a log filter: {shown:?}{cut} is neither a level \
                 (off, error, warn, info, debug, trace) nor target=level"
            )
        };
        match directive.split_once('=') {
            None => default = level(directive).ok_or_else(bad)?,
            Some((target, lvl)) => {
                let target = target.trim();
                if !is_module_path(target) {
                    return Err(bad());
                }
                filter = filter.with_target(target, level(lvl.trim()).ok_or_else(bad)?);
            }
        }
    }
    Ok(filter.with_default(default))
}

/// A level by name; tracing's parser also takes digits and reads an empty
/// string as `error`, neither of which a reader of the value would guess.
fn level(name: &str) -> Option<LevelFilter> {
    let named = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic());
    named.then(|| name.parse().ok()).flatten()
}

/// `ident(::ident)*`, optionally ending in `::` (a prefix of every module
/// below), as the targets of `tracing` events from Rust code are.
fn is_module_path(target: &str) -> bool {
    let path = target.strip_suffix("::").unwrap_or(target);
    !path.is_empty()
        && path.split("::").all(|ident| {
            let mut chars = ident.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
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
            "warn,loud",
            "hitless[conn]=debug",
            "hitless{x=1}=debug",
            "=debug",
            "hitless=",
            "a b=info",
            "hyper-util=debug",
            "hitless.server=debug",
            "warn;hitless=debug",
            "2",
            "hitless=0",
        ] {
            let e = parse(value).unwrap_err();
            assert!(
                e.starts_with("RUST_LOG is not a log filter: \""),
                "{value}: {e}"
            );
        }
        let long = "x".repeat(100_000);
        let e = parse(&long).unwrap_err();
        assert!(e.len() < 200 && e.contains("xx\"... is neither"), "{e}");
        use std::os::unix::ffi::OsStrExt;
        let e = parse_filter(Some(std::ffi::OsStr::from_bytes(b"\xff"))).unwrap_err();
        assert_eq!(e, "RUST_LOG is not UTF-8");
    }

    #[test]
    fn journal_stream_format() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("x:y", 8, 12345));
    }
}
