//! The one button: debounced, classified into short and long presses.
//!
//! Written against time values, not a clock: the caller samples the pin and passes the
//! sample with the time it was taken, so tests drive it on a simulated clock and the
//! device drives it from the board thread's monotonic clock.

use std::time::Duration;

/// Contact bounce of the tactile switches a box like this uses lasts 1–10 ms; a level must
/// hold this long before it counts. Short enough that a quick tap (≈ 80 ms) still registers.
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// Held this long, a press is a long press ("keep this music"). Shorter than a second, so
/// the LED answers while the finger is still down, and well above a deliberate tap (< 300 ms).
pub const LONG_PRESS: Duration = Duration::from_millis(800);

/// What a press means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Released before [`LONG_PRESS`]: dislike (next refinement option).
    Short,
    /// Held for [`LONG_PRESS`]: like/keep. Reported once, while still held.
    Long,
}

/// Debounce and long-press timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonTiming {
    pub debounce: Duration,
    pub long_press: Duration,
}

impl Default for ButtonTiming {
    fn default() -> Self {
        Self {
            debounce: DEBOUNCE,
            long_press: LONG_PRESS,
        }
    }
}

/// Debouncer and press classifier for one button.
#[derive(Debug, Clone)]
pub struct Button {
    timing: ButtonTiming,
    /// Accepted (debounced) level: true = pressed.
    stable: bool,
    /// Raw level seen last and since when it has held.
    raw: bool,
    raw_since: Duration,
    /// When the accepted press began (the first sample of the new level).
    pressed_at: Duration,
    long_sent: bool,
    /// False until the button has been seen released once: a button held (or a line stuck
    /// low) at start-up never counts as a press.
    armed: bool,
    started: bool,
}

impl Button {
    pub fn new(timing: ButtonTiming) -> Self {
        Self {
            timing,
            stable: false,
            raw: false,
            raw_since: Duration::ZERO,
            pressed_at: Duration::ZERO,
            long_sent: false,
            armed: false,
            started: false,
        }
    }

    /// The debounced level: true while the button is held.
    pub fn is_pressed(&self) -> bool {
        self.stable
    }

    /// Feeds one sample of the pin (`pressed` = the button is down) taken at `now`
    /// (monotonic); returns a press when one completes. Sample every few ms.
    pub fn update(&mut self, now: Duration, pressed: bool) -> Option<Press> {
        if !self.started {
            self.started = true;
            self.raw = pressed;
            self.raw_since = now;
            self.stable = pressed;
            self.armed = !pressed;
            return None;
        }
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = now;
        }
        if self.raw != self.stable && now.saturating_sub(self.raw_since) >= self.timing.debounce {
            self.stable = self.raw;
            if self.stable {
                self.pressed_at = self.raw_since;
                self.long_sent = false;
            } else {
                let was_armed = self.armed;
                self.armed = true;
                if was_armed && !self.long_sent {
                    return Some(Press::Short);
                }
            }
        }
        // A release still being debounced is not a hold.
        if self.stable
            && self.raw
            && self.armed
            && !self.long_sent
            && now.saturating_sub(self.pressed_at) >= self.timing.long_press
        {
            self.long_sent = true;
            return Some(Press::Long);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(5);

    /// Samples `level(t)` every 5 ms from `t0` to `t1` (ms) and collects the presses with
    /// the time each was reported.
    fn drive(b: &mut Button, t0: u64, t1: u64, level: impl Fn(u64) -> bool) -> Vec<(u64, Press)> {
        let mut out = vec![];
        let mut t = Duration::from_millis(t0);
        while t < Duration::from_millis(t1) {
            let ms = t.as_millis() as u64;
            if let Some(p) = b.update(t, level(ms)) {
                out.push((ms, p));
            }
            t += STEP;
        }
        out
    }

    #[test]
    fn a_tap_is_one_short_press_on_release() {
        let mut b = Button::new(ButtonTiming::default());
        let got = drive(&mut b, 0, 1000, |t| (100..250).contains(&t));
        // Released at 250 ms, accepted after the debounce.
        assert_eq!(got, vec![(280, Press::Short)]);
    }

    #[test]
    fn bounces_shorter_than_the_debounce_are_ignored() {
        let mut b = Button::new(ButtonTiming::default());
        // 10 ms spikes every 50 ms (a noisy line): never held for 30 ms.
        let got = drive(&mut b, 0, 2000, |t| t % 50 < 10 && t > 0);
        assert!(got.is_empty(), "{got:?}");
        // A press that bounces on contact and release still counts once.
        let bouncy = |t: u64| matches!(t, 100..=104 | 110..=114 | 120..=400 | 405..=409);
        let got = drive(&mut b, 2000, 3000, |t| bouncy(t - 2000));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Press::Short);
    }

    #[test]
    fn holding_gives_one_long_press_while_held_and_nothing_on_release() {
        let mut b = Button::new(ButtonTiming::default());
        let got = drive(&mut b, 0, 5000, |t| (100..3000).contains(&t));
        // The press began at 100 ms; long after 800 ms more, once; the release adds nothing.
        assert_eq!(got, vec![(900, Press::Long)]);
    }

    #[test]
    fn the_threshold_between_short_and_long() {
        let t = ButtonTiming::default();
        let hold = |ms: u64| {
            let mut b = Button::new(t);
            drive(&mut b, 0, 3000, move |x| (100..100 + ms).contains(&x))
        };
        assert_eq!(hold(700)[0].1, Press::Short);
        assert_eq!(hold(790)[0].1, Press::Short);
        assert_eq!(hold(850)[0].1, Press::Long);
        assert_eq!(hold(850).len(), 1);
    }

    #[test]
    fn a_button_held_at_start_up_counts_only_after_a_release() {
        let mut b = Button::new(ButtonTiming::default());
        // Stuck down for 3 s from power-on: no long press, no short press on release.
        let got = drive(&mut b, 0, 4000, |t| t < 3000);
        assert!(got.is_empty(), "{got:?}");
        // Then a normal tap works.
        let got = drive(&mut b, 4000, 5000, |t| (4100..4200).contains(&t));
        assert_eq!(got, vec![(4230, Press::Short)]);
    }

    #[test]
    fn repeated_taps_each_count() {
        let mut b = Button::new(ButtonTiming::default());
        let got = drive(&mut b, 0, 3000, |t| t % 500 >= 100 && t % 500 < 200);
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|(_, p)| *p == Press::Short));
    }
}
