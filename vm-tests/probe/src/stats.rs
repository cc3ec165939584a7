//! The pure parts of the probe: what happened to each request is folded into
//! per-mode statistics here, with no I/O, so it can be unit-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request failed. Every request that may have reached the server and
/// did not come back as a 2xx response with a version header is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// TCP connect was refused: nobody listening (socket gone).
    ConnectRefused,
    /// Any other connect error (unreachable, no ports, ...).
    ConnectError,
    /// The connection was reset (RST) or the write hit a closed pipe.
    Reset,
    /// The server closed the connection before a complete response.
    EofBeforeResponse,
    /// No complete response within --request-timeout.
    Timeout,
    /// A response came, but not 2xx.
    Non2xx,
    /// A 2xx response without the `x-hitless-version` header.
    MissingVersion,
    /// HTTP/2 stream refused (GOAWAY below its id, or REFUSED_STREAM).
    H2Refused,
    /// Anything the HTTP layer calls a protocol error (parse, h2 errors).
    Protocol,
    /// Everything else (reported with its message).
    Other,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectRefused => "connect-refused",
            Reason::ConnectError => "connect-error",
            Reason::Reset => "reset",
            Reason::EofBeforeResponse => "eof-before-response",
            Reason::Timeout => "timeout",
            Reason::Non2xx => "non-2xx",
            Reason::MissingVersion => "missing-version",
            Reason::H2Refused => "h2-refused",
            Reason::Protocol => "protocol",
            Reason::Other => "other",
        }
    }
}

/// One failed request, as kept in the report.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// Seconds since the probe started, when the failure was seen.
    pub at_s: f64,
    pub reason: Reason,
    pub detail: String,
}

/// The outcome of one request.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok { version: String },
    Failed { reason: Reason, detail: String },
}

/// A run of consecutive responses from one version, in completion order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub version: String,
    pub first_s: f64,
    pub last_s: f64,
    pub count: u64,
}

/// Versions seen over time, consecutive repeats collapsed into one segment.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub segments: Vec<Segment>,
}

impl Timeline {
    pub fn push(&mut self, version: &str, at_s: f64) {
        match self.segments.last_mut() {
            Some(seg) if seg.version == version => {
                seg.last_s = at_s;
                seg.count += 1;
            }
            _ => self.segments.push(Segment {
                version: version.to_owned(),
                first_s: at_s,
                last_s: at_s,
                count: 1,
            }),
        }
    }

    /// The collapsed sequence of versions, e.g. `["1.0.0", "2.0.0"]`.
    pub fn versions(&self) -> Vec<&str> {
        self.segments.iter().map(|s| s.version.as_str()).collect()
    }
}

/// True when `expected` appears in `seen` in order (not necessarily adjacent).
/// `seen` is a collapsed timeline, so `[v1, v2]` matches `[v1, v2]` and
/// `[v1, v2, v1, v2]`, but not `[v2, v1]`.
pub fn is_subsequence<S: AsRef<str>, T: AsRef<str>>(expected: &[S], seen: &[T]) -> bool {
    let mut it = seen.iter();
    expected
        .iter()
        .all(|want| it.any(|got| got.as_ref() == want.as_ref()))
}

/// What completed during one second of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SecondStats {
    pub requests: u64,
    pub failures: u64,
    pub max_latency_us: u64,
}

/// Latency figures in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The one-second window (by completion time) with the slowest request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WorstSecond {
    pub start_s: u64,
    pub max_ms: f64,
    pub requests: u64,
    pub failures: u64,
}

/// Everything one worker (or a whole mode, after merging) measured.
#[derive(Clone, Debug)]
pub struct ModeStats {
    pub ok: u64,
    /// Requests the client library gave back unsent (the connection was
    /// already closing) and that were sent again on a new connection. Not
    /// failures: no server ever saw them.
    pub unsent_retries: u64,
    /// HTTP/2 requests refused unprocessed by the server's GOAWAY and sent
    /// again on a new connection. Not failures either (RFC 9113 §8.7).
    pub refused_retries: u64,
    pub failures: Vec<Failure>,
    pub latency: Histogram<u64>,
    pub seconds: Vec<SecondStats>,
}

/// Latencies are recorded in microseconds, 1 µs to 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Per-second buckets are kept for one day at most.
const MAX_SECONDS: u64 = 86_400;

impl Default for ModeStats {
    fn default() -> Self {
        ModeStats {
            ok: 0,
            unsent_retries: 0,
            refused_retries: 0,
            failures: Vec::new(),
            // Constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5):
            // this cannot fail.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            seconds: Vec::new(),
        }
    }
}

