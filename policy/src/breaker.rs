//! [`Breaker`]: the circuit breaker of one hook of one plugin generation (settings and
//! behaviour: [`BreakerConfig`]). It only decides whether a call may enter the guest and
//! keeps the counts; the manager runs the call, fails static on a skip exactly as on a fault,
//! and logs the transitions it returns.
//!
//! Invariants: a skipped call never enters the guest (so it has no kv writes and no
//! instance); while half-open exactly one trial call runs; a trial that never reports (its
//! ticket dropped) counts as a failed trial, so the breaker cannot stay half-open for ever.

use crate::config::BreakerConfig;
use crate::report::{BreakerState, BreakerStatus};
use dasher_sdk::plugin::Hook;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Buckets of the sliding window (it spans 9 to 10 bucket widths).
const BUCKETS: usize = 10;
/// Failed trials beyond this no longer double the cool-down (it is capped anyway).
const MAX_DOUBLINGS: u32 = 32;

/// The breakers of a plugin generation, one per hook.
#[derive(Default)]
pub(crate) struct Breakers([Breaker; 5]);

impl Breakers {
    pub(crate) fn get(&self, hook: Hook) -> &Breaker {
        &self.0[match hook {
            Hook::Init => 0,
            Hook::Configure => 1,
            Hook::SelectRules => 2,
            Hook::Triage => 3,
            Hook::Review => 4,
        }]
    }

    /// Closes every breaker and clears its counts (a rolled-back-to generation starts afresh).
    pub(crate) fn reset(&self) {
        for b in &self.0 {
            b.reset();
        }
    }
}

/// One hook's breaker.
#[derive(Default)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    skipped: AtomicU64,
}

#[derive(Default)]
struct State {
    phase: Phase,
    window: Window,
    /// Failed trials since the breaker opened: the cool-down is `cool_down_ms · 2^n`, capped.
    failed_trials: u32,
    /// When it last opened from closed, and the skipped count then (for the closing line).
    opened_at: Option<Instant>,
    skipped_at_open: u64,
    times_opened: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Closed,
    /// Calls are skipped; from `since` + the cool-down on, the next call is a trial.
    Open { since: Instant },
    /// A trial call is running; other calls are skipped.
    Trial,
}

/// Whether a call may enter the guest.
pub(crate) enum Admit<'a> {
    /// Run it, then report how it went through the ticket.
    Enter(Ticket<'a>),
    /// Skip it: the breaker is open (or a trial is running).
    Skip,
}

/// A state change, for the manager to log in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Closed → open: `faults` of `calls` within the window faulted.
    Opened { faults: u64, calls: u64, window: Duration, cool_down: Duration },
    /// The trial call faulted: open again for `cool_down`.
    Reopened { cool_down: Duration },
    /// The trial call answered: closed after `open_for`, `skipped` calls skipped meanwhile.
    Closed { open_for: Duration, skipped: u64 },
}

/// An admitted call. Report its outcome with [`succeeded`](Self::succeeded) or
/// [`faulted`](Self::faulted); a trial ticket dropped unreported counts as a failed trial.
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    trial: bool,
    settled: bool,
    admitted_at: Instant,
}

