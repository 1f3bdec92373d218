//! The status LED: one pattern per engine state, drawn on any embedded-hal output pin.
//!
//! A pattern is a cycle of on/off segments; the phase restarts whenever the state changes,
//! so a state change is visible at once. Times come from the caller (simulated in tests).

use std::time::Duration;

use embedded_hal::digital::OutputPin;

/// What the LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedState {
    /// Not running (the firmware stopped).
    Off,
    /// Devices opening, no music yet: slow even blink.
    Starting,
    /// Camera and audio running: steady on.
    Running,
    /// Camera or audio missing or stalled (music goes on if audio is there): double blink.
    DeviceMissing,
    /// The firmware hit an error it cannot recover from: fast blink.
    Error,
}

/// Segments in ms, alternately on and off, starting with on; the cycle repeats.
/// 1 Hz (500/500) is the common "busy" blink; a double blink every 1.5 s reads as
/// "attention" and cannot be confused with it; 8 Hz reads as "fault" from across a room.
const STARTING: &[u64] = &[500, 500];
const DEVICE_MISSING: &[u64] = &[120, 180, 120, 1080];
const ERROR: &[u64] = &[62, 63];

impl LedState {
    /// The level the LED has `t` after the state began.
    pub fn level_at(self, t: Duration) -> bool {
        let segments = match self {
            LedState::Off => return false,
            LedState::Running => return true,
            LedState::Starting => STARTING,
            LedState::DeviceMissing => DEVICE_MISSING,
            LedState::Error => ERROR,
        };
        let period: u64 = segments.iter().sum();
        let mut x = (t.as_millis() as u64) % period;
        for (i, s) in segments.iter().enumerate() {
            if x < *s {
                return i % 2 == 0;
            }
            x -= s;
        }
        false
    }

    /// The state for the engine's device states, as `DeviceState::name()` spells them
    /// (`missing`, `starting`, `running`, `stalled`). A missing or stalled device wins over
    /// one still starting, so an unplugged camera shows at once; an unknown name is an error.
    pub fn from_devices(camera: &str, audio: &str) -> LedState {
        let rank = |s: &str| match s {
            "running" => Some(0),
            "starting" => Some(1),
            "missing" | "stalled" => Some(2),
            _ => None,
        };
        match (rank(camera), rank(audio)) {
            (Some(c), Some(a)) => match c.max(a) {
                0 => LedState::Running,
                1 => LedState::Starting,
                _ => LedState::DeviceMissing,
            },
            _ => LedState::Error,
        }
    }
}

/// An LED on an output pin, redrawn by [`Led::tick`].
pub struct Led<P: OutputPin> {
    pin: P,
    state: LedState,
    since: Duration,
    /// Level last written (None before the first write), so the pin is written only on change.
    level: Option<bool>,
}

impl<P: OutputPin> Led<P> {
    pub fn new(pin: P) -> Self {
        Self {
            pin,
            state: LedState::Off,
            since: Duration::ZERO,
            level: None,
        }
    }

    pub fn state(&self) -> LedState {
        self.state
    }

    /// Shows `state` from `now` (the pattern restarts only when the state changes).
    pub fn set(&mut self, state: LedState, now: Duration) {
        if state != self.state {
            self.state = state;
            self.since = now;
        }
    }

    /// Writes the level for `now` if it changed.
    pub fn tick(&mut self, now: Duration) -> Result<(), P::Error> {
        let on = self.state.level_at(now.saturating_sub(self.since));
        if self.level != Some(on) {
            if on {
                self.pin.set_high()?;
            } else {
                self.pin.set_low()?;
            }
            self.level = Some(on);
        }
        Ok(())
    }

    /// Gives the pin back (switched off).
    pub fn release(mut self) -> P {
        let _ = self.pin.set_low();
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{MemPin, SimClock};
    use crate::task::Clock;

    /// The on/off edges (ms since start, level) a state draws over `ms` milliseconds,
    /// sampled every millisecond through a real `Led` on an in-memory pin.
    fn edges(state: LedState, ms: u64) -> Vec<(u64, bool)> {
        let clock = SimClock::new();
        let pin = MemPin::new(&clock, false);
        let mut led = Led::new(pin.clone());
        led.set(state, Duration::ZERO);
        for _ in 0..ms {
            led.tick(clock.now()).unwrap();
            clock.advance(Duration::from_millis(1));
        }
        pin.history()
            .into_iter()
            .map(|(t, l)| (t.as_millis() as u64, l))
            .collect()
    }

    #[test]
    fn running_is_steady_and_off_is_dark() {
        assert_eq!(edges(LedState::Running, 5000), vec![(0, true)]);
        assert_eq!(edges(LedState::Off, 5000), vec![(0, false)]);
    }

    #[test]
    fn starting_blinks_at_one_hertz() {
        let e = edges(LedState::Starting, 2000);
        assert_eq!(
            e,
            vec![(0, true), (500, false), (1000, true), (1500, false)]
        );
    }

    #[test]
    fn device_missing_is_a_double_blink_every_one_and_a_half_seconds() {
        let e = edges(LedState::DeviceMissing, 3000);
        assert_eq!(
            e,
            vec![
                (0, true),
                (120, false),
                (300, true),
                (420, false),
                (1500, true),
                (1620, false),
                (1800, true),
                (1920, false)
            ]
        );
    }

    #[test]
    fn error_blinks_fast() {
        let e = edges(LedState::Error, 1000);
        // 8 cycles a second: 16 edges.
        assert_eq!(e.len(), 16);
        assert!(e.iter().step_by(2).all(|(_, l)| *l));
    }

    #[test]
    fn a_state_change_restarts_the_pattern_and_the_pin_is_written_only_on_change() {
        let clock = SimClock::new();
        let pin = MemPin::new(&clock, false);
        let mut led = Led::new(pin.clone());
        led.set(LedState::Running, Duration::ZERO);
        for t in 0..1000 {
            clock.set(Duration::from_millis(t));
            led.tick(clock.now()).unwrap();
        }
        assert_eq!(pin.writes(), 1);
        led.set(LedState::DeviceMissing, Duration::from_millis(1000));
        for t in 1000..1400 {
            // Setting the same state again does not restart it.
            clock.set(Duration::from_millis(t));
            led.set(LedState::DeviceMissing, clock.now());
            led.tick(clock.now()).unwrap();
        }
        let h: Vec<_> = pin
            .history()
            .into_iter()
            .map(|(t, l)| (t.as_millis() as u64, l))
            .collect();
        // Already on at 1000 ms: the first change is the end of the first blink.
        assert_eq!(h, vec![(0, true), (1120, false), (1300, true)]);
    }

    #[test]
    fn device_states_map_to_patterns() {
        use LedState::*;
        assert_eq!(LedState::from_devices("running", "running"), Running);
        assert_eq!(LedState::from_devices("starting", "running"), Starting);
        assert_eq!(LedState::from_devices("missing", "starting"), DeviceMissing);
        assert_eq!(LedState::from_devices("running", "stalled"), DeviceMissing);
        assert_eq!(LedState::from_devices("running", "on fire"), Error);
    }
}