impl ModeStats {
    /// Fold in one finished request. `at` is when it completed (since the
    /// probe started), `latency` how long it took.
    pub fn record(&mut self, at: Duration, latency: Duration, outcome: &Outcome) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        // Runs longer than a day share the last bucket.
        let sec = usize::try_from(at.as_secs().min(MAX_SECONDS)).unwrap_or(0);
        if self.seconds.len() <= sec {
            self.seconds.resize(sec + 1, SecondStats::default());
        }
        let bucket = &mut self.seconds[sec];
        bucket.requests += 1;
        bucket.max_latency_us = bucket.max_latency_us.max(us);
        match outcome {
            Outcome::Ok { .. } => {
                self.ok += 1;
                // Cannot fail: `us` is clamped into the histogram's range.
                let _ = self.latency.record(us);
            }
            Outcome::Failed { reason, detail } => {
                bucket.failures += 1;
                self.failures.push(Failure {
                    at_s: at.as_secs_f64(),
                    reason: *reason,
                    detail: detail.clone(),
                });
            }
        }
    }

    pub fn merge(&mut self, other: &ModeStats) {
        self.ok += other.ok;
        self.unsent_retries += other.unsent_retries;
        self.refused_retries += other.refused_retries;
        self.failures.extend(other.failures.iter().cloned());
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize(other.seconds.len(), SecondStats::default());
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.requests += theirs.requests;
            mine.failures += theirs.failures;
            mine.max_latency_us = mine.max_latency_us.max(theirs.max_latency_us);
        }
        self.failures.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }

    pub fn latency_summary(&self) -> LatencySummary {
        let h = &self.latency;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    pub fn worst_second(&self) -> Option<WorstSecond> {
        worst_second(&self.seconds)
    }

    pub fn failures_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for f in &self.failures {
            *m.entry(f.reason.as_str()).or_insert(0) += 1;
        }
        m
    }
}

/// The second with the slowest completed request; ties go to the earliest.
pub fn worst_second(seconds: &[SecondStats]) -> Option<WorstSecond> {
    let mut best: Option<(usize, &SecondStats)> = None;
    for (i, s) in seconds.iter().enumerate() {
        if s.requests == 0 {
            continue;
        }
        if best.is_none_or(|(_, b)| s.max_latency_us > b.max_latency_us) {
            best = Some((i, s));
        }
    }
    best.map(|(i, s)| WorstSecond {
        start_s: i as u64,
        max_ms: s.max_latency_us as f64 / 1000.0,
        requests: s.requests,
        failures: s.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> Outcome {
        Outcome::Ok { version: v.into() }
    }

    #[test]
    fn timeline_collapses_repeats() {
        let mut t = Timeline::default();
        for (v, at) in [("1", 0.1), ("1", 0.2), ("2", 0.3), ("2", 0.4), ("1", 0.5)] {
            t.push(v, at);
        }
        assert_eq!(t.versions(), vec!["1", "2", "1"]);
        assert_eq!(t.segments[0].count, 2);
        assert_eq!(t.segments[0].last_s, 0.2);
        assert_eq!(t.segments[1].first_s, 0.3);
    }

    #[test]
    fn subsequence_check() {
        let seen = ["1", "2", "1", "2"];
        assert!(is_subsequence(&["1", "2"], &seen));
        assert!(is_subsequence(&["1", "2", "1", "2"], &seen));
        assert!(is_subsequence(&["2"], &seen));
        assert!(is_subsequence::<&str, &str>(&[], &seen));
        assert!(!is_subsequence(&["1", "2", "1", "2", "1"], &seen));
        assert!(!is_subsequence(&["2", "2"], &["2"]));
        assert!(!is_subsequence(&["2", "1"], &["1", "2"]));
        assert!(!is_subsequence(&["1"], &[] as &[&str]));
    }

    #[test]
    fn record_and_summarise() {
        let mut s = ModeStats::default();
        for i in 1..=100u64 {
            s.record(
                Duration::from_millis(i * 10),
                Duration::from_millis(i),
                &ok("1"),
            );
        }
        s.record(
            Duration::from_millis(2500),
            Duration::from_millis(3000),
            &Outcome::Failed {
                reason: Reason::Reset,
                detail: "x".into(),
            },
        );
        assert_eq!(s.ok, 100);
        assert_eq!(s.failures.len(), 1);
        let l = s.latency_summary();
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        // The failed 3 s request lands in second 2 and makes it the worst.
        let w = s.worst_second().unwrap();
        assert_eq!(w.start_s, 2);
        assert_eq!(w.failures, 1);
        assert!((w.max_ms - 3000.0).abs() < 1.0);
        assert_eq!(s.failures_by_reason().get("reset"), Some(&1));
    }

    #[test]
    fn merge_adds_up() {
        let mut a = ModeStats::default();
        let mut b = ModeStats::default();
        a.record(
            Duration::from_millis(100),
            Duration::from_millis(5),
            &ok("1"),
        );
        b.record(
            Duration::from_millis(1500),
            Duration::from_millis(7),
            &ok("1"),
        );
        b.record(
            Duration::from_millis(1600),
            Duration::from_millis(1),
            &Outcome::Failed {
                reason: Reason::Timeout,
                detail: String::new(),
            },
        );
        b.unsent_retries = 2;
        b.refused_retries = 1;
        a.merge(&b);
        assert_eq!(a.ok, 2);
        assert_eq!(a.unsent_retries, 2);
        assert_eq!(a.refused_retries, 1);
        assert_eq!(a.failures.len(), 1);
        assert_eq!(a.seconds.len(), 2);
        assert_eq!(a.seconds[1].requests, 2);
        assert_eq!(a.seconds[1].failures, 1);
        assert_eq!(a.latency.len(), 2);
    }

    #[test]
    fn worst_second_skips_empty_and_prefers_earliest() {
        let s = [
            SecondStats::default(),
            SecondStats {
                requests: 3,
                failures: 0,
                max_latency_us: 2000,
            },
            SecondStats {
                requests: 1,
                failures: 0,
                max_latency_us: 2000,
            },
        ];
        assert_eq!(worst_second(&s).unwrap().start_s, 1);
        assert!(worst_second(&[]).is_none());
        assert!(worst_second(&[SecondStats::default()]).is_none());
    }
}