impl Ticket<'_> {
    /// True if this call decides whether the breaker closes.
    #[cfg(test)]
    pub(crate) fn is_trial(&self) -> bool {
        self.trial
    }

    /// The call answered.
    pub(crate) fn succeeded(mut self, cfg: &BreakerConfig, now: Instant) -> Option<Transition> {
        self.settled = true;
        let mut s = self.breaker.lock();
        match (self.trial, s.phase) {
            (true, Phase::Trial) => {
                let open_for = s.opened_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let skipped = self.breaker.skipped.load(Ordering::Relaxed).saturating_sub(s.skipped_at_open);
                s.phase = Phase::Closed;
                s.window = Window::default();
                s.failed_trials = 0;
                Some(Transition::Closed { open_for, skipped })
            }
            (false, Phase::Closed) => {
                s.window.resize(window(cfg));
                s.window.add(now, false);
                None
            }
            // Reset or turned off meanwhile, or admitted before another call opened it.
            _ => None,
        }
    }

    /// The call faulted (in the guest or in its output).
    pub(crate) fn faulted(mut self, cfg: &BreakerConfig, now: Instant) -> Option<Transition> {
        self.settled = true;
        let mut s = self.breaker.lock();
        if self.trial {
            if s.phase != Phase::Trial {
                return None; // reset or turned off meanwhile
            }
            s.reopen(now);
            return Some(Transition::Reopened { cool_down: cool_down(cfg, s.failed_trials) });
        }
        if s.phase != Phase::Closed || cfg.open_after_faults == 0 {
            // Admitted before another call opened it: the trial decides from here.
            return None;
        }
        let window = window(cfg);
        s.window.resize(window);
        s.window.add(now, true);
        let (calls, faults) = s.window.totals(now);
        let percent = u64::from(cfg.min_fault_percent.min(100));
        if faults < u64::from(cfg.open_after_faults) || faults * 100 < calls * percent {
            return None;
        }
        s.phase = Phase::Open { since: now };
        s.failed_trials = 0;
        s.opened_at = Some(now);
        s.skipped_at_open = self.breaker.skipped.load(Ordering::Relaxed);
        s.times_opened += 1;
        Some(Transition::Opened { faults, calls, window, cool_down: cool_down(cfg, 0) })
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.trial && !self.settled {
            let mut s = self.breaker.lock();
            if s.phase == Phase::Trial {
                s.reopen(Instant::now().max(self.admitted_at));
            }
        }
    }
}

impl State {
    fn reopen(&mut self, now: Instant) {
        self.phase = Phase::Open { since: now };
        self.failed_trials = (self.failed_trials + 1).min(MAX_DOUBLINGS);
    }

    /// When the next trial may run, if open.
    fn open_until(&self, cfg: &BreakerConfig) -> Option<Instant> {
        match self.phase {
            Phase::Open { since } => Some(since + cool_down(cfg, self.failed_trials)),
            _ => None,
        }
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides whether a call starting at `now` may enter the guest. With the breaker turned
    /// off (`open_after_faults = 0`) every call enters and an open breaker closes.
    pub(crate) fn admit(&self, cfg: &BreakerConfig, now: Instant) -> Admit<'_> {
        let mut s = self.lock();
        let trial = match s.phase {
            _ if cfg.open_after_faults == 0 => {
                if s.phase != Phase::Closed {
                    s.phase = Phase::Closed;
                    s.window = Window::default();
                    s.failed_trials = 0;
                }
                false
            }
            Phase::Closed => false,
            Phase::Open { .. } if s.open_until(cfg).is_some_and(|until| now >= until) => {
                s.phase = Phase::Trial;
                true
            }
            Phase::Open { .. } | Phase::Trial => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return Admit::Skip;
            }
        };
        Admit::Enter(Ticket { breaker: self, trial, settled: false, admitted_at: now })
    }

    fn reset(&self) {
        *self.lock() = State::default();
        self.skipped.store(0, Ordering::Relaxed);
    }

    fn state(&self, cfg: &BreakerConfig, now: Instant) -> BreakerState {
        let s = self.lock();
        match s.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } if s.open_until(cfg).is_some_and(|until| now < until) => BreakerState::Open,
            Phase::Open { .. } | Phase::Trial => BreakerState::HalfOpen,
        }
    }

    /// Calls skipped since this generation was loaded.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Its status at `now` under `cfg`.
    pub(crate) fn status(&self, hook: Hook, cfg: &BreakerConfig, now: Instant) -> BreakerStatus {
        let state = self.state(cfg, now);
        let mut s = self.lock();
        s.window.resize(window(cfg));
        let (calls, faults) = s.window.totals(now);
        let open_until_unix_ms = match state {
            BreakerState::Open => s.open_until(cfg).map(|until| {
                let at = SystemTime::now() + until.saturating_duration_since(now);
                at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
            }),
            _ => None,
        };
        BreakerStatus {
            hook,
            state,
            open_until_unix_ms,
            cool_down_ms: cool_down(cfg, s.failed_trials).as_millis() as u64,
            calls_in_window: calls,
            faults_in_window: faults,
            times_opened: s.times_opened,
            skipped_calls: self.skipped(),
        }
    }
}

