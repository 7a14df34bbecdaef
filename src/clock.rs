//! Where "now" comes from: the [`Clock`] trait and its two clocks.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::Timestamp;

/// A source of wall-clock and monotonic time. The engine reads the clock
/// once per request and
/// passes the time into the pure state machine; tests inject a
/// [`ManualClock`] and move time by hand.
///
/// A clock tells two kinds of time: [`Clock::now`], the wall clock, for
/// everything that is stored or compared across processes (sale windows,
/// hold expiries, event times); and [`Clock::monotonic`], which never
/// steps, for durations measured inside one process (how long a cached
/// answer is believed). A wall clock that steps backwards (NTP, a VM
/// resumed from a snapshot) must not make a cache entry live longer.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Time elapsed since an arbitrary, fixed origin on a clock that never
    /// goes backwards and is not affected by steps of the wall clock: only
    /// differences between two readings of the same clock mean anything.
    ///
    /// The default reads the operating system's monotonic clock
    /// ([`Instant`]), measured from the first call in this process. A test
    /// clock overrides it (see [`ManualClock`]).
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// The operating system's clocks: [`SystemTime`] for the wall clock,
/// [`Instant`] for monotonic time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// [`advance`](Self::advance) lets time pass: the wall clock and the
/// monotonic clock move together. [`set`](Self::set) steps the wall clock
/// only (forwards or backwards), as an NTP correction would: the monotonic
/// clock does not move.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    time: Arc<ManualTime>,
}

#[derive(Debug, Default)]
struct ManualTime {
    wall_ms: AtomicU64,
    monotonic_ms: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start`; its monotonic time starts at zero.
    pub fn new(start: Timestamp) -> Self {
        let clock = Self::default();
        clock
            .time
            .wall_ms
            .store(start.as_millis(), Ordering::SeqCst);
        clock
    }

    /// Lets `d` pass: moves the wall clock and the monotonic clock forward
    /// by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        self.time.wall_ms.fetch_add(ms, Ordering::SeqCst);
        self.time.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Steps the wall clock to `t` (may move backwards, to test skew); the
    /// monotonic clock does not move.
    pub fn set(&self, t: Timestamp) {
        self.time.wall_ms.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.time.wall_ms.load(Ordering::SeqCst))
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.time.monotonic_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_both_clocks_and_set_only_the_wall_clock() {
        let t0 = Timestamp::from_millis(1_000_000);
        let c = ManualClock::new(t0);
        assert_eq!((c.now(), c.monotonic()), (t0, Duration::ZERO));
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now(), Timestamp::from_millis(1_000_250));
        assert_eq!(c.monotonic(), Duration::from_millis(250));
        c.set(Timestamp::from_millis(10));
        assert_eq!(c.now(), Timestamp::from_millis(10));
        assert_eq!(c.monotonic(), Duration::from_millis(250));
        let shared = c.clone();
        shared.advance(Duration::from_millis(1));
        assert_eq!(c.monotonic(), Duration::from_millis(251));
    }

    #[test]
    fn the_system_clock_is_monotonic() {
        let a = SystemClock.monotonic();
        let b = SystemClock.monotonic();
        assert!(b >= a);
    }
}
