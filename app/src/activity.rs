//! What one connection is doing, as its timers need to know it: whether a
//! request is in flight, whether it moved bytes, whether the next HTTP/1
//! request head has begun.
//!
//! Fed from two sides: the I/O wrapper ([`crate::watched_io`]) counts reads
//! and writes, the service wrapper ([`crate::service`]) counts requests from
//! the moment their head is complete until their response body is done.
//! The connection task ([`crate::connection`]) reads it only when one of
//! its timers fires, so nothing here wakes anybody and every update is a
//! plain atomic store or add: the per-request cost of the timers is the
//! cost of these counters.
//!
//! Every field but `in_flight` has one writer, the connection's own task
//! (hyper does all reads and writes, and calls the service, from the task
//! that polls the connection; only HTTP/2 response bodies end in tasks of
//! their own), so those updates are relaxed loads and stores.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The shared activity record of one connection.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests whose head was complete, so far.
    requests: AtomicU64,
    /// Requests whose response is not done yet (HTTP/2: open streams).
    in_flight: AtomicUsize,
    /// Reads and writes that moved bytes (and bytes discarded while
    /// lingering), so far.
    io: AtomicU64,
    /// HTTP/1: bytes arrived while no request was in flight, and the head
    /// they begin is not complete yet.
    head_started: AtomicBool,
    /// The peer closed its side (a read returned end of file).
    peer_closed: AtomicBool,
    /// The connection is in its lingering close.
    lingering: AtomicBool,
    /// The latest request came with a body that was not known to be empty,
    /// so unread bytes of it may still be on their way when the connection
    /// closes.
    body_expected: AtomicBool,
    /// The keep-alive timeout was announced on this connection.
    keep_alive_announced: AtomicBool,
    /// hyper's connection is being ended to release its buffers while the
    /// socket stays open (an idle HTTP/1 connection is parked).
    parking: AtomicBool,
    /// Successful writes, so far.
    writes: AtomicU64,
    /// A write found the socket full, and hyper has not flushed
    /// everything since: a response is still on its way to the peer.
    write_blocked: AtomicBool,
    /// Requests in flight whose response, or the next part of its body,
    /// the service has not produced yet (the server's work, as opposed to
    /// waiting for the peer to take what is ready).
    server_waits: AtomicUsize,
    /// The same, for every connection of the server.
    server_busy: Option<Arc<AtomicUsize>>,
}

/// A copy of the counters, to tell whether anything happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) requests: u64,
    pub(crate) in_flight: usize,
    pub(crate) io: u64,
}

/// Add one to a counter that only the connection's task writes.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

impl Activity {
    #[cfg(test)]
    pub(crate) fn new() -> Activity {
        Activity::default()
    }