fn window(cfg: &BreakerConfig) -> Duration {
    Duration::from_secs(cfg.window_secs.max(1))
}

/// The cool-down after `failed_trials` failed trials: `cool_down_ms · 2^n`, at most
/// `max_cool_down_ms` (and never below `cool_down_ms`).
fn cool_down(cfg: &BreakerConfig, failed_trials: u32) -> Duration {
    let base = cfg.cool_down_ms;
    let ms =
        base.saturating_mul(1u64.checked_shl(failed_trials).unwrap_or(u64::MAX)).min(cfg.max_cool_down_ms.max(base));
    Duration::from_millis(ms)
}

/// Calls and faults over the last `BUCKETS` bucket widths.
#[derive(Default)]
struct Window {
    origin: Option<Instant>,
    width: Duration,
    /// (bucket index since `origin`, calls, faults)
    buckets: [(u64, u64, u64); BUCKETS],
}

impl Window {
    /// Starts over if the window length changed.
    fn resize(&mut self, window: Duration) {
        let width = (window / BUCKETS as u32).max(Duration::from_millis(1));
        if width != self.width {
            *self = Window { width, ..Window::default() };
        }
    }

    fn index(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        (now.saturating_duration_since(origin).as_nanos() / self.width.as_nanos().max(1)) as u64
    }

    fn add(&mut self, now: Instant, fault: bool) {
        let i = self.index(now);
        let b = &mut self.buckets[(i % BUCKETS as u64) as usize];
        if b.0 != i {
            *b = (i, 0, 0);
        }
        b.1 += 1;
        b.2 += u64::from(fault);
    }

    fn totals(&mut self, now: Instant) -> (u64, u64) {
        let i = self.index(now);
        self.buckets
            .iter()
            .filter(|b| b.0 <= i && b.0 + (BUCKETS as u64) > i)
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            open_after_faults: 3,
            min_fault_percent: 50,
            window_secs: 10,
            cool_down_ms: 1_000,
            max_cool_down_ms: 3_000,
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn enter(b: &Breaker, now: Instant) -> Ticket<'_> {
        match b.admit(&cfg(), now) {
            Admit::Enter(t) => t,
            Admit::Skip => panic!("skipped at {now:?}"),
        }
    }

    fn fault(b: &Breaker, now: Instant) -> Option<Transition> {
        enter(b, now).faulted(&cfg(), now)
    }

    #[test]
    fn opens_after_enough_faults_skips_then_a_good_trial_closes_it() {
        let (b, t0) = (Breaker::default(), Instant::now());
        assert_eq!(fault(&b, t0), None);
        assert_eq!(fault(&b, ms(t0, 1)), None);
        let opened = fault(&b, ms(t0, 2));
        assert!(matches!(opened, Some(Transition::Opened { faults: 3, calls: 3, .. })), "{opened:?}");
        assert_eq!(b.state(&cfg(), ms(t0, 3)), BreakerState::Open);
        for i in 0..5 {
            assert!(matches!(b.admit(&cfg(), ms(t0, 10 + i)), Admit::Skip));
        }
        assert_eq!(b.skipped(), 5);
        let s = b.status(Hook::Configure, &cfg(), ms(t0, 10));
        assert_eq!((s.state, s.times_opened, s.skipped_calls, s.cool_down_ms), (BreakerState::Open, 1, 5, 1_000));
        assert!(s.open_until_unix_ms.is_some());

        // Cool-down over: half-open, one trial, the others still skipped.
        assert_eq!(b.state(&cfg(), ms(t0, 1_002)), BreakerState::HalfOpen);
        let trial = enter(&b, ms(t0, 1_002));
        assert!(trial.is_trial());
        assert!(matches!(b.admit(&cfg(), ms(t0, 1_003)), Admit::Skip), "one trial at a time");
        let closed = trial.succeeded(&cfg(), ms(t0, 1_010));
        assert_eq!(closed, Some(Transition::Closed { open_for: Duration::from_millis(1_008), skipped: 6 }));
        assert_eq!(b.state(&cfg(), ms(t0, 1_010)), BreakerState::Closed);
        // Closing starts a fresh window: two new faults do not reopen it.
        assert_eq!(fault(&b, ms(t0, 1_011)), None);
        assert_eq!(fault(&b, ms(t0, 1_012)), None);
    }

