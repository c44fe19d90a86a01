//! [`LogLimiter`]: aggregation of repeated log lines. The first occurrence of a key is
//! written in full; repeats within the interval are only counted, and written as one summary
//! line ("1,234 more … in the last 60 s, last: …") at most once per interval per key.
//!
//! It decides, it never writes: the caller logs at its own level with its own fields, so the
//! type suits any repeated line (plugin faults, guest log lines, refused connections). It
//! never sleeps and has no thread: a summary is written with the first repeat after the
//! interval, and the repeats of a burst that then stops are reported with the next
//! occurrence (as a pending summary before that line in full).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the caller should write for one occurrence of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Emit {
    /// Write this occurrence in full. `earlier`: repeats of an earlier burst not reported yet
    /// (write that summary first).
    Full {
        /// Unreported repeats of the previous burst, if any.
        earlier: Option<Repeats>,
    },
    /// Write this summary (it counts this occurrence and ends with its message) instead.
    Summary(Repeats),
    /// Write nothing: counted for the next summary.
    Quiet,
}

/// Repeats of a line that were not written, for one summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeats {
    /// Occurrences not written in full.
    pub count: u64,
    /// Time since the last line written for this key.
    pub over: Duration,
    /// Message of the latest of them.
    pub last: String,
}

impl Repeats {
    /// `count` with thousands separators (`1,234`).
    pub fn count_text(&self) -> String {
        let digits = self.count.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

impl fmt::Display for Repeats {
    /// `1,234 more in the last 60 s, last: <message>`; callers name what repeated around it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} more in the last {} s, last: {}", self.count_text(), self.over.as_secs().max(1), self.last)
    }
}

/// Per-key state: when the last line was written, what was counted since.
#[derive(Debug)]
struct Entry {
    written_at: Instant,
    seen_at: Instant,
    repeats: u64,
    last: String,
}

/// Rate limiter of repeated log lines, by key (plugin and hook, peer, …). Cheap: one lock
/// and one map lookup per occurrence. At most `max_keys` keys are tracked; beyond that,
/// keys quiet for an interval are forgotten, and if none is, the line is written in full.
#[derive(Debug)]
pub struct LogLimiter<K> {
    interval: Duration,
    max_keys: usize,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq> LogLimiter<K> {
    /// A limiter writing at most one summary per `interval` per key, tracking up to `max_keys` keys.
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        LogLimiter { interval, max_keys: max_keys.max(1), entries: Mutex::new(HashMap::new()) }
    }

    /// The summary interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Notes one occurrence of `key` with `message`, now.
    pub fn note(&self, key: K, message: &str) -> Emit {
        self.note_at(key, message, Instant::now())
    }

    /// Notes one occurrence at `now` (monotonic; tests pass their own instants).
    pub fn note_at(&self, key: K, message: &str, now: Instant) -> Emit {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&key) && entries.len() >= self.max_keys {
            let interval = self.interval;
            entries.retain(|_, e| now.saturating_duration_since(e.seen_at) < interval);
            if entries.len() >= self.max_keys {
                return Emit::Full { earlier: None };
            }
        }
        let Some(e) = entries.get_mut(&key) else {
            entries.insert(key, Entry { written_at: now, seen_at: now, repeats: 0, last: String::new() });
            return Emit::Full { earlier: None };
        };
        if now.saturating_duration_since(e.seen_at) >= self.interval {
            // Quiet for an interval: a new burst starts with a line in full.
            let earlier = (e.repeats > 0).then(|| Repeats {
                count: e.repeats,
                over: e.seen_at.saturating_duration_since(e.written_at),
                last: std::mem::take(&mut e.last),
            });
            *e = Entry { written_at: now, seen_at: now, repeats: 0, last: String::new() };
            return Emit::Full { earlier };
        }
        e.seen_at = now;
        e.repeats += 1;
        e.last.clear();
        e.last.push_str(message);
        if now.saturating_duration_since(e.written_at) < self.interval {
            return Emit::Quiet;
        }
        let summary =
            Repeats { count: e.repeats, over: now.saturating_duration_since(e.written_at), last: e.last.clone() };
        e.written_at = now;
        e.repeats = 0;
        Emit::Summary(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn first_in_full_then_one_summary_per_interval() {
        let l = LogLimiter::new(MINUTE, 16);
        let t0 = Instant::now();
        assert_eq!(l.note_at("a", "m0", t0), Emit::Full { earlier: None });
        for s in 1..60 {
            assert_eq!(l.note_at("a", &format!("m{s}"), at(t0, s)), Emit::Quiet, "second {s}");
        }
        let Emit::Summary(r) = l.note_at("a", "m60", at(t0, 60)) else { panic!("a summary after an interval") };
        assert_eq!((r.count, r.over, r.last.as_str()), (60, MINUTE, "m60"));
        assert_eq!(r.to_string(), "60 more in the last 60 s, last: m60");
        assert_eq!(l.note_at("a", "m61", at(t0, 61)), Emit::Quiet, "the summary starts a new interval");
        // Another key is independent.
        assert_eq!(l.note_at("b", "x", at(t0, 61)), Emit::Full { earlier: None });
    }

    #[test]
    fn a_new_burst_after_a_quiet_interval_is_written_in_full_with_the_pending_summary() {
        let l = LogLimiter::new(MINUTE, 16);
        let t0 = Instant::now();
        let _ = l.note_at(1, "first", t0);
        let _ = l.note_at(1, "second", at(t0, 5));
        let _ = l.note_at(1, "third", at(t0, 10));
        let Emit::Full { earlier: Some(r) } = l.note_at(1, "later", at(t0, 600)) else { panic!("full with earlier") };
        assert_eq!((r.count, r.over, r.last.as_str()), (2, Duration::from_secs(10), "third"));
        assert_eq!(l.note_at(1, "again", at(t0, 601)), Emit::Quiet);
        // Nothing pending: a later burst starts plainly.
        let _ = l.note_at(2, "x", t0);
        assert_eq!(l.note_at(2, "y", at(t0, 120)), Emit::Full { earlier: None });
    }

    #[test]
    fn keys_are_bounded_and_quiet_keys_are_forgotten() {
        let l = LogLimiter::new(MINUTE, 2);
        let t0 = Instant::now();
        let _ = l.note_at("a", "", t0);
        let _ = l.note_at("b", "", t0);
        assert_eq!(l.note_at("c", "", at(t0, 1)), Emit::Full { earlier: None }, "untracked: in full");
        assert_eq!(l.note_at("c", "", at(t0, 2)), Emit::Full { earlier: None }, "still untracked");
        assert_eq!(l.note_at("a", "", at(t0, 2)), Emit::Quiet, "tracked keys keep aggregating");
        // After an interval "b" is quiet and makes room.
        assert_eq!(l.note_at("c", "", at(t0, 61)), Emit::Full { earlier: None });
        assert_eq!(l.note_at("c", "", at(t0, 62)), Emit::Quiet, "now tracked");
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        let r = |count| Repeats { count, over: MINUTE, last: String::new() }.count_text();
        assert_eq!(r(7), "7");
        assert_eq!(r(999), "999");
        assert_eq!(r(1_234), "1,234");
        assert_eq!(r(1_234_567), "1,234,567");
    }
}