    /// With `busy` counting, for the whole server, the requests the
    /// service is still working on.
    pub(crate) fn with_server_busy(busy: Arc<AtomicUsize>) -> Activity {
        Activity {
            server_busy: Some(busy),
            ..Activity::default()
        }
    }

    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Relaxed)
    }

    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked.load(Relaxed)
    }

    pub(crate) fn server_waits(&self) -> usize {
        self.server_waits.load(Relaxed)
    }

    /// A write found the socket full (`true`), or everything was flushed.
    #[inline]
    pub(crate) fn set_write_blocked(&self, blocked: bool) {
        if self.write_blocked.load(Relaxed) != blocked {
            self.write_blocked.store(blocked, Relaxed);
        }
    }

    /// Bytes were written to the peer.
    #[inline]
    pub(crate) fn on_write(&self) {
        bump(&self.io);
        bump(&self.writes);
    }

    /// The service is working on a request (until the guard is dropped).
    pub(crate) fn server_work(self: &Arc<Self>) -> ServerWork {
        self.server_waits.fetch_add(1, Relaxed);
        if let Some(busy) = &self.server_busy {
            busy.fetch_add(1, Relaxed);
        }
        ServerWork(self.clone())
    }

    /// The counters now.
    pub(crate) fn marks(&self) -> Marks {
        Marks {
            requests: self.requests.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            io: self.io.load(Relaxed),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn head_started(&self) -> bool {
        self.head_started.load(Relaxed)
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed.load(Relaxed)
    }

    pub(crate) fn lingering(&self) -> bool {
        self.lingering.load(Relaxed)
    }

    pub(crate) fn body_expected(&self) -> bool {
        self.body_expected.load(Relaxed)
    }

    pub(crate) fn parking(&self) -> bool {
        self.parking.load(Relaxed)
    }

    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Relaxed);
    }

    pub(crate) fn keep_alive_announced(&self) -> bool {
        self.keep_alive_announced.load(Relaxed)
    }

    pub(crate) fn set_keep_alive_announced(&self) {
        self.keep_alive_announced.store(true, Relaxed);
    }

    /// `n` bytes were read from the peer (0: end of file); `http1` when
    /// they may begin an HTTP/1 request head.
    #[inline]
    pub(crate) fn on_read(&self, n: usize, http1: bool) {
        if n == 0 {
            self.peer_closed.store(true, Relaxed);
            return;
        }
        bump(&self.io);
        if http1 && self.in_flight.load(Relaxed) == 0 && !self.head_started.load(Relaxed) {
            self.head_started.store(true, Relaxed);
        }
    }

    /// Bytes were written to the peer, or discarded in the lingering close.
    #[inline]
    pub(crate) fn on_io(&self) {
        bump(&self.io);
    }

    /// The lingering close began or ended.
    pub(crate) fn set_lingering(&self, lingering: bool) {
        self.lingering.store(lingering, Relaxed);
        bump(&self.io);
    }

    /// A request head is complete; `body` when a request body may follow.
    /// The request is in flight until the returned guard is dropped (with
    /// the response body, once it is done).
    #[inline]
    pub(crate) fn request(self: &Arc<Self>, body: bool) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        bump(&self.requests);
        self.head_started.store(false, Relaxed);
        self.body_expected.store(body, Relaxed);
        InFlight(self.clone())
    }
}

/// The service working on a request; dropping it ends that work.
#[derive(Debug)]
pub(crate) struct ServerWork(Arc<Activity>);

impl Drop for ServerWork {
    fn drop(&mut self) {
        self.0.server_waits.fetch_sub(1, Relaxed);
        if let Some(busy) = &self.0.server_busy {
            busy.fetch_sub(1, Relaxed);
        }
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    /// The service is working on this request (see [`ServerWork`]).
    pub(crate) fn server_work(&self) -> ServerWork {
        self.0.server_work()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_heads() {
        let a = Arc::new(Activity::new());
        a.on_read(16, true);
        assert!(a.head_started());
        let before = a.marks();
        let guard = a.request(false);
        assert_eq!(
            (a.requests(), a.in_flight(), a.head_started()),
            (1, 1, false)
        );
        assert_ne!(a.marks(), before);
        // Body bytes of a request in flight do not start a head.
        a.on_read(4, true);
        assert!(!a.head_started());
        drop(guard);
        assert_eq!(a.in_flight(), 0);
        // HTTP/2 frames never do.
        a.on_read(9, false);
        assert!(!a.head_started());
        a.on_read(1, true);
        assert!(a.head_started());
        assert!(!a.peer_closed());
        a.on_read(0, true);
        assert!(a.peer_closed());
    }

    #[test]
    fn marks_move_with_every_kind_of_activity() {
        let a = Arc::new(Activity::new());
        let m0 = a.marks();
        a.on_io();
        let m1 = a.marks();
        assert_ne!(m0, m1);
        let g = a.request(true);
        assert!(a.body_expected());
        let m2 = a.marks();
        assert_ne!(m1, m2);
        drop(g);
        assert_ne!(m2, a.marks());
    }
}
