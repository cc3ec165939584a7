//! Talking to the service manager (sd_notify(3)).
//!
//! Without `NOTIFY_SOCKET` (started by hand) every call is a silent no-op. A
//! failed send is logged, never fatal: systemd will notice a missing
//! `READY=1` on its own (start timeout) and a failed status line is cosmetic.
//! `NOTIFY_SOCKET` is kept in the environment because the server notifies
//! more than once.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!("sd_notify failed: {e}");
    }
}

/// `READY=1` with a `STATUS=` line.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1` with a `STATUS=` line.
pub(crate) fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A `STATUS=` line alone.
pub(crate) fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The watchdog interval requested by systemd (`WatchdogSec=`), if any and
/// meant for this pid. Call while single-threaded: it clears
/// `WATCHDOG_USEC`/`WATCHDOG_PID`, which children must not inherit.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(true, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// Ping the watchdog at half the interval, as sd_watchdog_enabled(3)
/// recommends. Runs on the runtime, so a wedged runtime stops the pings.
pub(crate) async fn watchdog_loop(interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        debug!("watchdog ping");
        send(&[NotifyState::Watchdog]);
    }
}