    #[test]
    fn a_failed_trial_doubles_the_cool_down_up_to_the_cap() {
        let (b, t0) = (Breaker::default(), Instant::now());
        for i in 0..3 {
            let _ = fault(&b, ms(t0, i));
        }
        let mut at = 2;
        for expected in [2_000, 3_000, 3_000] {
            at += 10_000;
            let reopened = fault(&b, ms(t0, at));
            assert_eq!(reopened, Some(Transition::Reopened { cool_down: Duration::from_millis(expected) }));
            assert!(matches!(b.admit(&cfg(), ms(t0, at + expected - 1)), Admit::Skip));
        }
        let trial = enter(&b, ms(t0, at + 3_000));
        assert!(matches!(trial.succeeded(&cfg(), ms(t0, at + 3_000)), Some(Transition::Closed { .. })));
        assert_eq!(b.status(Hook::Configure, &cfg(), ms(t0, at + 3_000)).cool_down_ms, 1_000, "reset by closing");
    }

    #[test]
    fn a_small_share_of_faults_does_not_open_it() {
        let (b, t0) = (Breaker::default(), Instant::now());
        for i in 0..20 {
            let now = ms(t0, i * 10);
            let t = enter(&b, now);
            // 5 faults in 20 calls: 25 % < 50 %.
            let _ = if i % 4 == 0 { t.faulted(&cfg(), now) } else { t.succeeded(&cfg(), now) };
        }
        assert_eq!(b.state(&cfg(), ms(t0, 200)), BreakerState::Closed);
        let s = b.status(Hook::Triage, &cfg(), ms(t0, 200));
        assert_eq!((s.calls_in_window, s.faults_in_window), (20, 5));
    }

    #[test]
    fn faults_older_than_the_window_are_forgotten() {
        let (b, t0) = (Breaker::default(), Instant::now());
        let _ = fault(&b, t0);
        let _ = fault(&b, ms(t0, 1));
        assert_eq!(fault(&b, ms(t0, 20_000)), None, "two faults 20 s ago do not count in a 10 s window");
        assert_eq!(b.status(Hook::Configure, &cfg(), ms(t0, 20_000)).faults_in_window, 1);
    }

    #[test]
    fn a_dropped_trial_reopens_and_turning_it_off_closes_it() {
        let (b, t0) = (Breaker::default(), Instant::now());
        for i in 0..3 {
            let _ = fault(&b, ms(t0, i));
        }
        drop(enter(&b, ms(t0, 5_000)));
        assert!(matches!(b.admit(&cfg(), ms(t0, 5_001)), Admit::Skip), "open again, not stuck half-open");
        let off = BreakerConfig { open_after_faults: 0, ..cfg() };
        assert!(matches!(b.admit(&off, ms(t0, 5_002)), Admit::Enter(_)));
        assert_eq!(b.state(&cfg(), ms(t0, 5_003)), BreakerState::Closed);
    }

    #[test]
    fn a_call_admitted_before_it_opened_does_not_change_it() {
        let (b, t0) = (Breaker::default(), Instant::now());
        let late = enter(&b, t0);
        for i in 1..4 {
            let _ = fault(&b, ms(t0, i));
        }
        assert_eq!(late.succeeded(&cfg(), ms(t0, 5)), None);
        assert_eq!(b.state(&cfg(), ms(t0, 6)), BreakerState::Open);
        b.reset();
        assert_eq!((b.state(&cfg(), ms(t0, 7)), b.skipped()), (BreakerState::Closed, 0));
    }
}
