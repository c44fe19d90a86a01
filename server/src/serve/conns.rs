//! The connection table of one listener: which connections are open, from which address,
//! and which of them are idle (no request in progress), longest idle first. It decides
//! admission at accept (`limits.max_connections_per_peer`), picks the longest-idle connection
//! to close when a limit is reached, and tells each connection when its idle bound has
//! passed. It never touches a socket: it only signals connection tasks, which close themselves.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

/// Why a new connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `limits.max_connections` open and none of them idle.
    ConnectionLimit,
    /// `limits.max_connections_per_peer` open from this address and none of them idle.
    PeerLimit,
}

impl Refusal {
    const ALL: [Refusal; 2] = [Refusal::ConnectionLimit, Refusal::PeerLimit];
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::ConnectionLimit => {
                "connection limit reached (limits.max_connections), no idle connection to close"
            }
            Refusal::PeerLimit => {
                "per-address connection limit reached (limits.max_connections_per_peer), no idle connection to close"
            }
        })
    }
}

/// Counts refusals per reason and idle connections closed to admit new ones, so the accept
/// loop logs one line per reason and period instead of one per connection.
#[derive(Default)]
pub(crate) struct RefusalLog {
    refused: [AtomicU64; Refusal::ALL.len()],
    evicted: AtomicU64,
}

impl RefusalLog {
    /// Counts one refused connection.
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one idle connection closed to make room.
    pub(crate) fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Logs and resets the counts gathered over the last `period`.
    pub(crate) fn flush(&self, period: Duration) {
        let secs = period.as_secs();
        for why in Refusal::ALL {
            let n = self.refused[why as usize].swap(0, Ordering::Relaxed);
            if n > 0 {
                tracing::warn!(refused = n, "refused {n} connections in the last {secs} s: {why}");
            }
        }
        let n = self.evicted.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::info!(closed = n, "closed {n} idle connections in the last {secs} s to admit new ones");
        }
    }
}

/// The open connections of one listener.
pub(crate) struct ConnTable {
    inner: Mutex<Inner>,
    /// Most connections per peer address (0 = unlimited).
    per_peer_cap: usize,
    /// Bound on a connection's first request (TLS handshake done, headers not yet complete).
    first_request_timeout: Duration,
    /// Bound on the idle time between requests.
    idle_timeout: Duration,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Increases each time a connection becomes idle: orders the idle sets.
    next_seq: u64,
    conns: HashMap<u64, Entry>,
    /// Idle connections, longest idle first: idle sequence → connection id.
    idle: BTreeMap<u64, u64>,
    peers: HashMap<IpAddr, Peer>,
}

struct Entry {
    peer: IpAddr,
    /// Requests whose headers arrived and whose response body was not yet sent.
    in_flight: usize,
    /// Key in the idle sets while idle and not closing.
    idle_seq: Option<u64>,
    idle_since: Instant,
    /// Requests started on this connection.
    served: u64,
    /// Asked to close (idle bound, eviction): never idle again, never picked twice.
    closing: bool,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Peer {
    /// Registered connections plus reservations awaiting a permit.
    open: usize,
    /// This address's idle connections, longest idle first.
    idle: BTreeMap<u64, u64>,
}

impl Inner {
    fn make_idle(&mut self, id: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(e) = self.conns.get_mut(&id) else { return };
        debug_assert!(e.idle_seq.is_none() && e.in_flight == 0);
        if e.closing {
            return;
        }
        e.idle_seq = Some(seq);
        e.idle_since = Instant::now();
        let peer = e.peer;
        self.idle.insert(seq, id);
        self.peers.entry(peer).or_default().idle.insert(seq, id);
    }

    fn unmake_idle(&mut self, id: u64) {
        let Some(e) = self.conns.get_mut(&id) else { return };
        if let Some(seq) = e.idle_seq.take() {
            let peer = e.peer;
            self.idle.remove(&seq);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.idle.remove(&seq);
            }
        }
    }

    /// Marks `id` closing and returns its signal.
    fn close(&mut self, id: u64) -> Option<Arc<Notify>> {
        self.unmake_idle(id);
        let e = self.conns.get_mut(&id)?;
        e.closing = true;
        Some(e.close.clone())
    }

    fn release_peer(&mut self, peer: IpAddr) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.open -= 1;
            if p.open == 0 {
                debug_assert!(p.idle.is_empty());
                self.peers.remove(&peer);
            }
        }
    }
}

