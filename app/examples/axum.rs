//! An axum service on the hitless library: a `Router` with shared state,
//! extractors and a slow handler, served with `Server::run_tower`. The
//! handlers know nothing of systemd or draining; the library takes the
//! socket from systemd, tells systemd when it is ready, and drains on
//! SIGTERM.
//!
//! ```text
//! cargo build --example axum --features tower
//! systemd-socket-activate -l 127.0.0.1:8080 target/debug/examples/axum
//! curl http://127.0.0.1:8080/                 # hello from pid N
//! curl http://127.0.0.1:8080/greet/ada        # hello, ada (request 2 of pid N)
//! curl 'http://127.0.0.1:8080/slow?ms=2000'   # hello from pid N, after 2 s
//! ```
//!
//! Started without a socket it binds 127.0.0.1:8080 itself. Exit codes are
//! the library's (`hitless::Error::exit_code`). `IDLE_GRACE_MS` sets
//! `Settings::idle_grace` in milliseconds (the tests use 0 to show what a
//! drain without it loses).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

/// How long `/slow` takes to answer unless `?ms=` says otherwise.
const SLOW: Duration = Duration::from_millis(500);
/// The longest `/slow?ms=` allowed.
const SLOWEST: Duration = Duration::from_secs(30);

/// What every handler shares.
struct AppState {
    pid: u32,
    requests: AtomicU64,
}

type Shared = Arc<AppState>;

#[derive(Deserialize)]
struct Slow {
    /// Milliseconds to wait before answering.
    ms: Option<u64>,
}

async fn hello(State(state): State<Shared>) -> String {
    state.requests.fetch_add(1, Ordering::Relaxed);
    format!("hello from pid {}\n", state.pid)
}

async fn greet(State(state): State<Shared>, Path(name): Path<String>) -> String {
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    format!("hello, {name} (request {n} of pid {})\n", state.pid)
}

async fn slow(
    State(state): State<Shared>,
    Query(q): Query<Slow>,
) -> Result<String, (StatusCode, String)> {
    let wait = q.ms.map_or(SLOW, Duration::from_millis);
    if wait > SLOWEST {
        let why = format!("ms must be at most {}\n", SLOWEST.as_millis());
        return Err((StatusCode::BAD_REQUEST, why));
    }
    tokio::time::sleep(wait).await;
    Ok(hello(State(state)).await)
}

fn app() -> Router {
    let state = Arc::new(AppState {
        pid: std::process::id(),
        requests: AtomicU64::new(0),
    });
    Router::new()
        .route("/", get(hello))
        .route("/greet/{name}", get(greet))
        .route("/slow", get(slow))
        .with_state(state)
}

fn settings() -> Result<hitless::Settings, String> {
    let mut settings = hitless::Settings {
        drain_timeout: Duration::from_secs(10),
        ..hitless::Settings::default()
    };
    if let Ok(ms) = std::env::var("IDLE_GRACE_MS") {
        let ms = ms.parse().map_err(|e| format!("IDLE_GRACE_MS={ms}: {e}"))?;
        settings.idle_grace = Duration::from_millis(ms);
    }
    Ok(settings)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime exists: reading and changing the environment
    // (LISTEN_*, WATCHDOG_*) is only sound while single-threaded.
    let served = hitless::Server::from_env(settings).and_then(|server| server.run_tower(app()));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
