//! In-memory GPIO pins and a simulated clock: the board logic's test bench.
//!
//! [`MemPin`] implements the embedded-hal 1.0 input and output traits over shared memory,
//! stamping every written level with the [`SimClock`] time, so a test can press the button
//! (`set_level`) and read back the LED's waveform (`history`) without hardware or sleeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

use crate::task::Clock;

/// A clock that moves only when told to; `sleep` advances it.
#[derive(Debug, Clone, Default)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(&self, t: Duration) {
        self.0.store(t.as_nanos() as u64, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[derive(Debug)]
struct PinState {
    level: bool,
    writes: usize,
    history: Vec<(Duration, bool)>,
}

/// One in-memory pin; clones share it (keep one in the test, give one to the code).
#[derive(Debug, Clone)]
pub struct MemPin {
    state: Arc<Mutex<PinState>>,
    clock: SimClock,
}

impl MemPin {
    pub fn new(clock: &SimClock, level: bool) -> Self {
        Self {
            state: Arc::new(Mutex::new(PinState {
                level,
                writes: 0,
                history: vec![],
            })),
            clock: clock.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drives the pin from outside (a finger on the button).
    pub fn set_level(&self, high: bool) {
        self.lock().level = high;
    }

    pub fn level(&self) -> bool {
        self.lock().level
    }

    /// Every level written through [`OutputPin`], with the clock time it was written at.
    pub fn history(&self) -> Vec<(Duration, bool)> {
        self.lock().history.clone()
    }

    /// How many times the pin was written.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    fn write(&mut self, high: bool) {
        let now = self.clock.now();
        let mut s = self.lock();
        s.level = high;
        s.writes += 1;
        s.history.push((now, high));
    }
}

impl ErrorType for MemPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for MemPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.write(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.write(true);
        Ok(())
    }
}

impl InputPin for MemPin {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.level())
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.level())
    }
}
