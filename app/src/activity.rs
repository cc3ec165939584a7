//! What one connection is doing, as its timers need to know it: which
//! protocol it speaks, whether a request is in flight, when it last did
//! something.
//!
//! Fed from two sides: the I/O wrapper ([`crate::watched_io`]) reports
//! bytes read and written, the service wrapper ([`crate::service`]) reports
//! requests from the moment their head is complete until their response
//! body is done. The connection task ([`crate::connection`]) reads it to
//! decide when to close the connection.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The HTTP/2 client connection preface (RFC 9113 §3.4). A connection that
/// starts with it speaks HTTP/2 (prior knowledge); anything else is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of a connection, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Nothing read yet, or only a part of the HTTP/2 preface.
    Unknown,
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// A snapshot of a connection's activity.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) protocol: Protocol,
    /// How many bytes of [`H2_PREFACE`] the first bytes matched.
    preface_matched: usize,
    /// When the connection was accepted.
    pub(crate) accepted: Instant,
    /// Requests whose head was complete, so far.
    pub(crate) requests: u64,
    /// Requests whose response is not done yet (HTTP/2: open streams).
    pub(crate) in_flight: usize,
    /// Since when no request has been in flight.
    pub(crate) idle_since: Instant,
    /// HTTP/1: when the first byte of a request head arrived, while that
    /// head is not complete.
    pub(crate) head_started: Option<Instant>,
    /// When bytes were last written to the peer.
    pub(crate) last_write: Instant,
    /// When bytes were last read from the peer (or the lingering close
    /// began).
    pub(crate) last_read: Instant,
    /// The peer closed its side (a read returned end of file).
    pub(crate) peer_closed: bool,
    /// The connection is in its lingering close.
    pub(crate) lingering: bool,
}

/// The shared activity record of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        let now = Instant::now();
        Activity {
            state: Mutex::new(State {
                protocol: Protocol::Unknown,
                preface_matched: 0,
                accepted: now,
                requests: 0,
                in_flight: 0,
                idle_since: now,
                head_started: None,
                last_write: now,
                last_read: now,
                peer_closed: false,
                lingering: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await point; a panic while
        // holding the lock cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the current state.
    pub(crate) fn snapshot(&self) -> State {
        self.lock().clone()
    }

    /// Resolves once the state changed in a way that can move a deadline
    /// earlier (since the previous call). One waiter: the connection task.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn update(&self, f: impl FnOnce(&mut State) -> bool) {
        let notify = f(&mut self.lock());
        if notify {
            self.changed.notify_one();
        }
    }

    /// `bytes` were read from the peer; empty means end of file.
    pub(crate) fn on_read(&self, bytes: &[u8]) {
        self.update(|s| {
            if bytes.is_empty() {
                s.peer_closed = true;
                return true;
            }
            s.last_read = Instant::now();
            let before = s.protocol;
            if s.protocol == Protocol::Unknown {
                s.protocol = sniff(&mut s.preface_matched, bytes);
            }
            let head_starts =
                s.protocol == Protocol::Http1 && s.in_flight == 0 && s.head_started.is_none();
            if head_starts {
                s.head_started = Some(Instant::now());
            }
            head_starts || s.protocol != before
        });
    }

    /// Bytes were written to the peer.
    pub(crate) fn on_write(&self) {
        self.update(|s| {
            s.last_write = Instant::now();
            false
        });
    }

    /// The lingering close began or ended.
    pub(crate) fn set_lingering(&self, lingering: bool) {
        self.update(|s| {
            s.lingering = lingering;
            s.last_read = Instant::now();
            true
        });
    }

    /// Bytes were read and discarded in the lingering close.
    pub(crate) fn on_discard(&self) {
        self.update(|s| {
            s.last_read = Instant::now();
            false
        });
    }

    /// A request head is complete; the request is in flight until the
    /// returned guard is dropped (with the response body, once it is done).
    pub(crate) fn request(self: &std::sync::Arc<Self>, http2: bool) -> InFlight {
        self.update(|s| {
            if http2 {
                s.protocol = Protocol::Http2;
            } else if s.protocol == Protocol::Unknown {
                s.protocol = Protocol::Http1;
            }
            s.requests += 1;
            s.in_flight += 1;
            s.head_started = None;
            true
        });
        InFlight(self.clone())
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(std::sync::Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
            true
        });
    }
}

/// Match the first bytes of a connection against the HTTP/2 preface, as
/// hyper-util's protocol detection does.
fn sniff(matched: &mut usize, bytes: &[u8]) -> Protocol {
    let rest = &H2_PREFACE[*matched..];
    let n = rest.len().min(bytes.len());
    if rest[..n] != bytes[..n] {
        return Protocol::Http1;
    }
    *matched += n;
    if *matched == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unknown
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sniffed(chunks: &[&[u8]]) -> Protocol {
        let mut matched = 0;
        let mut protocol = Protocol::Unknown;
        for c in chunks {
            if protocol == Protocol::Unknown {
                protocol = sniff(&mut matched, c);
            }
        }
        protocol
    }

    #[test]
    fn protocol_from_the_first_bytes() {
        assert_eq!(sniffed(&[b"GET / HTTP/1.1\r\n"]), Protocol::Http1);
        assert_eq!(sniffed(&[b"P"]), Protocol::Unknown);
        assert_eq!(sniffed(&[b"P", b"OST / HTTP/1.1"]), Protocol::Http1);
        assert_eq!(sniffed(&[b"PRI * HTTP/2.0\r\n"]), Protocol::Unknown);
        assert_eq!(
            sniffed(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]),
            Protocol::Http2
        );
        assert_eq!(sniffed(&[H2_PREFACE, b"\0\0\0\x04"]), Protocol::Http2);
        assert_eq!(sniffed(&[b"PRI * HTTP/2.0\r\n\r\nXX"]), Protocol::Http1);
    }

    #[test]
    fn requests_and_heads() {
        let a = Arc::new(Activity::new());
        a.on_read(b"GET / HTTP/1.1\r\n");
        let s = a.snapshot();
        assert_eq!(s.protocol, Protocol::Http1);
        assert!(s.head_started.is_some());
        let guard = a.request(false);
        let s = a.snapshot();
        assert_eq!((s.requests, s.in_flight, s.head_started), (1, 1, None));
        // Body bytes of a request in flight do not start a head.
        a.on_read(b"body");
        assert!(a.snapshot().head_started.is_none());
        drop(guard);
        let s = a.snapshot();
        assert_eq!(s.in_flight, 0);
        a.on_read(b"G");
        assert!(a.snapshot().head_started.is_some());
        a.on_read(b"");
        assert!(a.snapshot().peer_closed);
    }
}
