//! Logging: native journald records when stderr is connected to the journal
//! (systemd sets `JOURNAL_STREAM=<dev>:<inode>` of that stream), readable
//! text on stderr otherwise. `RUST_LOG` sets the filter (default `info`): a
//! level, or comma-separated `target=level` directives such as
//! `warn,hitless=debug` (tracing-subscriber's `filter::Targets` syntax; span
//! and field filters are not supported). A value that does not parse is
//! reported on stderr and `info` is used.

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
    let value = std::env::var("RUST_LOG").ok();
    match parse_filter(value.as_deref()) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("hitless: {e}; logging at info");
            default_filter()
        }
    }
}

fn default_filter() -> Targets {
    Targets::new().with_default(LevelFilter::INFO)
}

/// `filter::Targets` rather than `EnvFilter`: the same directive syntax for
/// levels and targets, without the regular-expression engine that
/// `EnvFilter` compiles at every start (about 250 KiB of code and its heap).
fn parse_filter(value: Option<&str>) -> Result<Targets, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(default_filter()),
        Some(v) => v
            .parse()
            .map_err(|e| format!("RUST_LOG={v:?} is not a log filter ({e})")),
    }
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
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn rust_log_levels_and_targets() {
        let default = parse_filter(None).unwrap();
        assert_eq!(default.default_level(), Some(LevelFilter::INFO));
        assert_eq!(
            parse_filter(Some(" ")).unwrap().default_level(),
            Some(LevelFilter::INFO)
        );
        assert_eq!(
            parse_filter(Some("warn")).unwrap().default_level(),
            Some(LevelFilter::WARN)
        );
        let t = parse_filter(Some("warn,hitless=debug")).unwrap();
        assert!(t.would_enable("hitless::server", &tracing::Level::DEBUG));
        assert!(!t.would_enable("h2::codec", &tracing::Level::INFO));
    }

    #[test]
    fn rust_log_that_does_not_parse() {
        let e = parse_filter(Some("hitless=loud")).unwrap_err();
        assert!(
            e.starts_with("RUST_LOG=\"hitless=loud\" is not a log filter ("),
            "{e}"
        );
    }

    #[test]
    fn journal_stream_format() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("x:y", 8, 12345));
    }
}