impl ConnTable {
    /// An empty table.
    pub(crate) fn new(per_peer_cap: usize, first_request_timeout: Duration, idle_timeout: Duration) -> Arc<ConnTable> {
        Arc::new(ConnTable { inner: Mutex::default(), per_peer_cap, first_request_timeout, idle_timeout })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent across a panic elsewhere: every update is one short block.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a place for a new connection from `peer`. At the per-peer cap, that address's
    /// longest-idle connection is asked to close to make room (`replaced`); if none is idle
    /// the connection is refused.
    pub(crate) fn reserve(self: &Arc<Self>, peer: IpAddr) -> Result<Reservation, Refusal> {
        let mut replaced = false;
        let signal = {
            let mut inner = self.lock();
            let p = inner.peers.entry(peer).or_default();
            let victim = if self.per_peer_cap > 0 && p.open >= self.per_peer_cap {
                let Some((_, &id)) = p.idle.first_key_value() else {
                    return Err(Refusal::PeerLimit);
                };
                Some(id)
            } else {
                None
            };
            p.open += 1;
            victim.and_then(|id| {
                replaced = true;
                inner.close(id)
            })
        };
        if let Some(signal) = signal {
            signal.notify_one();
        }
        Ok(Reservation { table: Some(self.clone()), peer, replaced })
    }

    /// Asks the longest-idle connection to close (it frees its permit when it has closed).
    /// False if no connection is idle.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let signal = {
            let mut inner = self.lock();
            let Some((_, &id)) = inner.idle.first_key_value() else { return false };
            inner.close(id)
        };
        signal.inspect(|s| s.notify_one()).is_some()
    }

    /// Connections registered (holding a permit).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

/// A place for one connection from one address, before it holds a permit. Dropping it frees
/// the place.
pub(crate) struct Reservation {
    table: Option<Arc<ConnTable>>,
    peer: IpAddr,
    /// An idle connection from the same address was asked to close to make room; when it has
    /// closed it frees its permit too.
    pub(crate) replaced: bool,
}

impl Reservation {
    /// Registers the connection, idle until its first request.
    pub(crate) fn register(mut self, permit: OwnedSemaphorePermit) -> Conn {
        let table = self.table.take().expect("a reservation registers once");
        let close = Arc::new(Notify::new());
        let id = {
            let mut inner = table.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            let entry = Entry {
                peer: self.peer,
                in_flight: 0,
                idle_seq: None,
                idle_since: Instant::now(),
                served: 0,
                closing: false,
                close: close.clone(),
            };
            inner.conns.insert(id, entry);
            inner.make_idle(id);
            id
        };
        Conn { table, id, close, _permit: permit }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(table) = self.table.take() {
            table.lock().release_peer(self.peer);
        }
    }
}

/// One open connection in the table; dropping it removes it (and frees its permit).
pub(crate) struct Conn {
    table: Arc<ConnTable>,
    id: u64,
    close: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Resolves when the table asks this connection to close (it was idle and a new
    /// connection needed its place).
    pub(crate) async fn evicted(&self) {
        self.close.notified().await
    }

    /// Restarts the idle clock (e.g. once the TLS handshake is done).
    pub(crate) fn restart_idle_clock(&self) {
        if let Some(e) = self.table.lock().conns.get_mut(&self.id) {
            e.idle_since = Instant::now();
        }
    }

    /// Counts a request in progress until the guard is dropped.
    pub(crate) fn request_started(&self) -> RequestGuard {
        let mut inner = self.table.lock();
        inner.unmake_idle(self.id);
        if let Some(e) = inner.conns.get_mut(&self.id) {
            e.in_flight += 1;
            e.served += 1;
        }
        RequestGuard { table: self.table.clone(), id: self.id }
    }

    /// When this connection's idle bound passes: `None` while a request is in progress. Before
    /// the first request the bound is `first_request_timeout`, after it `idle_timeout`.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        let inner = self.table.lock();
        let e = inner.conns.get(&self.id)?;
        if e.in_flight > 0 {
            return None;
        }
        let bound = if e.served == 0 { self.table.first_request_timeout } else { self.table.idle_timeout };
        Some(e.idle_since + bound)
    }

    /// Marks the connection closing: it is no longer offered for eviction.
    pub(crate) fn closing(&self) {
        self.table.lock().close(self.id);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        inner.unmake_idle(self.id);
        if let Some(e) = inner.conns.remove(&self.id) {
            inner.release_peer(e.peer);
        }
    }
}

