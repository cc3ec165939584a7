//! Simulated faults, for the broken builds of the upgrade tests
//! (docs/container-tests.md): a build that passes every check before
//! `READY=1` and then crashes, or one that answers every request with a
//! 500. Chosen with the hidden `--simulate-fault` flag; without it nothing
//! here runs.

use std::str::FromStr;
use std::time::Duration;

use tracing::warn;

/// A fault `--simulate-fault` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every response, the ready check's included, is a 500.
    Answer500,
    /// The process aborts (SIGABRT, like a crash) this long after start.
    CrashAfter(Duration),
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        if s == "answer-500" {
            return Ok(Fault::Answer500);
        }
        match s.strip_prefix("crash-after=") {
            Some(d) => humantime::parse_duration(d)
                .map(Fault::CrashAfter)
                .map_err(|e| format!("crash-after: {e}")),
            None => Err("one of: answer-500, crash-after=DURATION".to_owned()),
        }
    }
}

impl Fault {
    /// Start what the fault needs (the crash timer); say in the log that
    /// this process is broken on purpose.
    pub fn arm(self) {
        warn!("simulating a fault on purpose: {self:?}");
        if let Fault::CrashAfter(after) = self {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                std::process::abort();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("answer-500".parse(), Ok(Fault::Answer500));
        assert_eq!(
            "crash-after=1500ms".parse(),
            Ok(Fault::CrashAfter(Duration::from_millis(1500)))
        );
        assert!("crash-after=soon".parse::<Fault>().is_err());
        assert!("crash".parse::<Fault>().is_err());
    }
}
