//! The verdict, the JSON report and the human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{
    is_subsequence, Failure, LatencySummary, ModeStats, SecondStats, Segment, WorstSecond,
};

/// At most this many failures are listed one by one in the JSON report (all
/// of them are counted).
const MAX_LISTED_FAILURES: usize = 500;

#[derive(Debug, Serialize)]
pub struct ModeReport {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub unsent_retries: u64,
    pub refused_retries: u64,
    pub failures_by_reason: BTreeMap<&'static str, u64>,
    pub latency: LatencySummary,
    pub worst_second: Option<WorstSecond>,
    /// The collapsed version sequence, e.g. ["1.0.0", "2.0.0"].
    pub versions: Vec<String>,
    pub timeline: Vec<Segment>,
    pub failures: Vec<Failure>,
    pub failures_truncated: bool,
    /// Per second of the run (by completion time).
    pub seconds: Vec<SecondStats>,
}

impl ModeReport {
    pub fn new(stats: &ModeStats, timeline: Vec<Segment>) -> ModeReport {
        let failed = stats.failures.len() as u64;
        ModeReport {
            requests: stats.ok + failed,
            ok: stats.ok,
            failed,
            unsent_retries: stats.unsent_retries,
            refused_retries: stats.refused_retries,
            failures_by_reason: stats.failures_by_reason(),
            latency: stats.latency_summary(),
            worst_second: stats.worst_second(),
            versions: timeline.iter().map(|s| s.version.clone()).collect(),
            timeline,
            failures: stats
                .failures
                .iter()
                .take(MAX_LISTED_FAILURES)
                .cloned()
                .collect(),
            failures_truncated: stats.failures.len() > MAX_LISTED_FAILURES,
            seconds: stats.seconds.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub concurrency: usize,
    /// Requests per second per mode (0: as fast as the server answers).
    pub rate: u64,
    pub elapsed_s: f64,
    pub stopped_by: String,
    pub expected_versions: Option<Vec<String>>,
    pub modes: BTreeMap<&'static str, ModeReport>,
    pub passed: bool,
    pub problems: Vec<String>,
}

/// Everything that makes the run fail, in words. Empty means pass.
pub fn problems(
    modes: &BTreeMap<&'static str, ModeReport>,
    expected: Option<&[String]>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, m) in modes {
        if m.failed > 0 {
            let reasons: Vec<String> = m
                .failures_by_reason
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            out.push(format!(
                "{name}: {} failed request(s) ({})",
                m.failed,
                reasons.join(", ")
            ));
        }
        if m.ok == 0 {
            out.push(format!("{name}: no successful request"));
        }
        if let Some(exp) = expected {
            if !is_subsequence(exp, &m.versions) {
                out.push(format!(
                    "{name}: expected versions {} in this order, saw {}",
                    exp.join(" -> "),
                    if m.versions.is_empty() {
                        "none".to_owned()
                    } else {
                        m.versions.join(" -> ")
                    }
                ));
            }
        }
    }
    out
}

fn fmt_timeline(t: &[Segment]) -> String {
    if t.is_empty() {
        return "(no version seen)".into();
    }
    // Long alternations (10 upgrades) stay readable on one line each.
    t.iter()
        .map(|s| {
            format!(
                "{} [{:.1}-{:.1}s, {}]",
                s.version, s.first_s, s.last_s, s.count
            )
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

pub fn human(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "hitless-probe {} | {} worker(s) per mode{} | ran {:.1}s, stopped by {}",
        r.url,
        r.concurrency,
        if r.rate > 0 {
            format!(", {} req/s per mode", r.rate)
        } else {
            String::new()
        },
        r.elapsed_s,
        r.stopped_by
    );
    let _ = writeln!(
        o,
        "{:<11} {:>9} {:>7} {:>8} {:>8} {:>9} {:>9}  worst second",
        "mode", "requests", "failed", "p50 ms", "p99 ms", "max ms", "retried"
    );
    for (name, m) in &r.modes {
        let worst = m.worst_second.map_or_else(
            || "-".to_owned(),
            |w| {
                format!(
                    "t={}s: max {:.1} ms over {} req, {} failed",
                    w.start_s, w.max_ms, w.requests, w.failures
                )
            },
        );
        let _ = writeln!(
            o,
            "{:<11} {:>9} {:>7} {:>8.2} {:>8.2} {:>9.1} {:>9}  {}",
            name,
            m.requests,
            m.failed,
            m.latency.p50_ms,
            m.latency.p99_ms,
            m.latency.max_ms,
            m.unsent_retries + m.refused_retries,
            worst
        );
    }
    for (name, m) in &r.modes {
        let _ = writeln!(o, "versions {name}: {}", fmt_timeline(&m.timeline));
    }
    let _ = writeln!(
        o,
        "(retried: requests never sent, or HTTP/2 streams the server refused unprocessed with GOAWAY, \
         sent again on a new connection; not failures)"
    );
    for (name, m) in &r.modes {
        for f in m.failures.iter().take(10) {
            let _ = writeln!(
                o,
                "failure {name} t={:.3}s {}: {}",
                f.at_s,
                f.reason.as_str(),
                f.detail
            );
        }
        if m.failed > 10 {
            let _ = writeln!(
                o,
                "failure {name}: ... {} more (see the JSON report)",
                m.failed - 10
            );
        }
    }
    if let Some(exp) = &r.expected_versions {
        let _ = writeln!(o, "expected versions: {}", exp.join(" -> "));
    }
    if r.passed {
        let _ = writeln!(o, "PASS");
    } else {
        for p in &r.problems {
            let _ = writeln!(o, "FAIL: {p}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Reason, Timeline};
    use std::time::Duration;

    fn mode(ok: u64, fails: u64, versions: &[&str]) -> ModeReport {
        let mut s = ModeStats::default();
        for i in 0..ok {
            s.record(
                Duration::from_millis(i),
                Duration::from_millis(1),
                &Outcome::Ok {
                    version: "x".into(),
                },
            );
        }
        for _ in 0..fails {
            s.record(
                Duration::from_millis(5),
                Duration::from_millis(1),
                &Outcome::Failed {
                    reason: Reason::Reset,
                    detail: "rst".into(),
                },
            );
        }
        let mut t = Timeline::default();
        for (i, v) in versions.iter().enumerate() {
            t.push(v, i as f64);
        }
        ModeReport::new(&s, t.segments)
    }

    #[test]
    fn verdict() {
        let exp = vec!["1".to_owned(), "2".to_owned()];
        let mut m = BTreeMap::new();
        m.insert("h2", mode(10, 0, &["1", "2"]));
        m.insert("new-conn", mode(10, 0, &["1", "1", "2", "1"]));
        assert!(problems(&m, Some(&exp)).is_empty());

        m.insert("keep-alive", mode(10, 2, &["2"]));
        let p = problems(&m, Some(&exp));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("keep-alive: 2 failed request(s) (2 reset)"),
            "{p:?}"
        );
        assert!(
            p[1].contains("expected versions 1 -> 2 in this order, saw 2"),
            "{p:?}"
        );

        let mut m = BTreeMap::new();
        m.insert("h2", mode(0, 0, &[]));
        let p = problems(&m, None);
        assert_eq!(p, vec!["h2: no successful request".to_owned()]);
    }

    #[test]
    fn human_summary_mentions_everything() {
        let mut modes = BTreeMap::new();
        modes.insert("keep-alive", mode(3, 1, &["1", "2"]));
        let problems = problems(&modes, None);
        let r = Report {
            url: "http://x/".into(),
            concurrency: 1,
            rate: 0,
            elapsed_s: 1.0,
            stopped_by: "duration".into(),
            expected_versions: None,
            passed: problems.is_empty(),
            problems,
            modes,
        };
        let h = human(&r);
        assert!(
            h.contains("versions keep-alive: 1 [0.0-0.0s, 1] -> 2 [1.0-1.0s, 1]"),
            "{h}"
        );
        assert!(h.contains("failure keep-alive t=0.005s reset: rst"), "{h}");
        assert!(
            h.contains("FAIL: keep-alive: 1 failed request(s) (1 reset)"),
            "{h}"
        );
    }
}