/// A request in progress on a connection (see [`Conn::request_started`]).
pub(crate) struct RequestGuard {
    table: Arc<ConnTable>,
    id: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        let Some(e) = inner.conns.get_mut(&self.id) else { return };
        e.in_flight -= 1;
        if e.in_flight == 0 {
            inner.make_idle(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn open(table: &Arc<ConnTable>, sem: &Arc<Semaphore>, peer: IpAddr) -> Conn {
        let r = table.reserve(peer).expect("admitted");
        r.register(sem.clone().try_acquire_owned().expect("a permit"))
    }

    fn is_signalled(c: &Conn) -> bool {
        use std::future::Future;
        let fut = std::pin::pin!(c.evicted());
        let waker = std::task::Waker::noop();
        fut.poll(&mut std::task::Context::from_waker(waker)).is_ready()
    }

    #[tokio::test]
    async fn per_peer_cap_replaces_the_longest_idle_and_refuses_when_all_are_busy() {
        let table = ConnTable::new(2, Duration::from_secs(1), Duration::from_secs(1));
        let sem = Arc::new(Semaphore::new(100));
        let a = open(&table, &sem, LOCAL);
        let b = open(&table, &sem, LOCAL);
        let _other = open(&table, &sem, OTHER);
        // Both of LOCAL's are idle: the older one (a) makes room.
        let r = table.reserve(LOCAL).expect("admitted by replacing an idle one");
        assert!(r.replaced);
        assert!(is_signalled(&a) && !is_signalled(&b));
        drop(a);
        let c = r.register(sem.clone().try_acquire_owned().unwrap());
        let _busy = b.request_started();
        let r = table.reserve(LOCAL).expect("c is idle: it makes room");
        assert!(r.replaced && is_signalled(&c) && !is_signalled(&b), "a busy connection is never picked");
        drop(r);
        assert_eq!(table.reserve(LOCAL).err(), Some(Refusal::PeerLimit), "b busy, c closing: refused");
        assert!(table.reserve(OTHER).is_ok(), "other addresses are unaffected");
        assert_eq!(table.len(), 3);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted_and_idle_ones_longest_first() {
        let table = ConnTable::new(0, Duration::from_secs(1), Duration::from_secs(1));
        let sem = Arc::new(Semaphore::new(100));
        let a = open(&table, &sem, LOCAL);
        let b = open(&table, &sem, OTHER);
        let guard = a.request_started();
        assert_eq!(a.idle_deadline(), None, "a request in progress has no idle bound");
        assert!(table.evict_longest_idle());
        assert!(is_signalled(&b) && !is_signalled(&a));
        assert!(!table.evict_longest_idle(), "b is closing and a is busy: nobody to evict");
        drop(guard);
        assert!(a.idle_deadline().is_some(), "idle again after the response");
        assert!(table.evict_longest_idle());
        assert!(is_signalled(&a));
    }

    #[test]
    fn refusals_are_logged_once_per_reason_and_period() {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let log = RefusalLog::default();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..4180 {
                log.refused(Refusal::ConnectionLimit);
            }
            log.refused(Refusal::PeerLimit);
            log.evicted();
            log.flush(Duration::from_secs(10));
            log.flush(Duration::from_secs(10));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "one line per reason, nothing when nothing happened: {text}");
        assert!(
            lines[0].contains("WARN")
                && lines[0].contains("refused 4180 connections in the last 10 s: connection limit")
        );
        assert!(lines[1].contains("refused 1 connections in the last 10 s: per-address connection limit"));
        assert!(lines[2].contains("closed 1 idle connections"), "{text}");
    }

    #[tokio::test]
    async fn the_first_request_and_later_idle_periods_have_their_own_bounds() {
        let table = ConnTable::new(0, Duration::from_secs(3), Duration::from_secs(60));
        let sem = Arc::new(Semaphore::new(1));
        let c = open(&table, &sem, LOCAL);
        let first = c.idle_deadline().unwrap();
        drop(c.request_started());
        let later = c.idle_deadline().unwrap();
        assert!(later >= first + Duration::from_secs(50), "the idle bound applies after a request");
        c.closing();
        assert!(!table.evict_longest_idle(), "a closing connection is not offered");
        drop(c);
        assert_eq!(table.len(), 0);
        assert!(table.lock().peers.is_empty(), "no per-address entry outlives its connections");
        assert_eq!(sem.available_permits(), 1, "the permit came back");
    }
}
