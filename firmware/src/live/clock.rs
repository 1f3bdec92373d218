//! Monotonic time for the engine's control loops, real or simulated.
//!
//! Every loop that waits, backs off or watches for a stall asks a [`Clock`] instead of
//! `Instant::now()`/`thread::sleep`, so its tests run on a [`SimulatedClock`] that
//! advances only when the code under test sleeps: deterministic and instant (the
//! moonfire-nvr habit). The *audio* clock, the master clock of the live engine, is not
//! this: it is the ALSA sample position (`sink::alsa::PlaybackStatus`); this clock is
//! for the supervisors around devices.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock the engine's control loops read and sleep on.
pub trait Clock: Send + Sync {
    /// Time since this clock's origin (an arbitrary fixed point in the past).
    fn now(&self) -> Duration;
    /// Waits for `d` (a simulated clock just advances).
    fn sleep(&self, d: Duration);
}

/// The system's monotonic clock (`CLOCK_MONOTONIC` through [`Instant`]).
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    origin: Instant,
}

impl RealClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        RealClock {
            origin: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves only when someone sleeps on it or calls [`SimulatedClock::advance`].
/// Shared between threads it is still consistent (one atomic nanosecond counter), but the
/// tests that use it drive one loop from one thread.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    nanos: AtomicU64,
}

impl SimulatedClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clock_moves_only_when_slept_on() {
        let c = SimulatedClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        c.sleep(Duration::from_millis(1500));
        assert_eq!(c.now(), Duration::from_millis(1500));
        c.advance(Duration::from_micros(1));
        assert_eq!(c.now(), Duration::from_micros(1_500_001));
    }

    #[test]
    fn real_clock_is_monotonic() {
        let c = RealClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
