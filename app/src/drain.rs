//! The signal that starts the drain, as every connection sees it.
//!
//! Checked on every poll of every connection and on every response, so it
//! must cost next to nothing there: a flag read with one relaxed load. A
//! connection that sits idle is not polled at all, so it also registers,
//! once, to be woken when the drain starts ([`DrainWatch`]); the flag is set
//! before the wake-up, so a connection never misses it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Shared by the server, its accept loops and every connection.
#[derive(Debug, Clone)]
pub(crate) struct Drain(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started: AtomicBool,
    wake: Arc<Notify>,
    /// For the accept loops, which wait for nothing else.
    token: CancellationToken,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain(Arc::new(Inner {
            started: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            token: CancellationToken::new(),
        }))
    }

    /// Start the drain: from now on [`is_started`](Drain::is_started) is
    /// true, and every connection and accept loop is woken.
    pub(crate) fn start(&self) {
        self.0.started.store(true, Ordering::Release);
        self.0.wake.notify_waiters();
        self.0.token.cancel();
    }

    /// Whether the drain has started.
    #[inline]
    pub(crate) fn is_started(&self) -> bool {
        self.0.started.load(Ordering::Relaxed)
    }

    /// Resolves when the drain starts (for the accept loops).
    pub(crate) async fn started(&self) {
        self.0.token.cancelled().await;
    }

    /// A per-connection registration to be woken when the drain starts.
    pub(crate) fn watch(&self) -> DrainWatch {
        DrainWatch {
            notified: self.0.wake.clone().notified_owned(),
            registered: false,
            drain: self.clone(),
        }
    }
}

pin_project! {
    /// Wakes one connection's task when the drain starts.
    ///
    /// [`DrainWatch::poll_started`] is cheap when called on every poll: it
    /// registers the task's waker on its first call only. A connection is
    /// polled by the one task it runs in (spawned by the accept loop or
    /// the ready check, or awaited inside the TLS handshake's), whose
    /// waker does not change.
    pub(crate) struct DrainWatch {
        #[pin]
        notified: OwnedNotified,
        registered: bool,
        drain: Drain,
    }
}

impl DrainWatch {
    /// Whether the drain has started; if not, makes sure this task is woken
    /// when it does.
    pub(crate) fn poll_started(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if this.drain.is_started() {
            return true;
        }
        if *this.registered {
            return false;
        }
        // Registers with this waker; the flag is set before the
        // notification, so checking it after registering loses no wake.
        *this.registered = true;
        this.notified.poll(cx) == Poll::Ready(()) || this.drain.is_started()
    }
}

impl std::fmt::Debug for DrainWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainWatch")
            .field("started", &self.drain.is_started())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    fn drain_watch(drain: &Drain) -> DrainWatch {
        drain.watch()
    }

    #[tokio::test]
    async fn an_idle_watcher_is_woken_when_the_drain_starts() {
        let drain = Drain::new();
        let drain2 = drain.clone();
        let waiter = tokio::spawn(async move {
            let watch = drain_watch(&drain2);
            tokio::pin!(watch);
            poll_fn(|cx| {
                if watch.as_mut().poll_started(cx) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert!(drain.is_started());
    }

    #[tokio::test]
    async fn a_watch_made_after_the_start_sees_it() {
        let drain = Drain::new();
        drain.start();
        let watch = drain.watch();
        tokio::pin!(watch);
        let started = poll_fn(|cx| Poll::Ready(watch.as_mut().poll_started(cx))).await;
        assert!(started);
        drain.started().await;
    }
}
