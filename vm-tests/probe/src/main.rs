//! hitless-probe: load for the upgrade tests. Sends requests in three client
//! modes at once (a new connection per request, HTTP/1.1 keep-alive, HTTP/2),
//! records every failure with its reason, the latency, and which version of
//! the service answered over time, then says PASS or FAIL.
//!
//! Exit status: 0 when no request failed and the expected versions were seen
//! in order in every mode; 1 otherwise; 2 for usage or setup errors.

mod client;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use client::{Client, H2Conn, Mode, Target};
use report::{ModeReport, Report};
use stats::{ModeStats, Outcome, Reason, Timeline};

#[derive(Parser, Debug)]
#[command(
    name = "hitless-probe",
    version,
    about = "Load probe for hitless upgrade tests"
)]
struct Cli {
    /// What to request, e.g. http://127.0.0.1:8080/ or http://127.0.0.1:8080/slow?ms=3000;
    /// https:// speaks TLS in every mode (needs --ca).
    #[arg(long)]
    url: String,
    /// PEM file of the CA certificates to trust for an https:// URL (and no
    /// others).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client mode; repeat for several. Default: all three, concurrently.
    #[arg(long = "mode", value_enum)]
    modes: Vec<Mode>,
    /// Concurrent requests per mode.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Longest run; SIGINT or SIGTERM ends it earlier and still reports.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Versions (x-hitless-version) each mode must see, in this order,
    /// e.g. 1.0.0,2.0.0.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    expect_versions: Vec<String>,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// A request with no complete response after this long has failed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Requests per second per mode, spread over its workers (0: as fast as
    /// the answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Rewrite this JSON file every 200 ms with live counts and the versions
    /// seen so far (tests use it to wait until a new version is seen).
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// What the workers of one mode share while running.
struct Live {
    mode: Mode,
    timeline: Mutex<Timeline>,
    ok: AtomicU64,
    failed: AtomicU64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hitless-probe: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hitless-probe: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool, String> {
    let target = Arc::new(Target::resolve(&cli.url, cli.ca.as_deref()).await?);
    let mut modes = cli.modes.clone();
    if modes.is_empty() {
        modes = vec![Mode::NewConn, Mode::KeepAlive, Mode::H2];
    }
    modes.sort();
    modes.dedup();

    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;

    let start = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let duration = cli.duration;
    let stopper = tokio::spawn(async move {
        let why = tokio::select! {
            _ = tokio::time::sleep(duration) => "duration",
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        };
        let _ = stop_tx.send(true);
        why
    });

    let concurrency = usize::from(cli.concurrency);
    // Each worker waits concurrency/rate seconds between its requests.
    let interval =
        (cli.rate > 0).then(|| Duration::from_secs_f64(concurrency as f64 / cli.rate as f64));

    let mut lives = Vec::new();
    let mut handles = Vec::new();
    for &mode in &modes {
        let live = Arc::new(Live {
            mode,
            timeline: Mutex::new(Timeline::default()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let h2 = (mode == Mode::H2).then(|| Arc::new(H2Conn::default()));
        for _ in 0..concurrency {
            let client = Client::new(mode, target.clone(), h2.clone());
            handles.push((
                mode,
                tokio::spawn(worker(
                    client,
                    live.clone(),
                    start,
                    stop_rx.clone(),
                    cli.request_timeout,
                    interval,
                )),
            ));
        }
        lives.push(live);
    }

    let done = Arc::new(AtomicBool::new(false));
    let status_task = cli.status_file.clone().map(|path| {
        let lives = lives.clone();
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                let finished = done.load(Ordering::Relaxed);
                write_status(&path, &lives, start, finished);
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });

    let mut merged: BTreeMap<Mode, ModeStats> = BTreeMap::new();
    for (mode, h) in handles {
        let stats = h
            .await
            .map_err(|e| format!("a {} worker panicked: {e}", mode.as_str()))?;
        merged.entry(mode).or_default().merge(&stats);
    }
    let elapsed = start.elapsed();
    // All workers are done: stop the clock task if the run ended early.
    stopper.abort();
    let stopped_by = match stopper.await {
        Ok(why) => why.to_owned(),
        Err(_) => "duration".to_owned(),
    };
    done.store(true, Ordering::Relaxed);
    if let Some(t) = status_task {
        let _ = t.await;
    }

    let mut mode_reports = BTreeMap::new();
    for live in &lives {
        let stats = merged.remove(&live.mode).unwrap_or_default();
        let timeline = live
            .timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .segments
            .clone();
        mode_reports.insert(live.mode.as_str(), ModeReport::new(&stats, timeline));
    }
    let expected = (!cli.expect_versions.is_empty()).then_some(cli.expect_versions.as_slice());
    let problems = report::problems(&mode_reports, expected);
    let report = Report {
        url: cli.url.clone(),
        concurrency,
        rate: cli.rate,
        elapsed_s: elapsed.as_secs_f64(),
        stopped_by,
        expected_versions: expected.map(<[String]>::to_vec),
        passed: problems.is_empty(),
        problems,
        modes: mode_reports,
    };
    print!("{}", report::human(&report));
    if let Some(path) = &cli.report {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| format!("report: {e}"))?;
        write_atomically(path, &json)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report.passed)
}

async fn worker(
    mut client: Client,
    live: Arc<Live>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
    interval: Option<Duration>,
) -> ModeStats {
    let mut stats = ModeStats::default();
    let mut ticker = interval.map(|d| {
        let mut t = tokio::time::interval(d);
        // After a stall (a restart) carry on at the normal pace, no burst.
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = stop.changed() => break,
            }
        }
        let began = Instant::now();
        // A request already sent is seen through to the end (or the
        // timeout) even when the run is stopping: it may be the interesting one.
        let outcome = match tokio::time::timeout(timeout, client.request()).await {
            Ok(o) => o,
            Err(_) => Outcome::Failed {
                reason: Reason::Timeout,
                detail: format!("no response within {}", humantime::format_duration(timeout)),
            },
        };
        let at = start.elapsed();
        match &outcome {
            Outcome::Ok { version } => {
                live.timeline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(version, at.as_secs_f64());
                live.ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed { .. } => {
                client.reset();
                live.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.record(at, began.elapsed(), &outcome);
    }
    stats.unsent_retries = client.unsent_retries;
    stats.refused_retries = client.refused_retries;
    stats
}

#[derive(Serialize)]
struct Status {
    elapsed_s: f64,
    finished: bool,
    modes: BTreeMap<&'static str, ModeStatus>,
}

#[derive(Serialize)]
struct ModeStatus {
    ok: u64,
    failed: u64,
    versions: Vec<String>,
}

fn write_status(path: &Path, lives: &[Arc<Live>], start: Instant, finished: bool) {
    let modes = lives
        .iter()
        .map(|l| {
            let versions = l
                .timeline
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .versions()
                .into_iter()
                .map(str::to_owned)
                .collect();
            (
                l.mode.as_str(),
                ModeStatus {
                    ok: l.ok.load(Ordering::Relaxed),
                    failed: l.failed.load(Ordering::Relaxed),
                    versions,
                },
            )
        })
        .collect();
    let s = Status {
        elapsed_s: start.elapsed().as_secs_f64(),
        finished,
        modes,
    };
    if let Ok(json) = serde_json::to_vec(&s) {
        // Best effort: a missed update is followed by the next one.
        let _ = write_atomically(path, &json);
    }
}

/// Write to a temporary file and rename it over `path`, so readers never see
/// half a file.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cli_parses_the_documented_form() {
        let cli = Cli::try_parse_from([
            "hitless-probe",
            "--url",
            "http://127.0.0.1:8080/",
            "--mode",
            "h2",
            "--mode",
            "keep-alive",
            "--concurrency",
            "4",
            "--duration",
            "2s",
            "--expect-versions",
            "1.0.0,2.0.0",
            "--report",
            "/tmp/r.json",
            "--request-timeout",
            "500ms",
            "--rate",
            "100",
        ])
        .unwrap();
        assert_eq!(cli.modes, vec![Mode::H2, Mode::KeepAlive]);
        assert_eq!(cli.expect_versions, vec!["1.0.0", "2.0.0"]);
        assert_eq!(cli.duration, Duration::from_secs(2));
        assert_eq!(cli.request_timeout, Duration::from_millis(500));
        let cli = Cli::try_parse_from(["hitless-probe", "--url=http://x/"]).unwrap();
        assert!(cli.modes.is_empty() && cli.expect_versions.is_empty());
        assert_eq!(cli.concurrency, 8);
        assert!(
            Cli::try_parse_from(["hitless-probe", "--url=http://x/", "--concurrency=0"]).is_err()
        );
        assert!(Cli::try_parse_from(["hitless-probe", "--url=http://x/", "--mode=h3"]).is_err());
    }
}
